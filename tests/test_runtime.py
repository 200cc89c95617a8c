"""Runtime: backends agree, preprocessing equals training's, the face pipeline, tracking, bad inputs."""
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from conftest import run_without_torch
from fertrt.errors import FertrtError
from fertrt.runtime.face import Face, HaarDetector, Tracker, crop_face
from fertrt.runtime.predictor import Predictor
from fertrt.runtime.preprocess import PreprocessConfig, preprocess
from fertrt.runtime.runners import open_runner
from fertrt.train.data.synth import SynthConfig, generate


def test_onnxruntime_and_torch_backends_agree(tiny_run, tiny_onnx):
    run, _ = tiny_run
    imgs, _, _ = generate(SynthConfig(), "test", 16)
    with Predictor.open(tiny_onnx) as ort_p, Predictor.open(run / "best.pt") as pt_p:
        assert ort_p.runner.backend == "onnxruntime" and pt_p.runner.backend == "torch"
        a, b = ort_p.predict(list(imgs)), pt_p.predict(list(imgs))
    assert [r["label"] for r in a] == [r["label"] for r in b]
    pa = np.array([list(r["probabilities"].values()) for r in a])
    pb = np.array([list(r["probabilities"].values()) for r in b])
    assert np.abs(pa - pb).max() < 1e-5
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in a)


def test_preprocessing_matches_training_bit_for_bit():
    from fertrt.train.trainer import make_loader
    from fertrt.train.data import load_data

    pre = PreprocessConfig(input_size=(96, 96), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    data = load_data("synth:40", image_size=128)  # drawn at 128, model input 96: the resize matters
    split = data.split("test")
    loader, _ = make_loader(split, pre, 8, train=False)
    x_train, _, idx = next(iter(loader))
    x_runtime = preprocess([split.load(int(i)) for i in idx], pre)
    assert x_train.numpy().dtype == np.float32
    assert np.array_equal(x_train.numpy(), x_runtime)


def test_grey_and_bgr_models():
    img = np.random.default_rng(0).integers(0, 256, (50, 60, 3)).astype(np.uint8)
    grey_cfg = PreprocessConfig(channels=1, mean=(0.5,), std=(0.5,), color_order="GRAY", input_size=(32, 32))
    x = preprocess([img], grey_cfg)
    assert x.shape == (1, 1, 32, 32)
    ref = (cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA) / 255.0 - 0.5) / 0.5
    assert np.abs(x[0, 0] - ref).max() < 0.01
    bgr = preprocess([img], PreprocessConfig(input_size=(50, 60), color_order="BGR"))
    rgb = preprocess([img], PreprocessConfig(input_size=(50, 60)))
    assert np.array_equal(bgr[:, ::-1], rgb)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    assert np.array_equal(preprocess([rgba], PreprocessConfig(input_size=(50, 60))), rgb)


def _scene(faces, rng, size=140):
    scene = (np.full((480, 640, 3), 120, np.uint8) + rng.integers(0, 30, (480, 640, 3))).astype(np.uint8)
    boxes = []
    for j, face in enumerate(faces):
        x, y = 10 + j * 155, 160 + int(rng.integers(-100, 100))
        scene[y:y + size, x:x + size] = face
        boxes.append((x, y, size, size))
    return scene, boxes


def test_face_pipeline_finds_pasted_synth_faces(tiny_onnx, capsys):
    from fertrt.train.data.synth_source import DIFFICULTY

    imgs, labels, _ = generate(SynthConfig(size=140, **DIFFICULTY["easy"]), "test", 48)  # the fixture model's distribution
    det = HaarDetector()
    rng = np.random.default_rng(0)
    found = correct = total = extra = direct_correct = 0
    with Predictor.open(tiny_onnx) as pred:
        direct = pred.predict(list(imgs))
        for k in range(12):
            scene, boxes = _scene(imgs[4 * k:4 * k + 4], rng)
            faces = det.detect(scene)
            results = pred.predict([crop_face(scene, f, margin=0.1) for f in faces])
            total += len(boxes)
            for j, (b, label) in enumerate(zip(boxes, labels[4 * k:4 * k + 4])):
                match = [r for f, r in zip(faces, results)
                         if abs(f.box[0] + f.box[2] / 2 - b[0] - 70) < 35 and abs(f.box[1] + f.box[3] / 2 - b[1] - 70) < 35]
                if match:
                    found += 1
                    correct += match[0]["class_id"] == label
                    direct_correct += direct[4 * k + j]["class_id"] == label
            extra += len(faces) - sum(1 for f in faces if any(abs(f.box[0] + f.box[2] / 2 - b[0] - 70) < 35 for b in boxes))
    recall, acc, acc_direct = found / total, correct / max(found, 1), direct_correct / max(found, 1)
    with capsys.disabled():
        print(f"\n[face pipeline] Haar recall on pasted synth faces {recall:.2f} ({found}/{total}), extra detections {extra}; "
              f"label accuracy on found faces {acc:.2f} through detect+crop vs {acc_direct:.2f} on the original images")
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
    face = Face((50, 50, 100, 100), landmarks=np.array([[70, 90], [130, 90], [100, 110], [80, 140], [120, 140]], np.float32))
    crop = crop_face(img, face, margin=0.1)
    assert crop.shape == (120, 120, 3)


def _write(path, img):
    cv2.imwrite(str(path), img)
    return path


def test_infer_cli_without_torch(tiny_onnx, tmp_path):
    """`fertrt infer` end to end on ONNX Runtime in a process where torch cannot be imported."""
    imgs, _, _ = generate(SynthConfig(size=112), "test", 3)
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.png", cv2.cvtColor(imgs[0], cv2.COLOR_RGB2BGR))
    _write(folder / "grey.png", cv2.cvtColor(imgs[1], cv2.COLOR_RGB2GRAY))
    _write(folder / "rgba.png", np.dstack([cv2.cvtColor(imgs[2], cv2.COLOR_RGB2BGR), np.full((112, 112), 255, np.uint8)]))
    (folder / "broken.jpg").write_bytes(b"not an image")
    jsonl, out = tmp_path / "out.jsonl", tmp_path / "annotated"
    code = (f"from fertrt.cli import main\nraise SystemExit(main(['infer', {str(tiny_onnx)!r}, {str(folder)!r}, '--no-detect', "
            f"'--jsonl', {str(jsonl)!r}, '--save', {str(out)!r}]))")
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


def test_infer_image_with_no_face_is_empty(tiny_onnx, tmp_path):
    from fertrt.runtime.pipeline import run

    path = _write(tmp_path / "wall.png", np.full((240, 320, 3), 128, np.uint8))
    with Predictor.open(tiny_onnx) as pred:
        summary = run(pred, str(path), HaarDetector(), jsonl=tmp_path / "o.jsonl", log=lambda *a: None)
    assert summary["frames"] == 1 and summary["faces"] == 0
    assert json.loads((tmp_path / "o.jsonl").read_text())["faces"] == []


def test_video_run_writes_playable_file(tiny_onnx, tmp_path):
    from fertrt.runtime.face import WholeImage
    from fertrt.runtime.pipeline import run

    imgs, _, _ = generate(SynthConfig(size=112), "test", 6)
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (112, 112))
    for im in imgs:
        w.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    w.release()
    with Predictor.open(tiny_onnx) as pred:
        summary = run(pred, str(video), WholeImage(), save=tmp_path / "out.mp4", jsonl=tmp_path / "v.jsonl", log=lambda *a: None)
    assert summary["frames"] == 6
    recs = [json.loads(l) for l in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert all(r["faces"][0]["track"] == 0 for r in recs)  # one face tracked through the clip
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_bad_models_and_batches(tiny_onnx, tmp_path):
    with pytest.raises(FertrtError, match="unknown model file type '.bin'"):
        open_runner(tmp_path / "m.bin")
    with pytest.raises(FertrtError, match="no such file"):
        open_runner(tmp_path / "missing.onnx")
    # an ONNX model with two inputs and no fertrt metadata
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    two = tmp_path / "two.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", [a, b], [y])), str(two))
    with pytest.raises(FertrtError, match="two.onnx: has no fertrt metadata"):
        open_runner(two)
    with open_runner(tiny_onnx) as r:
        with pytest.raises(FertrtError, match=r"expects input N x 3 x 112 x 112, got \(2, 3, 64, 64\)"):
            r.infer(np.zeros((2, 3, 64, 64), np.float32))


def test_trt_backend_needs_tensorrt(tiny_onnx, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt installed")
    except ImportError:
        pass
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(FertrtError, match="no sidecar m.engine.json"):
        open_runner(engine)


def test_save_with_unknown_image_extension_is_a_clear_error(tmp_path):
    from fertrt.runtime.preprocess import write_image

    with pytest.raises(FertrtError, match=r"out.xyz: OpenCV cannot encode an image with this file extension"):
        write_image(tmp_path / "out.xyz", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "ok.png", np.zeros((8, 8, 3), np.uint8))
    assert cv2.imread(str(tmp_path / "ok.png")).shape == (8, 8, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.png"]  # no temp file left behind


# ---------------------------------------------------------------- several inputs, detect every N, outputs


class _Counting:
    """Wraps a detector or predictor and counts its calls (how often each stage runs per frame)."""

    def __init__(self, inner, method):
        self.inner, self.calls, self.batches = inner, 0, []
        setattr(self, method, self._call)
        self._method = getattr(inner, method)

    def _call(self, arg):
        self.calls += 1
        self.batches.append(len(arg) if isinstance(arg, list) else 1)
        return self._method(arg)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _synth_files(folder, n, size=112):
    imgs, _, _ = generate(SynthConfig(size=size), "test", n)
    folder.mkdir(parents=True, exist_ok=True)
    return [_write(folder / f"f{i}.png", cv2.cvtColor(im, cv2.COLOR_RGB2BGR)) for i, im in enumerate(imgs)]


def test_infer_several_inputs_and_globs(tiny_onnx, tmp_path):
    from fertrt.cli import main

    a = _synth_files(tmp_path / "a", 2)
    b = _synth_files(tmp_path / "b", 3)
    (tmp_path / "b" / "f0.png").rename(tmp_path / "b" / "g0.png")
    jsonl, out = tmp_path / "r.jsonl", tmp_path / "saved"
    assert main(["infer", str(tiny_onnx), str(a[0]), str(tmp_path / "b" / "f*.png"), str(tmp_path / "b" / "g0.png"),
                 "--no-detect", "--jsonl", str(jsonl), "--save", str(out), "--quiet"]) == 0
    recs = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert [(Path(r["source"]).parent.name, Path(r["source"]).name) for r in recs] == \
        [("a", "f0.png"), ("b", "f1.png"), ("b", "f2.png"), ("b", "g0.png")]
    assert sorted(p.name for p in out.iterdir()) == ["f0.png", "f1.png", "f2.png", "g0.png"]
    # two inputs called f1.png would both be saved as saved/f1.png: refused before any work
    assert main(["infer", str(tiny_onnx), str(a[1]), str(tmp_path / "b" / "f1.png"), "--no-detect", "--save", str(tmp_path / "s2")]) == 2
    assert not (tmp_path / "s2").exists()
    assert main(["infer", str(tiny_onnx), str(tmp_path / "nothing*.png"), "--no-detect"]) == 2


def test_one_detector_pass_and_one_fer_batch_per_frame(tiny_onnx, tmp_path):
    from fertrt.runtime.face import WholeImage
    from fertrt.runtime.pipeline import run

    files = _synth_files(tmp_path / "in", 4)
    det = _Counting(WholeImage(), "detect")
    with Predictor.open(tiny_onnx) as pred:
        counted = _Counting(pred, "predict")
        summary = run(counted, [str(f) for f in files], det, log=lambda *a: None)
    assert summary["frames"] == 4 and det.calls == 4 and summary["detector_passes"] == 4
    assert counted.calls == 4 and counted.batches == [1, 1, 1, 1]
    assert {"decode", "detect", "crop", "preprocess", "infer", "postprocess", "total"} <= set(summary["timings_ms"])
    assert summary["fps"] > 0


def test_video_detect_every_n_frames_tracks_in_between(tiny_onnx, tmp_path):
    from fertrt.runtime.pipeline import run

    imgs, _, _ = generate(SynthConfig(size=112), "test", 1)
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(10):
        frame = np.full((120, 160, 3), 90, np.uint8)
        frame[20:80, 20 + 4 * i:80 + 4 * i] = cv2.resize(imgs[0], (60, 60))
        w.write(frame)
    w.release()

    class Det:
        """Reports the face where the clip drew it (the detector runs on frames 0, 3, 6, 9)."""

        calls = 0

        def detect(self, rgb):
            x = 20 + 4 * 3 * Det.calls
            Det.calls += 1
            return [Face((x, 20, 60, 60))]

    with Predictor.open(tiny_onnx) as pred:
        summary = run(pred, str(video), Det(), jsonl=tmp_path / "e3.jsonl", every=3, log=lambda *a: None)
    recs = [json.loads(l) for l in (tmp_path / "e3.jsonl").read_text().splitlines()]
    assert summary["frames"] == 10 and summary["detector_passes"] == 4 == Det.calls  # frames 0, 3, 6, 9
    assert [r["detected"] for r in recs] == [i % 3 == 0 for i in range(10)]
    assert all(len(r["faces"]) == 1 and r["faces"][0]["track"] == 0 for r in recs)  # one track throughout
    assert all(r["timings_ms"]["detect"] == 0 for r in recs if not r["detected"])
    # between detections the last boxes are carried (and the face re-labelled on every frame)
    assert [r["faces"][0]["box"][0] for r in recs] == [20, 20, 20, 32, 32, 32, 44, 44, 44, 56]
    assert summary["timings_ms"]["detect"] * 10 == pytest.approx(sum(r["timings_ms"]["detect"] for r in recs), abs=0.01)
    from fertrt.cli import main

    assert _exit_code(main, ["infer", str(tiny_onnx), str(video), "--every", "0"]) == 2


def _exit_code(main, argv):
    """main's exit status, whether it returns it or argparse exits (range checks on the options)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_infer_refuses_outputs_that_are_inputs_or_exist(tmp_path, capsys):
    from fertrt.cli import main

    files = _synth_files(tmp_path / "in", 2)
    model = tmp_path / "unused.onnx"  # the checks run before any model is opened
    cases = [(["--save", str(tmp_path / "in"), "--force"], "is a folder the input images are read from"),
             (["--jsonl", str(files[0]), "--force"], "is one of the inputs"),
             (["--summary-json", str(files[1]), "--force"], "is one of the inputs"),
             (["--margin", "-0.1"], "--margin"),
             (["--smooth", "0"], "--smooth"),
             (["--smooth", "1.5"], "--smooth"),
             (["--every", "0"], "--every"),
             (["--max-frames", "0"], "--max-frames")]
    for extra, message in cases:
        assert _exit_code(main, ["infer", str(model), str(tmp_path / "in")] + extra) == 2, extra
        assert message in capsys.readouterr().err
    existing = tmp_path / "old.jsonl"
    existing.write_text("keep me\n")
    assert main(["infer", str(model), str(tmp_path / "in"), "--jsonl", str(existing)]) == 2
    assert "file exists (pass --force to replace it)" in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"
    assert [p.name for p in sorted((tmp_path / "in").iterdir())] == ["f0.png", "f1.png"]


def test_infer_force_replaces_outputs(tiny_onnx, tmp_path):
    from fertrt.cli import main

    files = _synth_files(tmp_path / "in", 2)
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("old\n")
    assert main(["infer", str(tiny_onnx), str(tmp_path / "in"), "--no-detect", "--jsonl", str(jsonl), "--force", "--quiet"]) == 0
    assert len([json.loads(l) for l in jsonl.read_text().splitlines()]) == len(files)


def test_a_full_disk_leaves_no_truncated_jsonl(tiny_onnx, tmp_path, monkeypatch):
    import builtins
    import errno

    import fertrt.runtime.pipeline as pipeline
    from fertrt.runtime.face import WholeImage

    files = _synth_files(tmp_path / "in", 3)
    jsonl = tmp_path / "r.jsonl"

    class FullDisk:
        """A file that takes the first record, then fails like a full disk."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, text):
            self.n += 1
            if self.n > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(pipeline, "open", lambda *a, **k: FullDisk(builtins.open(*a, **k)), raising=False)
    with Predictor.open(tiny_onnx) as pred:
        with pytest.raises(FertrtError, match="No space left on device"):
            pipeline.run(pred, str(tmp_path / "in"), WholeImage(), jsonl=jsonl, log=lambda *a: None)
    assert not jsonl.exists()  # no truncated file at the final path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # and no temp file left behind


def _fake_classifier(path, *, class_names, logits_width=7, std=(0.5, 0.5, 0.5), input_size=(32, 32)):
    from fertrt.export.metadata import set_metadata

    h, w = 32, 32
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, h, w])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, logits_width])
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["logits"])]
    W = helper.make_tensor("W", TensorProto.FLOAT, [3, logits_width], [0.1] * (3 * logits_width))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [W]), opset_imports=[helper.make_opsetid("", 13)])
    set_metadata(model, {"class_names": class_names, "data_spec": "rafdb:/data",
                         "preprocess": {"input_size": list(input_size), "channels": 3, "mean": [0.5] * 3, "std": list(std)}})
    onnx.save(model, str(path))
    return path


def test_models_whose_metadata_lies_are_refused(tmp_path, capsys):
    from fertrt.cli import main

    img = _write(tmp_path / "face.png", np.full((32, 32, 3), 128, np.uint8))
    names = ["a", "b", "c", "d", "e", "f", "g"]
    good = _fake_classifier(tmp_path / "good.onnx", class_names=names)
    assert main(["infer", str(good), str(img), "--no-detect", "--quiet"]) == 0
    assert "not meaningful" not in capsys.readouterr().err  # trained on real data: no synth note
    cases = {"string_names.onnx": ({"class_names": '"abcdefg"'}, "class_names must be a non-empty list"),
             "few_outputs.onnx": ({"class_names": names, "logits_width": 3}, "gives 3 logits but its metadata names 7 classes"),
             "std_zero.onnx": ({"class_names": names, "std": (0.5, 0.0, 0.5)}, "non-zero std"),
             "size_zero.onnx": ({"class_names": names, "input_size": (0, 32)}, "input_size (0, 32)"),
             "escape.onnx": ({"class_names": names[:6] + ["\x1b[31mred"], "logits_width": 3}, "\\x1b[31mred")}
    for name, (kw, message) in cases.items():
        path = _fake_classifier(tmp_path / name, **kw)
        assert main(["infer", str(path), str(img), "--no-detect"]) == 2, name
        err = capsys.readouterr().err
        assert str(path) in err and message in err, err
        assert "\x1b" not in err  # a file's strings never reach the terminal raw


def test_default_detector_labels_all_four_demo_faces(blazeface_onnx, tiny_onnx, tmp_path):
    """The demo's sample picture (4 synth faces in a 640x480 scene): Haar found 1-2 of them, BlazeFace all 4."""
    from fertrt.benchmarks.demo import sample_scene
    from fertrt.cli import main

    scene, _ = sample_scene()
    path = _write(tmp_path / "scene.png", cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))
    jsonl = tmp_path / "r.jsonl"
    assert main(["infer", str(tiny_onnx), str(path), "--jsonl", str(jsonl), "--quiet"]) == 0
    faces = json.loads(jsonl.read_text())["faces"]
    assert len(faces) == 4
    centres = sorted(f["box"][0] + f["box"][2] / 2 for f in faces)
    assert all(abs(c - (80 + 155 * j)) < 30 for j, c in enumerate(centres))
    assert all(len(f["eyes"]) == 2 and f["eyes"][0][0] < f["eyes"][1][0] for f in faces)
