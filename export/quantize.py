"""`fertrt quantize`: FP16 and calibrated INT8 (explicit Q/DQ) ONNX models, laid out for the backend
that runs them, checked on ONNX Runtime.

INT8 `--target tensorrt` (default): NVIDIA ModelOpt's ONNX PTQ (export/modelopt_int8.py) places
Q/DQ the way TensorRT's guide asks (weighted-op inputs, residual Adds; nothing after Conv outputs),
per-channel symmetric weights, per-tensor symmetric activations, and FP16 for the rest of the
graph (`--int8-fp32-rest` keeps it FP32). INT8 `--target onnxruntime`: onnxruntime's
quantize_static in QDQ format with symmetric INT8 activations, per-channel symmetric INT8 weights
and FP32 biases, Q/DQ on the inputs of Conv, MatMul and Gemm; ORT's CPU kernels fuse the Q/DQ it
also puts around Conv outputs, so this is the layout for ONNX Runtime on CPU.
Both targets take their activation ranges from one calibration (ORT's calibrators on CPU), cached
by (model hash, data spec and a fingerprint of its files, method, size, percentile, seed, the set of
tensors calibrated); the output's metadata records the target. FP16: see quantize_fp16.

ORT and ModelOpt write scratch files beside the model they read (ORT's `*-inferred.onnx`, which it
then deletes), so they only ever read a copy inside a private temporary directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertrt import fileio
from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_output, output_lock, private_tempdir, require_file, sha256_file
from fertrt.ranges import CALIB_METHODS, CALIB_PERCENTILE, CALIB_SEED, CALIB_SIZE, QUANTIZE_TARGETS, check_choice

from .metadata import set_metadata
from .quantize_checks import calibration_fingerprint, load_calibration_npy, source_metadata
from .trt_calib_cache import parse_trt_version

# Ops kept in FP32 by default: softmax and the reductions around attention/pooling, L2 norms.
# (BatchNorm statistics are folded into the convolutions at export, so none remain.)
FP16_KEEP_OPS = ("Softmax", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2", "LpNormalization", "Pow", "Sqrt")
QUANT_OPS = ("Conv", "MatMul", "Gemm")


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


def load_onnx(path):
    import onnx

    require_file(path, "an ONNX model")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - protobuf/onnx raise many types for bad files
        raise FertrtError(
            f"{path}: not a valid ONNX model ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    return model


def load_source(path):
    """(model, metadata) of an FP32 graph from fertrt export, both checked."""
    model = load_onnx(path)
    return model, source_metadata(model, path)


def _private_copy(model, folder) -> Path:
    """The model saved inside our private folder, for tools that write scratch files beside their input."""
    import onnx

    path = Path(folder) / "model.onnx"
    onnx.save(model, str(path))
    return path


def _finish(model, src_meta: dict, src_path, precision: str, output, extra: dict, force: bool):
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model, full_check=True)
    meta = dict(src_meta)
    meta.update({"precision": precision, "derived_from_sha256": sha256_file(src_path), **extra})
    set_metadata(model, meta)
    output = Path(output)
    with atomic_path(output, overwrite=force or not output.exists(), inputs=(src_path,), option="-o/--output") as tmp:
        onnx.save(model, str(tmp))
    return output


def quantize_fp16(src, output, keep_ops=FP16_KEEP_OPS, keep_nodes=(), force=False, log=print, trt_version=None) -> Path:
    """FP16 weights and activations, FP32 I/O, by ModelOpt's AutoCast (export/fp16.py). With `trt_version`, the
    graph is one that TensorRT's ONNX parser takes (fit_for_trt), or FertrtError says why not."""
    from .fp16 import convert_to_fp16
    from .modelopt_int8 import require_modelopt

    model, meta = load_source(src)
    output = check_output(output, overwrite=force, inputs=(src,), option="-o/--output")
    names = {n.name for n in model.graph.node}
    unknown = [k for k in keep_nodes if k not in names]
    if unknown:
        raise FertrtError(f"--exclude {', '.join(unknown)}: no node of that name in {src}")
    require_modelopt("--precision fp16 (ModelOpt's AutoCast)")
    with output_lock(output, "quantized model"):
        with private_tempdir("fertrt-fp16-") as tmp:
            try:
                converted = convert_to_fp16(_private_copy(model, tmp), keep_ops=keep_ops, keep_nodes=keep_nodes)
            except Exception as exc:  # noqa: BLE001 - AutoCast raises assorted types on graphs it cannot type
                raise FertrtError(
                    f"{src}: ModelOpt's AutoCast could not convert it to FP16 ({exc.__class__.__name__}: "
                    f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
                ) from exc
        extra = {"fp16": {"keep_fp32_ops": list(keep_ops), "keep_fp32_nodes": list(keep_nodes)}}
        if trt_version:
            converted = fit_for_trt(converted, trt_version, output, log=log)
            extra["trt_parser"] = trt_parser_meta(trt_version)
        out = _finish(converted, meta, src, "fp16", output, extra, force)
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
        return load_calibration_npy(calib, want, size)
    from fertrt.train.data import load_data

    data = load_data(calib, image_size=pre.input_size[0], seed=seed, splits=("train",))
    split = data.split("train")
    if len(split) == 0:
        raise FertrtError(f"calibration data {calib!r}: the training split is empty")
    if size > len(split):
        import sys

        print(
            f"warning: --calib-size {size}: calibration data {calib!r} has only {len(split)} training images; "
            "calibrating on all of them",
            file=sys.stderr,
        )
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

        # equal batches: ONNX Runtime's histogram collector cannot stack a shorter last batch (40 images by 32)
        batch = max(d for d in range(1, min(batch, len(x)) + 1) if len(x) % d == 0)
        self.x, self.name, self.batch = x, input_name, batch
        self.i = 0
        self.bar = tqdm(total=len(x), desc=desc, unit="img", leave=False, dynamic_ncols=True, disable=None)

    def get_next(self):
        if self.i >= len(self.x):
            self.bar.close()
            return None
        chunk = self.x[self.i : self.i + self.batch]
        self.i += len(chunk)
        self.bar.update(len(chunk))
        return {self.name: chunk}

    def __len__(self):
        return -(-len(self.x) // self.batch)

    def set_range(self, start_index, end_index):  # the interface asks for it; strided calibration is not used
        self.i = start_index


@dataclass(frozen=True)
class Int8Options:
    """How an INT8 model is calibrated and laid out: `fertrt quantize`'s options, and what build-engine, pack and the
    demo quantize with. Checked when made (from the command line or in Python), with errors that name the option."""

    calib: str = ""
    calib_size: int = 512
    method: str = "entropy"
    percentile: float = 99.99
    exclude: tuple = ()  # node names or op types kept in higher precision
    quantize_add: bool = False  # onnxruntime target: Q/DQ on residual Adds too
    keep_classifier: bool = False
    seed: int = 0
    cache_dir: Path | None = None
    trt_cache: str | None = None  # path of the TensorRT calibration cache to write (default: OUTPUT.calib.cache)
    trt_version: str | int | None = None  # TensorRT that reads the calibration cache; None: the installed one
    target: str = "tensorrt"  # the backend the Q/DQ layout is for: tensorrt (ModelOpt) or onnxruntime (quantize_static)
    fp32_rest: bool = False  # tensorrt target: keep what is not quantized in FP32 (default FP16)
    scales_from: str | None = None  # tensorrt target: take activation scales from this TensorRT calibration cache

    def __post_init__(self):
        CALIB_SIZE.check(self.calib_size, "--calib-size")
        check_choice(self.method, CALIB_METHODS, "--calib-method")
        CALIB_PERCENTILE.check(self.percentile, "--percentile")
        CALIB_SEED.check(self.seed, "--seed")
        check_choice(self.target, QUANTIZE_TARGETS, "--target")
        if self.trt_version is not None:
            parse_trt_version(self.trt_version)
        if self.target == "tensorrt" and self.quantize_add:
            raise FertrtError(
                "--quantize-add is for --target onnxruntime; the tensorrt layout already puts Q/DQ on the "
                "residual input of Conv->Add (NVIDIA's placement rules)"
            )
        if self.scales_from and self.target != "tensorrt":
            raise FertrtError("--calib-cache (scales from a TensorRT calibration cache) needs --target tensorrt")


def calibration_key(
    model_sha: str,
    calib: str,
    method: str,
    size: int,
    percentile: float,
    seed: int,
    calib_sha: str | None = None,
    tensors=None,
) -> str:
    blob = json.dumps(
        [
            model_sha,
            calib,
            calib_sha,
            method,
            size,
            percentile if method == "percentile" else None,
            seed,
            sorted(tensors) if tensors else None,
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _ort_method(method):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def _split_exclude(model, opts: Int8Options) -> tuple[list[str], list[str]]:
    """--exclude entries -> (op types, node names); FertrtError on names that are neither."""
    op_types = {n.op_type for n in model.graph.node}
    names = {n.name for n in model.graph.node}
    unknown = [e for e in opts.exclude if e not in names and e not in op_types]
    if unknown:
        raise FertrtError(f"--exclude {', '.join(unknown)}: no node or op type of that name in the model")
    return [e for e in opts.exclude if e in op_types and e not in names], [e for e in opts.exclude if e in names]


def classifier_nodes(model) -> list[str]:
    """The Gemm/MatMul nodes that write a graph output (the classifier head)."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if n.op_type in ("Gemm", "MatMul") and set(n.output) & outputs]


def quantizable_nodes(model, opts: Int8Options) -> tuple[list[str], list[str]]:
    """(op types to quantize, node names to exclude) from the options."""
    ops = list(QUANT_OPS) + (["Add"] if opts.quantize_add else [])
    excl_ops, excl_names = _split_exclude(model, opts)
    exclude = [n.name for n in model.graph.node if n.name in excl_names or n.op_type in excl_ops]
    if opts.keep_classifier:
        exclude += [n for n in classifier_nodes(model) if n not in exclude]
    return ops, exclude


def calibrated_op_types(opts: Int8Options) -> list[str]:
    """Op types whose tensors the calibration covers: those the target's quantizer may place Q/DQ on."""
    if opts.target == "tensorrt":
        from .modelopt_int8 import MODELOPT_INT8_OPS

        return list(MODELOPT_INT8_OPS)
    return list(QUANT_OPS) + (["Add"] if opts.quantize_add else [])


def calibrate(src, model, meta, opts: Int8Options, log=print) -> Path:
    """Compute (or reuse) calibration ranges; returns onnxruntime's JSON range cache file."""
    from onnxruntime.quantization import create_calibrator
    from onnxruntime.quantization.calibrate import save_tensors_data

    if not opts.calib:
        raise FertrtError("INT8 needs calibration data: --calib-data SPEC (e.g. synth) or a preprocessed .npy array")
    ops = calibrated_op_types(opts)
    key = calibration_key(
        sha256_file(src),
        opts.calib,
        opts.method,
        opts.calib_size,
        opts.percentile,
        opts.seed,
        calibration_fingerprint(opts.calib),
        tensors=ops,
    )
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else fileio.cache_dir("calibration")
    cache = cache_dir / f"{key}.json"
    if cache.is_file():
        read_ranges(cache)  # a damaged cache is an error naming it, not a crash inside the quantizer
        log(f"calibration cache hit: {cache}")
        return cache
    x = calibration_array(opts.calib, meta, opts.calib_size, opts.seed, log=log)
    t0 = time.perf_counter()
    extra = {"symmetric": True}
    if opts.method == "percentile":
        extra["percentile"] = opts.percentile
    with private_tempdir("fertrt-calib-") as tmp:
        calibrator = create_calibrator(
            _private_copy(model, tmp),
            ops,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=_ort_method(opts.method),
            extra_options=extra,
        )
        with _quiet_ort():
            calibrator.collect_data(_Reader(x, model.graph.input[0].name, desc=f"calibrating ({opts.method})"))
            ranges = calibrator.compute_data()
        del calibrator
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FertrtError(f"--cache-dir {cache_dir}: cannot create it ({exc.strerror or exc})") from exc
    with atomic_path(cache) as tmp:
        save_tensors_data(ranges, tmp)
    log(f"calibrated {len(x)} images with {opts.method} in {time.perf_counter() - t0:.1f}s; ranges cached in {cache}")
    return cache


def read_ranges(cache_path) -> dict[str, float]:
    """Calibration cache -> {tensor name: amax} (symmetric absolute range); FertrtError naming a damaged file."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    try:
        data = load_tensors_data(cache_path)
        out = {}
        for name, td in data.data.items():
            lo, hi = td.range_value
            out[name] = float(max(abs(float(np.asarray(lo).max())), abs(float(np.asarray(hi).max()))))
    except Exception as exc:  # noqa: BLE001 - json, KeyError, TypeError, ValueError from a damaged file
        raise FertrtError(
            f"{cache_path}: damaged calibration range cache ({exc.__class__.__name__}: {str(exc)[:100]}); "
            "delete it and fertrt calibrates again"
        ) from exc
    bad = [n for n, v in out.items() if not np.isfinite(v)]
    if not out or bad:
        raise FertrtError(
            f"{cache_path}: damaged calibration range cache ({'no ranges' if not out else 'non-finite range for ' + bad[0]}); "
            "delete it and fertrt calibrates again"
        )
    return out


def ranges_from_trt_cache(path) -> dict[str, float]:
    """{tensor: amax} from a TensorRT text calibration cache (scale = amax / 127)."""
    from .trt_calib_cache import parse_trt_calibration_cache

    require_file(path, "a TensorRT calibration cache")
    try:
        text = Path(path).read_text(encoding="utf-8")
        _, scales = parse_trt_calibration_cache(text)
    except (FertrtError, UnicodeDecodeError) as exc:
        raise FertrtError(f"--calib-cache {path}: {exc}") from exc
    bad = [n for n, s in scales.items() if not (np.isfinite(s) and s > 0)]
    if not scales or bad:
        raise FertrtError(
            f"--calib-cache {path}: {'no scales' if not scales else 'scale of ' + bad[0] + ' is not a positive number'}"
        )
    return {n: s * 127.0 for n, s in scales.items()}


def _quantize_ort(copy: Path, tmp: Path, model, opts: Int8Options, cache: Path, nodes_to_quantize):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    import onnx

    ops, exclude = quantizable_nodes(model, opts)
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    tmp_out = Path(tmp) / "int8.onnx"
    with _quiet_ort():
        quantize_static(
            str(copy),
            str(tmp_out),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=ops,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=nodes_to_quantize,
            nodes_to_exclude=exclude,
            calibrate_method=_ort_method(opts.method),
            extra_options=extra,
            calibration_cache_path=str(cache),
        )
    return onnx.load(str(tmp_out)), exclude, ops


def _modelopt_job(copy: Path, out: Path, scales: Path, model, opts: Int8Options, nodes_to_quantize=None) -> dict:
    excl_ops, excl_names = _split_exclude(model, opts)
    if opts.keep_classifier:
        excl_names += [n for n in classifier_nodes(model) if n not in excl_names]
    return {
        "src": str(copy),
        "out": str(out),
        "calib_npy": None,
        "trt_cache": str(scales),
        "nodes_to_exclude": excl_names,
        "op_types_to_exclude": excl_ops,
        "nodes_to_quantize": nodes_to_quantize,
        "high_precision": "fp32" if opts.fp32_rest else "fp16",
    }


def _write_scales(ranges: dict[str, float], path: Path) -> Path:
    """Our ranges as the TensorRT text cache ModelOpt reads its activation scales from (private copy)."""
    from .trt_calib_cache import format_trt_calibration_cache

    path.write_text(format_trt_calibration_cache(ranges, 8601))
    return path


def int8_ranges(src, model, meta, opts: Int8Options, log=print) -> tuple[dict[str, float], Path | None]:
    """({tensor: amax}, range cache file or None) from --calib-cache or from our calibration."""
    if opts.scales_from:
        ranges = ranges_from_trt_cache(opts.scales_from)
        tensors = {t for n in model.graph.node for t in list(n.input) + list(n.output)}
        if not set(ranges) & tensors:  # every scale would be ignored: the result would be a quietly uncalibrated model
            raise FertrtError(
                f"--calib-cache {opts.scales_from}: none of its {len(ranges)} tensor names is a tensor of {src}; "
                "it was written for another model (calibrate this one with --calib-data instead)"
            )
        return ranges, None
    cache = calibrate(src, model, meta, opts, log=log)
    return read_ranges(cache), cache


def quantize_int8_variants(src, variants: list[tuple[Path, list[str]]], opts: Int8Options, log=print) -> list[Path]:
    """Several INT8 models of one source, each quantizing only the listed nodes (sensitivity's per-layer
    models); calibrated once, and for the tensorrt target made by one ModelOpt process."""
    if opts.target == "onnxruntime":
        return [
            quantize_int8(src, out, opts, force=True, log=lambda *_: None, nodes_to_quantize=nodes)
            for out, nodes in variants
        ]
    import onnx

    from .modelopt_int8 import require_modelopt, run_jobs

    require_modelopt("--target tensorrt")
    model, meta = load_source(src)
    ranges, cache = int8_ranges(src, model, meta, opts, log=log)
    with private_tempdir("fertrt-q-") as tmp:
        tmp = Path(tmp)
        copy, scales = _private_copy(model, tmp), _write_scales(ranges, tmp / "scales.cache")
        jobs = [
            _modelopt_job(copy, tmp / f"v{k}.onnx", scales, model, opts, nodes) for k, (_, nodes) in enumerate(variants)
        ]
        results = run_jobs(jobs, tmp, log=log)
        outs = []
        for k, ((out, nodes), res) in enumerate(zip(variants, results)):
            if not res["ok"]:
                raise FertrtError(f"{src}: ModelOpt could not quantize {', '.join(nodes)} ({res['error']})")
            meta_extra = {
                "calibration": {"method": opts.method, "nodes_to_quantize": nodes},
                "quantize_target": opts.target,
            }
            outs.append(_finish(onnx.load(str(tmp / f"v{k}.onnx")), meta, src, "int8", out, meta_extra, True))
    return outs


def quantize_int8(src, output, opts: Int8Options, force=False, log=print, nodes_to_quantize=None) -> Path:
    """Q/DQ INT8 model from `src` laid out for opts.target; also writes TensorRT's calibration cache
    beside it (for --legacy-int8 on TensorRT 8.x), unless only some nodes are quantized."""
    import onnx

    opts = _fit_options(opts, log)
    if opts.target == "tensorrt":
        from .modelopt_int8 import require_modelopt, run_jobs

        require_modelopt("--target tensorrt")
    src = Path(src)
    model, meta = load_source(src)
    output = check_output(output, overwrite=force, inputs=(src,), option="-o/--output")
    trt_path = None
    if nodes_to_quantize is None:
        trt_path = Path(opts.trt_cache) if opts.trt_cache else Path(str(output) + ".calib.cache")
        check_output(
            trt_path,
            overwrite=force,
            inputs=(src, output) + ((opts.scales_from,) if opts.scales_from else ()),
            option="--trt-cache",
        )
    elif not opts.calib and not opts.scales_from:
        raise FertrtError("INT8 needs calibration data: --calib-data SPEC (e.g. synth) or a preprocessed .npy array")
    with output_lock(output, "quantized model"):
        t0 = time.perf_counter()
        ranges, cache = int8_ranges(src, model, meta, opts, log=log)
        with private_tempdir("fertrt-q-") as tmp:
            tmp = Path(tmp)
            copy = _private_copy(model, tmp)
            if opts.target == "onnxruntime":
                qmodel, exclude, ops = _quantize_ort(copy, tmp, model, opts, cache, nodes_to_quantize)
            else:
                job = _modelopt_job(
                    copy, tmp / "int8.onnx", _write_scales(ranges, tmp / "scales.cache"), model, opts, nodes_to_quantize
                )
                [res] = run_jobs([job], tmp, log=log)
                if not res["ok"]:
                    raise FertrtError(
                        f"{src}: ModelOpt could not quantize it ({res['error']}); --target onnxruntime still works"
                    )
                qmodel = onnx.load(str(tmp / "int8.onnx"))
                exclude, ops = job["nodes_to_exclude"] + job["op_types_to_exclude"], "ModelOpt INT8 placement"
        seconds = time.perf_counter() - t0
        n_q = sum(1 for n in qmodel.graph.node if n.op_type == "QuantizeLinear")
        calib_meta = {
            "method": opts.method,
            "size": opts.calib_size,
            "data": opts.calib,
            "seed": opts.seed,
            "percentile": opts.percentile if opts.method == "percentile" else None,
            "range_cache": str(cache) if cache else None,
            "scales_from": opts.scales_from,
            "excluded_nodes": exclude,
            "quantized_op_types": ops,
            "seconds": round(seconds, 2),
        }
        extra = {"calibration": calib_meta, "quantize_target": opts.target}
        if opts.target == "tensorrt":
            extra["int8_rest_precision"] = "fp32" if opts.fp32_rest else "fp16"
        if opts.trt_version:
            qmodel = fit_for_trt(qmodel, opts.trt_version, output, log=log)
            extra["trt_parser"] = trt_parser_meta(opts.trt_version)
        out = _finish(qmodel, meta, src, "int8", output, extra, force)
        if trt_path is not None:
            from .trt_calib_cache import write_trt_calibration_cache

            write_trt_calibration_cache(ranges, trt_path, opts.trt_version, log=log)
            log(
                f"wrote {out} (INT8 Q/DQ for {opts.target}: {n_q} quantize nodes, {len(exclude)} nodes/op types kept out) "
                f"and TensorRT calibration cache {trt_path}"
            )
    return out


# ---------------------------------------------------------------- graphs a named TensorRT parses
def _fit_options(opts: Int8Options, log=print) -> Int8Options:
    """For a TensorRT whose ONNX parser stops below opset 19 (8.5, 8.6): Q/DQ must read FP32 (FP16 Q/DQ inputs
    and scales are opset 19), so the ModelOpt layout keeps the rest of the graph in FP32; the opset is lowered
    after ModelOpt (which always writes 19) by fit_for_trt."""
    import dataclasses

    from .targets import parser_support

    if not opts.trt_version or opts.target != "tensorrt" or opts.fp32_rest:
        return opts
    if parser_support(opts.trt_version)["opset_max"] >= 19:
        return opts
    log(
        f"note: TensorRT {opts.trt_version}'s ONNX parser takes opsets up to 17, where Q/DQ read FP32 only: what is "
        "not quantized stays FP32 in this graph (--int8-fp32-rest); TensorRT can still run it in FP16 with its FP16 flag"
    )
    return dataclasses.replace(opts, fp32_rest=True)


def trt_parser_meta(trt_version) -> dict:
    """What the output metadata records about the parser it was checked against."""
    from .targets import parser_support

    sup = parser_support(trt_version)
    return {
        "tensorrt": str(trt_version),
        "table": sup["table"],
        "source_tag": sup["source_tag"],
        "opset_max": sup["opset_max"],
    }


def _ort_outputs(model, x):
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _probe_input(model) -> np.ndarray:
    """A small random batch of the model's input (symbolic dimensions as 2)."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 2 for d in dims]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def lower_opset(model, opset: int, what):
    """The same graph at a lower ai.onnx opset (onnx's version converter), checked to compute the same outputs
    on ONNX Runtime; FertrtError naming `what` when it cannot be converted or differs."""
    import onnx
    from onnx import version_converter

    from .targets import default_opset

    have = default_opset(model)
    try:
        lowered = version_converter.convert_version(model, opset)
        onnx.checker.check_model(lowered, full_check=True)
    except Exception as exc:  # noqa: BLE001 - the converter raises assorted types for ops it cannot lower
        raise FertrtError(
            f"{what}: cannot lower the graph from opset {have} to {opset} ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None
    x = _probe_input(model)
    for ref, got in zip(_ort_outputs(model, x), _ort_outputs(lowered, x)):
        ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        if ref.shape != got.shape or np.abs(ref - got).max() > 1e-4 * (1.0 + np.abs(ref).max()):
            raise FertrtError(
                f"{what}: lowering the graph from opset {have} to {opset} changed its outputs; not written"
            )
    return lowered


def fit_for_trt(model, trt_version, what, log=print):
    """The graph as TensorRT `trt_version`'s ONNX parser takes it (export/data/onnx_trt_ops.json): lowered to
    that parser's highest opset when above it, then checked; FertrtError naming `what` with every reason left."""
    from .targets import check_parseable, default_opset, parser_support

    top = parser_support(trt_version)["opset_max"]
    if default_opset(model) > top:
        log(
            f"note: TensorRT {trt_version}'s ONNX parser takes opsets up to {top}: lowering the graph from opset "
            f"{default_opset(model)} (outputs checked unchanged on ONNX Runtime)"
        )
        model = lower_opset(model, top, what)
    check_parseable(model, trt_version, what)
    return oldest_ir(model)


def oldest_ir(model):
    """The graph stamped with the oldest ONNX IR version its opsets allow. ModelOpt stamps IR 10 even on a graph
    lowered to opset 17, and the runtimes of older JetPacks refuse a newer IR than they know (ONNX Runtime 1.16,
    JetPack 5.1's, reads IR 9 at most)."""
    import onnx
    from onnx import helper

    ir = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if ir >= model.ir_version:
        return model
    restamped = onnx.ModelProto()  # a new object: callers tell "unchanged" by identity
    restamped.CopyFrom(model)
    restamped.ir_version = ir
    onnx.checker.check_model(restamped, full_check=True)
    return restamped
