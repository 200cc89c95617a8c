"""The build plan: from options, detected capabilities and the ONNX graph to exact builder settings.

Pure Python (no TensorRT), so every decision and every message is tested on CPU machines.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field

from fertrt.errors import FertrtError

from .compat import Capabilities, unavailable

PRECISIONS = ("fp32", "fp16", "int8", "best")
HW_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}


@dataclass
class BuildOptions:
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


def parse_batch(text: str | None) -> tuple[int, int, int] | None:
    if text is None:
        return None
    try:
        parts = [int(p) for p in text.split(",")]
    except ValueError:
        raise FertrtError(f"--batch {text!r}: expected MIN,OPT,MAX (e.g. 1,8,32) or one number") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not (1 <= parts[0] <= parts[1] <= parts[2]):
        raise FertrtError(f"--batch {text!r}: expected 1 <= MIN <= OPT <= MAX")
    return tuple(parts)


def make_plan(opts: BuildOptions, caps: Capabilities, graph: GraphInfo, num_dla_cores: int | None = None,
              gpu: dict | None = None, host: tuple | None = None) -> BuildPlan:
    """`gpu` is the build GPU ({'name', 'compute_capability'}), `host` the (system, machine) pair that DLA
    availability depends on (platform.system(), platform.machine() when None)."""
    if opts.precision not in PRECISIONS:
        raise FertrtError(f"--precision {opts.precision!r}: expected one of {', '.join(PRECISIONS)}")
    weak_possible = caps.fp16_flag or caps.int8_flag or not caps.strongly_typed
    if opts.weakly_typed and not (caps.fp16_flag or caps.int8_flag):
        raise unavailable("--weakly-typed (the FP16/INT8 builder flags)", caps, "build strongly typed from an FP16 or Q/DQ graph (drop --weakly-typed)")
    strong = caps.strongly_typed and not opts.weakly_typed and not opts.legacy_int8 and opts.precision != "best"
    plan = BuildPlan(strongly_typed=strong)
    if strong:
        plan.network_flags.append("STRONGLY_TYPED")
    elif caps.explicit_batch_flag:
        plan.network_flags.append("EXPLICIT_BATCH")

    p, g = opts.precision, graph.precision
    if p == "best":
        if not (caps.fp16_flag and caps.int8_flag):
            raise unavailable("--precision best (weak typing with FP16 and INT8 flags)", caps, "use --precision fp16 or int8 (strongly typed)")
        plan.builder_flags += ["FP16", "INT8"]
        if g != "int8":
            _legacy_calibrator(opts, caps, plan, required=True)
    elif p == "fp32":
        if g != "fp32":
            plan.notes.append(f"the graph is already {g}; its precision is built as it is")
    elif p == "fp16":
        if strong:
            if g == "fp32":
                plan.prequantize = "fp16"
                plan.notes.append("strongly typed build: converting the FP32 graph with `fertrt quantize --precision fp16` first")
            elif g == "int8":
                plan.notes.append("the graph has Q/DQ nodes; built as INT8 where quantized")
        else:
            if not caps.fp16_flag:
                raise unavailable("the FP16 builder flag", caps, "run `fertrt quantize --precision fp16` first and build the FP16 graph")
            plan.builder_flags.append("FP16")
    elif p == "int8":
        if opts.legacy_int8:
            if not (caps.int8_flag and caps.calibrator):
                raise unavailable("--legacy-int8 (implicit INT8 with a calibrator)", caps,
                                  "run `fertrt quantize --precision int8 --calib-data SPEC` first and build the Q/DQ graph")
            if g == "int8":
                raise FertrtError("--legacy-int8: this graph already has Q/DQ nodes (explicit quantization); drop --legacy-int8")
            plan.builder_flags += ["INT8", "FP16"] if caps.fp16_flag else ["INT8"]
            _legacy_calibrator(opts, caps, plan, required=True)
        elif strong:
            if g == "fp32":
                if not opts.calib_data:
                    raise FertrtError("--precision int8 on an FP32 graph needs calibration data: --calib-data SPEC "
                                      "(or quantize first: `fertrt quantize MODEL.onnx --precision int8 --calib-data SPEC`)")
                plan.prequantize = "int8"
                plan.notes.append("strongly typed build: inserting Q/DQ with `fertrt quantize --precision int8` first")
            elif g == "fp16":
                raise FertrtError("--precision int8: the graph is FP16; quantize the FP32 model to INT8 instead")
        else:
            if g != "int8":
                if not weak_possible or not caps.int8_flag:
                    raise unavailable("implicit INT8", caps, "run `fertrt quantize --precision int8` first")
                raise FertrtError("--precision int8 without strong typing needs a Q/DQ graph (`fertrt quantize --precision int8`) "
                                  "or --legacy-int8 with --calib-data/--calib-cache")
            plan.builder_flags += ["INT8", "FP16"] if caps.fp16_flag else ["INT8"]

    # optimisation profile for the dynamic batch axis
    shape = list(graph.input_shape)
    if opts.batch is not None and not (len(opts.batch) == 3 and 1 <= opts.batch[0] <= opts.batch[1] <= opts.batch[2]):
        raise FertrtError(f"--batch {','.join(map(str, opts.batch))}: expected 1 <= MIN <= OPT <= MAX")
    if graph.dynamic_batch:
        mn, op, mx = opts.batch or (1, 8, 32)
        rest = [int(d) for d in shape[1:]]
        plan.profile = {graph.input_name: {"min": [mn] + rest, "opt": [op] + rest, "max": [mx] + rest}}
    elif opts.batch:
        plan.notes.append(f"the graph has a static batch of {shape[0]}; --batch is ignored (built as it is)")
    if plan.calibrator is not None:
        # TensorRT calibrates at the OPT shape of the calibration profile: the calibrator's batch is that size
        plan.calibrator["batch"] = plan.profile[graph.input_name]["opt"][0] if plan.profile else int(shape[0])
        if plan.calibrator["batch"] > plan.calibrator["size"] and opts.calib_data:
            raise FertrtError(f"--calib-size {plan.calibrator['size']}: smaller than the calibration batch "
                              f"{plan.calibrator['batch']} (the OPT batch of --batch); give at least that many images")

    if opts.workspace_mib is not None:
        if opts.workspace_mib <= 0:
            raise FertrtError(f"--workspace {opts.workspace_mib}: expected a positive number of MiB")
        if not caps.memory_pool:
            raise unavailable("--workspace (set_memory_pool_limit)", caps, "upgrade to TensorRT 8.4 or newer")
        plan.workspace_bytes = int(opts.workspace_mib) << 20
    if opts.builder_opt_level is not None:
        if not 0 <= opts.builder_opt_level <= 5:
            raise FertrtError(f"--builder-opt-level {opts.builder_opt_level}: expected 0..5")
        if not caps.builder_opt_level:
            raise unavailable("--builder-opt-level", caps, "drop the option (TensorRT 8.6+ has it)")
        plan.builder_opt_level = opts.builder_opt_level
    if opts.timing_cache:
        if not caps.timing_cache:
            raise unavailable("--timing-cache", caps, "drop the option")
        plan.timing_cache = opts.timing_cache
    if opts.dla_core is not None:
        _plan_dla(opts, caps, graph, plan, num_dla_cores, host)
    elif opts.gpu_fallback:
        raise FertrtError("--gpu-fallback only applies with --dla-core N")
    if opts.version_compatible:
        if not caps.version_compatible:
            raise unavailable("--version-compatible", caps, "build on the TensorRT version that will run the engine")
        plan.builder_flags.append("VERSION_COMPATIBLE")
    if opts.hardware_compat:
        if opts.hardware_compat not in HW_COMPAT:
            raise FertrtError(f"--hardware-compat {opts.hardware_compat!r}: expected one of {', '.join(HW_COMPAT)}")
        if not caps.hardware_compat:
            raise unavailable("--hardware-compat", caps, "build on the GPU model that will run the engine")
        member = HW_COMPAT[opts.hardware_compat]
        if member not in caps.hardware_compat_levels:  # the enum exists from 8.6, SAME_COMPUTE_CAPABILITY only from 10.9
            others = [k for k, v in HW_COMPAT.items() if v in caps.hardware_compat_levels and k != "none"]
            raise unavailable(f"--hardware-compat {opts.hardware_compat} (HardwareCompatibilityLevel.{member})", caps,
                              f"use {' or '.join(others) if others else 'no --hardware-compat'} (same-cc needs TensorRT 10.9+)")
        if member == "AMPERE_PLUS":
            _require_ampere_build_gpu(gpu)
        plan.hardware_compat = member
    return plan


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
        raise FertrtError(f"--hardware-compat ampere+: the build GPU {gpu.get('name', '?')} has compute capability "
                          f"{cc}; Ampere+-compatible engines must be built on an Ampere or newer GPU "
                          "(compute capability 8.0 or higher)")


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
        return (f"TensorRT {version} has no DLA (NVIDIA's docs: 10.7 was the last 10.x release with DLA); "
                "use the TensorRT of JetPack 5/6")
    if v < (11, 4):
        return f"TensorRT {version} has no DLA (NVIDIA's docs: DLA was unavailable in TensorRT 11.0 through 11.3)"
    if v < (11, 4, 1):
        if not windows_arm:
            return (f"TensorRT {version} has DLA only on Windows on Arm "
                    "(11.4.1 adds Jetson AGX Orin with JetPack 7.2.2+)")
        return None
    if not (windows_arm or (system == "Linux" and machine == "aarch64")):
        return f"TensorRT {version} has DLA only on Jetson AGX Orin (JetPack 7.2.2+) and Windows on Arm"
    return None


def _plan_dla(opts, caps, graph, plan, num_dla_cores, host):
    """DLA runs FP16 and INT8 only and needs a static shape (profile MIN = OPT = MAX); otherwise every layer would
    fall back to the GPU (or, without --gpu-fallback, the build fails), so both are refused either way."""
    import platform

    core = opts.dla_core
    if core < 0:
        raise FertrtError(f"--dla-core {core}: expected a DLA core number >= 0")
    system, machine = host or (platform.system(), platform.machine())
    reason = dla_unavailable(caps.version, system, machine)
    if reason:
        raise FertrtError(f"--dla-core {core}: {reason}")
    if num_dla_cores is not None and num_dla_cores == 0:
        raise FertrtError(f"--dla-core {core}: this device has no DLA "
                          "(only Jetson AGX/NX Orin and Xavier have DLA cores)")
    if num_dla_cores is not None and core >= num_dla_cores:
        raise FertrtError(f"--dla-core {core}: this device has {num_dla_cores} DLA cores (0..{num_dla_cores - 1})")
    # weakly typed builds run FP16/INT8 only with the builder flags; strongly typed ones take the graph's types
    typed_reduced = plan.strongly_typed and graph.precision in ("fp16", "int8")
    reduced = set(plan.builder_flags) & {"FP16", "INT8"} or typed_reduced or plan.prequantize
    if not reduced:
        raise FertrtError(f"--dla-core {core} with FP32: DLA runs FP16 and INT8 only, so no layer would run on it; "
                          "build with --precision fp16 or int8")
    if plan.profile:
        mn, op, mx = (plan.profile[graph.input_name][k][0] for k in ("min", "opt", "max"))
        if not mn == op == mx:
            default = "" if opts.batch else " (the default for a dynamic-batch graph)"
            raise FertrtError(f"--dla-core {core}: DLA needs one fixed batch (MIN = OPT = MAX), "
                              f"the profile is {mn},{op},{mx}{default}; pass e.g. --batch 1")
    plan.dla_core = core
    windows_arm = system == "Windows"
    if opts.gpu_fallback:
        if not caps.gpu_fallback:
            raise unavailable("--gpu-fallback", caps, "drop the option")
        if windows_arm:
            raise FertrtError(f"--gpu-fallback: TensorRT {caps.version} on Windows on Arm has no GPU fallback "
                              "(every layer must run on DLA)")
        plan.builder_flags.append("GPU_FALLBACK")
        plan.notes.append("DLA with --gpu-fallback: layers DLA cannot run go to the GPU; "
                          "the build reports how many ran on DLA")
    else:
        plan.notes.append("DLA without --gpu-fallback: layers DLA cannot run make the build fail")


def _legacy_calibrator(opts, caps, plan, required):
    if not caps.calibrator:
        raise unavailable("the INT8 calibrator", caps, "run `fertrt quantize --precision int8` first and build the Q/DQ graph")
    if not (opts.calib_data or opts.calib_cache):
        raise FertrtError("implicit INT8 needs --calib-data SPEC or --calib-cache FILE (e.g. the .calib.cache `fertrt quantize` writes)")
    if opts.calib_size < 1:
        raise FertrtError(f"--calib-size {opts.calib_size}: expected at least 1 image")
    plan.calibrator = {"data": opts.calib_data, "cache": opts.calib_cache, "size": opts.calib_size}


def cache_key(graph: GraphInfo, caps: Capabilities, gpu: dict, plan: BuildPlan, opts: BuildOptions) -> str:
    """Engines are reusable only for the same ONNX, TensorRT version, GPU, precision, profile and options."""
    blob = json.dumps({
        "onnx": graph.sha256, "trt": caps.version, "gpu": [gpu.get("name"), gpu.get("compute_capability")],
        "precision": opts.precision, "profile": plan.profile, "strong": plan.strongly_typed,
        "flags": sorted(plan.builder_flags), "prequantize": plan.prequantize, "opt_level": plan.builder_opt_level,
        "dla": plan.dla_core, "hw": plan.hardware_compat, "calib": plan.calibrator,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


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
            args.append(f"--{key}Shapes=" + ",".join(f"{n}:{'x'.join(map(str, s[key]))}" for n, s in plan.profile.items()))
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
        args.append(f"--hardwareCompatibilityLevel={ {'AMPERE_PLUS': 'ampere+', 'SAME_COMPUTE_CAPABILITY': 'sameComputeCapability', 'NONE': 'none'}[plan.hardware_compat]}")
    return " ".join(shlex.quote(a) for a in args)
