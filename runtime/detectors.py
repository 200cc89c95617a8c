"""Face detectors as models: ONNX graphs (or TensorRT engines built from them) run through fertrt's
own runners, with letterboxing, anchor decoding, thresholding and NMS in numpy.

A detector file carries fertrt metadata like a FER model (`class_names` ["face"], `preprocess`) plus
`task` = "face-detection" and `detector` (this module's `DetectorConfig` as JSON), so `fertrt
build-engine` validates and builds it like any other model and the runtime needs nothing else.

Families:
  blazeface  MediaPipe BlazeFace (short range 128x128, full range 192x192): SSD anchors, 16 regressors
             per anchor (box + 6 keypoints), one logit; weighted NMS as MediaPipe does.
  yunet      a user-supplied YuNet (OpenCV zoo, 2023mar layout: cls/obj/bbox/kps per stride 8/16/32).
Landmarks come back in frame pixels with the subject's right eye first (the eye on the image's left),
then the left eye: the order `face.crop_face` aligns by.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import cache_dir
from fertrt.text import safe

from .face import Face
from .preprocess import PreprocessConfig, normalize, resize

BLAZEFACE_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")
YUNET_KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
YUNET_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in (8, 16, 32))


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to turn a detector graph's raw outputs into faces."""

    name: str
    family: str  # "blazeface" or "yunet"
    input_size: tuple[int, int]  # (height, width) of the graph input
    preprocess: dict = field(default_factory=dict)  # a PreprocessConfig dict (mean/std/colour order)
    outputs: tuple[str, ...] = ()
    keypoints: tuple[str, ...] = ()
    anchor_layers: tuple[tuple[int, int], ...] = ()  # blazeface: (stride, anchors per cell) per feature map
    score_threshold: float = 0.5
    nms_iou: float = 0.3
    weighted_nms: bool = True
    max_faces: int = 100
    # How a box becomes a FER crop (--margin overrides the margin). BlazeFace boxes run from the brows to
    # the chin; FER crops (synth, FER2013, RAF-DB) include the forehead: measured on synth scenes, the
    # crop a model was trained on is 1.65x the box side, centred 0.19 (short) / 0.13 (full) box heights higher.
    crop_margin: float = 0.1
    crop_shift: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "keypoints", tuple(self.keypoints))
        object.__setattr__(self, "anchor_layers", tuple(tuple(int(v) for v in a) for a in self.anchor_layers))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str, source) -> "DetectorConfig":
        try:
            d = json.loads(text)
            cfg = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except (TypeError, ValueError, KeyError) as exc:
            raise FertrtError(
                f"{source}: its 'fertrt.detector' metadata is not a detector configuration ({safe(exc)})"
            ) from None
        cfg.validate(source)
        return cfg

    def validate(self, source):
        h, w = self.input_size if len(self.input_size) == 2 else (0, 0)
        problems = []
        if self.family not in ("blazeface", "yunet"):
            problems.append(f"family {safe(self.family)!r} (expected blazeface or yunet)")
        if h <= 0 or w <= 0:
            problems.append(f"input_size {self.input_size} (expected two positive numbers)")
        if self.family == "blazeface" and (
            not self.anchor_layers or any(s <= 0 or n <= 0 for s, n in self.anchor_layers)
        ):
            problems.append(f"anchor_layers {self.anchor_layers}")
        if not 0 < self.score_threshold < 1 or not 0 < self.nms_iou <= 1:
            problems.append(f"score_threshold {self.score_threshold} / nms_iou {self.nms_iou} (expected in (0, 1))")
        if len(self.keypoints) < 2:
            problems.append("fewer than two keypoints (the eyes are needed)")
        if problems:
            raise FertrtError(f"{source}: bad detector metadata: {'; '.join(problems)}")


_BLAZEFACE_PRE = {
    "input_size": None,
    "channels": 3,
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "color_order": "RGB",
}
# YuNet takes BGR pixel values 0..255: normalize() divides by 255, so std 1/255 undoes it.
_YUNET_PRE = {"input_size": None, "channels": 3, "mean": [0.0, 0.0, 0.0], "std": [1 / 255] * 3, "color_order": "BGR"}


def _with_size(pre: dict, size) -> dict:
    return {**pre, "input_size": list(size)}


# The registry: anchor layouts are MediaPipe's face_detection_{short,full}_range graph options. The
# short-range threshold is 0.6, not MediaPipe's 0.5: on synth scenes the false detections scored
# 0.54-0.61 and 99 % of the true ones above 0.6 (README, face pipeline table).
DETECTORS: dict[str, DetectorConfig] = {
    # short range re-shaped from its native 128x128 to 256x192 at export (same weights; see detectors_export)
    "blazeface-short": DetectorConfig(
        "blazeface-short",
        "blazeface",
        (192, 256),
        _with_size(_BLAZEFACE_PRE, (192, 256)),
        ("regressors", "scores"),
        BLAZEFACE_KEYPOINTS,
        ((8, 2), (16, 6)),
        score_threshold=0.6,
        nms_iou=0.3,
        weighted_nms=True,
        crop_margin=0.3,
        crop_shift=-0.18,
    ),
    "blazeface-full": DetectorConfig(
        "blazeface-full",
        "blazeface",
        (192, 192),
        _with_size(_BLAZEFACE_PRE, (192, 192)),
        ("regressors", "scores"),
        BLAZEFACE_KEYPOINTS,
        ((4, 1),),
        score_threshold=0.6,
        nms_iou=0.3,
        weighted_nms=True,
        crop_margin=0.3,
        crop_shift=-0.13,
    ),
    "yunet": DetectorConfig(
        "yunet",
        "yunet",
        (480, 640),
        _with_size(_YUNET_PRE, (480, 640)),
        YUNET_OUTPUTS,
        YUNET_KEYPOINTS,
        score_threshold=0.7,
        nms_iou=0.3,
        weighted_nms=False,
    ),
}
DEFAULT_DETECTOR = "blazeface-short"


# ---------------------------------------------------------------- pure pre/post-processing


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the graph input: input = frame * scale + (pad_x, pad_y)."""

    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        """Points (..., 2) in input pixels -> frame pixels."""
        return (np.asarray(xy, np.float32) - np.array([self.pad_x, self.pad_y], np.float32)) / np.float32(self.scale)


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Fit an image into (height, width) keeping its aspect ratio, centred, black padding
    (the resize filter is preprocess.resize's, shared with the FER models)."""
    H, W = size
    h, w = rgb.shape[:2]
    scale = min(W / w, H / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((H, W, 3), np.uint8)
    px, py = (W - nw) // 2, (H - nh) // 2
    canvas[py : py + nh, px : px + nw] = resize(rgb, (nh, nw))
    # the exact per-axis factors differ by rounding; the mean is within half a pixel on both axes
    return canvas, Letterbox((nw / w + nh / h) / 2, px, py)


def blazeface_anchors(input_size: tuple[int, int], layers) -> np.ndarray:
    """Anchor centres (N x 2, input pixels) of MediaPipe's SSD anchors with fixed size 1: per feature
    map of stride s, a grid of (H/s) x (W/s) cells, each repeated `per_cell` times, row-major."""
    H, W = input_size
    out = []
    for stride, per_cell in layers:
        gh, gw = -(-H // stride), -(-W // stride)
        ys, xs = np.meshgrid((np.arange(gh) + 0.5) * stride, (np.arange(gw) + 0.5) * stride, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


def decode_blazeface(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, threshold: float):
    """Raw outputs (N x 16 regressors, N logits) -> boxes (M x 4, x1 y1 x2 y2), scores (M), keypoints
    (M x 6 x 2), all in input pixels, for the anchors scoring at least `threshold`.
    Regressors are offsets in input pixels: box centre and size, then 6 keypoint offsets."""
    regressors = np.asarray(regressors, np.float32).reshape(len(anchors), -1)
    scores = _sigmoid(np.asarray(logits, np.float32).reshape(-1))
    keep = np.flatnonzero(scores >= threshold)
    r, a = regressors[keep], anchors[keep]
    centre = a + r[:, 0:2]
    half = np.abs(r[:, 2:4]) / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    n_kp = (r.shape[1] - 4) // 2
    kps = r[:, 4 : 4 + 2 * n_kp].reshape(-1, n_kp, 2) + a[:, None, :]
    return boxes, scores[keep], kps


def decode_yunet(outputs: dict, input_size: tuple[int, int], threshold: float):
    """YuNet 2023mar raw outputs (per stride 8/16/32: cls, obj N x 1, bbox N x 4, kps N x 10) -> boxes
    (x1 y1 x2 y2), scores sqrt(cls * obj), keypoints (M x 5 x 2), input pixels."""
    H, W = input_size
    boxes, scores, kps = [], [], []
    for s in (8, 16, 32):
        gh, gw = H // s, W // s
        cls = np.asarray(outputs[f"cls_{s}"], np.float32).reshape(-1)
        obj = np.asarray(outputs[f"obj_{s}"], np.float32).reshape(-1)
        if cls.size != gh * gw:
            raise FertrtError(f"YuNet output cls_{s} has {cls.size} cells; expected {gh}x{gw} for a {W}x{H} input")
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        keep = np.flatnonzero(score >= threshold)
        ys, xs = np.divmod(keep, gw)
        cell = np.stack([xs, ys], axis=1).astype(np.float32)
        bb = np.asarray(outputs[f"bbox_{s}"], np.float32).reshape(-1, 4)[keep]
        centre = (cell + bb[:, 0:2]) * s
        size = np.exp(bb[:, 2:4]) * s
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        scores.append(score[keep])
        kp = np.asarray(outputs[f"kps_{s}"], np.float32).reshape(-1, 10)[keep].reshape(-1, 5, 2)
        kps.append((kp + cell[:, None, :]) * s)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(kps)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N x 4) with every box in b (M x 4), x1 y1 x2 y2."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    keypoints: np.ndarray,
    iou_threshold: float,
    weighted: bool = False,
    max_out: int = 100,
):
    """Greedy NMS, best score first. weighted=True (MediaPipe's blending) replaces each kept box and its
    keypoints by the score-weighted mean of the boxes it suppresses, which steadies boxes between
    frames; the kept score is the best one. -> (boxes, scores, keypoints) of the kept faces."""
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    alive = np.ones(len(boxes), bool)
    out_b, out_s, out_k = [], [], []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        overlap = iou_matrix(boxes[i : i + 1], boxes)[0]
        cluster = alive & (overlap > iou_threshold)
        cluster[i] = True
        if weighted:
            w = scores[cluster][:, None]
            out_b.append((boxes[cluster] * w).sum(0) / w.sum())
            out_k.append((keypoints[cluster] * w[:, :, None]).sum(0) / w.sum())
        else:
            out_b.append(boxes[i])
            out_k.append(keypoints[i])
        out_s.append(scores[i])
        alive &= ~cluster
        if len(out_b) >= max_out:
            break
    if not out_b:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0,) + keypoints.shape[1:], np.float32)
    return np.array(out_b, np.float32), np.array(out_s, np.float32), np.array(out_k, np.float32)


def to_faces(boxes, scores, keypoints, lb: Letterbox, frame_shape) -> list[Face]:
    """Input-pixel detections -> Face objects in frame pixels (boxes clipped to the frame)."""
    fh, fw = frame_shape[:2]
    faces = []
    for box, score, kp in zip(boxes, scores, keypoints):
        (x1, y1), (x2, y2) = lb.to_frame(box.reshape(2, 2))
        x1, y1 = max(0.0, x1), max(0.0, y1)
        x2, y2 = min(float(fw), x2), min(float(fh), y2)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        x, y = int(round(x1)), int(round(y1))
        faces.append(Face((x, y, int(round(x2)) - x, int(round(y2)) - y), float(score), lb.to_frame(kp)))
    return faces


# ---------------------------------------------------------------- the detector


class ModelDetector:
    """A detector graph on any fertrt runner: `detect(rgb) -> [Face]`, with per-stage timings."""

    def __init__(self, runner, cfg: DetectorConfig):
        self.runner, self.cfg = runner, cfg
        self.pre = PreprocessConfig.from_dict(cfg.preprocess)
        if tuple(runner.preprocess.input_size) != cfg.input_size:
            raise FertrtError(
                f"{runner.path}: graph input {runner.preprocess.input_size} does not match its detector "
                f"metadata {cfg.input_size}"
            )
        runner.output_names = list(cfg.outputs)  # a detector's outputs, not a classifier's logits
        self.anchors = blazeface_anchors(cfg.input_size, cfg.anchor_layers) if cfg.family == "blazeface" else None
        self.last_timings: dict[str, float] = {}

    @property
    def name(self) -> str:
        return f"{self.cfg.name} ({self.runner.describe})"

    def detect(self, rgb: np.ndarray) -> list[Face]:
        t0 = time.perf_counter()
        canvas, lb = letterbox(rgb, self.cfg.input_size)
        x = normalize(canvas[None], self.pre)
        t1 = time.perf_counter()
        out = self.runner.infer_outputs(x)
        t2 = time.perf_counter()
        missing = [n for n in self.cfg.outputs if n not in out]
        if missing:
            raise FertrtError(f"{self.runner.path}: the detector graph has no output(s) {', '.join(missing)}")
        if self.cfg.family == "blazeface":
            regressors, logits = out[self.cfg.outputs[0]][0], out[self.cfg.outputs[1]][0]
            if len(regressors) != len(self.anchors):
                raise FertrtError(
                    f"{self.runner.path}: {len(regressors)} anchors in the output, {len(self.anchors)} expected "
                    f"from its detector metadata"
                )
            boxes, scores, kps = decode_blazeface(regressors, logits, self.anchors, self.cfg.score_threshold)
        else:
            boxes, scores, kps = decode_yunet(
                {k: v[0] for k, v in out.items()}, self.cfg.input_size, self.cfg.score_threshold
            )
        boxes, scores, kps = nms(boxes, scores, kps, self.cfg.nms_iou, self.cfg.weighted_nms, self.cfg.max_faces)
        faces = to_faces(boxes, scores, kps, lb, rgb.shape)
        t3 = time.perf_counter()
        self.last_timings = {
            "detect_preprocess": (t1 - t0) * 1e3,
            "detect_infer": (t2 - t1) * 1e3,
            "detect_postprocess": (t3 - t2) * 1e3,
        }
        return faces

    def close(self):
        self.runner.close()


def default_detector_path(name: str = DEFAULT_DETECTOR) -> Path:
    return cache_dir("detectors") / f"{name}.onnx"


def _looks_like_yunet(path) -> bool:
    from fertrt.deps import require

    ort = require("onnxruntime", "reading a detector ONNX")

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - reported by the runner with the file name
        return False
    return set(YUNET_OUTPUTS) <= {o.name for o in sess.get_outputs()}


def open_detector(
    model, backend: str = "auto", provider: str = "cpu", threads: int | None = None, **kwargs
) -> ModelDetector:
    """A detector file (.onnx with fertrt detector metadata, or a .engine built from one; a bare
    YuNet 2023mar .onnx is recognised by its outputs) -> ModelDetector."""
    from .runners import backend_for, open_runner

    path = Path(model)
    if path.suffix.lower() == ".onnx" and path.is_file():
        from .metadata import read_metadata

        if "detector" not in read_metadata(path) and _looks_like_yunet(path):
            raise FertrtError(
                f"{path}: a YuNet model without fertrt metadata; prepare it once with "
                f"`fertrt detector export --model yunet --source {path} -o yunet_fertrt.onnx` "
                "(fixes its input size and adds the metadata the runtime and build-engine read)"
            )
    if backend == "auto":
        backend = backend_for(path)
    runner = open_runner(path, backend=backend, provider=provider, threads=threads, **kwargs)
    meta = runner.metadata
    if "detector" in meta and meta.get("task") == "face-detection":
        cfg = meta["detector"]
        cfg = DetectorConfig.from_json(cfg if isinstance(cfg, str) else json.dumps(cfg), path)
    elif meta.get("model_name") in DETECTORS and list(runner.class_names) == ["face"]:
        # an engine: its sidecar keeps the model name and preprocessing, not the detector JSON
        cfg = DETECTORS[meta["model_name"]]
        cfg = DetectorConfig(
            **{
                **cfg.__dict__,
                "input_size": tuple(runner.preprocess.input_size),
                "preprocess": runner.preprocess.to_dict(),
            }
        )
    else:
        runner.close()
        raise FertrtError(
            f"{path}: not a fertrt face detector (no 'task': 'face-detection' metadata); "
            "make one with `fertrt detector export`"
        )
    try:
        return ModelDetector(runner, cfg)
    except FertrtError:
        runner.close()
        raise
