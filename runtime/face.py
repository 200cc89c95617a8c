"""Face detection, cropping, alignment and tracking for the face pipeline (numpy + OpenCV)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fertrt.deps import require
from fertrt.errors import FertrtError

cv2 = require("cv2", "the face pipeline (detection, cropping, video)")


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    score: float = 1.0
    # K x 2 frame pixels when the detector gives them: the subject's right eye (image left) first, then the left eye;
    # the rest depends on the detector (detectors.BLAZEFACE_KEYPOINTS / YUNET_KEYPOINTS)
    landmarks: np.ndarray | None = None


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, shipped inside the opencv-python wheels (4.x): no download."""

    name = "haar (OpenCV cascade)"

    def __init__(self, min_size: int = 40, scale_factor: float = 1.1, min_neighbors: int = 5):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml" if hasattr(cv2, "data") else None
        if path is None or not path.is_file():
            raise FertrtError(
                "OpenCV's Haar cascade haarcascade_frontalface_default.xml is not in this OpenCV install "
                "(OpenCV 5 wheels no longer ship it): install opencv-python-headless<5, use the default --detector "
                "blazeface, or --no-detect for pre-cropped faces"
            )
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors

    def detect(self, rgb: np.ndarray) -> list[Face]:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes = self.cascade.detectMultiScale(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(self.min_size, self.min_size)
        )
        return [Face(tuple(int(v) for v in b)) for b in (boxes if len(boxes) else [])]


class WholeImage:
    """--no-detect: each input is already an aligned face crop."""

    name = "none (inputs are face crops)"
    min_side = 16  # below this a "crop" holds no face; its label would be noise

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        if min(h, w) < self.min_side:
            import sys

            print(
                f"warning: a {w}x{h} image is too small to be a face crop (under {self.min_side} pixels a side); "
                "its label means nothing",
                file=sys.stderr,
            )
        return [Face((0, 0, w, h))]


DETECTOR_CHOICES = {"blazeface": "blazeface-short", "blazeface-full": "blazeface-full"}


def cached_detector(name: str) -> Path:
    """A registered detector's ONNX in the fertrt cache. The runtime never converts one (that needs onnx,
    tflite2onnx and PyPI: the export side's `fertrt detector export`), so a device touches no network."""
    from .detectors import default_detector_path

    path = default_detector_path(name)
    if not path.is_file():
        raise FertrtError(
            f"the {name} face detector is not in {path}: make it once with `fertrt detector export"
            f"{'' if name == 'blazeface-short' else ' --model ' + name}` on a machine with fertrt[train] "
            "and PyPI access (on a device: copy that .onnx there, pass --detector-model FILE, or use a "
            "`fertrt pack` folder); or --detector haar / --no-detect"
        )
    return path


def make_detector(
    kind: str = "blazeface",
    model_path=None,
    backend: str = "auto",
    provider: str = "cpu",
    log=print,
    threads: int | None = 1,
    **kwargs,
):
    """`none`, `haar`, a registered detector (its cached ONNX from `fertrt detector export`), or a detector
    file (`model_path`: .onnx from `fertrt detector export`, BlazeFace or YuNet, or a .engine from one).
    ONNX Runtime runs a detector on one intra-op thread by default: its batch-1 graph gains little from
    a second one, and on a busy 2-core CPU a two-thread pool waits for cores (measured on 640x480 frames:
    median 3.96 ms with one thread, 14.3 ms with the default pool, same machine, interleaved)."""
    kwargs["threads"] = threads
    if kind == "none":
        return WholeImage()
    if model_path:
        from .detectors import open_detector

        return open_detector(model_path, backend=backend, provider=provider, **kwargs)
    if kind == "haar":
        return HaarDetector()
    if kind in DETECTOR_CHOICES:
        from .detectors import open_detector

        return open_detector(cached_detector(DETECTOR_CHOICES[kind]), backend=backend, provider=provider, **kwargs)
    raise FertrtError(f"--detector {kind!r}: expected blazeface, blazeface-full, haar, or --detector-model FILE")


def crop_transform(face: Face, margin: float = 0.2, align: bool = True, shift: float = 0.0) -> tuple[np.ndarray, int]:
    """The 2x3 affine map from frame pixels to the square face crop, and the crop's side in pixels.
    `shift` moves the centre along the face's own vertical axis, in box heights (negative: up), for
    detectors whose boxes sit lower on the face than the crops a model was trained on."""
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    angle = 0.0
    if align and face.landmarks is not None:
        (rx, ry), (lx, ly) = face.landmarks[0], face.landmarks[1]
        angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    if shift:
        theta = np.radians(angle)
        cx, cy = cx - shift * h * np.sin(theta), cy + shift * h * np.cos(theta)
    M = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    M[:, 2] += side / 2 - np.array([cx, cy])
    return M, max(int(round(side)), 1)


def crop_face(rgb: np.ndarray, face: Face, margin: float = 0.2, align: bool = True, shift: float = 0.0) -> np.ndarray:
    """Square crop around the box with `margin` on each side, rotated upright by the eyes when known."""
    M, size = crop_transform(face, margin, align, shift)
    return cv2.warpAffine(rgb, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_corners(face: Face, margin: float = 0.2, align: bool = True, shift: float = 0.0) -> np.ndarray:
    """4 x 2 frame coordinates of the crop's corners: top-left, top-right, bottom-right, bottom-left."""
    M, size = crop_transform(face, margin, align, shift)
    inv = cv2.invertAffineTransform(M)
    square = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    return square @ inv[:, :2].T + inv[:, 2]


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    id: int
    box: tuple
    probs: np.ndarray
    missed: int = 0


@dataclass
class Tracker:
    """Greedy IoU matching of faces across frames and an exponential moving average of their
    probabilities, so labels do not flicker. `alpha` is the weight of the newest frame."""

    alpha: float = 0.4
    min_iou: float = 0.3
    max_missed: int = 10
    tracks: list = field(default_factory=list)
    next_id: int = 0

    def update(self, boxes, probs) -> list[tuple[int, np.ndarray]]:
        """boxes (list of x,y,w,h) and probs (N x K) of one frame -> [(track id, smoothed probs)] per box."""
        pairs = sorted(
            ((iou(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self.tracks)), reverse=True
        )
        assigned, used = {}, set()
        for score, i, j in pairs:
            if score < self.min_iou or i in assigned or j in used:
                continue
            assigned[i] = j
            used.add(j)
        out = []
        for i, (box, p) in enumerate(zip(boxes, probs)):
            p = np.asarray(p, dtype=np.float64)
            if i in assigned:
                t = self.tracks[assigned[i]]
                t.probs = self.alpha * p + (1 - self.alpha) * t.probs
                t.box, t.missed = tuple(box), 0
            else:
                t = _Track(self.next_id, tuple(box), p.copy())
                self.next_id += 1
                self.tracks.append(t)
                used.add(len(self.tracks) - 1)
            out.append((t.id, t.probs.copy()))
        for j, t in enumerate(self.tracks):
            if j not in used:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out
