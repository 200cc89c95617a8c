"""`fertrt build-engine` and `fertrt inspect-engine`: argparse values in, calls to engine/build.py, lines out."""

from __future__ import annotations

from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import check_output, write_json_atomic

from .plan import BuildOptions, parse_batch


def options_from_args(args) -> BuildOptions:
    """Command-line values -> BuildOptions (which checks every range itself, naming the option)."""
    return BuildOptions(
        precision=args.precision or "fp32",
        batch=parse_batch(args.batch_profile),
        workspace_mib=args.workspace,
        builder_opt_level=args.builder_opt_level,
        timing_cache=args.timing_cache,
        dla_core=args.dla_core,
        gpu_fallback=args.gpu_fallback,
        version_compatible=args.version_compatible,
        hardware_compat=args.hardware_compat,
        legacy_int8=args.legacy_int8,
        calib_data=args.calib_data,
        calib_cache=args.calib_cache,
        calib_size=args.calib_size,
        weakly_typed=args.weakly_typed,
        verbose=args.verbose,
    )


def cmd_build_engine(args):
    from fertrt.runtime.deploy import is_deploy_dir

    from .build import build_file, build_folder

    force = getattr(args, "force", False)
    if is_deploy_dir(args.onnx):
        if args.output:
            raise FertrtError(f"-o {args.output}: not with a folder; the engines are written into {args.onnx}")
        build_folder(
            args.onnx, options_from_args(args), precision=args.precision, force=force, use_cache=not args.no_cache
        )
        return 0
    if not args.output:
        raise FertrtError(
            "-o/--output is required (the .engine file to write), unless the input is a folder from `fertrt pack`"
        )
    build_file(args.onnx, args.output, options_from_args(args), force=force, use_cache=not args.no_cache)
    return 0


def cmd_inspect_engine(args):
    from fertrt.fileio import require_file
    from fertrt.text import safe, safe_list

    from .device import gpu_info
    from .sidecar import compatibility_problems, read_sidecar

    engine = require_file(args.engine, "a TensorRT engine written by `fertrt build-engine`")
    if engine.stat().st_size == 0:
        raise FertrtError(f"{engine}: is empty (0 bytes); expected a TensorRT engine written by `fertrt build-engine`")
    if (
        args.json
    ):  # before printing anything: the engine, its sidecar, a device node or an existing file (without --force)
        from .sidecar import sidecar_path

        check_output(
            args.json, overwrite=getattr(args, "force", False), inputs=(engine, sidecar_path(engine)), option="--json"
        )
    side = read_sidecar(args.engine)
    gpu = side["gpu"]
    print(f"engine      {safe(args.engine)}")
    print(f"model       {safe(side.get('model_name'))}  classes {safe_list(side['class_names'])}")
    print(
        f"built with  TensorRT {safe(side['tensorrt_version'])} on {safe(gpu.get('name'))} "
        f"(cc {safe(gpu.get('compute_capability'))})"
        + (f", L4T {safe(side['jetson'].get('l4t'))}" if side.get("jetson") else "")
    )
    prec = side["precision"]
    print(
        f"precision   requested {safe(prec.get('requested'))}, graph {safe(prec.get('graph'))}, strongly typed {safe(prec.get('strongly_typed'))}, "
        f"flags {safe(prec.get('builder_flags'))}; layers by precision {safe(prec.get('layer_precisions'))}"
    )
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

        layers = (
            inspect_layers(
                Path(args.engine).read_bytes(), version_compatible=bool(side["build_options"].get("version_compatible"))
            )
            or layers
        )
    if layers:
        print(f"{'layer':<60} {'type':<18} {'precision':<24} tactic")
        for l in layers:
            print(
                f"{safe(str(l.get('name'))[:60]):<60} {safe(l.get('type')):<18} {safe(l.get('precision')):<24} {safe(l.get('tactic'))}"
            )
    if args.json:
        summary = {"sidecar": side, "layers": layers, "can_run_here": not problems, "problems": problems}
        write_json_atomic(
            args.json, summary, overwrite=getattr(args, "force", False), inputs=(engine,), option="--json"
        )
    return 0 if not problems else 1
