"""Face detection, cropping, alignment and tracking for the face pipeline (numpy + OpenCV)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fertrt.errors import FertrtError


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    score: float = 1.0
    landmarks: np.ndarray | None = None  # 5 x 2 (right eye, left eye, nose, mouth corners), when the detector gives them


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, shipped inside the opencv-python wheels (4.x): no download."""

    def __init__(self, min_size: int = 40, scale_factor: float = 1.1, min_neighbors: int = 5):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml" if hasattr(cv2, "data") else None
        if path is None or not path.is_file():
            raise FertrtError("OpenCV's Haar cascade haarcascade_frontalface_default.xml is not in this OpenCV install "
                              "(OpenCV 5 wheels no longer ship it): install opencv-python-headless<5, pass --detector-model "
                              "face_detection_yunet.onnx, or use --no-detect for pre-cropped faces")
        self.cascade = cv2.CascadeClassifier(str(path))
        self.min_size, self.scale_factor, self.min_neighbors = min_size, scale_factor, min_neighbors

    def detect(self, rgb: np.ndarray) -> list[Face]:
        grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        boxes = self.cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                              minSize=(self.min_size, self.min_size))
        return [Face(tuple(int(v) for v in b)) for b in (boxes if len(boxes) else [])]


class YuNetDetector:
    """A YuNet face detector ONNX file the user supplies (OpenCV's FaceDetectorYN); gives eye landmarks."""

    def __init__(self, model_path, score_threshold: float = 0.7):
        if not Path(model_path).is_file():
            raise FertrtError(f"{model_path}: no such detector model (expected a YuNet .onnx, e.g. face_detection_yunet_2023mar.onnx)")
        try:
            self.det = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold)
        except cv2.error as exc:
            raise FertrtError(f"{model_path}: OpenCV cannot load it as a YuNet face detector ({exc})") from exc

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        self.det.setInputSize((w, h))
        _, faces = self.det.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        out = []
        for f in faces if faces is not None else []:
            out.append(Face(tuple(int(v) for v in f[:4]), float(f[14]), f[4:14].reshape(5, 2)))
        return out


class WholeImage:
    """--no-detect: each input is already an aligned face crop."""

    def detect(self, rgb):
        return [Face((0, 0, rgb.shape[1], rgb.shape[0]))]


def make_detector(kind: str = "haar", model_path=None):
    if kind == "none":
        return WholeImage()
    if model_path:
        return YuNetDetector(model_path)
    if kind == "haar":
        return HaarDetector()
    raise FertrtError(f"--detector {kind!r}: expected haar, none, or --detector-model YUNET.onnx")


def crop_face(rgb: np.ndarray, face: Face, margin: float = 0.2, align: bool = True) -> np.ndarray:
    """Square crop around the box with `margin` on each side, rotated upright by the eyes when known."""
    x, y, w, h = face.box
    cx, cy = x + w / 2, y + h / 2
    side = max(w, h) * (1 + 2 * margin)
    angle = 0.0
    if align and face.landmarks is not None:
        (rx, ry), (lx, ly) = face.landmarks[0], face.landmarks[1]
        angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    M = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    M[:, 2] += side / 2 - np.array([cx, cy])
    size = max(int(round(side)), 1)
    return cv2.warpAffine(rgb, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


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
        pairs = sorted(((iou(b, t.box), i, j) for i, b in enumerate(boxes) for j, t in enumerate(self.tracks)), reverse=True)
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
