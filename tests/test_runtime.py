"""Runtime: the `fertrt infer` command end to end (runtime/commands.py), and faces: detection, crops, tracking.
The runtime's modules have their own files: tests/test_runtime_pipeline.py, _predictor, _preprocess, _runners,
_options."""

import json
from pathlib import Path

import cv2
import numpy as np

from conftest import run_without_torch
from fertrt.runtime.face import Face, HaarDetector, Tracker, crop_face
from fertrt.runtime.predictor import Predictor
from fertrt.train.data.synth import SynthConfig, generate
from helpers import exit_code, synth_image_files, write_bgr


def _scene(faces, rng, size=140):
    scene = (np.full((480, 640, 3), 120, np.uint8) + rng.integers(0, 30, (480, 640, 3))).astype(np.uint8)
    boxes = []
    for j, face in enumerate(faces):
        x, y = 10 + j * 155, 160 + int(rng.integers(-100, 100))
        scene[y : y + size, x : x + size] = face
        boxes.append((x, y, size, size))
    return scene, boxes


def test_face_pipeline_finds_pasted_synth_faces(tiny_onnx, capsys):
    from fertrt.train.data.synth_source import DIFFICULTY

    imgs, labels, _ = generate(
        SynthConfig(size=140, **DIFFICULTY["easy"]), "test", 48
    )  # the fixture model's distribution
    det = HaarDetector()
    rng = np.random.default_rng(0)
    found = correct = total = extra = direct_correct = 0
    with Predictor.open(tiny_onnx) as pred:
        direct = pred.predict(list(imgs))
        for k in range(12):
            scene, boxes = _scene(imgs[4 * k : 4 * k + 4], rng)
            faces = det.detect(scene)
            results = pred.predict([crop_face(scene, f, margin=0.1) for f in faces])
            total += len(boxes)
            for j, (b, label) in enumerate(zip(boxes, labels[4 * k : 4 * k + 4])):
                match = [
                    r
                    for f, r in zip(faces, results)
                    if abs(f.box[0] + f.box[2] / 2 - b[0] - 70) < 35 and abs(f.box[1] + f.box[3] / 2 - b[1] - 70) < 35
                ]
                if match:
                    found += 1
                    correct += match[0]["class_id"] == label
                    direct_correct += direct[4 * k + j]["class_id"] == label
            extra += len(faces) - sum(
                1 for f in faces if any(abs(f.box[0] + f.box[2] / 2 - b[0] - 70) < 35 for b in boxes)
            )
    recall, acc, acc_direct = found / total, correct / max(found, 1), direct_correct / max(found, 1)
    with capsys.disabled():
        print(
            f"\n[face pipeline] Haar recall on pasted synth faces {recall:.2f} ({found}/{total}), extra detections {extra}; "
            f"label accuracy on found faces {acc:.2f} through detect+crop vs {acc_direct:.2f} on the original images"
        )
    assert recall >= 0.5  # cartoon faces are not what the Haar cascade was trained on
    assert extra <= 2
    # the fixture model is trained without geometric augmentation, so a crop a few pixels off the training
    # framing costs it most of its accuracy (0.33 vs 0.82 measured): only "better than chance" holds here;
    # the pipeline suite (benchmarks/pipeline.py) reports this figure for every detector
    assert acc > 1 / 7


def test_tracker_smooths_and_keeps_ids():
    tr = Tracker(alpha=0.5)
    a = tr.update([(0, 0, 50, 50), (200, 0, 50, 50)], [[1.0, 0.0], [0.0, 1.0]])
    assert [t for t, _ in a] == [0, 1]
    # face 0 flickers to class 1 for one frame: the smoothed label stays class 0
    b = tr.update([(2, 1, 50, 50), (201, 0, 50, 50)], [[0.2, 0.8], [0.0, 1.0]])
    assert [t for t, _ in b] == [0, 1]
    assert np.allclose(b[0][1], [0.6, 0.4]) and np.argmax(b[0][1]) == 0
    c = tr.update([(400, 400, 50, 50)], [[0.5, 0.5]])
    assert c[0][0] == 2  # a new face far away gets a new id


def test_crop_face_aligns_by_eyes():
    img = np.zeros((200, 200, 3), np.uint8)
    face = Face(
        (50, 50, 100, 100), landmarks=np.array([[70, 90], [130, 90], [100, 110], [80, 140], [120, 140]], np.float32)
    )
    crop = crop_face(img, face, margin=0.1)
    assert crop.shape == (120, 120, 3)


def test_infer_cli_without_torch(tiny_onnx, tmp_path):
    """`fertrt infer` end to end on ONNX Runtime in a process where torch cannot be imported."""
    imgs, _, _ = generate(SynthConfig(size=112), "test", 3)
    folder = tmp_path / "in"
    folder.mkdir()
    write_bgr(folder / "a.png", cv2.cvtColor(imgs[0], cv2.COLOR_RGB2BGR))
    write_bgr(folder / "grey.png", cv2.cvtColor(imgs[1], cv2.COLOR_RGB2GRAY))
    write_bgr(
        folder / "rgba.png", np.dstack([cv2.cvtColor(imgs[2], cv2.COLOR_RGB2BGR), np.full((112, 112), 255, np.uint8)])
    )
    (folder / "broken.jpg").write_bytes(b"not an image")
    jsonl, out = tmp_path / "out.jsonl", tmp_path / "annotated"
    code = (
        f"from fertrt.cli import main\nraise SystemExit(main(['infer', {str(tiny_onnx)!r}, {str(folder)!r}, '--no-detect', "
        f"'--jsonl', {str(jsonl)!r}, '--save', {str(out)!r}]))"
    )
    r = run_without_torch(code)
    assert r.returncode == 0, r.stderr
    assert "3 frames, 3 faces, 1 unreadable" in r.stdout and "broken.jpg" in r.stdout
    # the fixture model learnt synth faces: said once, with how to train on real data
    assert r.stderr.count("labels on real faces are not meaningful") == 1 and "--data fer2013:" in r.stderr
    records = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert len(records) == 3
    for rec in records:
        assert set(rec) == {"source", "frame", "detected", "faces", "timings_ms"}
        assert set(rec["timings_ms"]) == {"decode", "detect", "crop", "preprocess", "infer", "postprocess", "total"}
        assert rec["timings_ms"]["total"] >= rec["timings_ms"]["infer"] > 0
        face = rec["faces"][0]
        assert face["box"] == [0, 0, 112, 112] and face["label"] in face["probabilities"]
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-6
    assert len(list(out.glob("*.png"))) == 3


def test_infer_several_inputs_and_globs(tiny_onnx, tmp_path):
    from fertrt.cli import main

    a = synth_image_files(tmp_path / "a", 2)
    synth_image_files(tmp_path / "b", 3)
    (tmp_path / "b" / "f0.png").rename(tmp_path / "b" / "g0.png")
    jsonl, out = tmp_path / "r.jsonl", tmp_path / "saved"
    assert (
        main(
            [
                "infer",
                str(tiny_onnx),
                str(a[0]),
                str(tmp_path / "b" / "f*.png"),
                str(tmp_path / "b" / "g0.png"),
                "--no-detect",
                "--jsonl",
                str(jsonl),
                "--save",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    recs = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert [(Path(r["source"]).parent.name, Path(r["source"]).name) for r in recs] == [
        ("a", "f0.png"),
        ("b", "f1.png"),
        ("b", "f2.png"),
        ("b", "g0.png"),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f1.png", "f2.png", "g0.png"]
    # two inputs called f1.png would both be saved as saved/f1.png: refused before any work
    assert (
        main(
            [
                "infer",
                str(tiny_onnx),
                str(a[1]),
                str(tmp_path / "b" / "f1.png"),
                "--no-detect",
                "--save",
                str(tmp_path / "s2"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "s2").exists()
    assert main(["infer", str(tiny_onnx), str(tmp_path / "nothing*.png"), "--no-detect"]) == 2


def test_infer_refuses_outputs_that_are_inputs_or_exist(tmp_path, capsys):
    from fertrt.cli import main

    files = synth_image_files(tmp_path / "in", 2)
    model = tmp_path / "unused.onnx"  # the checks run before any model is opened
    cases = [
        (["--save", str(tmp_path / "in"), "--force"], "is a folder the input images are read from"),
        (["--jsonl", str(files[0]), "--force"], "is one of the inputs"),
        (["--summary-json", str(files[1]), "--force"], "is one of the inputs"),
        (["--margin", "-0.1"], "--margin"),
        (["--smooth", "0"], "--smooth"),
        (["--smooth", "1.5"], "--smooth"),
        (["--every", "0"], "--every"),
        (["--max-frames", "0"], "--max-frames"),
    ]
    for extra, message in cases:
        assert exit_code(main, ["infer", str(model), str(tmp_path / "in")] + extra) == 2, extra
        assert message in capsys.readouterr().err
    existing = tmp_path / "old.jsonl"
    existing.write_text("keep me\n")
    assert main(["infer", str(model), str(tmp_path / "in"), "--jsonl", str(existing)]) == 2
    assert "file exists (pass --force to replace it)" in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"
    assert [p.name for p in sorted((tmp_path / "in").iterdir())] == ["f0.png", "f1.png"]


def test_infer_force_replaces_outputs(tiny_onnx, tmp_path):
    from fertrt.cli import main

    files = synth_image_files(tmp_path / "in", 2)
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("old\n")
    assert (
        main(
            ["infer", str(tiny_onnx), str(tmp_path / "in"), "--no-detect", "--jsonl", str(jsonl), "--force", "--quiet"]
        )
        == 0
    )
    assert len([json.loads(l) for l in jsonl.read_text().splitlines()]) == len(files)


def test_default_detector_labels_all_four_demo_faces(blazeface_onnx, tiny_onnx, tmp_path):
    """The demo's sample picture (4 synth faces in a 640x480 scene): Haar found 1-2 of them, BlazeFace all 4."""
    from fertrt.benchmarks.demo import sample_scene
    from fertrt.cli import main

    scene, _ = sample_scene()
    path = write_bgr(tmp_path / "scene.png", cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    jsonl = tmp_path / "r.jsonl"
    assert main(["infer", str(tiny_onnx), str(path), "--jsonl", str(jsonl), "--quiet"]) == 0
    faces = json.loads(jsonl.read_text())["faces"]
    assert len(faces) == 4
    centres = sorted(f["box"][0] + f["box"][2] / 2 for f in faces)
    assert all(abs(c - (80 + 155 * j)) < 30 for j, c in enumerate(centres))
    assert all(len(f["eyes"]) == 2 and f["eyes"][0][0] < f["eyes"][1][0] for f in faces)
