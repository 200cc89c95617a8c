"""The thin TensorRT layer: parse ONNX, apply a BuildPlan, build, serialize, inspect.

Only `make_plan`'s output decides anything; this module turns it into API calls (names listed in
compat.py). Runs only where `tensorrt` imports; exercised by the `trt` tests on GPU hosts.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError

from .plan import BuildPlan


class EntropyCalibrator:
    """IInt8EntropyCalibrator2 fed from an array of preprocessed batches; reads/writes a cache file."""

    def __new__(cls, trt, batches: np.ndarray | None, cache_path: str | None, batch_size: int = 16):
        from fertrt.runtime.trt_backend import cuda_api

        cuda = cuda_api()

        class _Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()
                self.data, self.cache_path, self.bs, self.i = batches, cache_path, batch_size, 0
                self.device = None
                if batches is not None and len(batches):
                    self.device = cuda.alloc_device(batches[:batch_size].nbytes)

            def get_batch_size(self):
                return self.bs

            def get_batch(self, names):
                if self.data is None or self.i + self.bs > len(self.data):
                    return None
                chunk = np.ascontiguousarray(self.data[self.i:self.i + self.bs], dtype=np.float32)
                cuda.copy_htod(self.device, chunk)
                self.i += self.bs
                return [int(self.device)]

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
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(Path(onnx_path).read_bytes())
    if not ok:
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            node = err.node() if hasattr(err, "node") else -1
            op = err.node_operator() if hasattr(err, "node_operator") else ""
            name = err.node_name() if hasattr(err, "node_name") else ""
            errors.append(f"node {node} {name} {op}: {err.desc()}".strip())
        raise FertrtError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors or ["(no error detail)"]))
    return parser


def build_engine(onnx_path, plan: BuildPlan, calib_batches=None, log=print) -> tuple[bytes, dict]:
    """-> (serialized engine, build facts for the sidecar)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.VERBOSE if getattr(plan, "verbose", False) else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    t0 = time.perf_counter()
    _parse(trt, network, logger, onnx_path)
    log(f"[parse] {onnx_path}: {network.num_layers} layers in {time.perf_counter() - t0:.1f}s")
    config = builder.create_builder_config()
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    if plan.builder_opt_level is not None:
        config.builder_optimization_level = plan.builder_opt_level
    if hasattr(config, "profiling_verbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so the inspector can report per-layer precision
    if plan.profile:
        profile = builder.create_optimization_profile()
        for name, s in plan.profile.items():
            profile.set_shape(name, tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
        config.add_optimization_profile(profile)
    if plan.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise FertrtError("--dla-core: this device has no DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    if plan.hardware_compat:
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, plan.hardware_compat)
    timing_cache_used = False
    if plan.timing_cache:
        blob = Path(plan.timing_cache).read_bytes() if Path(plan.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
        timing_cache_used = bool(blob)
    calibrator = None
    if plan.calibrator:
        calibrator = EntropyCalibrator(trt, calib_batches, plan.calibrator.get("cache"))
        config.int8_calibrator = calibrator
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FertrtError(f"{onnx_path}: TensorRT could not build an engine (rerun with --verbose for TensorRT's log)")
    build_s = time.perf_counter() - t0
    log(f"[build] {build_s:.1f}s")
    if plan.timing_cache:
        from fertrt.fileio import write_bytes_atomic

        write_bytes_atomic(plan.timing_cache, bytes(config.get_timing_cache().serialize()))
    data = bytes(serialized)
    return data, {"build_seconds": build_s, "timing_cache_loaded": timing_cache_used, "num_layers_network": network.num_layers}


def inspect_layers(engine_bytes: bytes) -> list[dict] | None:
    """Per-layer name/type/precision/tactic from the engine inspector, where TensorRT has it."""
    import json

    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None or not hasattr(engine, "create_engine_inspector"):
        return None
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, str):  # without detailed verbosity only names are reported
            layers.append({"name": layer})
            continue
        outputs = layer.get("Outputs", [])
        layers.append({"name": layer.get("Name"), "type": layer.get("LayerType"), "tactic": layer.get("TacticName", layer.get("TacticValue")),
                       "precision": outputs[0].get("Format/Datatype") if outputs else None})
    return layers
