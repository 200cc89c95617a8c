"""`fertrt demo`: a fixed schedule (same seed, same model whatever the load), the quality gate, and a
report folder that is never reused for another model, data or schedule."""

import hashlib
import json
import subprocess
import sys

import pytest

from fertrt.benchmarks.demo import quality_gate, train_fixed_schedule
from fertrt.cli import main
from fertrt.errors import FertrtError
from fertrt.train.checkpoint import read_checkpoint
from fertrt.train.trainer import TrainConfig, train

TINY = dict(model="lnlattennet", data="synth:64:easy", batch_size=32)


def state_hash(path) -> str:
    state = read_checkpoint(path)["state_dict"]
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].numpy().tobytes())
    return h.hexdigest()


def test_same_seed_same_weights_with_a_competing_busy_process(tmp_path):
    quiet = train(TrainConfig(out=str(tmp_path / "quiet"), epochs=2, **TINY), log=lambda *a: None)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = train(TrainConfig(out=str(tmp_path / "loaded"), epochs=2, **TINY), log=lambda *a: None)
    finally:
        busy.kill()
        busy.wait()
    assert state_hash(quiet["last"]) == state_hash(loaded["last"])
    other_seed = train(TrainConfig(out=str(tmp_path / "seed1"), epochs=2, seed=1, **TINY), log=lambda *a: None)
    assert state_hash(other_seed["last"]) != state_hash(quiet["last"])  # the hash does see a different model


def test_reused_folder_trained_with_another_setup_is_refused(tmp_path):
    run = tmp_path / "train"
    assert train_fixed_schedule(run, "lnlattennet", "synth:64:easy", 1, 0) is True
    before = state_hash(run / "last.pt")
    assert train_fixed_schedule(run, "lnlattennet", "synth:64:easy", 1, 0) is False  # finished: reused as is
    for args, named in [
        (("mobilenetv3_small", "synth:64:easy", 1, 0), "model 'lnlattennet' (this run: 'mobilenetv3_small')"),
        (("lnlattennet", "synth", 1, 0), "data 'synth:64:easy' (this run: 'synth')"),
        (("lnlattennet", "synth:64:easy", 2, 0), "epochs 1 (this run: 2)"),
        (("lnlattennet", "synth:64:easy", 1, 3), "seed 0 (this run: 3)"),
    ]:
        with pytest.raises(FertrtError, match=r"another setup: .*" + named.replace("(", r"\(").replace(")", r"\)")):
            train_fixed_schedule(run, *args)
    assert state_hash(run / "last.pt") == before


def test_a_folder_from_a_time_budget_demo_is_refused(tmp_path):
    run = tmp_path / "train"
    train(TrainConfig(out=str(run), epochs=1, minutes=30.0, **TINY), log=lambda *a: None)
    with pytest.raises(FertrtError, match=r"time budget 30\.0 \(this run: None\).*--fresh"):
        train_fixed_schedule(run, "lnlattennet", "synth:64:easy", 1, 0)


def test_gate_passes_above_the_floor_and_explains_a_failure(tmp_path):
    assert quality_gate(0.93, 0.90, tmp_path, 14) == []
    history = [
        {"epoch": 1, "train_loss": 1.9, "val_accuracy": 0.15},
        {"epoch": 2, "train_loss": 2.4, "val_accuracy": 0.14},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    reasons = quality_gate(0.1415, 0.90, tmp_path, 14)
    text = "\n".join(reasons)
    assert "test accuracy 14.15 % is below the demo's floor of 90 %" in text
    assert "only 2 of the 14 epochs were trained" in text
    assert "the training loss did not fall (1.900 after epoch 1, 2.400 at the end)" in text
    rising = [{"epoch": e, "train_loss": 2.0 - e / 10, "val_accuracy": 0.2 + e / 10} for e in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in rising))
    assert any("still rising at the last epoch (30.0 -> 70.0 %)" in r for r in quality_gate(0.7, 0.9, tmp_path, 5))


def test_demo_below_the_floor_fails_loudly_and_marks_the_report(tmp_path, capsys):
    """A real (tiny) demo run whose model cannot reach a 99 % floor after one epoch: exit 1, FAILED report,
    no export; the same folder asked for another model is then refused (exit 2), not reported as it."""
    out = tmp_path / "demo"
    args = ["demo", "-o", str(out), "--data", "synth:64:easy", "--epochs", "1", "--min-accuracy", "0.99"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "DEMO FAILED: training did not reach the quality floor" in err and "below the demo's floor of 99 %" in err
    report = (out / "report.md").read_text()
    assert report.startswith("# fertrt demo report: FAILED") and "**Training failed**" in report
    assert not (out / "model.onnx").exists()  # nothing built on a model that failed the gate
    other = ["demo", "-o", str(out), "--model", "mobilenetv3_small", "--data", "synth:64:easy", "--epochs", "1"]
    assert main(other) == 2
    assert "this demo folder was trained with another setup: model 'lnlattennet'" in capsys.readouterr().err


@pytest.mark.parametrize("fresh", [False, True])
def test_a_report_folder_holding_a_fifo_is_refused_before_any_work(tmp_path, capsys, fresh):
    """The demo reuses what its folder holds (a FIFO named model.onnx would block it) and --fresh deletes it all:
    a node that is not a regular file, in a subfolder too, stops it with exit 2 naming the node, and stays."""
    import os
    import stat

    out = tmp_path / "demo"
    (out / "real").mkdir(parents=True)
    (out / "report.md").write_text("an earlier report\n")
    fifo = out / "real" / "mx_fp32.onnx"
    os.mkfifo(fifo)
    argv = ["demo", "-o", str(out), "--data", "synth:64:easy", "--epochs", "1"] + (["--fresh"] if fresh else [])
    assert main(argv) == 2
    assert "real/mx_fp32.onnx: is a FIFO, not a regular file" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in out.iterdir()) == ["real", "report.md"]  # nothing trained, nothing removed
