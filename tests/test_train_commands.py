"""train/commands.py: `fertrt eval`'s outputs, `fertrt train`'s argument handling and its OpenMP settings."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO
from fertrt.cli import main
from fertrt.errors import FertrtError


def test_eval_writes_region_analysis(tiny_run, tmp_path):
    run, _ = tiny_run
    assert main(["eval", str(run / "best.pt"), "-o", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "eval_test.json").read_text())
    assert 0 <= rep["accuracy"] <= 1 and len(rep["per_class_accuracy"]) == 7
    reg = rep["regions"]
    assert len(reg["mean_weight_per_class"]) == 7 and len(reg["mean_weight_per_class"][0]) == 16
    assert 0 < reg["cue_weight_share"] < 1 and 0 < reg["cue_uniform_share"] < 1
    assert (tmp_path / "eval_test_region_weights.png").is_file() and (tmp_path / "eval_test_confusion.png").is_file()


def test_eval_of_a_missing_checkpoint_is_exit_2(tmp_path):
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2


def test_cli_error_is_one_line(capsys):
    assert main(["train", "--model", "nope", "--data", "synth:10", "-o", "/tmp/fertrt-nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fertrt train: error: unknown model 'nope'") and "Traceback" not in err


def test_model_args_become_typed_constructor_arguments():
    from fertrt.train.commands import _parse_model_args

    assert _parse_model_args(["grid=4", "share_local=true", "fusion=concat", "weight_smoothing=0.25"]) == {
        "grid": 4,
        "share_local": True,
        "fusion": "concat",
        "weight_smoothing": 0.25,
    }
    with pytest.raises(FertrtError, match="--model-arg 'grid': expected KEY=VALUE"):
        _parse_model_args(["grid"])


def test_training_entry_points_set_openmp_before_torch_loads():
    """OMP_WAIT_POLICY=PASSIVE reaches libgomp only if set before torch is imported; a user's value is kept."""
    code = (
        "import os, sys; from fertrt.train.commands import set_cpu_threading; set_cpu_threading(); "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}

    def run(extra):
        return subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, timeout=120, cwd=REPO
        ).stdout.split()

    assert run({}) == ["PASSIVE", "2", "False"]
    assert run({"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "2", "False"]
