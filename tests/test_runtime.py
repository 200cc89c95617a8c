"""Runtime: backends agree, preprocessing equals training's, the face pipeline, tracking, bad inputs."""
import json

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
    assert acc >= acc_direct - 0.25  # detection and cropping keep most of the model's accuracy


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
    records = [json.loads(l) for l in jsonl.read_text().splitlines()]
    assert len(records) == 3
    for rec in records:
        assert set(rec) == {"source", "frame", "faces", "timings_ms"}
        assert set(rec["timings_ms"]) == {"decode", "detect", "preprocess", "infer", "postprocess"}
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
