"""Pre- and post-processing: the one source of truth for resize, colour and normalisation.

Training (plus augmentation on top), export verification, calibration, the runtime and the
benchmarks all call these functions, so train and deploy cannot drift. numpy + OpenCV only.

Convention: images travel as uint8 HxWx3 RGB (or HxW grey) arrays; model input is float32 NCHW.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from fertrt.errors import FertrtError


@dataclass(frozen=True)
class PreprocessConfig:
    input_size: tuple[int, int] = (112, 112)  # (height, width)
    channels: int = 3  # 3 = RGB, 1 = grey
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # on [0, 1] pixel values
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    color_order: str = "RGB"  # channel order the model expects ("RGB", "BGR" or "GRAY")
    layout: str = "NCHW"

    def __post_init__(self):
        if self.channels not in (1, 3):
            raise FertrtError(f"PreprocessConfig.channels={self.channels}: expected 1 or 3")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise FertrtError(f"PreprocessConfig: mean/std need {self.channels} values, got {self.mean}/{self.std}")
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        known = {k: d[k] for k in ("input_size", "channels", "mean", "std", "color_order", "layout") if k in d}
        return cls(**known)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _cv2():
    """OpenCV, imported on first use (JetPack's own cv2 when present); a clear error when absent."""
    from fertrt.deps import require

    return require("cv2", "reading, converting and resizing images")


def to_rgb(img: np.ndarray, source: str = "RGB") -> np.ndarray:
    """Any image (grey HxW / HxWx1, RGB/BGR, RGBA/BGRA, uint8 or uint16) -> uint8 HxWx3 RGB."""
    cv2 = _cv2()

    img = np.asarray(img)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":  # a float image file (TIFF, EXR) holds [0, 1] by convention (give or take), else 0..255
        img = np.nan_to_num(img.astype(np.float32))
        img = np.clip(img * (255.0 if img.size and img.max() <= 2.0 else 1.0) + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2RGB)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise FertrtError(f"image of shape {img.shape}: expected HxW, HxWx1, HxWx3 or HxWx4")
    if img.shape[2] == 4:
        code = cv2.COLOR_BGRA2RGB if source == "BGR" else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(img, code)
    if source == "BGR":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def read_image(path) -> np.ndarray | None:
    """Any image file -> uint8 HxWx3 RGB, or None when it is missing or cannot be decoded."""
    cv2 = _cv2()
    from pathlib import Path

    if not Path(path).is_file():
        return None
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    return None if img is None else to_rgb(img, source="BGR")


def write_image(path, rgb: np.ndarray) -> None:
    """RGB uint8 image -> file (format from the suffix, PNG when none), written atomically."""
    cv2 = _cv2()
    from pathlib import Path

    from fertrt.fileio import write_bytes_atomic

    try:
        ok, buf = cv2.imencode(Path(path).suffix or ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    except cv2.error:
        ok = False
    if not ok:
        raise FertrtError(f"{path}: OpenCV cannot encode an image with this file extension (use .png or .jpg)")
    write_bytes_atomic(path, buf.tobytes())


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width): area filter when shrinking (no aliasing), bilinear when growing."""
    cv2 = _cv2()

    h, w = size
    if img.shape[0] == h and img.shape[1] == w:
        return img
    interp = cv2.INTER_AREA if (img.shape[0] > h or img.shape[1] > w) else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def normalize(batch_hwc: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """uint8 NxHxWx3 RGB -> float32 NxCxHxW in the model's colour order, mean/std applied."""
    mean = np.asarray(cfg.mean, dtype=np.float32)
    inv_std = np.float32(1.0) / np.asarray(cfg.std, dtype=np.float32)
    n, h, w = batch_hwc.shape[:3]
    # A fresh NCHW array, so the strides are the standard ones: with 1 channel, a transposed view is
    # "contiguous" with a channel stride of 1, which PyTorch also reads as channels-last, and torch 2.13's
    # CPU convolution backward crashes (segfault) on such a grey batch.
    out = np.empty((n, cfg.channels, h, w), dtype=np.float32)
    if cfg.channels == 1:
        x = batch_hwc.astype(np.float32) * np.float32(1.0 / 255.0)
        # ITU-R BT.601 luma, the same weights OpenCV's RGB2GRAY uses.
        out[:, 0] = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32) - mean[0]) * inv_std[0]
        return out
    source = (2, 1, 0) if cfg.color_order == "BGR" else (0, 1, 2)
    if batch_hwc.dtype != np.uint8:
        x = batch_hwc.astype(np.float32) * np.float32(1.0 / 255.0)
        for c, k in enumerate(source):
            out[:, c] = (x[..., k] - mean[c]) * inv_std[c]
        return out
    # A uint8 has 256 values: the same float32 arithmetic done once per value and looked up, one pass per
    # channel (2-4x faster than per pixel, whose transposing copy took a tenth of a training step's time).
    values = np.arange(256, dtype=np.float32) * np.float32(1.0 / 255.0)
    for c, k in enumerate(source):
        np.take((values - mean[c]) * inv_std[c], batch_hwc[..., k], out=out[:, c])
    return out


def prepare_images(images, cfg: PreprocessConfig) -> np.ndarray:
    """A list of RGB uint8 images of any size -> uint8 NxHxWx3 at the model's input size."""
    h, w = cfg.input_size
    out = np.empty((len(images), h, w, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        out[i] = resize(to_rgb(img), (h, w))
    return out


def preprocess(images, cfg: PreprocessConfig) -> np.ndarray:
    """Images (list or uint8 NxHxWx3 array, RGB) -> float32 NCHW model input."""
    if (
        isinstance(images, np.ndarray)
        and images.ndim == 4
        and images.shape[1:3] == tuple(cfg.input_size)
        and images.dtype == np.uint8
    ):
        batch = images
    else:
        batch = prepare_images(list(images) if not isinstance(images, list) else images, cfg)
    return normalize(batch, cfg)


def postprocess(logits: np.ndarray, class_names) -> list[dict]:
    """Logits NxK -> per sample: label, class id, confidence and all probabilities."""
    from fertrt.metrics import softmax

    probs = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    ids = probs.argmax(axis=1)
    return [
        {
            "label": class_names[int(i)],
            "class_id": int(i),
            "confidence": float(p[i]),
            "probabilities": {name: float(v) for name, v in zip(class_names, p)},
        }
        for i, p in zip(ids, probs)
    ]
