"""export/quantize.py's Int8Options: every bad value is refused when the options are made, naming the option, with
the limits the command line uses (fertrt/ranges.py); one --calib-size limit for every command that calibrates."""

import dataclasses

import pytest

from fertrt.cli import main
from fertrt.engine.plan import BuildOptions
from fertrt.errors import FertrtError
from fertrt.export.quantize import Int8Options
from fertrt.ranges import CALIB_SIZE


def _exit_and_stderr(capsys, argv):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's range types exit 2
        code = exc.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("calib_size", 0, "--calib-size 0: expected an integer from 1 to"),
        ("calib_size", "64", "--calib-size '64': expected"),
        ("method", "kl", "--calib-method 'kl': expected one of entropy, minmax, percentile"),
        ("percentile", 0, r"--percentile 0: expected a finite number in \(0, 100\]"),
        ("percentile", 100.5, "--percentile 100.5: expected"),
        ("percentile", float("nan"), "--percentile nan: expected"),
        ("seed", -1, "--seed -1: expected an integer >= 0"),
        ("target", "gpu", "--target 'gpu': expected one of tensorrt, onnxruntime"),
        ("trt_version", "7.1.3", "--trt-version '7.1.3': fertrt supports TensorRT 8.5 to 11.x"),
        ("trt_version", "garbage", "--trt-version 'garbage': expected a TensorRT version"),
        ("quantize_add", True, "--quantize-add is for --target onnxruntime"),
    ],
)
def test_int8_options_refuse_each_bad_value_naming_the_option(field, value, message):
    with pytest.raises(FertrtError, match=message):
        Int8Options(**{field: value})


def test_int8_options_combinations_and_edges():
    with pytest.raises(FertrtError, match="--calib-cache .* needs --target tensorrt"):
        Int8Options(target="onnxruntime", scales_from="model.calib.cache")
    ok = Int8Options(
        target="onnxruntime", quantize_add=True, percentile=100, calib_size=CALIB_SIZE.hi, trt_version="10.3.0"
    )
    assert ok.calib_size == CALIB_SIZE.hi and ok.percentile == 100
    with pytest.raises(FertrtError, match=f"--calib-size {CALIB_SIZE.hi + 1}: "):
        dataclasses.replace(ok, calib_size=CALIB_SIZE.hi + 1)  # a copy is checked as well
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.seed = -1


@pytest.mark.parametrize(
    "argv,option",
    [
        (["--percentile", "0"], "--percentile"),
        (["--seed", "-1"], "--seed"),
        (["--calib-method", "kl"], "--calib-method"),
        (["--target", "gpu"], "--target"),
    ],
)
def test_quantize_command_line_refuses_what_int8_options_refuse(capsys, argv, option):
    code, err = _exit_and_stderr(capsys, ["quantize", "m.onnx", "-o", "q.onnx", *argv])
    assert code == 2 and f"argument {option}:" in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "command",
    [
        ["build-engine", "m.onnx", "-o", "m.engine"],
        ["quantize", "m.onnx"],
        ["pack", "m.onnx", "-o", "folder", "--jetpack", "6.0"],
        ["demo"],
    ],
)
def test_calib_size_has_one_limit_in_every_command(capsys, command):
    """build-engine, quantize, pack and demo refuse the same --calib-size as Int8Options and BuildOptions."""
    code, err = _exit_and_stderr(capsys, [*command, "--calib-size", str(CALIB_SIZE.hi + 1)])
    assert code == 2 and f"argument --calib-size: expected an integer from 1 to {CALIB_SIZE.hi}" in err, err
    for options in (Int8Options, BuildOptions):
        assert options(calib_size=CALIB_SIZE.hi).calib_size == CALIB_SIZE.hi
        with pytest.raises(FertrtError, match=f"--calib-size {CALIB_SIZE.hi + 1}: expected"):
            options(calib_size=CALIB_SIZE.hi + 1)


def test_quantize_rejects_a_bad_trt_version(capsys):
    for bad in ("-1", "garbage"):
        code, err = _exit_and_stderr(capsys, ["quantize", "m.onnx", f"--trt-version={bad}"])
        assert code == 2 and "--trt-version" in err
