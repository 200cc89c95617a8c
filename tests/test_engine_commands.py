"""engine/commands.py: `fertrt build-engine` and `fertrt inspect-engine` from the command line, without TensorRT."""

import json
import subprocess
import sys

import pytest

from engine_testing import cli


@pytest.fixture(scope="module")
def doctor_onnx(tmp_path_factory):
    """The doctor's tiny fertrt model: valid ONNX with fertrt metadata, made in milliseconds without torch."""
    pytest.importorskip("onnx")
    from fertrt.engine.doctor import make_tiny_onnx

    return make_tiny_onnx(tmp_path_factory.mktemp("doctor") / "tiny.onnx")


def test_build_engine_without_tensorrt_validates_then_explains(tiny_onnx, tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here; this test covers machines without it")
    except ImportError:
        pass
    run = lambda *a: subprocess.run(
        [sys.executable, "-m", "fertrt", "build-engine", *a], capture_output=True, text=True
    )
    r = run(str(tiny_onnx), "-o", str(tmp_path / "m.engine"), "--precision", "fp16")
    assert r.returncode == 2
    assert (
        "is a valid FP32 model for an engine" in r.stderr
        and "pip install tensorrt" in r.stderr
        and "JetPack ships TensorRT" in r.stderr
    )
    assert "Traceback" not in r.stderr
    r = run(str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "m.engine"))
    assert r.returncode == 2 and "missing.onnx: no such file" in r.stderr
    r = run(str(tiny_onnx), "-o", str(tmp_path / "no" / "m.engine"))
    assert r.returncode == 2 and "output folder" in r.stderr
    r = run(str(tiny_onnx), "-o", str(tmp_path / "m.engine"), "--batch-profile", "8,1,2")
    assert r.returncode == 2 and "--batch-profile '8,1,2'" in r.stderr


@pytest.mark.parametrize(
    "option,value",
    [
        ("--workspace", "0"),
        ("--builder-opt-level", "6"),
        ("--builder-opt-level", "-1"),
        ("--dla-core", "-1"),
        ("--calib-size", "0"),
        ("--batch-profile", "0,1,2"),
        ("--batch-profile", "4,2,8"),
    ],
)
def test_build_engine_range_checks(doctor_onnx, tmp_path, capsys, option, value):
    code, _, err = cli(capsys, "build-engine", str(doctor_onnx), "-o", str(tmp_path / "m.engine"), f"{option}={value}")
    assert code == 2 and option in err and "expected" in err and "Traceback" not in err, err


def test_build_engine_never_writes_over_its_input(doctor_onnx, tmp_path, capsys):
    for option in ("-o", "--timing-cache", "--calib-cache"):
        extra = [] if option == "-o" else ["-o", str(tmp_path / "m.engine")]
        code, _, err = cli(capsys, "build-engine", str(doctor_onnx), *extra, option, str(doctor_onnx))
        # the wording comes from the shared output check (-o) or validate() (the caches); both name option and input
        assert code == 2 and f"{option} {doctor_onnx}: is the input" in err, err
    assert doctor_onnx.stat().st_size > 100


@pytest.mark.parametrize(
    "sidecar,expected",
    [
        (None, "no sidecar m.engine.json beside it"),
        ("{not json", "m.engine.json: not valid JSON"),
        ("[1, 2]", "not a fertrt engine sidecar"),
        ('{"format": "other"}', "not a fertrt engine sidecar (format 'other'"),
        (
            '{"format": "fertrt-engine-1", "tensorrt_version": "10.3.0", "gpu": "Orin", "class_names": ["a"], "preprocess": {}, '
            '"precision": {}, "build_options": {}}',
            "'gpu' is str, expected dict",
        ),
        (
            '{"format": "fertrt-engine-1", "tensorrt_version": "10.3.0", "gpu": {}, "class_names": 7, "preprocess": {}, '
            '"precision": {}, "build_options": {}}',
            "'class_names' is int, expected list",
        ),
        (
            '{"format": "fertrt-engine-1", "tensorrt_version": "10.3.0", "gpu": {}, "class_names": ["a"], "preprocess": {}, '
            '"precision": {}, "build_options": {}, "jetson": {"l4t": 35}}',
            "'jetson.l4t' must be a string",
        ),
        ('{"format": "fertrt-engine-1"}', "'tensorrt_version' is missing"),
    ],
)
def test_inspect_engine_bad_sidecars_are_clear_errors(tmp_path, capsys, sidecar, expected):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    if sidecar is not None:
        (tmp_path / "m.engine.json").write_text(sidecar)
    code, _, err = cli(capsys, "inspect-engine", str(engine))
    assert code == 2 and expected in err and "Traceback" not in err, err
    if sidecar is not None:
        assert "m.engine.json" in err


def test_inspect_engine_missing_engine(tmp_path, capsys):
    code, _, err = cli(capsys, "inspect-engine", str(tmp_path / "absent.engine"))
    assert code == 2 and "absent.engine: no such file" in err


def test_inspect_engine_escapes_sidecar_strings(tmp_path, capsys):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    side = {
        "format": "fertrt-engine-1",
        "tensorrt_version": "10.3.0\x1b[2J",
        "gpu": {"name": "Orin\x1b]0;pwned\x07"},
        "class_names": ["happy\u202e"],
        "preprocess": {},
        "precision": {},
        "build_options": {},
        "model_name": "m",
    }
    (tmp_path / "m.engine.json").write_text(json.dumps(side))
    code, out, _ = cli(capsys, "inspect-engine", str(engine))
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b" in out and code in (0, 1)
