"""Trainer: checkpoints, resume after a real SIGKILL, bad input, eval outputs."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from fertrt.cli import main
from fertrt.errors import FertrtError
from fertrt.train.checkpoint import load_model, read_checkpoint
from fertrt.train.trainer import TrainConfig, train


def test_checkpoint_contents(tiny_run):
    run, result = tiny_run
    ckpt = read_checkpoint(run / "best.pt")
    for key in ("model_name", "model_config", "class_names", "preprocess", "data_spec", "metrics", "code_version", "fertrt_version",
                "state_dict", "optimizer", "epoch"):
        assert key in ckpt, key
    assert ckpt["class_names"][0] == "neutral" and list(ckpt["preprocess"]["input_size"]) == [112, 112]
    assert result["best_accuracy"] > 0.6  # easy synth: well above the 1/7 chance level
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == list(range(1, len(lines) + 1))
    assert {"val_accuracy", "val_macro_f1", "val_per_class_accuracy"} <= set(lines[0])
    assert (run / "confusion_val.png").stat().st_size > 1000


def test_eval_writes_region_analysis(tiny_run, tmp_path):
    run, _ = tiny_run
    assert main(["eval", str(run / "best.pt"), "-o", str(tmp_path)]) == 0
    rep = json.loads((tmp_path / "eval_test.json").read_text())
    assert 0 <= rep["accuracy"] <= 1 and len(rep["per_class_accuracy"]) == 7
    reg = rep["regions"]
    assert len(reg["mean_weight_per_class"]) == 7 and len(reg["mean_weight_per_class"][0]) == 16
    assert 0 < reg["cue_weight_share"] < 1 and 0 < reg["cue_uniform_share"] < 1
    assert (tmp_path / "eval_test_region_weights.png").is_file() and (tmp_path / "eval_test_confusion.png").is_file()


def test_bad_inputs(tmp_path, tiny_run):
    with pytest.raises(FertrtError, match="unknown model 'resnet99'"):
        train(TrainConfig(model="resnet99", data="synth:10", out=str(tmp_path)))
    with pytest.raises(FertrtError, match="unknown kind"):
        train(TrainConfig(model="lnlattennet", data="imagenet:/x", out=str(tmp_path)))
    with pytest.raises(FertrtError, match="nothing to resume"):
        train(TrainConfig(model="lnlattennet", data="synth:10", out=str(tmp_path / "empty"), resume=True))
    run, _ = tiny_run
    # resuming with another model or another data set is refused, and the checkpoint is untouched
    import shutil

    shutil.copytree(run, tmp_path / "copy")
    before = (tmp_path / "copy" / "last.pt").read_bytes()
    with pytest.raises(FertrtError, match="was trained as 'lnlattennet', not 'resnet18'"):
        train(TrainConfig(model="resnet18", data="synth:1500:easy", out=str(tmp_path / "copy"), resume=True))
    with pytest.raises(FertrtError, match="was trained on 'synth:1500:easy'"):
        train(TrainConfig(model="lnlattennet", data="synth:100", out=str(tmp_path / "copy"), resume=True))
    assert (tmp_path / "copy" / "last.pt").read_bytes() == before
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(FertrtError, match="bad.pt: not a fertrt checkpoint"):
        load_model(bad)
    assert main(["eval", str(tmp_path / "missing.pt")]) == 2


def test_cli_error_is_one_line(capsys):
    assert main(["train", "--model", "nope", "--data", "synth:10", "-o", "/tmp/fertrt-nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fertrt train: error: unknown model 'nope'") and "Traceback" not in err


def test_sigkill_mid_epoch_then_resume(tmp_path):
    """A real process killed with SIGKILL in its second epoch resumes from last.pt and finishes."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fertrt", "train", "--model", "lnlattennet", "--data", "synth:400:easy", "-o", str(out),
           "--epochs", "3", "--batch-size", "16", "--model-arg", "share_local=true"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "last.pt").exists():
        time.sleep(0.2)
    assert (out / "last.pt").exists(), "first epoch never finished"
    time.sleep(1.0)  # now inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    ckpt = read_checkpoint(out / "last.pt")  # intact despite the kill
    done = ckpt["epoch"]
    assert done in (0, 1)
    assert not list(out.glob(".last.pt.*.tmp"))  # no half-written temp file left behind
    r = subprocess.run(cmd + ["--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resumed from {out / 'last.pt'} at epoch {done + 2}/3" in r.stdout
    final = read_checkpoint(out / "last.pt")
    assert final["epoch"] == 2
    epochs = [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 4))


@pytest.mark.slow
def test_torchrun_ddp_on_cpu(tmp_path):
    """The same command under torchrun: two processes, DistributedDataParallel over gloo, rank 0 writes."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    fertrt = os.path.join(os.path.dirname(sys.executable), "fertrt")
    if not (os.path.exists(torchrun) and os.path.exists(fertrt)):
        pytest.skip("torchrun or the fertrt console script is not installed beside this Python")
    out = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--nproc-per-node", "2", fertrt, "train", "--model", "lnlattennet", "--data", "synth:128:easy",
                        "-o", str(out), "--epochs", "1", "--batch-size", "16"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done: best val accuracy") == 1  # only rank 0 reports
    assert read_checkpoint(out / "last.pt")["epoch"] == 0
