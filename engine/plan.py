"""The build plan: from options, detected capabilities and the ONNX graph to exact builder settings.

Pure Python (no TensorRT), so every decision and every message is tested on CPU machines.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field

from fertrt.errors import FertrtError
from fertrt.ranges import (
    BUILD_PRECISIONS,
    BUILDER_OPT_LEVEL,
    CALIB_SIZE,
    DLA_CORE,
    HARDWARE_COMPAT,
    WORKSPACE_MIB,
    check_choice,
)

from .compat import Capabilities, unavailable

# --hardware-compat value -> TensorRT's HardwareCompatibilityLevel member
HW_COMPAT = dict(zip(HARDWARE_COMPAT, ("NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY")))
DEFAULT_BATCH_PROFILE = (1, 8, 32)  # (min, opt, max) of a dynamic batch axis without --batch-profile


@dataclass(frozen=True)
class BuildOptions:
    """`fertrt build-engine`'s options, checked when made (from the command line or in Python) with errors that name
    the option; make_plan then checks them against the installed TensorRT and the graph."""

    precision: str = "fp32"
    batch: tuple[int, int, int] | None = None  # (min, opt, max) of the batch axis
    workspace_mib: int | None = None
    builder_opt_level: int | None = None
    timing_cache: str | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    version_compatible: bool = False
    hardware_compat: str | None = None
    legacy_int8: bool = False
    calib_data: str | None = None
    calib_cache: str | None = None
    calib_size: int = 512
    weakly_typed: bool = False  # use the builder flags path on 10.x instead of strong typing
    verbose: bool = False

    def __post_init__(self):
        check_choice(self.precision, BUILD_PRECISIONS, "--precision")
        if self.batch is not None:  # a tuple here; a sidecar's JSON (engine rebuilds) gives a list
            object.__setattr__(self, "batch", check_batch_profile(self.batch))
        for value, limits, option in (
            (self.workspace_mib, WORKSPACE_MIB, "--workspace"),
            (self.builder_opt_level, BUILDER_OPT_LEVEL, "--builder-opt-level"),
            (self.dla_core, DLA_CORE, "--dla-core"),
        ):
            if value is not None:
                limits.check(value, option)
        if self.hardware_compat is not None:
            check_choice(self.hardware_compat, HARDWARE_COMPAT, "--hardware-compat")
        CALIB_SIZE.check(self.calib_size, "--calib-size")
        if self.gpu_fallback and self.dla_core is None:
            raise FertrtError("--gpu-fallback only applies with --dla-core N")


@dataclass
class GraphInfo:
    """What the builder needs to know about the ONNX file (read with onnx or from metadata)."""

    input_name: str
    input_shape: tuple  # with None/-1/str for the dynamic batch
    precision: str  # fp32 | fp16 | int8 (Q/DQ present)
    sha256: str
    output_names: tuple = ("logits",)  # the graph's outputs, in order (a detector has its own)

    @property
    def dynamic_batch(self) -> bool:
        d0 = self.input_shape[0]
        return not isinstance(d0, int) or d0 < 1


@dataclass
class BuildPlan:
    strongly_typed: bool
    network_flags: list[str] = field(default_factory=list)
    builder_flags: list[str] = field(default_factory=list)
    prequantize: str | None = None  # "fp16" | "int8": run `fertrt quantize` first, build its output
    calibrator: dict | None = None  # legacy implicit INT8: {"data": spec, "cache": path, "size": n}
    profile: dict | None = None  # {input: {"min": shape, "opt": shape, "max": shape}}
    workspace_bytes: int | None = None
    builder_opt_level: int | None = None
    timing_cache: str | None = None
    dla_core: int | None = None
    hardware_compat: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self):
        return asdict(self)


def check_batch_profile(batch, shown: str | None = None) -> tuple[int, int, int]:
    """(MIN, OPT, MAX) as a tuple, or FertrtError naming the option and `shown` (default: the numbers)."""
    values = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    whole = all(isinstance(b, int) and not isinstance(b, bool) for b in values)
    if len(values) != 3 or not whole or not 1 <= values[0] <= values[1] <= values[2]:
        shown = ",".join(map(str, values)) if shown is None else shown
        raise FertrtError(f"--batch-profile {shown}: expected 1 <= MIN <= OPT <= MAX")
    return values


def parse_batch(text: str | None) -> tuple[int, int, int] | None:
    """--batch-profile's text: 'MIN,OPT,MAX' or one number N for N,N,N."""
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise FertrtError(f"--batch-profile {text!r}: expected MIN,OPT,MAX (e.g. 1,8,32) or one number") from None
    if len(parts) == 1:
        parts = parts * 3
    return check_batch_profile(parts, shown=repr(text))


def make_plan(
    opts: BuildOptions,
    caps: Capabilities,
    graph: GraphInfo,
    num_dla_cores: int | None = None,
    gpu: dict | None = None,
    host: tuple | None = None,
) -> BuildPlan:
    """`gpu` is the build GPU ({'name', 'compute_capability'}), `host` the (system, machine) pair that DLA
    availability depends on (platform.system(), platform.machine() when None). The options' own ranges were
    checked when they were made (BuildOptions); here, what this TensorRT and this graph allow."""
    plan = _typed_plan(opts, caps)
    _PRECISION_PLANS[opts.precision](opts, caps, graph.precision, plan)
    _plan_profile(opts, graph, plan)
    _plan_builder_settings(opts, caps, plan)
    if opts.dla_core is not None:
        _plan_dla(opts, caps, graph, plan, num_dla_cores, host)
    _plan_compatibility(opts, caps, plan, gpu)
    return plan


def _typed_plan(opts: BuildOptions, caps: Capabilities) -> BuildPlan:
    """Strongly typed (precision from the graph) where TensorRT has it, unless the options need the builder flags."""
    if opts.weakly_typed and not (caps.fp16_flag or caps.int8_flag):
        raise unavailable(
            "--weakly-typed (the FP16/INT8 builder flags)",
            caps,
            "build strongly typed from an FP16 or Q/DQ graph (drop --weakly-typed)",
        )
    strong = caps.strongly_typed and not opts.weakly_typed and not opts.legacy_int8 and opts.precision != "best"
    plan = BuildPlan(strongly_typed=strong)
    if strong:
        plan.network_flags.append("STRONGLY_TYPED")
    elif caps.explicit_batch_flag:
        plan.network_flags.append("EXPLICIT_BATCH")
    return plan


def _int8_flags(caps: Capabilities) -> list[str]:
    return ["INT8", "FP16"] if caps.fp16_flag else ["INT8"]


def _plan_best(opts, caps, graph_precision, plan):
    if not (caps.fp16_flag and caps.int8_flag):
        raise unavailable(
            "--precision best (weak typing with FP16 and INT8 flags)",
            caps,
            "use --precision fp16 or int8 (strongly typed)",
        )
    plan.builder_flags += ["FP16", "INT8"]
    if graph_precision != "int8":
        _legacy_calibrator(opts, caps, plan)


def _plan_fp32(opts, caps, graph_precision, plan):
    if graph_precision != "fp32":
        plan.notes.append(f"the graph is already {graph_precision}; its precision is built as it is")


def _plan_fp16(opts, caps, graph_precision, plan):
    if not plan.strongly_typed:
        if not caps.fp16_flag:
            raise unavailable(
                "the FP16 builder flag", caps, "run `fertrt quantize --precision fp16` first and build the FP16 graph"
            )
        plan.builder_flags.append("FP16")
    elif graph_precision == "fp32":
        plan.prequantize = "fp16"
        plan.notes.append(
            "strongly typed build: converting the FP32 graph with `fertrt quantize --precision fp16` first"
        )
    elif graph_precision == "int8":
        plan.notes.append("the graph has Q/DQ nodes; built as INT8 where quantized")


def _plan_int8(opts, caps, graph_precision, plan):
    if opts.legacy_int8:
        if not (caps.int8_flag and caps.calibrator):
            raise unavailable(
                "--legacy-int8 (implicit INT8 with a calibrator)",
                caps,
                "run `fertrt quantize --precision int8 --calib-data SPEC` first and build the Q/DQ graph",
            )
        if graph_precision == "int8":
            raise FertrtError(
                "--legacy-int8: this graph already has Q/DQ nodes (explicit quantization); drop --legacy-int8"
            )
        plan.builder_flags += _int8_flags(caps)
        _legacy_calibrator(opts, caps, plan)
    elif plan.strongly_typed:
        if graph_precision == "fp32":
            if not opts.calib_data:
                raise FertrtError(
                    "--precision int8 on an FP32 graph needs calibration data: --calib-data SPEC (or "
                    "quantize first: `fertrt quantize MODEL.onnx --precision int8 --calib-data SPEC`)"
                )
            plan.prequantize = "int8"
            plan.notes.append("strongly typed build: inserting Q/DQ with `fertrt quantize --precision int8` first")
        elif graph_precision == "fp16":
            raise FertrtError("--precision int8: the graph is FP16; quantize the FP32 model to INT8 instead")
    else:
        if graph_precision != "int8":
            if not caps.int8_flag:
                raise unavailable("implicit INT8", caps, "run `fertrt quantize --precision int8` first")
            raise FertrtError(
                "--precision int8 without strong typing needs a Q/DQ graph (`fertrt quantize --precision "
                "int8`) or --legacy-int8 with --calib-data/--calib-cache"
            )
        plan.builder_flags += _int8_flags(caps)


# --precision -> what it adds to the plan, given the graph's own precision
_PRECISION_PLANS = {"best": _plan_best, "fp32": _plan_fp32, "fp16": _plan_fp16, "int8": _plan_int8}


def _plan_profile(opts: BuildOptions, graph: GraphInfo, plan: BuildPlan):
    """The optimisation profile of a dynamic batch axis, and the legacy calibrator's batch (its OPT batch)."""
    shape = list(graph.input_shape)
    if graph.dynamic_batch:
        mn, op, mx = opts.batch or DEFAULT_BATCH_PROFILE
        rest = [int(d) for d in shape[1:]]
        plan.profile = {graph.input_name: {"min": [mn] + rest, "opt": [op] + rest, "max": [mx] + rest}}
    elif opts.batch:
        plan.notes.append(f"the graph has a static batch of {shape[0]}; --batch-profile is ignored (built as it is)")
    if plan.calibrator is not None:
        # TensorRT calibrates at the OPT shape of the calibration profile: the calibrator's batch is that size
        plan.calibrator["batch"] = plan.profile[graph.input_name]["opt"][0] if plan.profile else int(shape[0])
        if plan.calibrator["batch"] > plan.calibrator["size"] and opts.calib_data:
            raise FertrtError(
                f"--calib-size {plan.calibrator['size']}: smaller than the calibration batch "
                f"{plan.calibrator['batch']} (the OPT batch of --batch-profile); give at least that "
                "many images"
            )


def _plan_builder_settings(opts: BuildOptions, caps: Capabilities, plan: BuildPlan):
    """Workspace limit, builder optimisation level and timing cache, where this TensorRT has them."""
    if opts.workspace_mib is not None:
        if not caps.memory_pool:
            raise unavailable("--workspace (set_memory_pool_limit)", caps, "upgrade to TensorRT 8.4 or newer")
        plan.workspace_bytes = int(opts.workspace_mib) << 20
    if opts.builder_opt_level is not None:
        if not caps.builder_opt_level:
            raise unavailable("--builder-opt-level", caps, "drop the option (TensorRT 8.6+ has it)")
        plan.builder_opt_level = opts.builder_opt_level
    if opts.timing_cache:
        if not caps.timing_cache:
            raise unavailable("--timing-cache", caps, "drop the option")
        plan.timing_cache = opts.timing_cache


def _plan_compatibility(opts: BuildOptions, caps: Capabilities, plan: BuildPlan, gpu: dict | None):
    """Engines for later TensorRT versions (--version-compatible) and other GPU models (--hardware-compat)."""
    if opts.version_compatible:
        if not caps.version_compatible:
            raise unavailable("--version-compatible", caps, "build on the TensorRT version that will run the engine")
        plan.builder_flags.append("VERSION_COMPATIBLE")
    if not opts.hardware_compat:
        return
    if not caps.hardware_compat:
        raise unavailable("--hardware-compat", caps, "build on the GPU model that will run the engine")
    member = HW_COMPAT[opts.hardware_compat]
    if member not in caps.hardware_compat_levels:  # the enum exists from 8.6, SAME_COMPUTE_CAPABILITY only from 10.9
        others = [k for k, v in HW_COMPAT.items() if v in caps.hardware_compat_levels and k != "none"]
        instead = " or ".join(others) if others else "no --hardware-compat"
        raise unavailable(
            f"--hardware-compat {opts.hardware_compat} (HardwareCompatibilityLevel.{member})",
            caps,
            f"use {instead} (same-cc needs TensorRT 10.9+)",
        )
    if member == "AMPERE_PLUS":
        _require_ampere_build_gpu(gpu)
    plan.hardware_compat = member


def _require_ampere_build_gpu(gpu):
    """Ampere+ engines are built on an Ampere or newer GPU (compute capability 8.0+); TensorRT fails otherwise."""
    cc = (gpu or {}).get("compute_capability")
    if not cc:
        return  # not known here (planning without a device); TensorRT checks it when it builds
    try:
        major_minor = tuple(int(p) for p in str(cc).split(".")[:2])
    except ValueError:
        raise FertrtError(f"--hardware-compat ampere+: cannot read the build GPU's compute capability {cc!r}") from None
    if major_minor < (8, 0):
        raise FertrtError(
            f"--hardware-compat ampere+: the build GPU {gpu.get('name', '?')} has compute capability "
            f"{cc}; Ampere+-compatible engines must be built on an Ampere or newer GPU "
            "(compute capability 8.0 or higher)"
        )


# DLA in each TensorRT release, from NVIDIA's "Working with DLA" pages of 10.x and 11.0-11.4.1 and the 11.4.x release
# notes: on Jetson (AGX/NX Xavier, Orin) through 10.7 ("TensorRT 10.7 was the last 10.x release that supported DLA");
# not in 10.8-10.x nor 11.0-11.3; 11.4.0 only on Windows on Arm (beta: no GPU fallback, batch 1); 11.4.1 on Jetson AGX
# Orin with JetPack 7.2.2+ (GPU fallback as in 10.x, strongly typed) and on Windows on Arm (beta).
# Later 11.x: as 11.4.1.
def dla_unavailable(version: str, system: str, machine: str) -> str | None:
    """Why TensorRT `version` has no DLA on this platform, or None when the docs say it has DLA there."""
    try:
        v = tuple(int(p) for p in str(version).split(".")[:3])
    except ValueError:
        return None  # an unparsable version string: leave it to the device (num_DLA_cores)
    windows_arm = system == "Windows" and machine.lower() in ("arm64", "aarch64")
    if v < (10, 8):
        return None
    if v < (11, 0):
        return (
            f"TensorRT {version} has no DLA (NVIDIA's docs: 10.7 was the last 10.x release with DLA); "
            "use the TensorRT of JetPack 5/6"
        )
    if v < (11, 4):
        return f"TensorRT {version} has no DLA (NVIDIA's docs: DLA was unavailable in TensorRT 11.0 through 11.3)"
    if v < (11, 4, 1):
        if not windows_arm:
            return (
                f"TensorRT {version} has DLA only on Windows on Arm (11.4.1 adds Jetson AGX Orin with JetPack 7.2.2+)"
            )
        return None
    if not (windows_arm or (system == "Linux" and machine == "aarch64")):
        return f"TensorRT {version} has DLA only on Jetson AGX Orin (JetPack 7.2.2+) and Windows on Arm"
    return None


def _plan_dla(opts, caps, graph, plan, num_dla_cores, host):
    """DLA runs FP16 and INT8 only and needs a static shape (profile MIN = OPT = MAX); otherwise every layer would
    fall back to the GPU (or, without --gpu-fallback, the build fails), so both are refused either way."""
    import platform

    core = opts.dla_core
    system, machine = host or (platform.system(), platform.machine())
    reason = dla_unavailable(caps.version, system, machine)
    if reason:
        raise FertrtError(f"--dla-core {core}: {reason}")
    if num_dla_cores is not None and num_dla_cores == 0:
        raise FertrtError(
            f"--dla-core {core}: this device has no DLA (only Jetson AGX/NX Orin and Xavier have DLA cores)"
        )
    if num_dla_cores is not None and core >= num_dla_cores:
        raise FertrtError(f"--dla-core {core}: this device has {num_dla_cores} DLA cores (0..{num_dla_cores - 1})")
    # weakly typed builds run FP16/INT8 only with the builder flags; strongly typed ones take the graph's types
    typed_reduced = plan.strongly_typed and graph.precision in ("fp16", "int8")
    reduced = set(plan.builder_flags) & {"FP16", "INT8"} or typed_reduced or plan.prequantize
    if not reduced:
        raise FertrtError(
            f"--dla-core {core} with FP32: DLA runs FP16 and INT8 only, so no layer would run on it; "
            "build with --precision fp16 or int8"
        )
    if plan.profile:
        mn, op, mx = (plan.profile[graph.input_name][k][0] for k in ("min", "opt", "max"))
        if not mn == op == mx:
            default = "" if opts.batch else " (the default for a dynamic-batch graph)"
            raise FertrtError(
                f"--dla-core {core}: DLA needs one fixed batch (MIN = OPT = MAX), "
                f"the profile is {mn},{op},{mx}{default}; pass e.g. --batch-profile 1"
            )
    plan.dla_core = core
    windows_arm = system == "Windows"
    if opts.gpu_fallback:
        if not caps.gpu_fallback:
            raise unavailable("--gpu-fallback", caps, "drop the option")
        if windows_arm:
            raise FertrtError(
                f"--gpu-fallback: TensorRT {caps.version} on Windows on Arm has no GPU fallback "
                "(every layer must run on DLA)"
            )
        plan.builder_flags.append("GPU_FALLBACK")
        plan.notes.append(
            "DLA with --gpu-fallback: layers DLA cannot run go to the GPU; the build reports how many ran on DLA"
        )
    else:
        plan.notes.append("DLA without --gpu-fallback: layers DLA cannot run make the build fail")


def _legacy_calibrator(opts, caps, plan):
    if not caps.calibrator:
        raise unavailable(
            "the INT8 calibrator", caps, "run `fertrt quantize --precision int8` first and build the Q/DQ graph"
        )
    if not (opts.calib_data or opts.calib_cache):
        raise FertrtError(
            "implicit INT8 needs --calib-data SPEC or --calib-cache FILE "
            "(e.g. the .calib.cache `fertrt quantize` writes)"
        )
    plan.calibrator = {"data": opts.calib_data, "cache": opts.calib_cache, "size": opts.calib_size}


def cache_key(graph: GraphInfo, caps: Capabilities, gpu: dict, plan: BuildPlan, opts: BuildOptions) -> str:
    """Engines are reusable only for the same ONNX, TensorRT version, GPU, precision, profile and options."""
    blob = json.dumps(
        {
            "onnx": graph.sha256,
            "trt": caps.version,
            "gpu": [gpu.get("name"), gpu.get("compute_capability")],
            "precision": opts.precision,
            "profile": plan.profile,
            "strong": plan.strongly_typed,
            "flags": sorted(plan.builder_flags),
            "prequantize": plan.prequantize,
            "opt_level": plan.builder_opt_level,
            "dla": plan.dla_core,
            "hw": plan.hardware_compat,
            "calib": plan.calibrator,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


# HardwareCompatibilityLevel member -> trtexec's --hardwareCompatibilityLevel value
_TRTEXEC_HW_COMPAT = {"AMPERE_PLUS": "ampere+", "SAME_COMPUTE_CAPABILITY": "sameComputeCapability", "NONE": "none"}


def trtexec_command(onnx_path: str, engine_path: str, plan: BuildPlan, calib_cache: str | None = None) -> str:
    """The equivalent trtexec line for the installed version, to reproduce the build outside fertrt."""
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    for flag, opt in (("FP16", "--fp16"), ("INT8", "--int8")):
        if flag in plan.builder_flags:
            args.append(opt)
    if plan.calibrator and (calib_cache or plan.calibrator.get("cache")):
        args.append(f"--calib={calib_cache or plan.calibrator['cache']}")
    if plan.profile:
        for key in ("min", "opt", "max"):
            shapes = ",".join(f"{n}:{'x'.join(map(str, s[key]))}" for n, s in plan.profile.items())
            args.append(f"--{key}Shapes={shapes}")
    if plan.workspace_bytes:
        args.append(f"--memPoolSize=workspace:{plan.workspace_bytes >> 20}")
    if plan.builder_opt_level is not None:
        args.append(f"--builderOptimizationLevel={plan.builder_opt_level}")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={plan.timing_cache}")
    if plan.dla_core is not None:
        args.append(f"--useDLACore={plan.dla_core}")
    if "GPU_FALLBACK" in plan.builder_flags:
        args.append("--allowGPUFallback")
    if "VERSION_COMPATIBLE" in plan.builder_flags:
        args.append("--versionCompatible")
    if plan.hardware_compat:
        args.append(f"--hardwareCompatibilityLevel={_TRTEXEC_HW_COMPAT[plan.hardware_compat]}")
    return " ".join(shlex.quote(a) for a in args)
