"""What the installed TensorRT can do, detected with hasattr on the module, never from versions.

TensorRT Python API names this package relies on, and where each was checked
(docs.nvidia.com/deeplearning/tensorrt: the Python API reference of 8.5/8.6, 10.x and 11.x, and
the 10.x->11.x migration guide "Removed Python APIs and Replacements"):
  build (all versions)   trt.Logger, trt.Builder, Builder.create_network, Builder.create_builder_config,
                         Builder.create_optimization_profile, Builder.build_serialized_network,
                         trt.OnnxParser(.parse, .num_errors, .get_error -> .desc()/.node()/.code()),
                         IOptimizationProfile.set_shape, IBuilderConfig.add_optimization_profile,
                         IBuilderConfig.set_memory_pool_limit + trt.MemoryPoolType.WORKSPACE (8.4+),
                         IBuilderConfig.create_timing_cache / set_timing_cache / get_timing_cache,
                         ITimingCache.serialize, IBuilderConfig.profiling_verbosity + trt.ProfilingVerbosity
  8.5 / 8.6 (JP 5, 6.0)  NetworkDefinitionCreationFlag.EXPLICIT_BATCH (required), BuilderFlag.FP16, BuilderFlag.INT8,
                         IBuilderConfig.int8_calibrator, trt.IInt8EntropyCalibrator2 (get_batch_size, get_batch,
                         read_calibration_cache, write_calibration_cache); 8.6 adds builder_optimization_level,
                         BuilderFlag.VERSION_COMPATIBLE, trt.HardwareCompatibilityLevel.AMPERE_PLUS
  10.x (JP 6.1+, 7)      NetworkDefinitionCreationFlag.STRONGLY_TYPED; explicit batch is the default; the 8.x
                         flags and the calibrator remain (deprecated)
  11.x                   strongly typed only: BuilderFlag.FP16/INT8/OBEY_PRECISION_CONSTRAINTS and
                         IBuilderConfig.int8_calibrator are removed (precision comes from the ONNX graph)
  runtime (8.5+)         trt.Runtime.deserialize_cuda_engine, ICudaEngine.num_io_tensors, get_tensor_name,
                         get_tensor_mode + trt.TensorIOMode.INPUT, get_tensor_shape, get_tensor_dtype,
                         get_tensor_profile_shape, create_execution_context, create_engine_inspector
                         (IEngineInspector.get_engine_information(trt.LayerInformationFormat.JSON)),
                         IExecutionContext.set_input_shape, set_tensor_address, execute_async_v3
  device                 Builder.num_DLA_cores, IBuilderConfig.default_device_type + trt.DeviceType.DLA,
                         IBuilderConfig.DLA_core, BuilderFlag.GPU_FALLBACK
  members that came later HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY (10.9; AMPERE_PLUS 8.6),
                         Runtime.engine_host_code_allowed (8.6, needed to load version-compatible engines),
                         IBuilderConfig.set_calibration_profile (8.x-10.x), ITimingCache.combine,
                         IEngineInspector.execution_context
The `trt_api` tests (tests/test_trt_api.py) hold every name above to the real bindings of 8.6.1 and
10.0.1 to 11.4 and write the version x name table in docs/tensorrt_api.md; 8.5 is checked from its docs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fertrt.errors import FertrtError

INSTALL_HELP = (
    "TensorRT is not installed here. On a desktop GPU: `pip install tensorrt` (NVIDIA's wheels, CUDA 12/13) "
    "plus `pip install pycuda` or `pip install cuda-python`; on Jetson, JetPack ships TensorRT "
    "(`sudo apt install python3-libnvinfer` if the Python bindings are missing). "
    "Everything up to the engine (export, fp16/int8 ONNX, compare) runs without it."
)


def _jetson_install_help() -> str:
    """On a Jetson, the one line that applies to its JetPack (fertrt.deps, shared by every device package)."""
    from fertrt.deps import install_help, jetpack_series

    jetpack = jetpack_series()
    return f" This is a Jetson with JetPack {jetpack}: {install_help('tensorrt', jetpack)}." if jetpack else ""


INSTALL_HELP += _jetson_install_help()


MIN_VERSION = "8.5"  # the tensor API (num_io_tensors, set_tensor_address, execute_async_v3) came in 8.5


@dataclass(frozen=True)
class Capabilities:
    version: str
    strongly_typed: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED (10.0+)
    explicit_batch_flag: bool  # EXPLICIT_BATCH must be passed (8.x: no strong typing, flag exists)
    fp16_flag: bool  # BuilderFlag.FP16 (removed in 11)
    int8_flag: bool  # BuilderFlag.INT8 (removed in 11)
    calibrator: bool  # IInt8EntropyCalibrator2 + IBuilderConfig.int8_calibrator (removed in 11)
    builder_opt_level: bool  # IBuilderConfig.builder_optimization_level (8.6+)
    version_compatible: bool  # BuilderFlag.VERSION_COMPATIBLE (8.6+)
    hardware_compat: bool  # trt.HardwareCompatibilityLevel (8.6+)
    hardware_compat_levels: tuple  # its members here: AMPERE_PLUS 8.6+, SAME_COMPUTE_CAPABILITY 10.9+
    timing_cache: bool
    memory_pool: bool
    inspector: bool
    gpu_fallback: bool
    tensor_api: bool  # num_io_tensors/set_tensor_address/execute_async_v3 (8.5+)
    host_code_allowed: bool = False  # Runtime.engine_host_code_allowed (8.6+): version-compatible engines
    calibration_profile: bool = False  # IBuilderConfig.set_calibration_profile (8.x-10.x)
    timing_cache_combine: bool = False  # ITimingCache.combine
    inspector_context: bool = False  # IEngineInspector.execution_context

    def to_dict(self):
        return asdict(self)


def capabilities_of(trt) -> Capabilities:
    flags = trt.BuilderFlag
    ncf = trt.NetworkDefinitionCreationFlag
    cfg = trt.IBuilderConfig
    strongly = hasattr(ncf, "STRONGLY_TYPED")
    hw_enum = getattr(trt, "HardwareCompatibilityLevel", None)
    inspector_cls = getattr(trt, "EngineInspector", getattr(trt, "IEngineInspector", None))
    context_cls = trt.IExecutionContext
    return Capabilities(
        version=str(getattr(trt, "__version__", "unknown")),
        strongly_typed=strongly,
        explicit_batch_flag=hasattr(ncf, "EXPLICIT_BATCH") and not strongly,
        fp16_flag=hasattr(flags, "FP16"),
        int8_flag=hasattr(flags, "INT8"),
        calibrator=hasattr(trt, "IInt8EntropyCalibrator2") and hasattr(cfg, "int8_calibrator"),
        builder_opt_level=hasattr(cfg, "builder_optimization_level"),
        version_compatible=hasattr(flags, "VERSION_COMPATIBLE"),
        hardware_compat=hw_enum is not None and hasattr(cfg, "hardware_compatibility_level"),
        hardware_compat_levels=tuple(
            n for n in ("NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY") if hasattr(hw_enum, n)
        ),
        timing_cache=hasattr(cfg, "create_timing_cache"),
        memory_pool=hasattr(cfg, "set_memory_pool_limit"),
        inspector=hasattr(trt.ICudaEngine, "create_engine_inspector"),
        gpu_fallback=hasattr(flags, "GPU_FALLBACK"),
        tensor_api=all(hasattr(context_cls, n) for n in ("execute_async_v3", "set_input_shape", "set_tensor_address"))
        and hasattr(trt.ICudaEngine, "num_io_tensors"),
        host_code_allowed=hasattr(getattr(trt, "Runtime", None), "engine_host_code_allowed"),
        calibration_profile=hasattr(cfg, "set_calibration_profile"),
        timing_cache_combine=hasattr(getattr(trt, "ITimingCache", None), "combine"),
        inspector_context=hasattr(inspector_cls, "execution_context"),
    )


def require_supported(caps: Capabilities) -> Capabilities:
    """One clear message for a TensorRT older than 8.5 (an apt install on JetPack 5.0 can bring 8.4),
    whose Python API lacks the tensor calls the runtime and builder use."""
    if not caps.tensor_api:
        raise FertrtError(
            f"TensorRT {caps.version} is too old for fertrt: it needs TensorRT {MIN_VERSION} or newer (JetPack 5.1+, "
            "or `pip install tensorrt` on a desktop GPU); this version lacks the tensor API "
            "(execute_async_v3, set_input_shape, set_tensor_address, num_io_tensors)"
        )
    return caps


def import_tensorrt():
    """The tensorrt module, or one clear FertrtError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise FertrtError(INSTALL_HELP) from exc
    return trt


def detect() -> Capabilities:
    return require_supported(capabilities_of(import_tensorrt()))


def unavailable(feature: str, caps: Capabilities, instead: str) -> FertrtError:
    return FertrtError(f"{feature} is not available on TensorRT {caps.version}; {instead}")
