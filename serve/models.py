"""What the served models compute, whatever carries the requests: PyTriton in `fertrt serve`, Triton's
Python backend in a repository from `fertrt export-triton`. numpy, OpenCV and fertrt's runtime only."""

from __future__ import annotations

import json
import time

import numpy as np

from fertrt.errors import FertrtError

# Model and tensor names: clients, the exported repository and the DeepStream (nvinferserver) config rely on them.
FER = "fer"
FACE_DETECTOR = "face_detector"
FER_FACES = "fer_faces"
FER_INPUT, FER_OUTPUT = "input", "probabilities"
FACES_INPUT, FACES_OUTPUT = "image", "faces"

MAX_IMAGE_BYTES = 8 << 20  # one encoded image
MAX_IMAGE_PIXELS = 40_000_000  # one decoded image (a 8000x5000 photo); a small PNG can claim far more
IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}


class BadRequest(FertrtError):
    """A client's mistake, answered with this message alone: the server's stack is none of the client's
    business. Triton's proxies format the exception's own traceback, so it reports none."""

    @property
    def __traceback__(self):
        return None

    @__traceback__.setter
    def __traceback__(self, tb):
        pass


def softmax32(logits: np.ndarray) -> np.ndarray:
    """Probabilities as `fertrt infer` computes them (float64 softmax), sent as float32."""
    from fertrt.metrics import softmax

    return softmax(np.asarray(logits, dtype=np.float64), axis=1).astype(np.float32)


class FerModel:
    """`fer`: preprocessed crops in, probabilities out, on any fertrt runner (ONNX Runtime, TensorRT)."""

    def __init__(self, runner, max_batch: int):
        self.runner = runner
        self.max_batch = max_batch
        c, (h, w) = runner.preprocess.channels, runner.preprocess.input_size
        self.input_shape = (c, h, w)
        self.class_names = list(runner.class_names)

    def check(self, x) -> np.ndarray:
        """Triton checks dtype and shape against the config before batching; this repeats it for callers
        that do not (the Python backend of an exported repository, tests)."""
        x = np.asarray(x)
        want = f"FP32 [1..{self.max_batch}, {', '.join(map(str, self.input_shape))}]"
        if x.dtype != np.float32:
            raise BadRequest(f"{FER}: input '{FER_INPUT}' has dtype {x.dtype}; expected {want}")
        if x.ndim != 4 or x.shape[1:] != self.input_shape:
            raise BadRequest(f"{FER}: input '{FER_INPUT}' has shape {list(x.shape)}; expected {want}")
        if not 1 <= len(x) <= self.max_batch:
            raise BadRequest(f"{FER}: input '{FER_INPUT}' has a batch of {len(x)}; expected {want}")
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return softmax32(self.runner.infer(self.check(x)))


def decode_image(data: bytes, index: int, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS):
    """Encoded JPEG/PNG bytes -> RGB uint8, or BadRequest saying what was expected."""
    import cv2

    from fertrt.runtime.preprocess import to_rgb

    where = f"{FER_FACES}: image [{index}]"
    if len(data) == 0:
        raise BadRequest(f"{where} is empty; expected an encoded JPEG or PNG")
    if len(data) > max_bytes:
        raise BadRequest(f"{where} has {len(data)} bytes; expected at most {max_bytes}")
    if not any(data.startswith(magic) for magic in IMAGE_MAGIC):
        raise BadRequest(f"{where} is not a JPEG or PNG (starts with {data[:8]!r})")
    if data.startswith(b"\x89PNG") and (len(data) < 33 or data[12:16] != b"IHDR"):
        # OpenCV spends seconds in a PNG reader on such bytes (measured: 3 s for 14 bytes): refuse them first
        raise BadRequest(f"{where} is a truncated PNG (no IHDR header); expected an encoded JPEG or PNG")
    size = image_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadRequest(f"{where} is {size[0]}x{size[1]} pixels; expected at most {max_pixels} pixels")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadRequest(f"{where} cannot be decoded; expected an encoded JPEG or PNG")
    return to_rgb(img, source="BGR")


def image_size(data: bytes):
    """(width, height) from a PNG or JPEG header without decoding (None when not found): a few hundred bytes
    of PNG can declare a gigapixel image, so size is checked before OpenCV allocates it."""
    if data.startswith(b"\x89PNG") and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = 2
    while i + 9 < len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame: height, width
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        i += 2 + length
    return None


class FacesModel:
    """`fer_faces`: encoded images in, one `fertrt infer --jsonl` record per image out (detect, crop,
    classify with the same code as `fertrt infer`)."""

    def __init__(
        self,
        predictor,
        detector,
        margin: float | None = None,
        align: bool = True,
        max_images: int = 64,
        max_image_bytes: int = MAX_IMAGE_BYTES,
        max_pixels: int = MAX_IMAGE_PIXELS,
    ):
        cfg = getattr(detector, "cfg", None)
        self.predictor = predictor
        self.detector = detector
        self.margin = margin if margin is not None else getattr(cfg, "crop_margin", 0.1)
        self.shift = getattr(cfg, "crop_shift", 0.0)
        self.align = align
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes
        self.max_pixels = max_pixels

    def check(self, images) -> list:
        images = np.asarray(images, dtype=object).reshape(-1) if not isinstance(images, list) else images
        if not 1 <= len(images) <= self.max_images:
            raise BadRequest(
                f"{FER_FACES}: input '{FACES_INPUT}' holds {len(images)} images; expected BYTES "
                f"[1..{self.max_images}], each an encoded JPEG or PNG"
            )
        if not all(isinstance(b, (bytes, np.bytes_)) for b in images):
            raise BadRequest(f"{FER_FACES}: input '{FACES_INPUT}' must be BYTES (encoded JPEG or PNG files)")
        return list(images)

    def __call__(self, images) -> list[str]:
        images = self.check(images)
        # decode all first: one bad image fails the request before any work
        decoded = []
        for i, data in enumerate(images):
            t0 = time.perf_counter()
            rgb = decode_image(bytes(data), i, self.max_image_bytes, self.max_pixels)
            decoded.append((rgb, (time.perf_counter() - t0) * 1e3))
        return [json.dumps(self.record(rgb, i, ms)) for i, (rgb, ms) in enumerate(decoded)]

    def record(self, rgb: np.ndarray, index: int, decode_ms: float = 0.0) -> dict:
        """One image -> the record a `fertrt infer --jsonl` line holds for it."""
        from fertrt.runtime.face import crop_face
        from fertrt.runtime.pipeline import face_record

        t = {"decode": decode_ms}
        t0 = time.perf_counter()
        faces = self.detector.detect(rgb)
        t1 = time.perf_counter()
        crops = [crop_face(rgb, f, self.margin, self.align, self.shift) for f in faces]
        t["detect"], t["crop"] = (t1 - t0) * 1e3, (time.perf_counter() - t1) * 1e3
        results = self.predictor.predict(crops) if crops else []
        t.update(self.predictor.last_timings if crops else {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0})
        t["total"] = decode_ms + (time.perf_counter() - t0) * 1e3
        faces_out = [face_record(f, r, self.margin, self.align, self.shift) for f, r in zip(faces, results)]
        if getattr(self.detector, "last_timings", None):
            t.update(self.detector.last_timings)
        return {
            "source": f"image[{index}]",
            "frame": 0,
            "detected": True,
            "faces": faces_out,
            "timings_ms": {k: round(v, 3) for k, v in t.items()},
        }
