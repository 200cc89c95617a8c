"""engine/doctor.py: the report without TensorRT, the engine paths per release, the DLA check; on a GPU host every
path built and compared (`trt`)."""

import json

import pytest

from engine_testing import CAPS, FP32, JETSON, cli
from fertrt.engine.plan import BuildOptions, make_plan


def test_doctor_without_tensorrt(tmp_path, capsys):
    """`fertrt doctor` here: runs what can run, says what is missing and how to install it, exits 1."""
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; the GPU side is tested by test_trt_doctor_engine_paths")
    except ImportError:
        pass
    pytest.importorskip("onnx")
    out = tmp_path / "doc"
    code, stdout, _ = cli(capsys, "doctor", "-o", str(out), "--seconds", "0.05")
    assert code == 1
    report = json.loads((out / "doctor.json").read_text())
    status = {c["name"]: c for c in report["checks"]}
    assert status["tensorrt"]["status"] == "fail" and "pip install tensorrt" in status["tensorrt"]["detail"]
    assert "JetPack ships TensorRT" in status["tensorrt"]["detail"]
    assert status["tiny model: FP32, FP16 and INT8 (Q/DQ) ONNX"]["status"] == "pass"
    fp16 = status["ONNX Runtime CPU: fp16 graph vs fp32"]
    assert fp16["status"] == "pass" and fp16["figures"]["agreement"] >= 0.98 and fp16["figures"]["max_abs_diff"] < 1e-2
    assert status["TensorRT engines (build, run, compare, time)"]["status"] == "n/a"
    assert report["failed"] == 1 and "| tensorrt | fail |" in (out / "doctor.md").read_text()
    assert "fail  tensorrt: missing." in stdout
    code, _, err = cli(capsys, "doctor", "-o", str(out))
    assert code == 2 and "pass --force" in err  # an existing report is replaced only with --force


def test_doctor_engine_paths_per_version():
    from fertrt.engine.doctor import engine_paths

    labels = {v: [p.label for p in engine_paths(CAPS[v], n_dla=2 if v == "10.3.0" else 0)] for v in CAPS}
    assert (
        "int8 legacy calibrator (fertrt cache)" in labels["8.6.1"]
        and "fp16 strongly typed (FP16 graph)" not in labels["8.6.1"]
    )
    assert {
        "fp16 strongly typed (FP16 graph)",
        "fp16 weakly typed (builder flag)",
        "fp16 on DLA 0 (+GPU fallback)",
    } <= set(labels["10.3.0"])
    assert labels["11.1.0"] == ["fp32", "fp16 strongly typed (FP16 graph)", "int8 strongly typed (Q/DQ graph)"]


@pytest.mark.trt
def test_trt_doctor_engine_paths(tmp_path):
    """On a GPU host: every engine path the doctor knows builds, runs in every mode and agrees with ONNX Runtime."""
    from fertrt.engine.doctor import run_doctor

    report = run_doctor(tmp_path, seconds=0.2)
    failed = [c for c in report["checks"] if c["status"] == "fail"]
    assert not failed, failed
    assert any(c["name"].startswith("build int8") and c["status"] == "pass" for c in report["checks"])


def test_dla_layer_count_and_the_doctor_check():
    from fertrt.engine.builder import dla_layer_count
    from fertrt.engine.doctor import dla_check, engine_paths

    gpu_only = [
        {"name": "conv1", "type": "Convolution", "precision": "Half"},
        {"name": "fc", "type": "Gemm", "precision": "Half"},
    ]
    assert dla_layer_count(gpu_only) == 0 and dla_check(0).status == "fail"
    mixed = gpu_only + [{"name": "{ForeignNode[conv2...relu3]}", "type": "DLA", "precision": "Half"}]
    assert dla_layer_count(mixed) == 1 and dla_check(1).status == "pass"
    assert dla_layer_count([{"name": "a"}]) is None and dla_check(None).status == "fail"
    dla_path = [p for p in engine_paths(CAPS["10.3.0"], n_dla=2) if p.options.get("dla_core") == 0][0]
    assert dla_path.options["batch"] == (1, 1, 1)  # the doctor's DLA build is one DLA can run
    make_plan(BuildOptions(**dla_path.options), CAPS["10.3.0"], FP32, 2, host=JETSON)
