"""The `.engine.json` sidecar: everything needed to run, check and reproduce an engine."""
from __future__ import annotations

import json
from pathlib import Path

from fertrt import __version__
from fertrt.errors import FertrtError

SIDECAR_FORMAT = "fertrt-engine-1"


def sidecar_path(engine_path) -> Path:
    return Path(str(engine_path) + ".json")


def build_sidecar(*, trt_version, gpu: dict, jetson: dict | None, onnx_path, onnx_sha256, meta: dict, plan, opts, io: dict,
                  build: dict, layers=None, trtexec: str = "", cache_key: str = "") -> dict:
    precisions = {}
    for layer in layers or []:
        if layer.get("precision"):
            precisions[layer["precision"]] = precisions.get(layer["precision"], 0) + 1
    return {
        "format": SIDECAR_FORMAT,
        "fertrt_version": __version__,
        "tensorrt_version": trt_version,
        "gpu": gpu,
        "jetson": jetson,
        "precision": {"requested": opts.precision, "strongly_typed": plan.strongly_typed, "builder_flags": plan.builder_flags,
                      "graph": meta.get("precision", "fp32"), "layer_precisions": precisions},
        "io": io,
        "profile": plan.profile,
        "class_names": meta.get("class_names"),
        "preprocess": meta.get("preprocess"),
        "model_name": meta.get("model_name"),
        "data_spec": meta.get("data_spec"),
        "explain_outputs": meta.get("explain_outputs", []),
        "source_onnx": str(onnx_path),
        "source_onnx_sha256": onnx_sha256,
        "timing_cache": {"path": plan.timing_cache, "loaded": build.get("timing_cache_loaded", False)},
        "build_options": {k: v for k, v in vars(opts).items()},
        "build_seconds": build.get("build_seconds"),
        "cache_key": cache_key,
        "trtexec": trtexec,
        "layers": layers,
    }


def read_sidecar(engine_path) -> dict:
    p = sidecar_path(engine_path)
    if not p.is_file():
        raise FertrtError(f"{engine_path}: no sidecar {p.name} beside it; engines built outside fertrt lack labels and "
                          f"preprocessing: rebuild with `fertrt build-engine MODEL.onnx -o {Path(engine_path).name}`")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise FertrtError(f"{p}: not valid JSON ({exc})") from exc
    if data.get("format") != SIDECAR_FORMAT:
        raise FertrtError(f"{p}: not a fertrt engine sidecar (format {data.get('format')!r})")
    return data


def compatibility_problems(sidecar: dict, trt_version: str | None, gpu: dict) -> list[str]:
    """Why this engine cannot run here (empty list = it can). Engines are tied to the TensorRT
    version and GPU model they were built with, unless built version- or hardware-compatible."""
    problems = []
    opts = sidecar.get("build_options", {})
    if trt_version is None:
        problems.append("TensorRT is not installed here")
    elif trt_version != sidecar.get("tensorrt_version") and not opts.get("version_compatible"):
        problems.append(f"built with TensorRT {sidecar.get('tensorrt_version')}, this machine has {trt_version} "
                        "(engines are not portable between TensorRT versions)")
    built_gpu = sidecar.get("gpu") or {}
    if gpu and built_gpu:
        hw = opts.get("hardware_compat")
        if hw == "ampere+":
            cc = gpu.get("compute_capability") or "0.0"
            if float(cc) < 8.0:
                problems.append(f"built Ampere+-compatible, this GPU has compute capability {cc}")
        elif hw == "same-cc":
            if gpu.get("compute_capability") != built_gpu.get("compute_capability"):
                problems.append(f"built for compute capability {built_gpu.get('compute_capability')}, this GPU has {gpu.get('compute_capability')}")
        elif gpu.get("name") != built_gpu.get("name"):
            problems.append(f"built on {built_gpu.get('name')} (cc {built_gpu.get('compute_capability')}), this GPU is "
                            f"{gpu.get('name')} (cc {gpu.get('compute_capability')}); engines are tuned per GPU model")
    return problems
