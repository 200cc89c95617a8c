"""`fertrt build-engine` and `fertrt inspect-engine`."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_output, write_bytes_atomic, write_json_atomic

from .plan import BuildOptions, parse_batch


def engine_cache_dir() -> Path:
    return Path(os.environ.get("FERTRT_CACHE", Path.home() / ".cache" / "fertrt")) / "engines"


def options_from_args(args) -> BuildOptions:
    return BuildOptions(precision=args.precision, batch=parse_batch(args.batch), workspace_mib=args.workspace,
                        builder_opt_level=args.builder_opt_level, timing_cache=args.timing_cache, dla_core=args.dla_core,
                        gpu_fallback=args.gpu_fallback, version_compatible=args.version_compatible,
                        hardware_compat=args.hardware_compat, legacy_int8=args.legacy_int8, calib_data=args.calib_data,
                        calib_cache=args.calib_cache, calib_size=args.calib_size, weakly_typed=args.weakly_typed,
                        verbose=args.verbose)


def validate(onnx_path, output, opts: BuildOptions):
    """Checks that need no TensorRT, so mistakes show before a user reaches the device."""
    from .graph import graph_info

    graph, meta = graph_info(onnx_path)
    check_output(output)
    if opts.calib_cache and not Path(opts.calib_cache).is_file() and not opts.calib_data:
        raise FertrtError(f"--calib-cache {opts.calib_cache}: no such file (and no --calib-data to create it)")
    if opts.calib_cache and Path(opts.calib_cache).is_file():
        from fertrt.export.quantize import parse_trt_calibration_cache

        try:
            parse_trt_calibration_cache(Path(opts.calib_cache).read_text())
        except (UnicodeDecodeError, FertrtError) as exc:
            raise FertrtError(f"{opts.calib_cache}: {exc}") from None
    if opts.timing_cache and Path(opts.timing_cache).exists() and not Path(opts.timing_cache).is_file():
        raise FertrtError(f"--timing-cache {opts.timing_cache}: is not a file")
    if "class_names" not in meta:
        raise FertrtError(f"{onnx_path}: has no fertrt metadata (labels, preprocessing); export it with `fertrt export`")
    return graph, meta


def build(onnx_path, output, opts: BuildOptions, use_cache=True, log=print) -> dict:
    from .builder import build_engine, inspect_layers
    from .compat import capabilities_of, import_tensorrt
    from .device import gpu_info, jetson_release
    from .graph import graph_info
    from .plan import cache_key, make_plan, trtexec_command
    from .sidecar import build_sidecar, sidecar_path

    graph, meta = validate(onnx_path, output, opts)
    trt = import_tensorrt()
    caps = capabilities_of(trt)
    gpu, jetson = gpu_info(), jetson_release()
    if not gpu:
        raise FertrtError("no usable CUDA device: install pycuda or cuda-python and check the NVIDIA driver (nvidia-smi)")
    n_dla = trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores
    plan = make_plan(opts, caps, graph, n_dla)
    plan.verbose = opts.verbose
    build_from = Path(onnx_path)
    if plan.prequantize:
        from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8

        build_from = Path(output).with_suffix(f".{plan.prequantize}.onnx")
        if plan.prequantize == "fp16":
            quantize_fp16(onnx_path, build_from, force=True, log=log)
        else:
            quantize_int8(onnx_path, build_from, Int8Options(calib=opts.calib_data, calib_size=opts.calib_size), force=True, log=log)
        graph, meta = graph_info(build_from)
        plan = make_plan(opts, caps, graph, n_dla)
        plan.prequantize = None
    for note in plan.notes:
        log(f"note: {note}")
    key = cache_key(graph, caps, gpu, plan, opts)
    cached = engine_cache_dir() / f"{key}.engine"
    trtexec = trtexec_command(str(build_from), str(output), plan)
    if use_cache and cached.is_file() and sidecar_path(cached).is_file():
        with atomic_path(output) as tmp:
            shutil.copyfile(cached, tmp)
        with atomic_path(sidecar_path(output)) as tmp:
            shutil.copyfile(sidecar_path(cached), tmp)
        log(f"engine cache hit ({cached}); wrote {output}")
        return json.loads(sidecar_path(output).read_text())
    calib_batches = None
    if plan.calibrator and plan.calibrator.get("data"):
        from fertrt.export.quantize import calibration_array

        calib_batches = calibration_array(plan.calibrator["data"], meta, plan.calibrator["size"], log=log)
    data, facts = build_engine(build_from, plan, calib_batches, log=log)
    write_bytes_atomic(output, data)
    layers = inspect_layers(data) if caps.inspector else None
    io = {"input": {"name": graph.input_name, "shape": list(graph.input_shape)},
          "outputs": ["logits"] + list(meta.get("explain_outputs", []))}
    sidecar = build_sidecar(trt_version=caps.version, gpu=gpu, jetson=jetson, onnx_path=build_from, onnx_sha256=graph.sha256,
                            meta=meta, plan=plan, opts=opts, io=io, build=facts, layers=layers, trtexec=trtexec, cache_key=key)
    write_json_atomic(sidecar_path(output), sidecar)
    log(f"[serialize] wrote {output} ({len(data) / 1e6:.1f} MB) and {sidecar_path(output).name}")
    if use_cache:
        engine_cache_dir().mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cached, data)
        write_json_atomic(sidecar_path(cached), sidecar)
    log(f"equivalent trtexec command:\n  {trtexec}")
    return sidecar


def cmd_build_engine(args):
    opts = options_from_args(args)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        graph, _ = validate(args.onnx, args.output, opts)  # still check the arguments and the file first
        from .compat import INSTALL_HELP

        raise FertrtError(f"{args.onnx} is a valid {graph.precision.upper()} model for an engine, but: {INSTALL_HELP}") from None
    build(args.onnx, args.output, opts, use_cache=not args.no_cache)
    return 0


def cmd_inspect_engine(args):
    from .device import gpu_info
    from .sidecar import compatibility_problems, read_sidecar

    side = read_sidecar(args.engine)
    print(f"engine      {args.engine}")
    print(f"model       {side.get('model_name')}  classes {', '.join(side.get('class_names') or [])}")
    print(f"built with  TensorRT {side.get('tensorrt_version')} on {side.get('gpu', {}).get('name')} "
          f"(cc {side.get('gpu', {}).get('compute_capability')})" + (f", L4T {side['jetson']['l4t']}" if side.get("jetson") else ""))
    prec = side.get("precision", {})
    print(f"precision   requested {prec.get('requested')}, graph {prec.get('graph')}, strongly typed {prec.get('strongly_typed')}, "
          f"flags {prec.get('builder_flags')}; layers by precision {prec.get('layer_precisions')}")
    print(f"profile     {side.get('profile')}")
    print(f"source      {side.get('source_onnx')} (sha256 {str(side.get('source_onnx_sha256'))[:16]}...)")
    print(f"trtexec     {side.get('trtexec')}")
    try:
        import tensorrt as trt

        version = trt.__version__
    except ImportError:
        version = None
    problems = compatibility_problems(side, version, gpu_info() if version else {})
    if problems:
        print("can run here: no; " + "; ".join(problems))
    else:
        print("can run here: yes")
    layers = side.get("layers")
    if version and not problems:
        from .builder import inspect_layers

        layers = inspect_layers(Path(args.engine).read_bytes()) or layers
    if layers:
        print(f"{'layer':<60} {'type':<18} {'precision':<24} tactic")
        for l in layers:
            print(f"{str(l.get('name'))[:60]:<60} {str(l.get('type')):<18} {str(l.get('precision')):<24} {l.get('tactic')}")
    if args.json:
        write_json_atomic(args.json, {"sidecar": side, "layers": layers, "can_run_here": not problems, "problems": problems})
    return 0 if not problems else 1
