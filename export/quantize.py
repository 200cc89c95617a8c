"""`fertrt quantize`: FP16 and calibrated INT8 (explicit Q/DQ) ONNX models, checked on ONNX Runtime.

FP16: our own pass (export/fp16.py) with FP32 inputs/outputs and a keep-in-FP32 list of the
numerically sensitive ops. INT8: onnxruntime's quantize_static in QDQ format with symmetric INT8
activations, per-channel symmetric INT8 weights and FP32 biases, Q/DQ on the inputs of Conv,
MatMul and Gemm (where TensorRT fuses them). Both graphs build as strongly typed TensorRT networks.
Calibration ranges are cached by (model hash, data spec, method, size, percentile, seed).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import json
import os
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_output, require_file, sha256_file, write_text_atomic

from .metadata import get_metadata, set_metadata

# Ops kept in FP32 by default: softmax and the reductions around attention/pooling, L2 norms.
# (BatchNorm statistics are folded into the convolutions at export, so none remain.)
FP16_KEEP_OPS = ("Softmax", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2", "LpNormalization", "Pow", "Sqrt")
QUANT_OPS = ("Conv", "MatMul", "Gemm")
CALIB_METHODS = ("entropy", "minmax", "percentile")


@contextlib.contextmanager
def _quiet_ort():
    """onnxruntime.quantization prints progress and a pre-processing hint on stdout/root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def default_cache_dir() -> Path:
    return Path(os.environ.get("FERTRT_CACHE", Path.home() / ".cache" / "fertrt")) / "calibration"


def load_onnx(path):
    import onnx

    require_file(path, "an ONNX model")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - protobuf/onnx raise many types for bad files
        raise FertrtError(f"{path}: not a valid ONNX model ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    return model


def _finish(model, src_meta: dict, src_path, precision: str, output, extra: dict, force: bool):
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    meta = dict(src_meta)
    meta.update({"precision": precision, "derived_from_sha256": sha256_file(src_path), **extra})
    set_metadata(model, meta)
    output = Path(output)
    with atomic_path(output, overwrite=force or not output.exists()) as tmp:
        onnx.save(model, str(tmp))
    return output


def quantize_fp16(src, output, keep_ops=FP16_KEEP_OPS, keep_nodes=(), force=False, log=print) -> Path:
    from .fp16 import convert_to_fp16

    model = load_onnx(src)
    meta = get_metadata(model)
    check_output(output, overwrite=force)
    names = {n.name for n in model.graph.node}
    unknown = [k for k in keep_nodes if k not in names]
    if unknown:
        raise FertrtError(f"--exclude {', '.join(unknown)}: no node of that name in {src}")
    converted = convert_to_fp16(model, keep_ops=keep_ops, keep_nodes=keep_nodes)
    out = _finish(converted, meta, src, "fp16", output, {"fp16": {"keep_fp32_ops": list(keep_ops), "keep_fp32_nodes": list(keep_nodes)}}, force)
    log(f"wrote {out} (FP16 weights and activations, FP32 I/O; kept in FP32: {', '.join(keep_ops) or 'nothing'})")
    return out


# ---------------------------------------------------------------- calibration data
def calibration_array(calib: str, meta: dict, size: int, seed: int = 0, log=print) -> np.ndarray:
    """Calibration inputs as float32 N x C x H x W: from a data spec (drawn deterministically from
    its training split and preprocessed with the model's own config) or a preprocessed .npy file."""
    from fertrt.runtime.preprocess import PreprocessConfig, preprocess

    pre = PreprocessConfig.from_dict(meta["preprocess"])
    want = (pre.channels, *pre.input_size)
    if calib.endswith(".npy"):
        require_file(calib, "a .npy array of preprocessed calibration inputs")
        arr = np.load(calib)
        if arr.ndim != 4 or tuple(arr.shape[1:]) != want:
            raise FertrtError(f"{calib}: calibration array has shape {tuple(arr.shape)}; the model expects N x {want[0]} x {want[1]} x {want[2]}")
        if len(arr) == 0:
            raise FertrtError(f"{calib}: the calibration set is empty")
        return arr[:size].astype(np.float32)
    from fertrt.train.data import load_data

    data = load_data(calib, image_size=pre.input_size[0], seed=seed, splits=("train",))
    split = data.split("train")
    if len(split) == 0:
        raise FertrtError(f"calibration data {calib!r}: the training split is empty")
    idx = np.sort(np.random.default_rng(seed).choice(len(split), size=min(size, len(split)), replace=False))
    images = [img for img in (split.load(int(i)) for i in idx) if img is not None]
    if not images:
        raise FertrtError(f"calibration data {calib!r}: none of the {len(idx)} drawn images could be read")
    if len(images) < len(idx):
        log(f"calibration: skipped {len(idx) - len(images)} unreadable images")
    return preprocess(images, pre)


class _Reader:
    """onnxruntime CalibrationDataReader over an array, with a progress bar."""

    def __init__(self, x, input_name, batch=32, desc="calibrating"):
        from tqdm import tqdm

        self.x, self.name, self.batch = x, input_name, batch
        self.i = 0
        self.bar = tqdm(total=len(x), desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)

    def get_next(self):
        if self.i >= len(self.x):
            self.bar.close()
            return None
        chunk = self.x[self.i:self.i + self.batch]
        self.i += len(chunk)
        self.bar.update(len(chunk))
        return {self.name: chunk}

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def set_range(self, start_index, end_index):  # the interface asks for it; strided calibration is not used
        self.i = start_index


@dataclass
class Int8Options:
    calib: str = ""
    calib_size: int = 512
    method: str = "entropy"
    percentile: float = 99.99
    exclude: tuple = ()  # node names or op types kept in higher precision
    quantize_add: bool = False  # Q/DQ on residual Adds too
    keep_classifier: bool = False
    seed: int = 0
    cache_dir: Path | None = None
    trt_cache: str | None = None  # path of the TensorRT calibration cache to write (default: OUTPUT.calib.cache)
    trt_version: int = 8601


def calibration_key(model_sha: str, calib: str, method: str, size: int, percentile: float, seed: int, calib_sha: str | None = None) -> str:
    blob = json.dumps([model_sha, calib, calib_sha, method, size, percentile if method == "percentile" else None, seed])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _ort_method(method):
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method]


def quantizable_nodes(model, opts: Int8Options) -> tuple[list[str], list[str]]:
    """(op types to quantize, node names to exclude) from the options."""
    ops = list(QUANT_OPS) + (["Add"] if opts.quantize_add else [])
    excl_ops = {e for e in opts.exclude if e in {n.op_type for n in model.graph.node}}
    names = {n.name for n in model.graph.node}
    unknown = [e for e in opts.exclude if e not in names and e not in excl_ops]
    if unknown:
        raise FertrtError(f"--exclude {', '.join(unknown)}: no node or op type of that name in the model")
    exclude = [n.name for n in model.graph.node if n.name in opts.exclude or n.op_type in excl_ops]
    if opts.keep_classifier:
        outputs = {o.name for o in model.graph.output}
        exclude += [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul") and set(n.output) & outputs]
    return ops, exclude


def calibrate(src, model, meta, opts: Int8Options, log=print) -> Path:
    """Compute (or reuse) calibration ranges; returns onnxruntime's JSON range cache file."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    if opts.method not in CALIB_METHODS:
        raise FertrtError(f"--calib-method {opts.method!r}: expected one of {', '.join(CALIB_METHODS)}")
    if not opts.calib:
        raise FertrtError("INT8 needs calibration data: --calib-data SPEC (e.g. synth) or a preprocessed .npy array")
    calib_sha = sha256_file(opts.calib) if opts.calib.endswith(".npy") and Path(opts.calib).is_file() else None
    key = calibration_key(sha256_file(src), opts.calib, opts.method, opts.calib_size, opts.percentile, opts.seed, calib_sha)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir()
    cache = cache_dir / f"{key}.json"
    if cache.is_file():
        log(f"calibration cache hit: {cache}")
        return cache
    x = calibration_array(opts.calib, meta, opts.calib_size, opts.seed, log=log)
    ops, _ = quantizable_nodes(model, opts)
    t0 = time.perf_counter()
    extra = {"symmetric": True}
    if opts.method == "percentile":
        extra["percentile"] = opts.percentile
    with tempfile.TemporaryDirectory(prefix="fertrt-calib-") as tmp:
        calibrator = create_calibrator(Path(src), ops, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=_ort_method(opts.method), extra_options=extra)
        with _quiet_ort():
            calibrator.collect_data(_Reader(x, model.graph.input[0].name, desc=f"calibrating ({opts.method})"))
            ranges = calibrator.compute_data()
        del calibrator
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_tensors_data(ranges, tmp)
    log(f"calibrated {len(x)} images with {opts.method} in {time.perf_counter() - t0:.1f}s; ranges cached in {cache}")
    return cache


def read_ranges(cache_path) -> dict[str, float]:
    """Calibration cache -> {tensor name: amax} (symmetric absolute range)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(cache_path)
    out = {}
    for name, td in data.data.items():
        lo, hi = td.range_value
        out[name] = float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))
    return out


def quantize_int8(src, output, opts: Int8Options, force=False, log=print, nodes_to_quantize=None) -> Path:
    """Q/DQ INT8 model from `src`; also writes TensorRT's calibration cache beside it."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = load_onnx(src)
    meta = get_metadata(model)
    check_output(output, overwrite=force)
    cache = calibrate(src, model, meta, opts, log=log)
    ops, exclude = quantizable_nodes(model, opts)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    with tempfile.TemporaryDirectory(prefix="fertrt-q-") as tmp, _quiet_ort():
        tmp_out = Path(tmp) / "int8.onnx"
        quantize_static(str(src), str(tmp_out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=ops, per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_quantize=nodes_to_quantize, nodes_to_exclude=exclude, calibrate_method=_ort_method(opts.method),
                        extra_options=extra, calibration_cache_path=str(cache))
        import onnx

        qmodel = onnx.load(str(tmp_out))
    n_q = sum(1 for n in qmodel.graph.node if n.op_type == "QuantizeLinear")
    calib_meta = {"method": opts.method, "size": opts.calib_size, "data": opts.calib, "seed": opts.seed,
                  "percentile": opts.percentile if opts.method == "percentile" else None, "range_cache": str(cache),
                  "excluded_nodes": exclude, "quantized_op_types": ops}
    out = _finish(qmodel, meta, src, "int8", output, {"calibration": calib_meta}, force)
    if nodes_to_quantize is None:
        trt_path = Path(opts.trt_cache) if opts.trt_cache else Path(str(out) + ".calib.cache")
        write_trt_calibration_cache(read_ranges(cache), trt_path, opts.trt_version)
        log(f"wrote {out} (INT8 Q/DQ: {n_q} quantize nodes, {len(exclude)} nodes kept in FP32) and TensorRT calibration cache {trt_path}")
    return out


# ---------------------------------------------------------------- TensorRT's calibration cache
def trt_version_tag(version: str | int) -> int:
    """'8.6.1' -> 8601, '10.3.0' -> 100300 (how TensorRT writes its version into cache headers)."""
    if isinstance(version, int):
        return version
    parts = [int(p) for p in str(version).split(".")[:3]] + [0, 0]
    major, minor, patch = parts[:3]
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def format_trt_calibration_cache(ranges: dict[str, float], version_tag: int) -> str:
    """TensorRT's text cache: a `TRT-<version>-EntropyCalibration2` header, then one
    `tensor: <hex of the big-endian float32 scale>` line per tensor, scale = amax / 127.

    Untested against a real TensorRT here (none installs on CPU machines); the `trt` tests
    round-trip it through IInt8EntropyCalibrator2.read_calibration_cache on a GPU host."""
    lines = [f"TRT-{version_tag}-EntropyCalibration2"]
    for name, amax in ranges.items():
        scale = max(float(amax), 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def write_trt_calibration_cache(ranges, path, version_tag=8601) -> Path:
    return write_text_atomic(path, format_trt_calibration_cache(ranges, trt_version_tag(version_tag)))


def parse_trt_calibration_cache(text: str) -> tuple[str, dict[str, float]]:
    """-> (header, {tensor: scale}). Raises FertrtError on a malformed cache."""
    lines = [l for l in text.splitlines() if l.strip()]
    if not lines or not lines[0].startswith("TRT-"):
        raise FertrtError("not a TensorRT calibration cache (expected a first line like TRT-8601-EntropyCalibration2)")
    scales = {}
    for l in lines[1:]:
        name, sep, hexval = l.rpartition(": ")
        if not sep or len(hexval.strip()) != 8:
            raise FertrtError(f"malformed calibration cache line {l!r} (expected 'tensor: 8 hex digits')")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval.strip()))[0]
    return lines[0], scales
