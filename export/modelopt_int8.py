"""INT8 Q/DQ graphs laid out for TensorRT, made by NVIDIA's TensorRT Model Optimizer (ModelOpt).

ModelOpt's ONNX PTQ (`modelopt.onnx.quantization.quantize`) places Q/DQ the way TensorRT's
developer guide asks: on the inputs of weighted ops and not on their outputs, on the residual input
of an Add after a Conv (so Conv+Add fuse in INT8), per-channel symmetric weights, per-tensor
symmetric activations; the rest of the graph becomes FP16 (`high_precision_dtype`) unless asked
to stay FP32.

Activation scales come from fertrt's own calibration (export/quantize.py: the ORT calibrator over
our data specs, with its range cache), handed to ModelOpt as a TensorRT text calibration cache, which
ModelOpt reads in place of its own scales. So both --target flavours share one calibration and
differ only in layout, and percentile calibration works here too (ModelOpt's INT8 path knows only
entropy and max). ModelOpt still needs a few inputs for its shape and pattern analysis; their own
ranges are thrown away (ModelOpt raises if an activation Q/DQ is left without a cached scale).

ModelOpt patches onnxruntime.quantization process-wide when it runs (its calibrators and the QDQ
quantizer) and changes logging; so it runs in a child Python process, and the ORT target in this
process keeps ORT's own behaviour. One child serves a list of jobs (sensitivity sends many).

Install: ModelOpt *without* its [onnx] extra (that pins onnx 1.21 / onnxruntime-gpu 1.24 and pulls
cupy); the modules its ONNX quantizer imports are listed in pyproject's `train` extra.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from fertrt.errors import FertrtError

MODELOPT_PIP = "nvidia-modelopt==0.47.0 onnx-graphsurgeon==0.6.1 polygraphy==0.53.6 onnxscript==0.7.2 lief==1.0.0"
# Op types whose inputs ModelOpt may quantize for INT8 (its int8.quantize docstring), plus Concat,
# whose inputs share one scale under its concat-elimination pass. fertrt calibrates every tensor
# touching these so that each Q/DQ ModelOpt places finds a cached scale.
MODELOPT_INT8_OPS = (
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Concat",
    "Conv",
    "ConvTranspose",
    "Gemm",
    "GlobalAveragePool",
    "MatMul",
    "MaxPool",
    "Mul",
)


@functools.lru_cache(maxsize=1)
def modelopt_missing() -> str | None:
    """None when ModelOpt's ONNX quantizer and AutoCast import here, else why not (one line).
    (Importing them patches nothing; ModelOpt patches onnxruntime only when its quantizer runs.)"""
    try:
        import modelopt.onnx.autocast  # noqa: F401
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return (
            "nvidia-modelopt is not installed"
            if getattr(exc, "name", None) == "modelopt"
            else f"it does not import ({first})"
        )
    return None


def require_modelopt(what: str = "--target tensorrt"):
    why = modelopt_missing()
    if why:
        alt = "; or use --target onnxruntime (ONNX Runtime's quantizer, the CPU layout)" if "target" in what else ""
        raise FertrtError(
            f"{what} needs NVIDIA ModelOpt's ONNX tools: {why}. Install them without ModelOpt's [onnx] "
            f'extra: pip install "fertrt[train]" (or: pip install {MODELOPT_PIP}){alt}'
        )


def run_jobs(jobs: list[dict], workdir: Path, log=print) -> list[dict]:
    """Run ModelOpt INT8 jobs in one child process. Each job: src, out, calib_npy (or None: ModelOpt's
    random inputs), trt_cache (scales), nodes_to_exclude, op_types_to_exclude, nodes_to_quantize (or
    None), high_precision ('fp16' or 'fp32'). Returns one {'ok': bool, 'error': str} per job."""
    spec = Path(workdir) / "jobs.json"
    result = Path(workdir) / "results.json"
    spec.write_text(json.dumps({"jobs": jobs, "result": str(result)}))
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "fertrt.export.modelopt_int8", str(spec)],
        capture_output=True,
        text=True,
        cwd=str(workdir),
        env=env,
    )
    if not result.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FertrtError(f"ModelOpt's INT8 quantizer stopped (exit {proc.returncode}):\n{tail}")
    return json.loads(result.read_text())


def _one_job(job: dict):
    import numpy as np
    from modelopt.onnx.quantization import quantize

    data = np.load(job["calib_npy"]) if job.get("calib_npy") else None
    quantize(
        onnx_path=job["src"],
        quantize_mode="int8",
        calibration_data=data,
        calibration_method="max",
        calibration_cache_path=job.get("trt_cache"),
        calibration_eps=["cpu"],
        nodes_to_exclude=list(job.get("nodes_to_exclude") or []),
        op_types_to_exclude=list(job.get("op_types_to_exclude") or []),
        nodes_to_quantize=job.get("nodes_to_quantize"),
        high_precision_dtype=job.get("high_precision", "fp16"),
        output_path=job["out"],
        log_level="ERROR",
    )
    if not Path(job["out"]).is_file():
        raise RuntimeError("ModelOpt wrote no output")


def _child(spec_path: str) -> int:
    import contextlib
    import io
    import logging

    spec = json.loads(Path(spec_path).read_text())
    logging.disable(logging.WARNING)  # ModelOpt's and ORT's progress chatter; errors come back as results
    results = []
    for job in spec["jobs"]:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                _one_job(job)
            results.append({"ok": True})
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises FertrtError
            results.append(
                {"ok": False, "error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            )
    Path(spec["result"]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
