"""engine/plan.py: BuildOptions' own checks, and the plan (flags, profile, DLA, compatibility, cache key, trtexec
line) per TensorRT release, without TensorRT."""

import pytest

from engine_testing import CAPS, FP16, FP32, JETSON, QDQ, WOA, X86, fake_trt
from fertrt.engine.compat import capabilities_of
from fertrt.engine.plan import BuildOptions, GraphInfo, cache_key, make_plan, parse_batch, trtexec_command
from fertrt.errors import FertrtError


def test_fp16_plans():
    p85 = make_plan(BuildOptions(precision="fp16"), CAPS["8.5.2"], FP32)
    assert p85.network_flags == ["EXPLICIT_BATCH"] and p85.builder_flags == ["FP16"] and not p85.strongly_typed
    p10 = make_plan(BuildOptions(precision="fp16"), CAPS["10.3.0"], FP32)
    assert p10.strongly_typed and p10.prequantize == "fp16" and p10.builder_flags == []
    assert make_plan(BuildOptions(precision="fp16"), CAPS["10.3.0"], FP16).prequantize is None
    weak = make_plan(BuildOptions(precision="fp16", weakly_typed=True), CAPS["10.3.0"], FP32)
    assert not weak.strongly_typed and weak.builder_flags == ["FP16"] and weak.network_flags == []
    p11 = make_plan(BuildOptions(precision="fp16"), CAPS["11.1.0"], FP32)
    assert p11.strongly_typed and p11.prequantize == "fp16"
    with pytest.raises(FertrtError, match="not available on TensorRT 11.1.0"):
        make_plan(BuildOptions(precision="fp16", weakly_typed=True), CAPS["11.1.0"], FP32)


def test_int8_plans():
    p85 = make_plan(BuildOptions(precision="int8"), CAPS["8.5.2"], QDQ)
    assert p85.builder_flags == ["INT8", "FP16"] and not p85.strongly_typed
    p10 = make_plan(BuildOptions(precision="int8"), CAPS["10.3.0"], QDQ)
    assert p10.strongly_typed and p10.builder_flags == [] and p10.prequantize is None
    with pytest.raises(FertrtError, match="needs calibration data: --calib-data"):
        make_plan(BuildOptions(precision="int8"), CAPS["11.1.0"], FP32)
    assert make_plan(BuildOptions(precision="int8", calib_data="synth"), CAPS["11.1.0"], FP32).prequantize == "int8"
    legacy = make_plan(
        BuildOptions(precision="int8", legacy_int8=True, calib_cache="m.calib.cache"), CAPS["8.6.1"], FP32
    )
    assert (
        legacy.calibrator == {"data": None, "cache": "m.calib.cache", "size": 512, "batch": 8}
        and "INT8" in legacy.builder_flags
    )
    with pytest.raises(
        FertrtError, match=r"--legacy-int8.*not available on TensorRT 11.1.0; run `fertrt quantize --precision int8"
    ):
        make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_data="synth"), CAPS["11.1.0"], FP32)
    with pytest.raises(FertrtError, match="needs --calib-data SPEC or --calib-cache"):
        make_plan(BuildOptions(precision="int8", legacy_int8=True), CAPS["8.5.2"], FP32)
    with pytest.raises(FertrtError, match="not available on TensorRT 11.1.0"):
        make_plan(BuildOptions(precision="best"), CAPS["11.1.0"], QDQ)
    with pytest.raises(FertrtError, match="needs a Q/DQ graph"):
        make_plan(BuildOptions(precision="int8"), CAPS["8.5.2"], FP32)


def test_profiles_and_options():
    assert parse_batch("1,8,32") == (1, 8, 32) and parse_batch("4") == (4, 4, 4)
    for bad in ("8,1,32", "a,b,c", "0,1,2"):
        with pytest.raises(FertrtError, match="--batch-profile"):
            parse_batch(bad)
    plan = make_plan(
        BuildOptions(batch=(2, 4, 16), workspace_mib=512, builder_opt_level=5, timing_cache="t.cache"),
        CAPS["10.3.0"],
        FP32,
    )
    assert plan.profile == {"input": {"min": [2, 3, 112, 112], "opt": [4, 3, 112, 112], "max": [16, 3, 112, 112]}}
    assert plan.workspace_bytes == 512 << 20 and plan.builder_opt_level == 5
    static = GraphInfo("input", (8, 3, 112, 112), "fp32", "d" * 64)
    sp = make_plan(BuildOptions(batch=(1, 2, 4)), CAPS["10.3.0"], static)
    assert sp.profile is None and any("static batch" in n for n in sp.notes)
    with pytest.raises(FertrtError, match="--builder-opt-level is not available on TensorRT 8.5.2"):
        make_plan(BuildOptions(builder_opt_level=3), CAPS["8.5.2"], FP32)
    with pytest.raises(FertrtError, match="no DLA"):
        make_plan(BuildOptions(dla_core=0), CAPS["10.3.0"], FP32, num_dla_cores=0)
    dla = make_plan(
        BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=1, gpu_fallback=True),
        CAPS["8.5.2"],
        FP32,
        num_dla_cores=2,
        host=JETSON,
    )
    assert dla.dla_core == 1 and "GPU_FALLBACK" in dla.builder_flags
    hw = make_plan(BuildOptions(hardware_compat="ampere+", version_compatible=True), CAPS["10.3.0"], FP32)
    assert hw.hardware_compat == "AMPERE_PLUS" and "VERSION_COMPATIBLE" in hw.builder_flags
    with pytest.raises(FertrtError, match="--version-compatible is not available on TensorRT 8.5.2"):
        make_plan(BuildOptions(version_compatible=True), CAPS["8.5.2"], FP32)


def test_cache_key_changes_with_every_input():
    gpu = {"name": "Orin", "compute_capability": "8.7"}
    opts = BuildOptions(precision="fp16")
    base = cache_key(FP16, CAPS["10.3.0"], gpu, make_plan(opts, CAPS["10.3.0"], FP16), opts)
    assert base == cache_key(FP16, CAPS["10.3.0"], gpu, make_plan(opts, CAPS["10.3.0"], FP16), opts)
    other_onnx = GraphInfo("input", FP16.input_shape, "fp16", "e" * 64)
    variants = [
        cache_key(other_onnx, CAPS["10.3.0"], gpu, make_plan(opts, CAPS["10.3.0"], other_onnx), opts),
        cache_key(FP16, CAPS["8.6.1"], gpu, make_plan(opts, CAPS["8.6.1"], FP16), opts),
        cache_key(
            FP16,
            CAPS["10.3.0"],
            {"name": "RTX 4090", "compute_capability": "8.9"},
            make_plan(opts, CAPS["10.3.0"], FP16),
            opts,
        ),
        cache_key(
            FP16,
            CAPS["10.3.0"],
            gpu,
            make_plan(BuildOptions(precision="fp16", batch=(1, 1, 4)), CAPS["10.3.0"], FP16),
            BuildOptions(precision="fp16", batch=(1, 1, 4)),
        ),
    ]
    assert len({base, *variants}) == 5


def test_trtexec_line():
    plan = make_plan(
        BuildOptions(precision="fp16", batch=(1, 8, 32), workspace_mib=1024, timing_cache="tc.bin"),
        CAPS["10.3.0"],
        FP16,
    )
    line = trtexec_command("m.fp16.onnx", "m.engine", plan)
    assert line.startswith("trtexec --onnx=m.fp16.onnx --saveEngine=m.engine --stronglyTyped")
    assert "--minShapes=input:1x3x112x112" in line and "--maxShapes=input:32x3x112x112" in line
    assert "--memPoolSize=workspace:1024" in line and "--timingCacheFile=tc.bin" in line and "--fp16" not in line
    legacy = make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_cache="c.cache"), CAPS["8.5.2"], FP32)
    legacy_line = trtexec_command("m.onnx", "m.engine", legacy).split()
    assert {"--int8", "--fp16", "--calib=c.cache"} <= set(legacy_line) and "--stronglyTyped" not in legacy_line


def test_same_cc_needs_the_enum_member_not_just_the_enum():
    """Defect 1: HardwareCompatibilityLevel exists from 8.6, SAME_COMPUTE_CAPABILITY only from 10.9."""
    assert CAPS["10.3.0"].hardware_compat and "SAME_COMPUTE_CAPABILITY" not in CAPS["10.3.0"].hardware_compat_levels
    with pytest.raises(
        FertrtError, match=r"same-cc.*not available on TensorRT 10.3.0; use ampere\+ \(same-cc needs TensorRT 10.9\+\)"
    ):
        make_plan(BuildOptions(hardware_compat="same-cc"), CAPS["10.3.0"], FP32)
    assert (
        make_plan(BuildOptions(hardware_compat="same-cc"), CAPS["10.9.0"], FP32).hardware_compat
        == "SAME_COMPUTE_CAPABILITY"
    )
    assert make_plan(BuildOptions(hardware_compat="ampere+"), CAPS["8.6.1"], FP32).hardware_compat == "AMPERE_PLUS"


def test_legacy_calibration_uses_the_opt_batch():
    """Defect 3: the calibrator's batch is the OPT batch of the (calibration) profile."""
    plan = make_plan(
        BuildOptions(precision="int8", legacy_int8=True, batch=(1, 32, 64), calib_data="synth", calib_size=64),
        CAPS["10.3.0"],
        FP32,
    )
    assert plan.calibrator["batch"] == 32 and plan.profile["input"]["opt"][0] == 32
    with pytest.raises(FertrtError, match="--calib-size 16: smaller than the calibration batch 32"):
        make_plan(
            BuildOptions(precision="int8", legacy_int8=True, batch=(1, 32, 64), calib_data="synth", calib_size=16),
            CAPS["10.3.0"],
            FP32,
        )
    static = GraphInfo("input", (4, 3, 112, 112), "fp32", "d" * 64)
    assert (
        make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_cache="c"), CAPS["8.6.1"], static).calibrator[
            "batch"
        ]
        == 4
    )


def test_dla_refuses_fp32_and_dynamic_batches_with_or_without_gpu_fallback():
    """Defect 1: DLA runs FP16/INT8 only and one fixed shape; either mistake would put every layer on the GPU."""
    caps = CAPS["10.3.0"]
    for fallback in (False, True):
        with pytest.raises(FertrtError, match=r"--dla-core 0 with FP32: DLA runs FP16 and INT8 only"):
            make_plan(BuildOptions(batch=(1, 1, 1), dla_core=0, gpu_fallback=fallback), caps, FP32, 2, host=JETSON)
        with pytest.raises(
            FertrtError, match=r"MIN = OPT = MAX\), the profile is 1,8,32 \(the default for a dynamic-batch graph\)"
        ):
            make_plan(BuildOptions(precision="fp16", dla_core=0, gpu_fallback=fallback), caps, FP16, 2, host=JETSON)
        with pytest.raises(FertrtError, match=r"the profile is 1,4,4; pass e.g. --batch-profile 1"):
            make_plan(
                BuildOptions(precision="fp16", batch=(1, 4, 4), dla_core=0, gpu_fallback=fallback),
                caps,
                FP16,
                2,
                host=JETSON,
            )
    ok = make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps, FP16, 2, host=JETSON)
    assert ok.dla_core == 0 and ok.profile["input"]["min"] == ok.profile["input"]["max"] == [1, 3, 112, 112]
    fp32_graph_weak = make_plan(
        BuildOptions(precision="fp16", weakly_typed=True, batch=(2, 2, 2), dla_core=1), caps, FP32, 2, host=JETSON
    )
    assert "FP16" in fp32_graph_weak.builder_flags and fp32_graph_weak.dla_core == 1
    static = GraphInfo("input", (1, 3, 112, 112), "int8", "f" * 64)
    assert make_plan(BuildOptions(precision="int8", dla_core=0), caps, static, 2, host=JETSON).dla_core == 0


def test_dla_availability_per_tensorrt_release():
    """Defect 1: from the "Working with DLA" pages of 10.x, 11.0-11.4.1 and the 11.4.x release notes."""
    from fertrt.engine.plan import dla_unavailable

    for version in ("8.5.2", "8.6.2", "10.0.1", "10.3.0", "10.7.0"):
        assert dla_unavailable(version, *JETSON) is None, version
    assert "10.7 was the last 10.x release" in dla_unavailable("10.8.0.43", *JETSON)
    for version in ("11.0.0.114", "11.1.0", "11.2.1", "11.3.0"):
        assert "unavailable in TensorRT 11.0 through 11.3" in dla_unavailable(version, *JETSON), version
        assert dla_unavailable(version, *WOA), version
    assert "only on Windows on Arm" in dla_unavailable("11.4.0.106", *JETSON)
    assert dla_unavailable("11.4.0.106", *WOA) is None
    assert dla_unavailable("11.4.1", *JETSON) is None and dla_unavailable("11.4.1", *WOA) is None
    assert "Jetson AGX Orin" in dla_unavailable("11.4.1", *X86)
    caps11 = capabilities_of(fake_trt("11.4.0"))
    with pytest.raises(FertrtError, match="--dla-core 0: TensorRT 11.4.0 has DLA only on Windows on Arm"):
        make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps11, FP16, 2, host=JETSON)
    with pytest.raises(FertrtError, match="has no GPU fallback"):
        make_plan(
            BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0, gpu_fallback=True), caps11, FP16, 2, host=WOA
        )
    assert (
        make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps11, FP16, 2, host=WOA).dla_core == 0
    )


def test_hardware_compat_ampere_plus_needs_an_ampere_build_gpu():
    """Defect 10: TensorRT builds Ampere+-compatible engines only on compute capability 8.0 or higher."""
    opts = BuildOptions(hardware_compat="ampere+")
    with pytest.raises(FertrtError, match=r"build GPU Xavier has compute capability 7.2; .*8.0 or higher"):
        make_plan(opts, CAPS["8.6.1"], FP32, gpu={"name": "Xavier", "compute_capability": "7.2"})
    assert (
        make_plan(opts, CAPS["10.3.0"], FP32, gpu={"name": "Orin", "compute_capability": "8.7"}).hardware_compat
        == "AMPERE_PLUS"
    )
    assert (
        make_plan(opts, CAPS["10.3.0"], FP32, gpu={"name": "H100", "compute_capability": "9.0"}).hardware_compat
        == "AMPERE_PLUS"
    )
    assert (
        make_plan(
            BuildOptions(hardware_compat="none"), CAPS["10.3.0"], FP32, gpu={"compute_capability": "7.2"}
        ).hardware_compat
        == "NONE"
    )


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("precision", "fp8", "--precision 'fp8': expected one of fp32, fp16, int8, best"),
        ("batch", (2, 1, 4), "--batch-profile 2,1,4: expected 1 <= MIN <= OPT <= MAX"),
        ("batch", (0, 1, 2), "--batch-profile 0,1,2: expected"),
        ("batch", (1, 8), "--batch-profile 1,8: expected"),
        ("batch", (1.0, 8, 32), "--batch-profile 1.0,8,32: expected"),
        ("workspace_mib", 0, "--workspace 0: expected an integer >= 1"),
        ("builder_opt_level", 6, "--builder-opt-level 6: expected an integer from 0 to 5"),
        ("builder_opt_level", -1, "--builder-opt-level -1: expected"),
        ("builder_opt_level", True, "--builder-opt-level True: expected"),
        ("dla_core", -2, "--dla-core -2: expected an integer >= 0"),
        ("hardware_compat", "turing+", "--hardware-compat 'turing\\+': expected one of none, ampere\\+, same-cc"),
        ("calib_size", 0, "--calib-size 0: expected an integer from 1 to"),
        ("calib_size", 64.0, "--calib-size 64.0: expected"),
        ("gpu_fallback", True, "--gpu-fallback only applies with --dla-core N"),
    ],
)
def test_build_options_refuse_each_bad_value_naming_the_option(field, value, message):
    """The Python API refuses what the command line refuses, when the options are made (before any planning)."""
    with pytest.raises(FertrtError, match=message):
        BuildOptions(**{field: value})


def test_build_options_share_the_command_lines_limits():
    """One definition of each limit: the argparse type of the option is the very range BuildOptions checks."""
    import argparse

    from fertrt.cli import _COMMANDS
    from fertrt.ranges import BUILDER_OPT_LEVEL, CALIB_SIZE, DLA_CORE, WORKSPACE_MIB

    parser = argparse.ArgumentParser()
    _COMMANDS["build-engine"][2](parser)
    types = {a.dest: a.type for a in parser._actions}
    assert types["workspace"] is WORKSPACE_MIB and types["builder_opt_level"] is BUILDER_OPT_LEVEL
    assert types["dla_core"] is DLA_CORE and types["calib_size"] is CALIB_SIZE
    for field, limits in (("builder_opt_level", BUILDER_OPT_LEVEL), ("calib_size", CALIB_SIZE)):
        assert getattr(BuildOptions(**{field: limits.hi}), field) == limits.hi  # the ends are inside
        assert getattr(BuildOptions(**{field: limits.lo}), field) == limits.lo
        with pytest.raises(FertrtError, match=f"--{field.replace('_', '-')} {limits.hi + 1}: "):
            BuildOptions(**{field: limits.hi + 1})


def test_build_options_from_a_sidecar_are_the_same_options():
    """Engine rebuilds (runtime --rebuild) make BuildOptions from a sidecar's JSON, where the profile is a list."""
    import dataclasses
    import json

    opts = BuildOptions(precision="fp16", batch=(1, 4, 16), workspace_mib=256, calib_size=64)
    again = BuildOptions(**json.loads(json.dumps(vars(opts))))
    assert again == opts and again.batch == (1, 4, 16)
    with pytest.raises(dataclasses.FrozenInstanceError):  # checked once, so never changed after
        opts.calib_size = 0
    with pytest.raises(FertrtError, match="--calib-size 0"):
        dataclasses.replace(opts, calib_size=0)
    assert make_plan(again, CAPS["10.3.0"], FP32).profile["input"]["opt"] == [4, 3, 112, 112]
