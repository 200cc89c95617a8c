"""Building engines: the checks that need no TensorRT, the build (quantizing an FP32 graph first where the plan
says so), the engine cache and the sidecar; and the engines of a `fertrt pack` folder. `fertrt build-engine`
(engine/commands.py) only turns its arguments into these calls."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, cache_dir, check_output, write_bytes_atomic, write_json_atomic

from .plan import BuildOptions


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


# ---------------------------------------------------------------- checks before TensorRT
def validate(onnx_path, output, opts: BuildOptions):
    """Checks that need no TensorRT, so mistakes show before a user reaches the device. -> (GraphInfo, metadata)"""
    from fertrt.export.targets import target_mismatch

    from .graph import graph_info

    graph, meta = graph_info(onnx_path)
    check_output(output)
    _check_distinct_files(onnx_path, output, opts)
    _check_caches(opts)
    if "class_names" not in meta:
        raise FertrtError(
            f"{onnx_path}: has no fertrt metadata (labels, preprocessing); export it with `fertrt export`"
        )
    if target_mismatch(meta, "tensorrt"):  # an INT8 graph laid out for ONNX Runtime: builds, but not TensorRT's layout
        import sys

        print(f"warning: {onnx_path}: {target_mismatch(meta, 'tensorrt')}", file=sys.stderr)
    return graph, meta


def _check_distinct_files(onnx_path, output, opts: BuildOptions):
    """The input, the engine, its sidecar and the two caches are five different files."""
    from .sidecar import sidecar_path

    for option, path in (
        ("-o", output),
        ("-o (its .json sidecar)", sidecar_path(output)),
        ("--timing-cache", opts.timing_cache),
        ("--calib-cache", opts.calib_cache),
    ):
        if path and _same_file(path, onnx_path):
            raise FertrtError(
                f"{option} {path}: is the input ONNX itself; choose another file (the input is never overwritten)"
            )
    if opts.timing_cache and opts.calib_cache and _same_file(opts.timing_cache, opts.calib_cache):
        raise FertrtError(
            f"--timing-cache and --calib-cache are the same file {opts.timing_cache}; they hold different things"
        )
    for option, path in (("--timing-cache", opts.timing_cache), ("--calib-cache", opts.calib_cache)):
        if path and _same_file(path, output):
            raise FertrtError(f"{option} {path}: is the engine output (-o) itself; choose another file")


def _check_caches(opts: BuildOptions):
    """A calibration cache to read is one (or --calib-data can make it); a timing cache is a file or absent."""
    calib = Path(opts.calib_cache) if opts.calib_cache else None
    if calib and not calib.is_file() and not opts.calib_data:
        raise FertrtError(f"--calib-cache {calib}: no such file (and no --calib-data to create it)")
    if calib and calib.is_file():
        from fertrt.export.trt_calib_cache import parse_trt_calibration_cache

        try:
            parse_trt_calibration_cache(calib.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, FertrtError) as exc:
            raise FertrtError(f"--calib-cache {calib}: {exc}") from None
    if opts.timing_cache and Path(opts.timing_cache).exists() and not Path(opts.timing_cache).is_file():
        raise FertrtError(f"--timing-cache {opts.timing_cache}: is not a file")


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
    what = (
        f"--calib-cache {path}: its header {header!r} is for TensorRT tag {tag}, this TensorRT {trt_version} "
        f"expects TRT-{want}-...; TensorRT ignores such a cache and calibrates again"
    )
    if not has_data:
        raise FertrtError(
            f"{what}, which needs --calib-data SPEC. Rewrite the cache for this version: "
            "`fertrt quantize MODEL.onnx --precision int8 --calib-data SPEC "
            f"--trt-version {trt_version}`"
        )
    return f"{what} from --calib-data (and rewrites the cache)"


def tensorrt_installed() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------- one engine
def build_file(onnx_path, output, opts: BuildOptions, force=False, use_cache=True, log=print) -> dict:
    """`build-engine MODEL.onnx -o OUT.engine`: the engine and its sidecar never replace the input, and replace an
    earlier engine only with `force`. Without TensorRT the model and options are still checked before the error
    that says how to install it."""
    from .sidecar import sidecar_path

    for option, path in (("-o", output), ("-o (its .json sidecar)", sidecar_path(output))):
        check_output(path, overwrite=force, inputs=(onnx_path,), option=option)
    if not tensorrt_installed():
        from .compat import INSTALL_HELP

        graph, _ = validate(onnx_path, output, opts)
        raise FertrtError(f"{onnx_path} is a valid {graph.precision.upper()} model for an engine, but: {INSTALL_HELP}")
    return build(onnx_path, output, opts, use_cache=use_cache, log=log)


def build(onnx_path, output, opts: BuildOptions, use_cache=True, log=print) -> dict:
    """Build `output` (and its .json sidecar) from `onnx_path`, or copy it from the engine cache; -> the sidecar."""
    from .compat import capabilities_of, import_tensorrt, require_supported
    from .device import gpu_info, jetson_release
    from .graph import graph_info
    from .plan import cache_key, trtexec_command
    from .sidecar import build_sidecar, sidecar_path

    graph, meta = validate(onnx_path, output, opts)
    trt = import_tensorrt()
    caps = require_supported(capabilities_of(trt))
    _note_calib_cache_version(opts, caps, log)
    gpu, jetson = gpu_info(), jetson_release()
    if not gpu:
        raise FertrtError(
            "no usable CUDA device: install pycuda or cuda-python and check the NVIDIA driver (nvidia-smi)"
        )
    n_dla = dla_core_count(trt)
    plan = _plan(opts, caps, graph, n_dla, gpu)
    build_from = Path(onnx_path)
    if plan.prequantize:
        build_from = _prequantize(onnx_path, output, opts, plan.prequantize, log)
        graph, meta = graph_info(build_from)
        plan = _plan(opts, caps, graph, n_dla, gpu)
        plan.prequantize = None
    for note in plan.notes:
        log(f"note: {note}")
    key = cache_key(graph, caps, gpu, plan, opts)
    cached = cache_dir("engines") / f"{key}.engine"
    trtexec = trtexec_command(str(build_from), str(output), plan)
    if use_cache and cached.is_file() and sidecar_path(cached).is_file():
        return _copy_cached(cached, output, log)
    data, facts = _build_engine(build_from, plan, meta, log)
    write_bytes_atomic(output, data)
    layers = _inspect(data, plan, facts, caps, opts, log)
    io = {"input": {"name": graph.input_name, "shape": list(graph.input_shape)}, "outputs": list(graph.output_names)}
    sidecar = build_sidecar(
        trt_version=caps.version,
        gpu=gpu,
        jetson=jetson,
        onnx_path=build_from,
        onnx_sha256=graph.sha256,
        meta=meta,
        plan=plan,
        opts=opts,
        io=io,
        build=facts,
        layers=layers,
        trtexec=trtexec,
        cache_key=key,
    )
    _write_sidecar(output, data, sidecar, cached if use_cache else None, log)
    log(f"equivalent trtexec command:\n  {trtexec}")
    return sidecar


def _plan(opts, caps, graph, n_dla, gpu):
    from .plan import make_plan

    plan = make_plan(opts, caps, graph, n_dla, gpu=gpu)
    plan.verbose = opts.verbose  # read by the builder's logger, for the build after a quantize too
    return plan


def _note_calib_cache_version(opts: BuildOptions, caps, log):
    if opts.legacy_int8 and opts.calib_cache and Path(opts.calib_cache).is_file():
        note = check_calib_cache_version(opts.calib_cache, caps.version, has_data=bool(opts.calib_data))
        if note:
            log(f"note: {note}")


def _prequantize(onnx_path, output, opts: BuildOptions, precision: str, log) -> Path:
    """A strongly typed FP16/INT8 build of an FP32 graph builds `fertrt quantize`'s output, written beside -o."""
    from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8

    quantized = Path(output).with_suffix(f".{precision}.onnx")
    if precision == "fp16":
        quantize_fp16(onnx_path, quantized, force=True, log=log)
    else:
        int8 = Int8Options(calib=opts.calib_data, calib_size=opts.calib_size)
        quantize_int8(onnx_path, quantized, int8, force=True, log=log)
    return quantized


def _copy_cached(cached: Path, output, log) -> dict:
    from .sidecar import sidecar_path

    with atomic_path(output) as tmp:
        shutil.copyfile(cached, tmp)
    with atomic_path(sidecar_path(output)) as tmp:
        shutil.copyfile(sidecar_path(cached), tmp)
    log(f"engine cache hit ({cached}); wrote {output}")
    return json.loads(sidecar_path(output).read_text())


def _build_engine(build_from: Path, plan, meta: dict, log):
    """-> (serialized engine, build facts), after reading the calibration images where the plan calibrates."""
    from .builder import build_engine

    calib_batches = None
    if plan.calibrator and plan.calibrator.get("data"):
        from fertrt.export.quantize import calibration_array

        calib_batches = calibration_array(plan.calibrator["data"], meta, plan.calibrator["size"], log=log)
    return build_engine(build_from, plan, calib_batches, log=log)


def _inspect(data: bytes, plan, facts: dict, caps, opts: BuildOptions, log):
    """The engine's layer table (None without an inspector); for DLA, how many layers run on it (into `facts`)."""
    from .builder import dla_layer_count, inspect_layers

    layers = inspect_layers(data, version_compatible=opts.version_compatible, log=log) if caps.inspector else None
    if plan.dla_core is not None:
        on_dla = dla_layer_count(layers)
        facts["dla_layers"] = on_dla
        log(
            f"[dla] layers on DLA core {plan.dla_core}: {'unknown (no inspector detail)' if on_dla is None else on_dla}"
            + (" - every layer fell back to the GPU" if on_dla == 0 else "")
        )
    return layers


def _write_sidecar(output, data: bytes, sidecar: dict, cached: Path | None, log):
    """The sidecar beside the engine already written; both into the engine cache too unless `cached` is None."""
    from .sidecar import sidecar_path

    write_json_atomic(sidecar_path(output), sidecar)
    log(f"[serialize] wrote {output} ({len(data) / 1e6:.1f} MB) and {sidecar_path(output).name}")
    if cached is not None:
        cache_dir("engines").mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cached, data)
        write_json_atomic(sidecar_path(cached), sidecar)


def dla_core_count(trt) -> int:
    """Builder.num_DLA_cores with the process's one TensorRT logger; a Builder that cannot be created says so."""
    from fertrt.runtime.trt_backend import trt_logger

    builder = trt.Builder(trt_logger(trt))
    if builder is None:
        raise FertrtError("TensorRT could not create a Builder (is the GPU usable? check nvidia-smi)")
    return builder.num_DLA_cores


# ---------------------------------------------------------------- a `fertrt pack` folder
def _engine_files(manifest: dict) -> set:
    """The engines and sidecars an earlier build-engine recorded (rebuilt in place)."""
    return {e.get(k) for e in manifest.get("engines", {}).values() for k in ("engine", "sidecar")}


def build_folder(
    folder, opts: BuildOptions, precision: str | None = None, force=False, use_cache=True, log=print
) -> None:
    """`build-engine DIR`: after checking the folder against its manifest, an engine per precision it holds (or
    `precision`), written into it with its sidecar, one timing cache for all, each recorded in the manifest.
    `opts` holds what every engine shares; each build takes its graph's precision."""
    from fertrt.runtime.deploy import open_folder, record_engine

    from .sidecar import sidecar_path

    folder = Path(folder)
    manifest = open_folder(folder)
    _protect_packed_files(folder, manifest)
    jobs = _folder_jobs(folder, manifest, opts, precision)
    for _, _, out, _ in jobs:
        for path in (out, sidecar_path(out)):
            if path.exists() and not force:
                raise FertrtError(f"{path}: exists (pass --force to rebuild the folder's engines)")
    _require_tensorrt_for(folder, manifest, jobs, log)
    for packed_precision, src, out, one in jobs:
        side = build(src, out, one, use_cache=use_cache, log=log)
        recorded = {"tensorrt_version": side.get("tensorrt_version"), "source": src.name}
        record_engine(folder, packed_precision, out, sidecar_path(out), recorded)
        log(f"recorded {out.name} in {folder / 'manifest.json'}")


def _protect_packed_files(folder: Path, manifest: dict):
    """The folder is this command's output too: of its files, only what pack wrote stays protected as an input."""
    from fertrt.fileio import clear_protected_inputs, protect_inputs

    clear_protected_inputs()
    protect_inputs([folder / name for name in manifest["files"] if name not in _engine_files(manifest)])


def _folder_jobs(folder: Path, manifest: dict, opts: BuildOptions, precision: str | None) -> list:
    """[(precision, its ONNX, its engine, its options)] for the precisions asked for (default: every one packed)."""
    from fertrt.runtime.deploy import PRECISIONS, TIMING_CACHE, engine_name, onnx_name

    if precision == "best":
        raise FertrtError("--precision best: not with a folder; it holds one graph per precision (fp32, fp16, int8)")
    wanted = [precision] if precision else [p for p in PRECISIONS if onnx_name(p) in manifest["files"]]
    missing = [p for p in wanted if onnx_name(p) not in manifest["files"]]
    if missing:
        packed = ", ".join(sorted(manifest["files"]))
        raise FertrtError(f"{folder}: holds no {onnx_name(missing[0])} (packed: {packed})")
    timing_cache = opts.timing_cache or str(folder / TIMING_CACHE)
    return [
        (
            p,
            folder / onnx_name(p),
            folder / engine_name(p),
            dataclasses.replace(opts, precision=p, timing_cache=timing_cache),
        )
        for p in wanted
    ]


def _require_tensorrt_for(folder: Path, manifest: dict, jobs: list, log):
    """Without TensorRT: every graph checked, then the error saying how to install it. With a TensorRT other than
    the one the folder was packed for: a warning (its graphs and calibration cache were fitted to that one)."""
    if not tensorrt_installed():
        from .compat import INSTALL_HELP

        for _, src, out, one in jobs:
            validate(src, out, one)
        wanted = ", ".join(p for p, _, _, _ in jobs)
        raise FertrtError(
            f"{folder} matches its manifest and its {wanted} models are valid for engines, but: {INSTALL_HELP}"
        )
    import tensorrt

    want = str(manifest["tensorrt"].get("version", ""))
    if want.split(".")[:2] != str(tensorrt.__version__).split(".")[:2]:
        log(
            f"warning: {folder} was packed for TensorRT {want}; this is TensorRT {tensorrt.__version__}: its graphs "
            f"and calibration cache were fitted to {want} (pack it again with --trt-version {tensorrt.__version__})"
        )
