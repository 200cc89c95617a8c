"""The `.engine.json` sidecar: everything needed to run, check and reproduce an engine."""

from __future__ import annotations

import json
from pathlib import Path

from fertrt import __version__
from fertrt.errors import FertrtError

SIDECAR_FORMAT = "fertrt-engine-1"


def sidecar_path(engine_path) -> Path:
    return Path(str(engine_path) + ".json")


def build_sidecar(
    *,
    trt_version,
    gpu: dict,
    jetson: dict | None,
    onnx_path,
    onnx_sha256,
    meta: dict,
    plan,
    opts,
    io: dict,
    build: dict,
    layers=None,
    trtexec: str = "",
    cache_key: str = "",
) -> dict:
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
        "precision": {
            "requested": opts.precision,
            "strongly_typed": plan.strongly_typed,
            "builder_flags": plan.builder_flags,
            "graph": meta.get("precision", "fp32"),
            "layer_precisions": precisions,
        },
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
        "dla_layers": build.get("dla_layers"),
        "cache_key": cache_key,
        "trtexec": trtexec,
        "layers": layers,
    }


def read_sidecar(engine_path) -> dict:
    p = sidecar_path(engine_path)
    if not p.is_file():
        raise FertrtError(
            f"{engine_path}: no sidecar {p.name} beside it; engines built outside fertrt lack labels and "
            f"preprocessing: rebuild with `fertrt build-engine MODEL.onnx -o {Path(engine_path).name}`"
        )
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FertrtError(f"{p}: not valid JSON ({exc.__class__.__name__}: {str(exc)[:200]})") from None
    except OSError as exc:
        raise FertrtError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise FertrtError(f"{p}: not a fertrt engine sidecar (format {fmt!r}, expected {SIDECAR_FORMAT!r})")
    problems = _shape_problems(data)
    if problems:
        raise FertrtError(
            f"{p}: a damaged or hand-edited sidecar: "
            + "; ".join(problems)
            + ". Rebuild the engine with `fertrt build-engine` to rewrite it"
        )
    return data


# key -> (allowed types, required): what every reader of a sidecar relies on
_FIELDS = {
    "tensorrt_version": ((str,), True),
    "gpu": ((dict,), True),
    "jetson": ((dict, type(None)), False),
    "class_names": ((list,), True),
    "preprocess": ((dict,), True),
    "precision": ((dict,), True),
    "profile": ((dict, type(None)), False),
    "build_options": ((dict,), True),
    "layers": ((list, type(None)), False),
    "io": ((dict,), False),
    "explain_outputs": ((list,), False),
    "timing_cache": ((dict,), False),
}


def _shape_problems(data: dict) -> list[str]:
    problems = []
    for key, (types, required) in _FIELDS.items():
        if key not in data:
            if required:
                problems.append(f"{key!r} is missing")
        elif not isinstance(data[key], types):
            problems.append(f"{key!r} is {type(data[key]).__name__}, expected {' or '.join(t.__name__ for t in types)}")
    names = data.get("class_names")
    if isinstance(names, list) and (not names or not all(isinstance(n, str) for n in names)):
        problems.append("'class_names' must be a non-empty list of strings")
    if isinstance(data.get("layers"), list) and not all(isinstance(l, dict) for l in data["layers"]):
        problems.append("'layers' must be a list of objects")
    jetson = data.get("jetson")
    if isinstance(jetson, dict) and not isinstance(jetson.get("l4t", ""), str):
        problems.append("'jetson.l4t' must be a string")
    return problems


def _version_tuple(text) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in str(text).split(".")[:3])
    except ValueError:
        return None


# Which runtimes load a version-compatible engine (TensorRT docs, "Version Compatibility" of 8.6/10.x/11.x and the
# 11.4 support matrix, "Engine Portability"): built with 8.6 or newer; run on the same or a newer release of the same
# major, or across majors only on the documented pairs: 8.x engines on a 10.x runtime, 10.x engines on an 11.x runtime.
# "No other combination across major versions is supported", e.g. an 8.6 engine on 11.
CROSS_MAJOR_PAIRS = {(8, 10), (10, 11)}


def version_compatible_problem(built: str | None, here: str | None) -> str | None:
    """Why a version-compatible engine built with TensorRT `built` will not load on `here` (None: it loads)."""
    b, h = _version_tuple(built), _version_tuple(here)
    if b is None or h is None:
        return f"cannot compare TensorRT {here} here with {built} of the build"
    if b[:2] < (8, 6):
        return f"built with TensorRT {built}, which cannot make version-compatible engines (8.6+ can); rebuild it"
    if h < b:
        return (
            f"built version-compatible with TensorRT {built}, this machine has the older {here} "
            "(version-compatible engines run only on the same or a newer TensorRT)"
        )
    if b[0] != h[0] and (b[0], h[0]) not in CROSS_MAJOR_PAIRS:
        pairs = ", ".join(f"{x}.x engines on {y}.x" for x, y in sorted(CROSS_MAJOR_PAIRS))
        return (
            f"built version-compatible with TensorRT {built}, this machine has {here}: TensorRT supports "
            f"version-compatible engines across major versions only for {pairs}, not {b[0]}.x on {h[0]}.x"
        )
    return None


def compatibility_problems(sidecar: dict, trt_version: str | None, gpu: dict) -> list[str]:
    """Why this engine cannot run here (empty list = it can). Engines are tied to the TensorRT
    version and GPU model they were built with, unless built version- or hardware-compatible."""
    problems = []
    opts = sidecar.get("build_options", {})
    built = sidecar.get("tensorrt_version")
    if trt_version is None:
        problems.append("TensorRT is not installed here")
    elif opts.get("version_compatible"):
        problem = version_compatible_problem(built, trt_version)
        if problem:
            problems.append(problem)
    elif trt_version != built:
        problems.append(
            f"built with TensorRT {built}, this machine has {trt_version} "
            "(engines are not portable between TensorRT versions)"
        )
    built_gpu = sidecar.get("gpu") or {}
    if gpu and built_gpu:
        hw = opts.get("hardware_compat")
        if hw == "ampere+":
            cc = gpu.get("compute_capability") or "0.0"
            if (_version_tuple(cc) or (0,)) < (8, 0):
                problems.append(f"built Ampere+-compatible, this GPU has compute capability {cc}")
        elif hw == "same-cc":
            if gpu.get("compute_capability") != built_gpu.get("compute_capability"):
                problems.append(
                    f"built for compute capability {built_gpu.get('compute_capability')}, this GPU has {gpu.get('compute_capability')}"
                )
        elif gpu.get("name") != built_gpu.get("name"):
            problems.append(
                f"built on {built_gpu.get('name')} (cc {built_gpu.get('compute_capability')}), this GPU is "
                f"{gpu.get('name')} (cc {gpu.get('compute_capability')}); engines are tuned per GPU model"
            )
    return problems
