"""A deployment folder from `fertrt pack`, read on the device: checked against its manifest, then the
files each command needs picked from it. Device side: no torch, no onnx, Python 3.8.

Layout (all names relative to the folder; manifest.json lists every other file with its SHA-256 and size):
    manifest.json          format, fertrt and target TensorRT versions, JetPack, model metadata, files, engines
    model.fp32.onnx        the FER model, FP32 (what ONNX Runtime runs)
    model.fp16.onnx        FP16, FP32 I/O
    model.int8.onnx        INT8 Q/DQ laid out for TensorRT, at an opset its parser takes
    model.int8.calib.cache TensorRT's calibration cache, header for the target TensorRT
    detector.onnx          the face detector
    labels.txt             class names, one a line
    model.<prec>.engine    written on the device by `fertrt build-engine DIR` (with .engine.json sidecars)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import sha256_file, write_json_atomic

MANIFEST = "manifest.json"
FORMAT = "fertrt-deploy-1"
PRECISIONS = ("fp32", "fp16", "int8")
DETECTOR = "detector.onnx"
TIMING_CACHE = "timing.cache"
MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists a dozen files; anything bigger is not one


def onnx_name(precision: str) -> str:
    return f"model.{precision}.onnx"


def engine_name(precision: str) -> str:
    return f"model.{precision}.engine"


def is_deploy_dir(path) -> bool:
    """A folder argument is a deployment folder when it holds a manifest.json."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def _inside(folder: Path, name) -> Path:
    """The path of a manifest entry, refused unless it is a plain relative name inside the folder."""
    if not isinstance(name, str) or not name or name.startswith(("/", "\\")) or ".." in Path(name).parts:
        raise FertrtError(f"{folder / MANIFEST}: file entry {name!r} is not a relative path inside the folder")
    path = folder / name
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        raise FertrtError(f"{folder / MANIFEST}: file entry {name!r} points outside the folder") from None
    return path


def read_manifest(folder) -> dict:
    """The folder's manifest, its shape checked; FertrtError naming manifest.json otherwise."""
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise FertrtError(f"{folder}: no {MANIFEST}; a deployment folder is made by `fertrt pack MODEL -o {folder}`")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise FertrtError(f"{path}: {path.stat().st_size} bytes, too large for a fertrt manifest")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FertrtError(f"{path}: not valid JSON ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise FertrtError(f"{path}: not a fertrt deployment manifest (format {fmt!r}, expected {FORMAT!r})")
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise FertrtError(f"{path}: 'files' must map file names to their sha256 and size")
    for name, entry in files.items():
        _inside(folder, name)
        if not (
            isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and isinstance(entry.get("bytes"), int)
        ):
            raise FertrtError(f"{path}: entry {name!r} needs 'sha256' (text) and 'bytes' (an integer)")
    if not isinstance(data.get("model"), dict) or not isinstance(data.get("tensorrt"), dict):
        raise FertrtError(f"{path}: 'model' and 'tensorrt' must be objects")
    if not isinstance(data.get("engines", {}), dict):
        raise FertrtError(f"{path}: 'engines' must map precisions to engine files")
    return data


def verify(folder, manifest: dict | None = None) -> dict:
    """Every file the manifest lists is there with its size and SHA-256; FertrtError naming the first that is not."""
    folder = Path(folder)
    manifest = manifest if manifest is not None else read_manifest(folder)
    for name, entry in manifest["files"].items():
        path = _inside(folder, name)
        if not path.is_file():
            raise FertrtError(f"{path}: listed in {folder / MANIFEST} but missing; copy the whole folder again")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise FertrtError(
                f"{path}: {size} bytes, the manifest says {entry['bytes']}: the file was changed or "
                "truncated since `fertrt pack`; copy the folder again"
            )
        if sha256_file(path) != entry["sha256"]:
            raise FertrtError(
                f"{path}: its SHA-256 does not match {folder / MANIFEST}: the file was changed since "
                "`fertrt pack`; copy the folder again"
            )
    return manifest


def open_folder(folder) -> dict:
    """read_manifest + verify: what every device command does first with a folder argument."""
    return verify(folder, read_manifest(folder))


def file_entry(path) -> dict:
    path = Path(path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def pick_model(folder, manifest: dict, backend: str = "auto") -> Path:
    """The FER model `infer`/`bench` should run from the folder: an engine built here (INT8, else FP16, else FP32)
    when TensorRT is importable and the backend allows it, else the FP32 ONNX (what ONNX Runtime runs best on CPU)."""
    folder = Path(folder)
    engines = manifest.get("engines", {})
    if backend in ("auto", "tensorrt") and (backend == "tensorrt" or tensorrt_importable()):
        for precision in ("int8", "fp16", "fp32"):
            if precision in engines:
                return _inside(folder, engines[precision]["engine"])
        if backend == "tensorrt":
            raise FertrtError(f"{folder}: no engine built in it yet; run `fertrt build-engine {folder}` on this device")
    name = onnx_name("fp32")
    if name not in manifest["files"]:
        raise FertrtError(f"{folder / MANIFEST}: lists no {name}")
    return folder / name


def detector_path(folder, manifest: dict) -> Path | None:
    """The folder's face detector ONNX, or None when it was packed without one."""
    return Path(folder) / DETECTOR if DETECTOR in manifest["files"] else None


def bench_models(folder, manifest: dict) -> list:
    """What `bench DIR` times: every ONNX of the folder, then the engines built in it."""
    folder = Path(folder)
    models = [folder / onnx_name(p) for p in PRECISIONS if onnx_name(p) in manifest["files"]]
    engines = manifest.get("engines", {})
    return models + [_inside(folder, engines[p]["engine"]) for p in PRECISIONS if p in engines]


def record_engine(folder, precision: str, engine_path, sidecar_path, extra: dict | None = None) -> dict:
    """Add a built engine and its sidecar to the manifest, rewritten atomically. The timing cache is named but not
    hashed: every build rewrites it, and TensorRT checks it itself."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    names = []
    for path in (engine_path, sidecar_path):
        name = os.path.relpath(str(path), str(folder))
        _inside(folder, name)
        manifest["files"][name] = file_entry(path)
        names.append(name)
    entry = {"engine": names[0], "sidecar": names[1]}
    entry.update(extra or {})
    manifest.setdefault("engines", {})[precision] = entry
    if (folder / TIMING_CACHE).is_file():
        manifest["timing_cache"] = TIMING_CACHE
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def expand_folders(paths) -> list:
    """Model arguments with every deployment folder checked and replaced by its models (bench_models)."""
    out = []
    for path in paths:
        if is_deploy_dir(path):
            out += [str(p) for p in bench_models(path, open_folder(path))]
        else:
            out.append(path)
    return out
