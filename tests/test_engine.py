"""Engine planning, cache keys, sidecars and CLI validation without TensorRT; `trt` tests with it."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fertrt.engine.compat import capabilities_of
from fertrt.engine.device import parse_nv_tegra_release
from fertrt.engine.plan import BuildOptions, GraphInfo, cache_key, make_plan, parse_batch, trtexec_command
from fertrt.engine.sidecar import compatibility_problems
from fertrt.errors import FertrtError


def fake_trt(version):
    """A namespace with the attributes each TensorRT release documents (see engine/compat.py)."""
    major = int(version.split(".")[0])
    minor = int(version.split(".")[1])
    flags = {"GPU_FALLBACK": 1}
    ncf = {}
    cfg = {"set_memory_pool_limit": 1, "create_timing_cache": 1}
    mod = {"__version__": version}
    if major < 11:
        flags.update(FP16=1, INT8=1)
        cfg["int8_calibrator"] = 1
        mod["IInt8EntropyCalibrator2"] = object
    if major < 10:
        ncf["EXPLICIT_BATCH"] = 0
    if major >= 10:
        ncf["STRONGLY_TYPED"] = 5
    if (major, minor) >= (8, 6):
        flags["VERSION_COMPATIBLE"] = 1
        cfg["builder_optimization_level"] = 3
        cfg["hardware_compatibility_level"] = 0
        mod["HardwareCompatibilityLevel"] = object
    return SimpleNamespace(BuilderFlag=SimpleNamespace(**flags), NetworkDefinitionCreationFlag=SimpleNamespace(**ncf),
                           IBuilderConfig=SimpleNamespace(**cfg),
                           ICudaEngine=SimpleNamespace(create_engine_inspector=1, num_io_tensors=1),
                           IExecutionContext=SimpleNamespace(execute_async_v3=1), **mod)


CAPS = {v: capabilities_of(fake_trt(v)) for v in ("8.5.2", "8.6.1", "10.3.0", "11.1.0")}
FP32 = GraphInfo("input", ("batch", 3, 112, 112), "fp32", "a" * 64)
FP16 = GraphInfo("input", ("batch", 3, 112, 112), "fp16", "b" * 64)
QDQ = GraphInfo("input", ("batch", 3, 112, 112), "int8", "c" * 64)


def test_capabilities_per_version():
    assert not CAPS["8.5.2"].strongly_typed and CAPS["8.5.2"].explicit_batch_flag and CAPS["8.5.2"].calibrator
    assert not CAPS["8.5.2"].builder_opt_level and CAPS["8.6.1"].builder_opt_level
    assert CAPS["10.3.0"].strongly_typed and not CAPS["10.3.0"].explicit_batch_flag and CAPS["10.3.0"].fp16_flag
    assert CAPS["11.1.0"].strongly_typed and not CAPS["11.1.0"].fp16_flag and not CAPS["11.1.0"].calibrator


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
    legacy = make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_cache="m.calib.cache"), CAPS["8.6.1"], FP32)
    assert legacy.calibrator == {"data": None, "cache": "m.calib.cache", "size": 512} and "INT8" in legacy.builder_flags
    with pytest.raises(FertrtError, match=r"--legacy-int8.*not available on TensorRT 11.1.0; run `fertrt quantize --precision int8"):
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
        with pytest.raises(FertrtError, match="--batch"):
            parse_batch(bad)
    plan = make_plan(BuildOptions(batch=(2, 4, 16), workspace_mib=512, builder_opt_level=5, timing_cache="t.cache"), CAPS["10.3.0"], FP32)
    assert plan.profile == {"input": {"min": [2, 3, 112, 112], "opt": [4, 3, 112, 112], "max": [16, 3, 112, 112]}}
    assert plan.workspace_bytes == 512 << 20 and plan.builder_opt_level == 5
    static = GraphInfo("input", (8, 3, 112, 112), "fp32", "d" * 64)
    sp = make_plan(BuildOptions(batch=(1, 2, 4)), CAPS["10.3.0"], static)
    assert sp.profile is None and any("static batch" in n for n in sp.notes)
    with pytest.raises(FertrtError, match="--builder-opt-level is not available on TensorRT 8.5.2"):
        make_plan(BuildOptions(builder_opt_level=3), CAPS["8.5.2"], FP32)
    with pytest.raises(FertrtError, match="no DLA"):
        make_plan(BuildOptions(dla_core=0), CAPS["10.3.0"], FP32, num_dla_cores=0)
    dla = make_plan(BuildOptions(dla_core=1, gpu_fallback=True), CAPS["8.5.2"], FP32, num_dla_cores=2)
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
        cache_key(FP16, CAPS["10.3.0"], {"name": "RTX 4090", "compute_capability": "8.9"}, make_plan(opts, CAPS["10.3.0"], FP16), opts),
        cache_key(FP16, CAPS["10.3.0"], gpu, make_plan(BuildOptions(precision="fp16", batch=(1, 1, 4)), CAPS["10.3.0"], FP16),
                  BuildOptions(precision="fp16", batch=(1, 1, 4))),
    ]
    assert len({base, *variants}) == 5


def test_trtexec_line():
    plan = make_plan(BuildOptions(precision="fp16", batch=(1, 8, 32), workspace_mib=1024, timing_cache="tc.bin"), CAPS["10.3.0"], FP16)
    line = trtexec_command("m.fp16.onnx", "m.engine", plan)
    assert line.startswith("trtexec --onnx=m.fp16.onnx --saveEngine=m.engine --stronglyTyped")
    assert "--minShapes=input:1x3x112x112" in line and "--maxShapes=input:32x3x112x112" in line
    assert "--memPoolSize=workspace:1024" in line and "--timingCacheFile=tc.bin" in line and "--fp16" not in line
    legacy = make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_cache="c.cache"), CAPS["8.5.2"], FP32)
    legacy_line = trtexec_command("m.onnx", "m.engine", legacy).split()
    assert {"--int8", "--fp16", "--calib=c.cache"} <= set(legacy_line) and "--stronglyTyped" not in legacy_line


def test_sidecar_compatibility():
    side = {"tensorrt_version": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7"}, "build_options": {}}
    assert compatibility_problems(side, "10.3.0", {"name": "Orin", "compute_capability": "8.7"}) == []
    assert "not portable between TensorRT versions" in compatibility_problems(side, "8.6.2", {"name": "Orin", "compute_capability": "8.7"})[0]
    assert "tuned per GPU model" in compatibility_problems(side, "10.3.0", {"name": "RTX 4090", "compute_capability": "8.9"})[0]
    side["build_options"] = {"version_compatible": True, "hardware_compat": "ampere+"}
    assert compatibility_problems(side, "10.8.0", {"name": "RTX 4090", "compute_capability": "8.9"}) == []
    assert "compute capability 7.5" in compatibility_problems(side, "10.8.0", {"name": "T4", "compute_capability": "7.5"})[0]


def test_nv_tegra_release():
    assert parse_nv_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == {"l4t": "35.4.1", "jetpack": "5.1.x"}
    assert parse_nv_tegra_release("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic")["jetpack"] == "6.x"
    assert parse_nv_tegra_release("garbage") is None


def test_build_engine_without_tensorrt_validates_then_explains(tiny_onnx, tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; this test covers machines without it")
    except ImportError:
        pass
    run = lambda *a: subprocess.run([sys.executable, "-m", "fertrt", "build-engine", *a], capture_output=True, text=True)
    r = run(str(tiny_onnx), "-o", str(tmp_path / "m.engine"), "--precision", "fp16")
    assert r.returncode == 2
    assert "is a valid FP32 model for an engine" in r.stderr and "pip install tensorrt" in r.stderr and "JetPack ships TensorRT" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "m.engine"))
    assert r.returncode == 2 and "missing.onnx: no such file" in r.stderr
    r = run(str(tiny_onnx), "-o", str(tmp_path / "no" / "m.engine"))
    assert r.returncode == 2 and "output folder" in r.stderr
    r = run(str(tiny_onnx), "-o", str(tmp_path / "m.engine"), "--batch", "8,1,2")
    assert r.returncode == 2 and "--batch '8,1,2'" in r.stderr


# ---------------------------------------------------------------- with TensorRT and a GPU
@pytest.mark.trt
@pytest.mark.parametrize("precision,tol_agree", [("fp32", 1.0), ("fp16", 0.98), ("int8", 0.85)])
def test_trt_engine_matches_onnxruntime(tiny_onnx, tmp_path, precision, tol_agree):
    from fertrt.engine.commands import build
    from fertrt.export.compare import compare_models
    from helpers import TINY_SPEC

    engine = tmp_path / f"m_{precision}.engine"
    opts = BuildOptions(precision=precision, batch=(1, 8, 32), calib_data=TINY_SPEC if precision == "int8" else None,
                        timing_cache=str(tmp_path / "timing.cache"))
    side = build(tiny_onnx, engine, opts, use_cache=False, log=lambda *a: None)
    assert side["class_names"][0] == "neutral" and side["profile"]["input"]["max"][0] == 32
    assert (tmp_path / "timing.cache").stat().st_size > 0
    rep = compare_models([tiny_onnx, engine], TINY_SPEC, limit=200)
    assert rep["models"][1]["agreement"] >= tol_agree and rep["models"][1]["finite"]
    # the timing cache is loaded by the next build
    side2 = build(tiny_onnx, tmp_path / "again.engine", opts, use_cache=False, log=lambda *a: None)
    assert side2["timing_cache"]["loaded"] is True


@pytest.mark.trt
def test_trt_legacy_int8_reads_fertrt_calibration_cache(tiny_onnx, tmp_path):
    import tensorrt as trt

    from fertrt.engine.commands import build
    from fertrt.export.quantize import Int8Options, quantize_int8
    from helpers import TINY_SPEC

    if not hasattr(trt.BuilderFlag, "INT8"):
        pytest.skip(f"TensorRT {trt.__version__} has no implicit INT8 (removed in 11)")
    quantize_int8(tiny_onnx, tmp_path / "q.onnx", Int8Options(calib=TINY_SPEC, calib_size=64, cache_dir=tmp_path))
    cache = str(tmp_path / "q.onnx.calib.cache")
    side = build(tiny_onnx, tmp_path / "legacy.engine", BuildOptions(precision="int8", legacy_int8=True, calib_cache=cache),
                 use_cache=False, log=lambda *a: None)
    assert side["precision"]["builder_flags"][0] == "INT8"


@pytest.mark.trt
def test_trt_runner_batch_outside_profile(tiny_onnx, tmp_path):
    from fertrt.engine.commands import build
    from fertrt.runtime.runners import open_runner

    engine = tmp_path / "m.engine"
    build(tiny_onnx, engine, BuildOptions(batch=(1, 2, 4)), use_cache=False, log=lambda *a: None)
    with open_runner(engine) as r:
        assert r.infer(np.zeros((4, 3, 112, 112), np.float32)).shape == (4, 7)
        with pytest.raises(FertrtError, match="outside the engine's profile"):
            r.infer(np.zeros((5, 3, 112, 112), np.float32))
