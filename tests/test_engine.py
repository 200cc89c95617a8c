"""Engine planning, cache keys, sidecars and CLI validation without TensorRT; `trt` tests with it."""
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from fertrt.engine.compat import capabilities_of
from fertrt.engine.device import parse_nv_tegra_release
from fertrt.engine.doctor import TOLERANCES
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
        # the enum came in 8.6, its SAME_COMPUTE_CAPABILITY member only in 10.9 (checked on the real bindings in test_trt_api.py)
        levels = {"NONE": 0, "AMPERE_PLUS": 1, **({"SAME_COMPUTE_CAPABILITY": 2} if (major, minor) >= (10, 9) else {})}
        mod["HardwareCompatibilityLevel"] = SimpleNamespace(**levels)
        mod["Runtime"] = SimpleNamespace(engine_host_code_allowed=1)
    context = {"execute_async_v3": 1, "set_input_shape": 1, "set_tensor_address": 1} if (major, minor) >= (8, 5) else {"execute_async_v2": 1}
    return SimpleNamespace(BuilderFlag=SimpleNamespace(**flags), NetworkDefinitionCreationFlag=SimpleNamespace(**ncf),
                           IBuilderConfig=SimpleNamespace(**cfg),
                           ICudaEngine=SimpleNamespace(create_engine_inspector=1, num_io_tensors=1),
                           IExecutionContext=SimpleNamespace(**context), **mod)


CAPS = {v: capabilities_of(fake_trt(v)) for v in ("8.5.2", "8.6.1", "10.3.0", "10.9.0", "11.1.0")}
FP32 = GraphInfo("input", ("batch", 3, 112, 112), "fp32", "a" * 64)
JETSON, X86, WOA = ("Linux", "aarch64"), ("Linux", "x86_64"), ("Windows", "ARM64")
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
    assert legacy.calibrator == {"data": None, "cache": "m.calib.cache", "size": 512, "batch": 8} and "INT8" in legacy.builder_flags
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
    dla = make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=1, gpu_fallback=True), CAPS["8.5.2"], FP32,
                    num_dla_cores=2, host=JETSON)
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
@pytest.mark.parametrize("precision,tol_agree", list(TOLERANCES.items()))  # the tolerances `fertrt doctor` uses
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


# ---------------------------------------------------------------- issue 10: the eight defects (pure parts) and hardening
def test_same_cc_needs_the_enum_member_not_just_the_enum():
    """Defect 1: HardwareCompatibilityLevel exists from 8.6, SAME_COMPUTE_CAPABILITY only from 10.9."""
    assert CAPS["10.3.0"].hardware_compat and "SAME_COMPUTE_CAPABILITY" not in CAPS["10.3.0"].hardware_compat_levels
    with pytest.raises(FertrtError, match=r"same-cc.*not available on TensorRT 10.3.0; use ampere\+ \(same-cc needs TensorRT 10.9\+\)"):
        make_plan(BuildOptions(hardware_compat="same-cc"), CAPS["10.3.0"], FP32)
    assert make_plan(BuildOptions(hardware_compat="same-cc"), CAPS["10.9.0"], FP32).hardware_compat == "SAME_COMPUTE_CAPABILITY"
    assert make_plan(BuildOptions(hardware_compat="ampere+"), CAPS["8.6.1"], FP32).hardware_compat == "AMPERE_PLUS"


def test_version_compatible_engines_run_on_the_same_or_newer_tensorrt_only():
    """Defect 2 (sidecar half; the engine_host_code_allowed half is in test_trt_api.py)."""
    gpu = {"name": "Orin", "compute_capability": "8.7"}
    side = {"tensorrt_version": "10.3.0", "gpu": gpu, "build_options": {"version_compatible": True}}
    assert compatibility_problems(side, "10.3.0", gpu) == []
    assert compatibility_problems(side, "10.13.0.35", gpu) == []  # newer: fine
    older = compatibility_problems(side, "8.6.2", gpu)
    assert len(older) == 1 and "older 8.6.2" in older[0] and "same or a newer TensorRT" in older[0]
    assert compatibility_problems(side, "10.2.0", gpu)  # 10.2 < 10.3 (compared as numbers, not strings)


def test_legacy_calibration_uses_the_opt_batch():
    """Defect 3: the calibrator's batch is the OPT batch of the (calibration) profile."""
    plan = make_plan(BuildOptions(precision="int8", legacy_int8=True, batch=(1, 32, 64), calib_data="synth", calib_size=64),
                     CAPS["10.3.0"], FP32)
    assert plan.calibrator["batch"] == 32 and plan.profile["input"]["opt"][0] == 32
    with pytest.raises(FertrtError, match="--calib-size 16: smaller than the calibration batch 32"):
        make_plan(BuildOptions(precision="int8", legacy_int8=True, batch=(1, 32, 64), calib_data="synth", calib_size=16), CAPS["10.3.0"], FP32)
    static = GraphInfo("input", (4, 3, 112, 112), "fp32", "d" * 64)
    assert make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_cache="c"), CAPS["8.6.1"], static).calibrator["batch"] == 4


def test_tensorrt_older_than_8_5_gets_one_message():
    """Defect 8: 8.4 (JetPack 5.0 apt) lacks the tensor API; one message naming the minimum."""
    from fertrt.engine.compat import require_supported

    caps = capabilities_of(fake_trt("8.4.1"))
    assert not caps.tensor_api
    with pytest.raises(FertrtError, match=r"TensorRT 8.4.1 is too old for fertrt: it needs TensorRT 8.5 or newer \(JetPack 5.1\+"):
        require_supported(caps)
    assert require_supported(CAPS["8.5.2"]) is CAPS["8.5.2"]


def test_calibration_cache_header_names_the_reading_tensorrt(tmp_path, monkeypatch):
    """Defect 6: the header tag is the TensorRT that will read the cache; bad --trt-version is a clear error."""
    from fertrt.engine.commands import check_calib_cache_version
    from fertrt.export import trt_calib_cache as tcc

    assert [tcc.trt_version_tag(v) for v in ("8.5.2", "8.6.2", "10.3.0", "10.13.0.35", "8.6.1.6", 8601, "100300")] == \
        [8502, 8602, 100300, 101300, 8601, 8601, 100300]
    for bad in ("-1", "garbage", "7.1.3", "", "10.x", "123"):
        with pytest.raises(FertrtError, match="--trt-version"):
            tcc.parse_trt_version(bad)
    # named version wins; else the installed one; else the fallback, said out loud
    path = tmp_path / "m.calib.cache"
    tcc.write_trt_calibration_cache({"input": 127.0}, path, "10.3.0", log=lambda *a: None)
    assert path.read_text().splitlines()[0] == "TRT-100300-EntropyCalibration2"
    monkeypatch.setattr(tcc, "installed_trt_version", lambda: "8.6.2.3")
    tcc.write_trt_calibration_cache({"input": 127.0}, path, None, log=lambda *a: None)
    assert path.read_text().splitlines()[0] == "TRT-8602-EntropyCalibration2"
    monkeypatch.setattr(tcc, "installed_trt_version", lambda: None)
    notes = []
    tcc.write_trt_calibration_cache({"input": 127.0}, path, None, log=notes.append)
    assert path.read_text().splitlines()[0] == "TRT-8601-EntropyCalibration2" and "pass --trt-version" in notes[0]
    # build-engine --legacy-int8 --calib-cache compares the header with the installed TensorRT
    assert check_calib_cache_version(path, "8.6.1", has_data=False) is None
    with pytest.raises(FertrtError, match=r"TensorRT ignores such a cache and calibrates again, which needs --calib-data.*--trt-version 10.3.0"):
        check_calib_cache_version(path, "10.3.0", has_data=False)
    assert "calibrates again" in check_calib_cache_version(path, "10.3.0", has_data=True)


def test_quantize_rejects_a_bad_trt_version(capsys):
    from fertrt.cli import main

    for bad in ("-1", "garbage"):
        with pytest.raises(SystemExit) as exc:
            main(["quantize", "m.onnx", f"--trt-version={bad}"])
        assert exc.value.code == 2 and "--trt-version" in capsys.readouterr().err


@pytest.fixture(scope="module")
def doctor_onnx(tmp_path_factory):
    """The doctor's tiny fertrt model: valid ONNX with fertrt metadata, made in milliseconds without torch."""
    pytest.importorskip("onnx")
    from fertrt.engine.doctor import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("doctor") / "tiny.onnx")


def _cli(capsys, *argv):
    from fertrt.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own range types exit 2 with a usage line
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("option,value", [("--workspace", "0"), ("--builder-opt-level", "6"), ("--builder-opt-level", "-1"),
                                          ("--dla-core", "-1"), ("--calib-size", "0"), ("--batch", "0,1,2"), ("--batch", "4,2,8")])
def test_build_engine_range_checks(doctor_onnx, tmp_path, capsys, option, value):
    code, _, err = _cli(capsys, "build-engine", str(doctor_onnx), "-o", str(tmp_path / "m.engine"), f"{option}={value}")
    assert code == 2 and option in err and "expected" in err and "Traceback" not in err, err


def test_build_options_range_checks_without_argparse():
    """The same ranges hold for callers of the Python API (BuildOptions -> make_plan / options_from_args)."""
    from fertrt.engine.commands import options_from_args

    base = dict(precision="fp32", batch=None, workspace=None, builder_opt_level=None, timing_cache=None, dla_core=None,
                gpu_fallback=False, version_compatible=False, hardware_compat=None, legacy_int8=False, calib_data=None,
                calib_cache=None, calib_size=512, weakly_typed=False, verbose=False)
    for key, value, expected in (("workspace", 0, "--workspace 0"), ("builder_opt_level", 6, "expected 0..5"),
                                 ("dla_core", -1, "--dla-core -1"), ("calib_size", 0, "--calib-size 0")):
        with pytest.raises(FertrtError, match=expected):
            options_from_args(SimpleNamespace(**{**base, key: value}))
    with pytest.raises(FertrtError, match="--dla-core -2"):
        make_plan(BuildOptions(dla_core=-2), CAPS["10.3.0"], FP32, num_dla_cores=2)
    with pytest.raises(FertrtError, match="--batch 2,1,4"):
        make_plan(BuildOptions(batch=(2, 1, 4)), CAPS["10.3.0"], FP32)
    with pytest.raises(FertrtError, match="--calib-size 0"):
        make_plan(BuildOptions(precision="int8", legacy_int8=True, calib_cache="c", calib_size=0), CAPS["8.6.1"], FP32)


def test_build_engine_never_writes_over_its_input(doctor_onnx, tmp_path, capsys):
    for option in ("-o", "--timing-cache", "--calib-cache"):
        extra = [] if option == "-o" else ["-o", str(tmp_path / "m.engine")]
        code, _, err = _cli(capsys, "build-engine", str(doctor_onnx), *extra, option, str(doctor_onnx))
        # the wording comes from the shared output check (-o) or validate() (the caches); both name option and input
        assert code == 2 and f"{option} {doctor_onnx}: is the input" in err, err
    assert doctor_onnx.stat().st_size > 100


@pytest.mark.parametrize("sidecar,expected", [
    (None, "no sidecar m.engine.json beside it"),
    ("{not json", "m.engine.json: not valid JSON"),
    ("[1, 2]", "not a fertrt engine sidecar"),
    ('{"format": "other"}', "not a fertrt engine sidecar (format 'other'"),
    ('{"format": "fertrt-engine-1", "tensorrt_version": "10.3.0", "gpu": "Orin", "class_names": ["a"], "preprocess": {}, '
     '"precision": {}, "build_options": {}}', "'gpu' is str, expected dict"),
    ('{"format": "fertrt-engine-1", "tensorrt_version": "10.3.0", "gpu": {}, "class_names": 7, "preprocess": {}, '
     '"precision": {}, "build_options": {}}', "'class_names' is int, expected list"),
    ('{"format": "fertrt-engine-1", "tensorrt_version": "10.3.0", "gpu": {}, "class_names": ["a"], "preprocess": {}, '
     '"precision": {}, "build_options": {}, "jetson": {"l4t": 35}}', "'jetson.l4t' must be a string"),
    ('{"format": "fertrt-engine-1"}', "'tensorrt_version' is missing"),
])
def test_inspect_engine_bad_sidecars_are_clear_errors(tmp_path, capsys, sidecar, expected):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    if sidecar is not None:
        (tmp_path / "m.engine.json").write_text(sidecar)
    code, _, err = _cli(capsys, "inspect-engine", str(engine))
    assert code == 2 and expected in err and "Traceback" not in err, err
    if sidecar is not None:
        assert "m.engine.json" in err


def test_inspect_engine_missing_engine(tmp_path, capsys):
    code, _, err = _cli(capsys, "inspect-engine", str(tmp_path / "absent.engine"))
    assert code == 2 and "absent.engine: no such file" in err


def test_inspect_engine_escapes_sidecar_strings(tmp_path, capsys):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    side = {"format": "fertrt-engine-1", "tensorrt_version": "10.3.0\x1b[2J", "gpu": {"name": "Orin\x1b]0;pwned\x07"},
            "class_names": ["happy\u202e"], "preprocess": {}, "precision": {}, "build_options": {}, "model_name": "m"}
    (tmp_path / "m.engine.json").write_text(__import__("json").dumps(side))
    code, out, _ = _cli(capsys, "inspect-engine", str(engine))
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b" in out and code in (0, 1)


def test_doctor_without_tensorrt(tmp_path, capsys):
    """`fertrt doctor` here: runs what can run, says what is missing and how to install it, exits 1."""
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; the GPU side is tested by test_trt_doctor_engine_paths")
    except ImportError:
        pass
    pytest.importorskip("onnx")
    out = tmp_path / "doc"
    code, stdout, _ = _cli(capsys, "doctor", "-o", str(out), "--seconds", "0.05")
    assert code == 1
    report = __import__("json").loads((out / "doctor.json").read_text())
    status = {c["name"]: c for c in report["checks"]}
    assert status["tensorrt"]["status"] == "fail" and "pip install tensorrt" in status["tensorrt"]["detail"]
    assert "JetPack ships TensorRT" in status["tensorrt"]["detail"]
    assert status["tiny model: FP32, FP16 and INT8 (Q/DQ) ONNX"]["status"] == "pass"
    fp16 = status["ONNX Runtime CPU: fp16 graph vs fp32"]
    assert fp16["status"] == "pass" and fp16["figures"]["agreement"] >= 0.98 and fp16["figures"]["max_abs_diff"] < 1e-2
    assert status["TensorRT engines (build, run, compare, time)"]["status"] == "n/a"
    assert report["failed"] == 1 and "| tensorrt | fail |" in (out / "doctor.md").read_text()
    assert "fail  tensorrt: missing." in stdout
    code, _, err = _cli(capsys, "doctor", "-o", str(out))
    assert code == 2 and "pass --force" in err  # an existing report is replaced only with --force


def test_doctor_engine_paths_per_version():
    from fertrt.engine.doctor import engine_paths

    labels = {v: [p.label for p in engine_paths(CAPS[v], n_dla=2 if v == "10.3.0" else 0)] for v in CAPS}
    assert "int8 legacy calibrator (fertrt cache)" in labels["8.6.1"] and "fp16 strongly typed (FP16 graph)" not in labels["8.6.1"]
    assert {"fp16 strongly typed (FP16 graph)", "fp16 weakly typed (builder flag)", "fp16 on DLA 0 (+GPU fallback)"} <= set(labels["10.3.0"])
    assert labels["11.1.0"] == ["fp32", "fp16 strongly typed (FP16 graph)", "int8 strongly typed (Q/DQ graph)"]


@pytest.mark.trt
def test_trt_doctor_engine_paths(tmp_path):
    """On a GPU host: every engine path the doctor knows builds, runs in every mode and agrees with ONNX Runtime."""
    from fertrt.engine.doctor import run_doctor

    report = run_doctor(tmp_path, seconds=0.2)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert not failed, failed
    assert any(c["name"].startswith("build int8") and c["status"] == "pass" for c in report["checks"])


# ---------------------------------------------------------------- issue 24 (second TensorRT audit), pure parts
def test_dla_refuses_fp32_and_dynamic_batches_with_or_without_gpu_fallback():
    """Defect 1: DLA runs FP16/INT8 only and one fixed shape; either mistake would put every layer on the GPU."""
    caps = CAPS["10.3.0"]
    for fallback in (False, True):
        with pytest.raises(FertrtError, match=r"--dla-core 0 with FP32: DLA runs FP16 and INT8 only"):
            make_plan(BuildOptions(batch=(1, 1, 1), dla_core=0, gpu_fallback=fallback), caps, FP32, 2, host=JETSON)
        with pytest.raises(FertrtError, match=r"MIN = OPT = MAX\), the profile is 1,8,32 \(the default for a dynamic-batch graph\)"):
            make_plan(BuildOptions(precision="fp16", dla_core=0, gpu_fallback=fallback), caps, FP16, 2, host=JETSON)
        with pytest.raises(FertrtError, match=r"the profile is 1,4,4; pass e.g. --batch 1"):
            make_plan(BuildOptions(precision="fp16", batch=(1, 4, 4), dla_core=0, gpu_fallback=fallback), caps, FP16, 2, host=JETSON)
    ok = make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps, FP16, 2, host=JETSON)
    assert ok.dla_core == 0 and ok.profile["input"]["min"] == ok.profile["input"]["max"] == [1, 3, 112, 112]
    fp32_graph_weak = make_plan(BuildOptions(precision="fp16", weakly_typed=True, batch=(2, 2, 2), dla_core=1), caps, FP32, 2, host=JETSON)
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
        make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0, gpu_fallback=True), caps11, FP16, 2, host=WOA)
    assert make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps11, FP16, 2, host=WOA).dla_core == 0


def test_dla_layer_count_and_the_doctor_check():
    from fertrt.engine.builder import dla_layer_count
    from fertrt.engine.doctor import dla_check, engine_paths

    gpu_only = [{"name": "conv1", "type": "Convolution", "precision": "Half"}, {"name": "fc", "type": "Gemm", "precision": "Half"}]
    assert dla_layer_count(gpu_only) == 0 and dla_check(0).status == "fail"
    mixed = gpu_only + [{"name": "{ForeignNode[conv2...relu3]}", "type": "DLA", "precision": "Half"}]
    assert dla_layer_count(mixed) == 1 and dla_check(1).status == "pass"
    assert dla_layer_count([{"name": "a"}]) is None and dla_check(None).status == "fail"
    dla_path = [p for p in engine_paths(CAPS["10.3.0"], n_dla=2) if p.options.get("dla_core") == 0][0]
    assert dla_path.options["batch"] == (1, 1, 1)  # the doctor's DLA build is one DLA can run
    make_plan(BuildOptions(**dla_path.options), CAPS["10.3.0"], FP32, 2, host=JETSON)


def test_version_compatible_pairs_across_majors():
    """Defect 2: the 11.4 support matrix allows 8.x engines on 10.x and 10.x engines on 11.x, nothing else across majors."""
    from fertrt.engine.sidecar import version_compatible_problem

    gpu = {"name": "Orin", "compute_capability": "8.7"}

    def problems(built, here):
        side = {"tensorrt_version": built, "gpu": gpu, "build_options": {"version_compatible": True}}
        return compatibility_problems(side, here, gpu)

    assert problems("8.6.1", "10.3.0") == [] and problems("10.3.0", "11.4.0.106") == [] and problems("10.13.0.35", "11.0.0") == []
    assert problems("11.0.0", "11.4.0") == [] and problems("8.6.1", "8.6.2") == []
    eight_on_eleven = problems("8.6.1", "11.4.0.106")
    assert len(eight_on_eleven) == 1 and "only for 8.x engines on 10.x, 10.x engines on 11.x, not 8.x on 11.x" in eight_on_eleven[0]
    assert "cannot make version-compatible engines (8.6+ can)" in problems("8.5.2", "10.3.0")[0]
    assert "older" in problems("11.1.0", "10.13.0")[0]
    assert version_compatible_problem("10.3.0", "x.y") .startswith("cannot compare")


def test_hardware_compat_ampere_plus_needs_an_ampere_build_gpu():
    """Defect 10: TensorRT builds Ampere+-compatible engines only on compute capability 8.0 or higher."""
    opts = BuildOptions(hardware_compat="ampere+")
    with pytest.raises(FertrtError, match=r"build GPU Xavier has compute capability 7.2; .*8.0 or higher"):
        make_plan(opts, CAPS["8.6.1"], FP32, gpu={"name": "Xavier", "compute_capability": "7.2"})
    assert make_plan(opts, CAPS["10.3.0"], FP32, gpu={"name": "Orin", "compute_capability": "8.7"}).hardware_compat == "AMPERE_PLUS"
    assert make_plan(opts, CAPS["10.3.0"], FP32, gpu={"name": "H100", "compute_capability": "9.0"}).hardware_compat == "AMPERE_PLUS"
    assert make_plan(BuildOptions(hardware_compat="none"), CAPS["10.3.0"], FP32, gpu={"compute_capability": "7.2"}).hardware_compat == "NONE"


def test_too_few_calibration_images_are_refused_naming_both_numbers():
    """Defect 9: fewer images than one OPT batch is refused before TensorRT builds."""
    from fertrt.engine.builder import check_calibration_images

    with pytest.raises(FertrtError, match=r"calibration data has 20 images, fewer than one calibration batch of 32"):
        check_calibration_images(20, 32)
    check_calibration_images(32, 32)


def test_onnx_with_external_data(tmp_path):
    """Defect 8: a model saved with external data is read with its data file; a missing one is named."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fertrt.engine.graph import external_data_files, graph_info

    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    node = helper.make_node("Conv", ["input", "w"], ["logits"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 4, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="m.onnx.data",
                    size_threshold=0)
    assert external_data_files(path) == ["m.onnx.data"]
    info, _ = graph_info(path)
    assert info.input_name == "input" and info.precision == "fp32"
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(FertrtError, match=r"external data file 'm.onnx.data', which is missing: keep m.onnx.data beside m.onnx"):
        graph_info(path)


def test_numpy_dtype_map_needs_no_trt_nptype():
    """Issue 20: TensorRT 8.5's trt.nptype uses np.bool (gone in numpy 1.24); fertrt maps DataType names itself."""
    from fertrt.runtime.trt_backend import numpy_dtype

    member = lambda name: SimpleNamespace(name=name)  # noqa: E731 - TensorRT's enum members have .name
    assert numpy_dtype(member("FLOAT")) == np.float32 and numpy_dtype(member("HALF")) == np.float16
    assert numpy_dtype(member("BOOL")) == np.bool_ and numpy_dtype(member("INT64")) == np.int64
    with pytest.raises(FertrtError, match="data type BF16 has no numpy equivalent"):
        numpy_dtype(member("BF16"))


def test_cuda_graph_instantiate_signature_is_read_from_the_function():
    """Issue 20: cuda-python 11.x has cudaGraphInstantiate(graph, pLogBuffer, bufferSize), 12.x/13.x (graph, flags)."""
    from fertrt.runtime.trt_backend import arg_names, graph_instantiate_args

    def v11(graph, pLogBuffer, bufferSize):
        pass

    def v12(graph, flags):
        pass

    assert graph_instantiate_args(v11, "G") == ("G", b"", 0) and graph_instantiate_args(v12, "G") == ("G", 0)

    class Cython:  # a builtin without an introspectable signature: read from the embedsignature docstring
        __doc__ = "cudaGraphInstantiate(graph, char *pLogBuffer, size_t bufferSize)\n Creates an executable graph."

        def __call__(self, *a):
            pass

    fn = Cython()
    fn.__signature__ = None
    assert arg_names(len) == ["obj"]
    with pytest.raises(FertrtError, match="a signature fertrt does not know"):
        graph_instantiate_args(lambda a: None, "G")


def test_binding_choice_prefers_the_one_with_every_feature():
    """Defect 4: cuda-python supports CUDA graphs, pycuda does not; the choice names what is missing."""
    from fertrt.runtime.trt_backend import choose_binding

    assert choose_binding({"pycuda", "cuda-python"}) == "cuda-python"
    assert choose_binding({"pycuda", "cuda-python"}, ["cuda-graph"]) == "cuda-python"
    assert choose_binding({"pycuda"}) == "pycuda"
    with pytest.raises(FertrtError, match=r"cuda-graph needs cuda-python .*only pycuda is installed"):
        choose_binding({"pycuda"}, ["cuda-graph"])
    with pytest.raises(FertrtError, match="needs cuda-python or pycuda"):
        choose_binding(set())


class ContextModel:
    """The CUDA threading rule as a pure model: a context is current per thread; a call into CUDA/TensorRT on a
    thread where the runner's context is not current fails (on a GPU: an invalid-context error or a hang)."""

    def __init__(self):
        import threading

        self.local = threading.local()
        self.errors = []

    def stack(self):
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def push(self):
        self.stack().append("ctx")

    def pop(self):
        self.stack().pop()

    def call(self, what):
        if not self.stack() or self.stack()[-1] != "ctx":
            self.errors.append(f"{what}: no current context on this thread")


def test_thread_context_rule_on_a_pure_model():
    """Defect 3: calls from other threads push the context first and pop it after; the owner thread needs nothing."""
    import threading

    from fertrt.runtime.trt_backend import ThreadContext

    model = ContextModel()
    model.push()  # the thread that opens the binding makes the context current (pycuda: retain + push)
    activate = ThreadContext(model.push, model.pop)

    def work(guarded):
        for i in range(3):
            if guarded:
                with activate():
                    with activate():  # re-entrant: infer inside close etc. pushes once
                        model.call(f"execute {i}")
                assert model.stack() == []  # popped again: the worker's own state is as it was
            else:
                model.call(f"execute {i}")

    with activate():
        model.call("on the owner thread")
    assert model.errors == [] and model.stack() == ["ctx"]
    for guarded, expected in ((False, 6), (True, 0)):
        model.errors.clear()
        workers = [threading.Thread(target=work, args=(guarded,)) for _ in range(2)]
        [t.start() for t in workers]
        [t.join() for t in workers]
        assert len(model.errors) == expected, model.errors
