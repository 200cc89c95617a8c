"""Handlers of `fertrt export` and `fertrt quantize`."""

from __future__ import annotations

from pathlib import Path

from fertrt.errors import FertrtError


def cmd_export(args):
    from .onnx_export import ExportOptions, export_checkpoint

    opts = ExportOptions(
        opset=args.opset,
        batch=args.static_batch,
        simplify=not args.no_simplify,
        explain=args.explain,
        verify=not args.no_verify,
        verify_samples=args.verify_samples,
        atol=args.atol,
        force=args.force,
    )
    export_checkpoint(args.checkpoint, args.output, opts)
    return 0


def cmd_quantize(args):
    from .quantize import FP16_KEEP_OPS, quantize_fp16, quantize_int8

    if args.sensitivity:
        from .sensitivity import run_sensitivity

        opts = _int8_opts(args)
        if args.output:
            from fertrt.fileio import check_output

            check_output(args.output, overwrite=args.force, inputs=(args.model,), option="-o/--output")
        run_sensitivity(
            args.model,
            opts,
            eval_data=args.eval_data,
            eval_size=args.eval_size,
            max_drop=args.max_drop,
            report_path=args.output,
            force=args.force,
        )
        return 0
    if not args.output:
        raise FertrtError("-o/--output is required (the quantized ONNX file to write)")
    if args.precision == "fp16":
        keep = FP16_KEEP_OPS if args.keep_fp32 is None else _op_types(args.keep_fp32)
        quantize_fp16(args.model, args.output, keep_ops=keep, keep_nodes=tuple(args.exclude), force=args.force)
    else:
        quantize_int8(args.model, args.output, _int8_opts(args), force=args.force)
    return 0


def _op_types(text: str) -> tuple:
    """--keep-fp32 'Softmax,ReduceMean' -> its ONNX op types; an empty item or an unknown op type is an error
    (dropping it silently would drop the default list too)."""
    import onnx

    ops = tuple(x.strip() for x in text.split(","))
    if not all(ops):
        raise FertrtError(
            f"--keep-fp32 {text!r}: an empty item; expected comma-separated ONNX op types, e.g. Softmax,ReduceMean"
        )
    unknown = [op for op in ops if not onnx.defs.has(op)]
    if unknown:
        raise FertrtError(
            f"--keep-fp32 {text!r}: {', '.join(unknown)} is not an ONNX op type (names are case-sensitive, "
            "e.g. Softmax, ReduceMean)"
        )
    return ops


def _int8_opts(args):
    from .quantize import Int8Options

    return Int8Options(
        calib=args.calib_data or "",
        calib_size=args.calib_size,
        method=args.calib_method,
        percentile=args.percentile,
        exclude=tuple(args.exclude),
        quantize_add=args.quantize_add,
        keep_classifier=args.keep_classifier,
        seed=args.seed,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        trt_cache=args.trt_cache,
        trt_version=args.trt_version,
        target=args.target,
        fp32_rest=args.int8_fp32_rest,
        scales_from=args.calib_cache,
    )
