"""`fertrt build-engine` and `fertrt inspect-engine`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, cache_dir, check_output, write_bytes_atomic, write_json_atomic

from .plan import BuildOptions, parse_batch


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def options_from_args(args) -> BuildOptions:
    """Command-line values -> BuildOptions, with every number range-checked before anything runs."""
    if args.workspace is not None and args.workspace <= 0:
        raise FertrtError(f"--workspace {args.workspace}: expected a positive number of MiB")
    if args.builder_opt_level is not None and not 0 <= args.builder_opt_level <= 5:
        raise FertrtError(f"--builder-opt-level {args.builder_opt_level}: expected 0..5")
    if args.dla_core is not None and args.dla_core < 0:
        raise FertrtError(f"--dla-core {args.dla_core}: expected a DLA core number >= 0")
    if args.calib_size is not None and args.calib_size < 1:
        raise FertrtError(f"--calib-size {args.calib_size}: expected at least 1 image")
    return BuildOptions(precision=args.precision or "fp32", batch=parse_batch(args.batch), workspace_mib=args.workspace,
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
    from .sidecar import sidecar_path

    for option, path in (("-o", output), ("-o (its .json sidecar)", sidecar_path(output)), ("--timing-cache", opts.timing_cache),
                         ("--calib-cache", opts.calib_cache)):
        if path and _same_file(path, onnx_path):
            raise FertrtError(f"{option} {path}: is the input ONNX itself; choose another file (the input is never overwritten)")
    if opts.timing_cache and opts.calib_cache and _same_file(opts.timing_cache, opts.calib_cache):
        raise FertrtError(f"--timing-cache and --calib-cache are the same file {opts.timing_cache}; they hold different things")
    for option, path in (("--timing-cache", opts.timing_cache), ("--calib-cache", opts.calib_cache)):
        if path and _same_file(path, output):
            raise FertrtError(f"{option} {path}: is the engine output (-o) itself; choose another file")
    if opts.calib_cache and not Path(opts.calib_cache).is_file() and not opts.calib_data:
        raise FertrtError(f"--calib-cache {opts.calib_cache}: no such file (and no --calib-data to create it)")
    if opts.calib_cache and Path(opts.calib_cache).is_file():
        from fertrt.export.trt_calib_cache import parse_trt_calibration_cache

        try:
            parse_trt_calibration_cache(Path(opts.calib_cache).read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, FertrtError) as exc:
            raise FertrtError(f"--calib-cache {opts.calib_cache}: {exc}") from None
    if opts.timing_cache and Path(opts.timing_cache).exists() and not Path(opts.timing_cache).is_file():
        raise FertrtError(f"--timing-cache {opts.timing_cache}: is not a file")
    if "class_names" not in meta:
        raise FertrtError(f"{onnx_path}: has no fertrt metadata (labels, preprocessing); export it with `fertrt export`")
    from fertrt.export.targets import target_mismatch

    if target_mismatch(meta, "tensorrt"):  # an INT8 graph laid out for ONNX Runtime: builds, but not TensorRT's layout
        import sys

        print(f"warning: {onnx_path}: {target_mismatch(meta, 'tensorrt')}", file=sys.stderr)
    return graph, meta


def build(onnx_path, output, opts: BuildOptions, use_cache=True, log=print) -> dict:
    from .builder import build_engine, inspect_layers
    from .compat import capabilities_of, import_tensorrt, require_supported
    from .device import gpu_info, jetson_release
    from .graph import graph_info
    from .plan import cache_key, make_plan, trtexec_command
    from .sidecar import build_sidecar, sidecar_path

    graph, meta = validate(onnx_path, output, opts)
    trt = import_tensorrt()
    caps = require_supported(capabilities_of(trt))
    if opts.legacy_int8 and opts.calib_cache and Path(opts.calib_cache).is_file():
        note = check_calib_cache_version(opts.calib_cache, caps.version, has_data=bool(opts.calib_data))
        if note:
            log(f"note: {note}")
    gpu, jetson = gpu_info(), jetson_release()
    if not gpu:
        raise FertrtError("no usable CUDA device: install pycuda or cuda-python and check the NVIDIA driver (nvidia-smi)")
    n_dla = dla_core_count(trt)
    plan = make_plan(opts, caps, graph, n_dla, gpu=gpu)
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
        plan = make_plan(opts, caps, graph, n_dla, gpu=gpu)
        plan.prequantize = None
    for note in plan.notes:
        log(f"note: {note}")
    key = cache_key(graph, caps, gpu, plan, opts)
    cached = cache_dir("engines") / f"{key}.engine"
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
    layers = inspect_layers(data, version_compatible=opts.version_compatible, log=log) if caps.inspector else None
    if plan.dla_core is not None:
        from .builder import dla_layer_count

        on_dla = dla_layer_count(layers)
        facts["dla_layers"] = on_dla
        log(f"[dla] layers on DLA core {plan.dla_core}: {'unknown (no inspector detail)' if on_dla is None else on_dla}"
            + (" - every layer fell back to the GPU" if on_dla == 0 else ""))
    io = {"input": {"name": graph.input_name, "shape": list(graph.input_shape)},
          "outputs": list(graph.output_names)}
    sidecar = build_sidecar(trt_version=caps.version, gpu=gpu, jetson=jetson, onnx_path=build_from, onnx_sha256=graph.sha256,
                            meta=meta, plan=plan, opts=opts, io=io, build=facts, layers=layers, trtexec=trtexec, cache_key=key)
    write_json_atomic(sidecar_path(output), sidecar)
    log(f"[serialize] wrote {output} ({len(data) / 1e6:.1f} MB) and {sidecar_path(output).name}")
    if use_cache:
        cache_dir("engines").mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cached, data)
        write_json_atomic(sidecar_path(cached), sidecar)
    log(f"equivalent trtexec command:\n  {trtexec}")
    return sidecar


def dla_core_count(trt) -> int:
    """Builder.num_DLA_cores with the process's one TensorRT logger; a Builder that cannot be created says so."""
    from fertrt.runtime.trt_backend import trt_logger

    builder = trt.Builder(trt_logger(trt))
    if builder is None:
        raise FertrtError("TensorRT could not create a Builder (is the GPU usable? check nvidia-smi)")
    return builder.num_DLA_cores


def check_calib_cache_version(path, trt_version: str, has_data: bool) -> str | None:
    """Compare a TensorRT calibration cache's header with the installed TensorRT. TensorRT ignores a cache
    whose header names another version and calibrates again, which needs images: without --calib-data
    that is an error here, with it a note. -> the note, or None when the header matches."""
    from fertrt.export.trt_calib_cache import parse_trt_calibration_cache, trt_version_tag

    header, _ = parse_trt_calibration_cache(Path(path).read_bytes().decode("utf-8", errors="replace"))
    tag = header.split("-")[1] if header.count("-") >= 2 else "?"
    want = str(trt_version_tag(trt_version))
    if tag == want:
        return None
    what = (f"--calib-cache {path}: its header {header!r} is for TensorRT tag {tag}, this TensorRT {trt_version} expects "
            f"TRT-{want}-...; TensorRT ignores such a cache and calibrates again")
    if not has_data:
        raise FertrtError(f"{what}, which needs --calib-data SPEC. Rewrite the cache for this version: "
                          f"`fertrt quantize MODEL.onnx --precision int8 --calib-data SPEC --trt-version {trt_version}`")
    return f"{what} from --calib-data (and rewrites the cache)"


def cmd_build_engine(args):
    from fertrt.runtime.deploy import is_deploy_dir

    if is_deploy_dir(args.onnx):
        return build_folder_engines(args)
    if not args.output:
        raise FertrtError("-o/--output is required (the .engine file to write), unless the input is a folder from "
                          "`fertrt pack`")
    from .sidecar import sidecar_path

    for option, path in (("-o", args.output), ("-o (its .json sidecar)", sidecar_path(args.output))):
        check_output(path, overwrite=getattr(args, "force", False), inputs=(args.onnx,), option=option)
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
    from fertrt.fileio import require_file
    from fertrt.text import safe, safe_list

    from .device import gpu_info
    from .sidecar import compatibility_problems, read_sidecar

    engine = require_file(args.engine, "a TensorRT engine written by `fertrt build-engine`")
    if engine.stat().st_size == 0:
        raise FertrtError(f"{engine}: is empty (0 bytes); expected a TensorRT engine written by `fertrt build-engine`")
    if args.json:  # before printing anything: the engine, its sidecar, a device node or an existing file (without --force)
        from .sidecar import sidecar_path

        check_output(args.json, overwrite=getattr(args, "force", False), inputs=(engine, sidecar_path(engine)), option="--json")
    side = read_sidecar(args.engine)
    gpu = side["gpu"]
    print(f"engine      {safe(args.engine)}")
    print(f"model       {safe(side.get('model_name'))}  classes {safe_list(side['class_names'])}")
    print(f"built with  TensorRT {safe(side['tensorrt_version'])} on {safe(gpu.get('name'))} "
          f"(cc {safe(gpu.get('compute_capability'))})" + (f", L4T {safe(side['jetson'].get('l4t'))}" if side.get("jetson") else ""))
    prec = side["precision"]
    print(f"precision   requested {safe(prec.get('requested'))}, graph {safe(prec.get('graph'))}, strongly typed {safe(prec.get('strongly_typed'))}, "
          f"flags {safe(prec.get('builder_flags'))}; layers by precision {safe(prec.get('layer_precisions'))}")
    print(f"profile     {safe(side.get('profile'))}")
    print(f"source      {safe(side.get('source_onnx'))} (sha256 {safe(str(side.get('source_onnx_sha256'))[:16])}...)")
    print(f"trtexec     {safe(side.get('trtexec'))}")
    try:
        import tensorrt as trt

        version = trt.__version__
    except ImportError:
        version = None
    problems = compatibility_problems(side, version, gpu_info() if version else {})
    if problems:
        print("can run here: no; " + safe("; ".join(problems)))
    else:
        print("can run here: yes")
    layers = side.get("layers")
    if version and not problems:
        from .builder import inspect_layers

        layers = inspect_layers(Path(args.engine).read_bytes(), version_compatible=bool(side["build_options"].get("version_compatible"))) or layers
    if layers:
        print(f"{'layer':<60} {'type':<18} {'precision':<24} tactic")
        for l in layers:
            print(f"{safe(str(l.get('name'))[:60]):<60} {safe(l.get('type')):<18} {safe(l.get('precision')):<24} {safe(l.get('tactic'))}")
    if args.json:
        summary = {"sidecar": side, "layers": layers, "can_run_here": not problems, "problems": problems}
        write_json_atomic(args.json, summary, overwrite=getattr(args, "force", False), inputs=(engine,), option="--json")
    return 0 if not problems else 1


def _engine_files(manifest: dict) -> set:
    """The engines and sidecars an earlier build-engine recorded (rebuilt in place)."""
    return {e.get(k) for e in manifest.get("engines", {}).values() for k in ("engine", "sidecar")}


def build_folder_engines(args, log=print):
    """`build-engine DIR`: after checking the folder against its manifest, an engine per precision it holds (or
    --precision), written into it with its sidecar, one timing cache for all, each recorded in the manifest."""
    import copy

    from fertrt.runtime.deploy import PRECISIONS, TIMING_CACHE, engine_name, onnx_name, open_folder, record_engine

    from .sidecar import sidecar_path

    folder = Path(args.onnx)
    if args.output:
        raise FertrtError(f"-o {args.output}: not with a folder; the engines are written into {folder}")
    manifest = open_folder(folder)
    # the folder is this command's output too: of its files, only what pack wrote stays protected as an input
    from fertrt.fileio import clear_protected_inputs, protect_inputs

    clear_protected_inputs()
    protect_inputs([folder / name for name in manifest["files"] if name not in _engine_files(manifest)])
    if args.precision == "best":
        raise FertrtError("--precision best: not with a folder; it holds one graph per precision (fp32, fp16, int8)")
    wanted = [args.precision] if args.precision else [p for p in PRECISIONS if onnx_name(p) in manifest["files"]]
    missing = [p for p in wanted if onnx_name(p) not in manifest["files"]]
    if missing:
        packed = ", ".join(sorted(manifest["files"]))
        raise FertrtError(f"{folder}: holds no {onnx_name(missing[0])} (packed: {packed})")
    jobs = []
    for precision in wanted:
        one = copy.copy(args)
        one.precision = precision
        one.timing_cache = args.timing_cache or str(folder / TIMING_CACHE)
        jobs.append((precision, folder / onnx_name(precision), folder / engine_name(precision), options_from_args(one)))
    for _, _, out, _ in jobs:
        for path in (out, sidecar_path(out)):
            if path.exists() and not getattr(args, "force", False):
                raise FertrtError(f"{path}: exists (pass --force to rebuild the folder's engines)")
    try:
        import tensorrt
    except ImportError:
        for _, src, out, opts in jobs:
            validate(src, out, opts)
        from .compat import INSTALL_HELP

        raise FertrtError(f"{folder} matches its manifest and its {', '.join(wanted)} models are valid for engines, "
                          f"but: {INSTALL_HELP}") from None
    want = str(manifest["tensorrt"].get("version", ""))
    if want.split(".")[:2] != str(tensorrt.__version__).split(".")[:2]:
        log(f"warning: {folder} was packed for TensorRT {want}; this is TensorRT {tensorrt.__version__}: its graphs "
            f"and calibration cache were fitted to {want} (pack it again with --trt-version {tensorrt.__version__})")
    for precision, src, out, opts in jobs:
        side = build(src, out, opts, use_cache=not args.no_cache, log=log)
        record_engine(folder, precision, out, sidecar_path(out), {"tensorrt_version": side.get("tensorrt_version"),
                                                                  "source": onnx_name(precision)})
        log(f"recorded {out.name} in {folder / 'manifest.json'}")
    return 0
