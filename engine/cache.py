"""Build-once engine cache for `fertrt infer model.onnx --backend tensorrt`."""

from __future__ import annotations

from pathlib import Path

from fertrt.fileio import cache_dir

from .build import build
from .plan import BuildOptions


def engine_for_onnx(onnx_path, rebuild: bool = False, log=print) -> Path:
    """Return a cached engine for this ONNX on this TensorRT/GPU, building it the first time."""
    from fertrt.fileio import sha256_file

    out_dir = cache_dir("engines")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{Path(onnx_path).stem}-{sha256_file(onnx_path)[:12]}.engine"
    if target.is_file() and not rebuild:
        return target
    build(onnx_path, target, BuildOptions(precision="fp32"), use_cache=not rebuild, log=log)
    return target
