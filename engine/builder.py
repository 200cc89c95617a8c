"""The thin TensorRT layer: parse ONNX, apply a BuildPlan, build, serialize, inspect.

Only `make_plan`'s output decides anything; this module turns it into API calls (names listed in
compat.py). Runs only where `tensorrt` imports; every call is held to the real bindings of each
supported version by the `trt_api` tests, and run for real by the `trt` tests and `fertrt doctor`.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError

from .plan import BuildPlan


class EntropyCalibrator:
    """IInt8EntropyCalibrator2 fed from an array of preprocessed images, `batch_size` at a time (the OPT
    batch of the calibration profile, which is the shape TensorRT calibrates at); reads/writes a cache file."""

    def __new__(cls, trt, images: np.ndarray | None, cache_path: str | None, batch_size: int, cuda=None):
        if cuda is None:
            from fertrt.runtime.trt_backend import cuda_api

            cuda = cuda_api()

        class _Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()
                self.images, self.cache_path, self.batch_size, self.next_index = images, cache_path, int(batch_size), 0
                self.device = None
                if images is not None and len(images):
                    # one batch of exactly batch_size images, whatever the array holds
                    self.nbytes = int(np.prod(images.shape[1:])) * 4 * self.batch_size
                    self.device = cuda.alloc_device(self.nbytes)

            def get_batch_size(self):
                return self.batch_size

            def free(self):
                """Release the device batch buffer once TensorRT has finished calibrating."""
                if self.device is not None:
                    cuda.free_device(self.device)
                    self.device = None

            def get_batch(self, names):
                if self.images is None or self.next_index + self.batch_size > len(self.images):
                    return None
                chunk = np.ascontiguousarray(
                    self.images[self.next_index : self.next_index + self.batch_size], dtype=np.float32
                )
                cuda.copy_htod(self.device, chunk)
                self.next_index += self.batch_size
                return [int(self.device)]  # one image input

            def read_calibration_cache(self):
                if self.cache_path and Path(self.cache_path).is_file():
                    return Path(self.cache_path).read_bytes()
                return None

            def write_calibration_cache(self, cache):
                if self.cache_path:
                    from fertrt.fileio import write_bytes_atomic

                    write_bytes_atomic(self.cache_path, bytes(cache))

        return _Calibrator()


def _parse(trt, network, logger, onnx_path):
    """Parse from the file path (as Polygraphy does), so the parser finds external weight files beside it;
    TensorRT without parse_from_file gets the bytes and the model's path to resolve external data from."""
    parser = trt.OnnxParser(network, logger)
    if parser is None:
        raise FertrtError("TensorRT could not create its ONNX parser")
    if hasattr(parser, "parse_from_file"):
        ok = parser.parse_from_file(str(onnx_path))
    else:
        # the path locates external data
        ok = parser.parse(Path(onnx_path).read_bytes(), str(Path(onnx_path).resolve()))
    if not ok:
        details = parser_errors(parser) or ["(no error detail)"]
        raise FertrtError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(details))
    return parser


def parser_errors(parser) -> list[str]:
    """One line per parser error: node index, name and operator where this TensorRT reports them (node_name and
    node_operator are 10.x additions), then the description."""
    errors = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = err.node() if hasattr(err, "node") else -1
        name = err.node_name() if hasattr(err, "node_name") else ""
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        where = " ".join(str(p) for p in (f"node {node}" if node is not None and node >= 0 else "", name, op) if p)
        errors.append(f"{where}: {err.desc()}" if where else str(err.desc()))
    return errors


def check_calibration_images(n_images: int, batch: int):
    """TensorRT calibrates in batches of the OPT batch and fails with a generic error when not one full batch exists."""
    if n_images < batch:
        raise FertrtError(
            f"calibration data has {n_images} images, fewer than one calibration batch of {batch} "
            f"(the OPT batch of --batch-profile): give at least {batch} images "
            "(--calib-size/--calib-data) or a smaller OPT batch"
        )


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock beside `path`, so two builds sharing one timing cache merge instead of racing."""
    try:
        import fcntl
    except ImportError:  # not on Linux/Jetson: no lock, the atomic rename still keeps the file whole
        yield
        return
    with open(str(path) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_timing_cache(trt, config, path, log=print) -> tuple[object, bool]:
    """-> (the ITimingCache attached to `config`, whether an existing file was accepted)."""
    p = Path(path)
    blob = p.read_bytes() if p.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is None:
        raise FertrtError(f"--timing-cache {path}: TensorRT could not create a timing cache from it")
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return cache, bool(blob)
    # a cache written on another GPU model, CUDA or TensorRT version is refused (we never ignore the mismatch)
    log(
        f"note: --timing-cache {path} was written on another device or TensorRT version; TensorRT refused it, "
        "so this build times its tactics from scratch"
    )
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise FertrtError("TensorRT refused an empty timing cache; rerun without --timing-cache")
    return cache, False


def save_timing_cache(trt, config, path, log=print) -> bool:
    """Merge this build's timings into the file (another build may have written it meanwhile); atomic."""
    from fertrt.fileio import write_bytes_atomic

    cache = config.get_timing_cache()
    if cache is None:
        log(f"note: TensorRT returned no timing cache; {path} left as it was")
        return False
    p = Path(path)
    with _file_lock(p):
        if p.is_file() and p.stat().st_size:
            existing = config.create_timing_cache(p.read_bytes())
            if existing is None or not cache.combine(existing, ignore_mismatch=False):
                log(
                    f"note: {path} holds timings of another device or TensorRT version; left as it was (not merged, "
                    "not overwritten): delete it or pass another --timing-cache to keep this build's timings"
                )
                return False
        write_bytes_atomic(p, bytes(cache.serialize()))
    return True


def _created(obj, what):
    """TensorRT's factories return None on failure (no device, out of memory): say which one."""
    if obj is None:
        raise FertrtError(
            f"TensorRT could not create {what} (is the GPU usable? rerun with --verbose for TensorRT's log)"
        )
    return obj


def build_engine(onnx_path, plan: BuildPlan, calib_images=None, log=print, cuda=None) -> tuple[bytes, dict]:
    """-> (serialized engine, build facts for the sidecar)."""
    import tensorrt as trt

    from fertrt.runtime.trt_backend import init_plugins, trt_logger

    if plan.calibrator and calib_images is not None:  # before any TensorRT work: TensorRT's own error is generic
        check_calibration_images(len(calib_images), plan.calibrator["batch"])
    logger = trt_logger(trt, verbose=getattr(plan, "verbose", False))
    init_plugins(trt, logger)
    builder = _created(trt.Builder(logger), "a Builder")
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = _created(builder.create_network(flags), "a network definition")
    t0 = time.perf_counter()
    _parse(trt, network, logger, onnx_path)
    log(f"[parse] {onnx_path}: {network.num_layers} layers in {time.perf_counter() - t0:.1f}s")
    config = _created(builder.create_builder_config(), "a builder config")
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.builder_opt_level is not None:
        config.builder_optimization_level = plan.builder_opt_level
    if hasattr(trt.ProfilingVerbosity, "DETAILED"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so the inspector can report per-layer precision
    profile = None
    if plan.profile:
        profile = _created(builder.create_optimization_profile(), "an optimization profile")
        for name, s in plan.profile.items():
            profile.set_shape(name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
        if config.add_optimization_profile(profile) < 0:  # -1: TensorRT found the profile invalid
            raise FertrtError(
                f"TensorRT refused the optimization profile {plan.profile} (MIN <= OPT <= MAX per input, "
                "matching the model's input shape)"
            )
    if plan.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise FertrtError("--dla-core: this device has no DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.hardware_compat:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, plan.hardware_compat)
    timing_cache_loaded = False
    if plan.timing_cache:
        _, timing_cache_loaded = load_timing_cache(trt, config, plan.timing_cache, log=log)
    calibrator = None
    if plan.calibrator:
        calibrator = EntropyCalibrator(
            trt, calib_images, plan.calibrator.get("cache"), plan.calibrator["batch"], cuda=cuda
        )
        config.int8_calibrator = calibrator
        if profile is not None and hasattr(config, "set_calibration_profile"):
            # calibrate at this profile's OPT shape (= the calibrator's batch)
            if not config.set_calibration_profile(profile):
                calibrator.free()
                raise FertrtError(
                    "TensorRT refused the calibration profile (the optimization profile of --batch-profile)"
                )
    t0 = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.free()
    if serialized is None:
        raise FertrtError(f"{onnx_path}: TensorRT could not build an engine (rerun with --verbose for TensorRT's log)")
    build_s = time.perf_counter() - t0
    log(f"[build] {build_s:.1f}s")
    timing_cache_saved = save_timing_cache(trt, config, plan.timing_cache, log=log) if plan.timing_cache else False
    data = bytes(serialized)
    return data, {
        "build_seconds": build_s,
        "timing_cache_loaded": timing_cache_loaded,
        "timing_cache_saved": timing_cache_saved,
        "num_layers_network": network.num_layers,
    }


def dla_layer_count(layers) -> int | None:
    """How many inspector layers run on DLA (TensorRT reports a DLA subgraph as one layer whose type or name says
    DLA); None when the inspector gave no layer details."""
    if not layers or all(set(l) == {"name"} for l in layers):
        return None
    return sum(1 for l in layers if "DLA" in str(l.get("type", "")).upper() or "DLA" in str(l.get("name", "")).upper())


def inspect_layers(engine_bytes: bytes, version_compatible: bool = False, log=print) -> list[dict] | None:
    """Per-layer name/type/precision/tactic from the engine inspector, where TensorRT has it.

    The inspector reports precisions of a dynamic-shape engine only for a context whose input shapes
    are set ("N/A due to dynamic shapes" otherwise), so the OPT shape of profile 0 is set first. When no
    context can be created, precisions are reported as unknown (None) with a note, never as "N/A"."""
    import tensorrt as trt

    from fertrt.runtime.trt_backend import deserialize_engine

    engine = deserialize_engine(trt, engine_bytes, version_compatible=version_compatible)
    if engine is None or not hasattr(engine, "create_engine_inspector"):
        return None
    inspector = engine.create_engine_inspector()
    if inspector is None:
        return None
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    dynamic = any(any(d < 0 for d in engine.get_tensor_shape(name)) for name in names)
    if context is None and dynamic:
        log(
            "note: TensorRT could not create an execution context (out of device memory?), so per-layer precisions "
            "of this dynamic-shape engine are unknown"
        )
    if context is not None and hasattr(inspector, "execution_context"):
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            if engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                continue
            if any(d < 0 for d in engine.get_tensor_shape(name)):
                opt = tuple(engine.get_tensor_profile_shape(name, 0)[1])
                if not context.set_input_shape(name, opt):
                    raise FertrtError(f"TensorRT refused the OPT shape {opt} of {name} for the engine inspector")
        inspector.execution_context = context
    info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # without detailed verbosity only names are reported
            layers.append({"name": layer})
            continue
        outputs = layer.get("Outputs", [])
        precision = outputs[0].get("Format/Datatype") if outputs else None
        if precision is not None and "N/A" in str(precision):
            precision = None  # unknown, not a precision
        layers.append(
            {
                "name": layer.get("Name"),
                "type": layer.get("LayerType"),
                "tactic": layer.get("TacticName", layer.get("TacticValue")),
                "precision": precision,
            }
        )
    return layers
