"""runtime/options.py: InferOptions checks every value in one place, with the limits the CLI's parser uses, and
`fertrt infer`'s command line becomes InferOptions in one place (runtime/commands.py)."""

import argparse
import math

import pytest

from fertrt import cli
from fertrt.errors import FertrtError
from fertrt.runtime.commands import infer_options
from fertrt.runtime.options import InferOptions


def _infer_parser():
    p = argparse.ArgumentParser(prog="fertrt infer", exit_on_error=False)
    cli._COMMANDS["infer"][2](p)
    return p


@pytest.mark.parametrize(
    "field, value, option",
    [
        ("margin", -0.1, "--margin"),
        ("margin", 1.5, "--margin"),
        ("margin", math.nan, "--margin"),
        ("margin", "0.2", "--margin"),
        ("margin", True, "--margin"),
        ("smooth_alpha", 0, "--smooth"),
        ("smooth_alpha", 1.01, "--smooth"),
        ("smooth_alpha", math.inf, "--smooth"),
        ("every", 0, "--every"),
        ("every", 2.5, "--every"),
        ("every", True, "--every"),
        ("max_frames", 0, "--max-frames"),
        ("max_frames", -3, "--max-frames"),
        ("backend", "cuda", "--backend"),
        ("provider", "gpu", "--provider"),
        ("detector", "yunet", "--detector"),
        ("detector_backend", "torch", "--detector-backend"),
        ("zero_copy", "on", "--zero-copy"),
    ],
)
def test_a_bad_value_is_refused_naming_its_option(field, value, option):
    with pytest.raises(FertrtError) as err:
        InferOptions(**{field: value})
    assert str(err.value).startswith(f"{option} ") and "expected" in str(err.value)


def test_values_at_the_limits_are_accepted():
    edge = InferOptions(margin=0, smooth_alpha=1, every=1, max_frames=1, zero_copy=False)
    assert (edge.margin, edge.smooth_alpha, edge.every, edge.max_frames) == (0, 1, 1, 1)
    assert InferOptions(margin=1.0).margin == 1.0
    assert InferOptions(margin=None, max_frames=None).max_frames is None  # unset: the detector's margin, no limit


@pytest.mark.parametrize(
    "option, field, texts",
    [
        ("--margin", "margin", ["-0.01", "0", "0.35", "1", "1.01", "nan", "inf"]),
        ("--smooth", "smooth_alpha", ["-1", "0", "1e-9", "0.4", "1", "1.5", "nan"]),
        ("--every", "every", ["-1", "0", "1", "7"]),
        ("--max-frames", "max_frames", ["0", "1", "100000"]),
    ],
)
def test_the_parser_and_the_dataclass_accept_the_same_values(option, field, texts):
    """One definition of each limit: a value the CLI refuses is refused in Python too, and the other way round."""
    parser = _infer_parser()
    number = float if field in ("margin", "smooth_alpha") else int
    for text in texts:
        try:
            parser.parse_args(["m.onnx", "x.png", option, text])
            cli_ok = True
        except argparse.ArgumentError:
            cli_ok = False
        try:
            InferOptions(**{field: number(text)})
            py_ok = True
        except FertrtError:
            py_ok = False
        assert cli_ok == py_ok, f"{option} {text}: CLI {'accepts' if cli_ok else 'refuses'}, InferOptions does not"


def test_the_command_line_becomes_options_in_one_place():
    parser = _infer_parser()
    default = infer_options(parser.parse_args(["m.onnx", "x.png"]))
    assert default == InferOptions()
    opts = infer_options(
        parser.parse_args(
            [
                "m.onnx",
                "x.png",
                "--no-align",
                "--no-detect",
                "--smooth",
                "0.7",
                "--every",
                "3",
                "--margin",
                "0.25",
                "--max-frames",
                "9",
                "--zero-copy",
                "off",
                "--cuda-graph",
                "--jsonl",
                "r.jsonl",
                "--save",
                "out",
                "--force",
                "--backend",
                "tensorrt",
                "--detector",
                "haar",
                "--quiet",
            ]
        )
    )
    assert (opts.align, opts.detect, opts.detector_kind, opts.smooth_alpha, opts.every, opts.margin) == (
        False,
        False,
        "none",
        0.7,
        3,
        0.25,
    )
    assert (opts.max_frames, opts.zero_copy, opts.jsonl, opts.save, opts.force, opts.backend, opts.quiet) == (
        9,
        False,
        "r.jsonl",
        "out",
        True,
        "tensorrt",
        True,
    )
    assert opts.runner_kwargs() == {"cuda_graph": True, "zero_copy": False}
    assert default.runner_kwargs() == {}  # ONNX Runtime and torch runners take none of TensorRT's options
    assert infer_options(parser.parse_args(["m.onnx", "x.png", "--zero-copy", "on", "--rebuild"])).runner_kwargs() == {
        "zero_copy": True,
        "rebuild": True,
    }


def test_crop_margin_is_the_option_else_the_detectors_else_a_tenth():
    class Blaze:
        class cfg:
            crop_margin = 0.3

    assert InferOptions(margin=0.05).crop_margin(Blaze()) == 0.05
    assert InferOptions(margin=0).crop_margin(Blaze()) == 0  # 0 is a margin, not "unset"
    assert InferOptions().crop_margin(Blaze()) == 0.3
    assert InferOptions().crop_margin(object()) == 0.1


def test_pipeline_run_checks_its_options_before_any_work(tmp_path):
    from fertrt.runtime.pipeline import run

    image = tmp_path / "missing.png"  # never read: the options are refused first
    jsonl = tmp_path / "r.jsonl"
    with pytest.raises(FertrtError, match=r"^--every 0: expected an integer >= 1"):
        run(None, str(image), None, jsonl=jsonl, every=0)
    with pytest.raises(FertrtError, match=r"^--margin 1\.5: expected a finite number in \[0, 1\]"):
        run(None, str(image), None, margin=1.5)
    with pytest.raises(TypeError, match="not both"):
        run(None, str(image), None, InferOptions(), every=2)
    assert list(tmp_path.iterdir()) == []
