"""What `fertrt quantize` checks before it spends minutes calibrating: the source is an FP32 graph
from fertrt export whose metadata can be believed, the calibration files are readable, and the cache
key covers what the calibration actually read. (The options check themselves: quantize.Int8Options.)"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError

_QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "DynamicQuantizeLinear"}


def source_metadata(model, src) -> dict:
    """fertrt metadata of an FP32 source graph, checked; FertrtError naming `src` otherwise."""
    from onnx import TensorProto

    from .metadata import get_metadata

    try:
        meta = get_metadata(model)
    except FertrtError as exc:
        raise FertrtError(f"{src}: {exc}") from None
    if not meta or "preprocess" not in meta:
        raise FertrtError(
            f"{src}: has no fertrt metadata (preprocessing, class names); quantize an ONNX file written by "
            "`fertrt export`"
        )
    precision = meta.get("precision", "fp32")
    ops = {n.op_type for n in model.graph.node}
    if precision != "fp32" or ops & _QDQ_OPS:
        what = {"fp16": "an FP16 model", "int8": "an INT8 model"}.get(
            precision, "quantized (it has Q/DQ nodes or says so in its metadata)"
        )
        raise FertrtError(
            f"{src}: is already {what}; quantize the FP32 ONNX from `fertrt export` instead "
            "(re-quantizing compounds the rounding of both passes)"
        )
    if any(t.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16) for t in model.graph.initializer):
        raise FertrtError(
            f"{src}: holds FP16/BF16 weights, so it is not the FP32 graph from `fertrt export`; quantize that one"
        )
    names = meta.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise FertrtError(
            f"{src}: metadata fertrt.class_names should be a JSON list of class names, found {str(names)[:80]!r}"
        )
    pre = meta.get("preprocess")
    if not isinstance(pre, dict):
        raise FertrtError(f"{src}: metadata fertrt.preprocess should be a JSON object, found {str(pre)[:80]!r}")
    size = pre.get("input_size")
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 8192 for v in size)
    ):
        raise FertrtError(
            f"{src}: metadata input_size {str(size)[:40]!r}: expected [height, width] of positive whole numbers"
        )
    channels = pre.get("channels")
    if channels not in (1, 3):
        raise FertrtError(f"{src}: metadata channels {str(channels)[:20]!r}: expected 1 or 3")
    for key in ("mean", "std"):
        vals = pre.get(key)
        if not (
            isinstance(vals, list)
            and len(vals) == channels
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in vals)
        ):
            raise FertrtError(f"{src}: metadata {key} {str(vals)[:60]!r}: expected {channels} finite numbers")
    if any(v <= 0 for v in pre["std"]):
        raise FertrtError(f"{src}: metadata std {pre['std']}: every value must be > 0 (inputs are divided by it)")
    dims = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    want = [channels, *size]
    if len(fixed) == 4 and any(f is not None and f != w for f, w in zip(fixed[1:], want)):
        raise FertrtError(f"{src}: the graph's input is {fixed[1:]} (C, H, W) but its metadata says {want}")
    _check_classifier_graph(model, src, names)
    return meta


def _check_classifier_graph(model, src, names) -> None:
    """One image input and logits N x K with K = the metadata's class count: a graph that is not the classifier
    its metadata describes would be 'quantized' into a file that infer refuses (or with no quantize node)."""
    import onnx

    inputs = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise FertrtError(f"{src}: has {len(inputs)} graph inputs ({', '.join(inputs[:4])}); expected one image input")
    outputs = {o.name: o for o in model.graph.output}
    logits = outputs.get("logits") or model.graph.output[0]
    dims = logits.type.tensor_type.shape.dim
    if not dims:  # no declared shape: infer it
        inferred = onnx.shape_inference.infer_shapes(model)
        dims = next((o.type.tensor_type.shape.dim for o in inferred.graph.output if o.name == logits.name), dims)
    shape = [d.dim_value if d.HasField("dim_value") else "N" for d in dims]
    if shape and len(shape) != 2:
        raise FertrtError(
            f"{src}: its output {logits.name!r} has shape {shape}; a classifier gives logits N x K "
            f"(K = {len(names)} classes in its metadata)"
        )
    if len(shape) == 2 and isinstance(shape[1], int) and shape[1] != len(names):
        raise FertrtError(
            f"{src}: the graph gives {shape[1]} logits but its metadata names {len(names)} classes; "
            "the metadata does not belong to this graph"
        )


def load_calibration_npy(path, want: tuple, size: int) -> np.ndarray:
    """A preprocessed N x C x H x W calibration array; FertrtError naming the file when it is not one."""
    from fertrt.fileio import require_file

    require_file(path, "a .npy array of preprocessed calibration inputs")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise FertrtError(
            f"{path}: not a readable .npy array ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise FertrtError(
            f"{path}: calibration array has dtype {getattr(arr, 'dtype', type(arr).__name__)}; expected float32 inputs"
        )
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(want):
        raise FertrtError(
            f"{path}: calibration array has shape {tuple(arr.shape)}; the model expects N x {want[0]} x {want[1]} x {want[2]}"
        )
    if len(arr) == 0:
        raise FertrtError(f"{path}: the calibration set is empty")
    out = np.ascontiguousarray(arr[:size], dtype=np.float32)
    if not np.isfinite(out).all():
        raise FertrtError(f"{path}: calibration array holds NaN or Inf values")
    return out


def calibration_fingerprint(calib: str) -> str | None:
    """What the calibration read, so the range cache misses when the files change: the .npy's bytes,
    or every file's (relative path, size, mtime) under a data set's root. None for synth (generated)."""
    if calib.endswith(".npy"):
        p = Path(calib)
        if not p.is_file():
            return None
        from fertrt.fileio import sha256_file

        return "npy:" + sha256_file(p)
    from fertrt.train.data.spec import parse_spec

    kind, root, _ = parse_spec(calib)
    if root is None:
        return None
    root_path = Path(root)
    h = hashlib.sha256()
    if root_path.is_file():  # a CSV: its readers also open label files beside it (FERPlus), so take the folder's files
        for f in sorted(p for p in root_path.parent.iterdir() if p.is_file()):
            st = f.stat()
            h.update(json.dumps([f.name, st.st_size, st.st_mtime_ns]).encode())
    else:
        for dirpath, dirnames, filenames in os.walk(root_path):
            dirnames.sort()
            for name in sorted(filenames):
                f = Path(dirpath) / name
                try:
                    st = f.stat()
                except OSError:
                    continue
                h.update(json.dumps([str(f.relative_to(root_path)), st.st_size, st.st_mtime_ns]).encode())
    return f"{kind}:" + h.hexdigest()
