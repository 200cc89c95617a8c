"""`fertrt pack`: one folder to carry from the workstation to a Jetson (read there by runtime/deploy.py).

From a checkpoint or an FP32 ONNX model it writes, for one TensorRT version (named, or the one a JetPack ships):
the FER model as FP32, FP16 and INT8 ONNX, each a graph that TensorRT's ONNX parser takes (opset and operators
checked against onnx-tensorrt's table for that release, export/data/onnx_trt_ops.json), the INT8 calibration
cache with that version's header, the face detector ONNX, labels and manifest.json (SHA-256 and size of every
file). The folder is built beside its destination and renamed into place, so it is complete or absent.
"""

from __future__ import annotations

import datetime
import shutil
from dataclasses import dataclass
from pathlib import Path

from fertrt import __version__
from fertrt.errors import FertrtError
from fertrt.fileio import replacing_folder, require_file, sha256_file, write_json_atomic, write_text_atomic
from fertrt.runtime.deploy import DETECTOR, FORMAT, MANIFEST, PRECISIONS, file_entry, onnx_name

DETECTORS = ("blazeface-short", "blazeface-full", "none")
CALIB_CACHE = "model.int8.calib.cache"
LABELS = "labels.txt"


@dataclass
class PackOptions:
    trt_version: str
    jetpack: str | None = None
    calib: str = "synth"
    calib_size: int = 512
    detector: str = "blazeface-short"  # a registered BlazeFace, or "none"
    detector_model: str | None = None  # a detector ONNX from `fertrt detector export` instead
    cache_dir: Path | None = None  # calibration range cache
    force: bool = False


def _fp32(model: Path, dest: Path, trt_version: str, log) -> None:
    """The FP32 graph, at an opset the target parser takes: exported from a checkpoint, or the ONNX given
    (its metadata checked; lowered and rechecked when its opset is above the parser's)."""
    import onnx

    from .quantize import fit_for_trt, load_source
    from .targets import parser_support

    if model.suffix == ".pt":
        from .onnx_export import ExportOptions, export_checkpoint

        opset = min(17, parser_support(trt_version)["opset_max"])
        export_checkpoint(model, dest, ExportOptions(opset=opset, force=True), log=log)
        src = onnx.load(str(dest))
        fit_for_trt(src, trt_version, dest, log=log)
        return
    src, _ = load_source(model)
    fitted = fit_for_trt(src, trt_version, model, log=log)
    if fitted is src:
        shutil.copyfile(model, dest)
    else:
        onnx.save(fitted, str(dest))


def _detector(opts: PackOptions, dest: Path, trt_version: str, log) -> str | None:
    """Copy the face detector in (the default BlazeFace converted once into fertrt's cache); -> its name."""
    import onnx

    from .targets import check_parseable

    if opts.detector_model:
        src = require_file(opts.detector_model, "a detector ONNX from `fertrt detector export`")
        name = src.stem
    elif opts.detector == "none":
        return None
    else:
        from .detectors_export import ensure_default_detector

        src, name = ensure_default_detector(opts.detector, log=log), opts.detector
    try:
        check_parseable(onnx.load(str(src)), trt_version, src)
    except FertrtError:
        raise
    except Exception as exc:  # noqa: BLE001 - protobuf raises assorted types on a damaged file
        raise FertrtError(f"{src}: not a readable ONNX detector ({exc.__class__.__name__})") from None
    shutil.copyfile(src, dest)
    return name


def _model_summary(meta: dict, model: Path) -> dict:
    keys = ("model_name", "class_names", "preprocess", "input_size", "data_spec", "explain_outputs", "model_config")
    out = {k: meta[k] for k in keys if k in meta}
    out["source"] = model.name
    out["source_sha256"] = sha256_file(model)
    return out


def build_folder(model: Path, tmp: Path, opts: PackOptions, log=print) -> dict:
    """Write every file into `tmp` and return the manifest (also written there)."""
    from .metadata import read_metadata
    from .quantize import Int8Options, quantize_fp16, quantize_int8, trt_parser_meta
    from .trt_calib_cache import trt_version_tag

    v = opts.trt_version
    fp32 = tmp / onnx_name("fp32")
    _fp32(model, fp32, v, log)
    quantize_fp16(fp32, tmp / onnx_name("fp16"), force=True, log=log, trt_version=v)
    int8 = Int8Options(
        calib=opts.calib,
        calib_size=opts.calib_size,
        target="tensorrt",
        trt_cache=str(tmp / CALIB_CACHE),
        trt_version=v,
        cache_dir=opts.cache_dir,
    )
    quantize_int8(fp32, tmp / onnx_name("int8"), int8, force=True, log=log)
    detector = _detector(opts, tmp / DETECTOR, v, log)
    meta = read_metadata(fp32)
    write_text_atomic(tmp / LABELS, "".join(f"{name}\n" for name in meta["class_names"]))
    names = [onnx_name(p) for p in PRECISIONS] + [CALIB_CACHE, LABELS] + ([DETECTOR] if detector else [])
    manifest = {
        "format": FORMAT,
        "fertrt_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tensorrt": {"version": v, "calibration_cache_tag": trt_version_tag(v), "onnx_parser": trt_parser_meta(v)},
        "jetpack": opts.jetpack,
        "model": _model_summary(meta, model),
        "precisions": {p: onnx_name(p) for p in PRECISIONS},
        "calibration": {"data": opts.calib, "size": opts.calib_size, "cache": CALIB_CACHE},
        "detector": {"name": detector, "file": DETECTOR} if detector else None,
        "labels": LABELS,
        "files": {name: file_entry(tmp / name) for name in names},
        "engines": {},
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def pack(model, out, opts: PackOptions, log=print) -> dict:
    """Make the deployment folder `out` from `model` (.pt or .onnx); -> its manifest."""
    model = require_file(model, "a checkpoint (.pt) or an ONNX model from `fertrt export`")
    if model.suffix not in (".pt", ".onnx"):
        raise FertrtError(f"{model}: expected a checkpoint (.pt) or an ONNX model (.onnx)")
    inputs = [model, opts.detector_model] + ([opts.calib] if opts.calib.endswith(".npy") else [])
    out = Path(out)
    with replacing_folder(out, force=opts.force, inputs=inputs, what="deployment folder", log=log) as tmp:
        manifest = build_folder(model, tmp, opts, log=log)
    jp = f" (JetPack {opts.jetpack})" if opts.jetpack else ""
    log(
        f"wrote {out}: {', '.join(sorted(manifest['files']))} for TensorRT {opts.trt_version}{jp}; on the device: "
        f"`fertrt build-engine {out}`, then `fertrt infer {out} IMAGES...`"
    )
    return manifest


def cmd_pack(args):
    from .targets import trt_for_jetpack

    trt_version = trt_for_jetpack(args.jetpack) if args.jetpack else args.trt_version
    opts = PackOptions(
        trt_version=trt_version,
        jetpack=args.jetpack,
        calib=args.calib_data,
        calib_size=args.calib_size,
        detector=args.detector,
        detector_model=args.detector_model,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        force=args.force,
    )
    pack(args.model, args.output, opts)
    return 0
