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
    """The same command under torchrun: two processes, DistributedDataParallel over gloo, rank 0 writes; the
    ranks agree on the epochs a --minutes budget fits (they would wait on each other forever otherwise)."""
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    fertrt = os.path.join(os.path.dirname(sys.executable), "fertrt")
    if not (os.path.exists(torchrun) and os.path.exists(fertrt)):
        pytest.skip("torchrun or the fertrt console script is not installed beside this Python")
    out = tmp_path / "ddp"
    r = subprocess.run([torchrun, "--nproc-per-node", "2", fertrt, "train", "--model", "lnlattennet", "--data", "synth:128:easy",
                        "-o", str(out), "--epochs", "3", "--minutes", "0.001", "--batch-size", "16"], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done: best val accuracy") == 1  # only rank 0 reports
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["schedule"]["epochs"] == 1


# ---------------------------------------------------------------- never lose a run, never report what is not on disk
def _copy_run(run, dest):
    import shutil

    shutil.copytree(run, dest)
    return dest


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_folder_with_another_run_needs_resume_or_force(tiny_run, tmp_path):
    run, _ = tiny_run
    folder = _copy_run(run, tmp_path / "run")
    before = _snapshot(folder)
    with pytest.raises(FertrtError, match=r"holds another training run \(last.pt, best.pt, metrics.jsonl.*--resume.*--force"):
        train(TrainConfig(model="lnlattennet", data="synth:60", out=str(folder), epochs=1))
    assert _snapshot(folder) == before


def test_second_training_into_a_locked_folder_is_refused(tmp_path):
    from fertrt.fileio import output_lock

    folder = tmp_path / "run"
    folder.mkdir()
    with output_lock(folder, "training run"):
        with pytest.raises(FertrtError, match=r"another fertrt run is writing this training run"):
            train(TrainConfig(model="lnlattennet", data="synth:60", out=str(folder), epochs=1))
    assert not (folder / ".fertrt.lock").exists() and not (folder / "last.pt").exists()


def test_non_finite_loss_stops_training_and_says_so(tmp_path):
    with pytest.raises(FertrtError, match=r"epoch 1: the training loss became (nan|inf).*training stopped.*No checkpoint was written.*--lr"):
        train(TrainConfig(model="lnlattennet", data="synth:64:easy", out=str(tmp_path), epochs=2, batch_size=16, lr=1e30,
                          warmup_epochs=0), log=lambda *a: None)
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("field, value, match", [("epochs", 0, "--epochs: expected an integer >= 1"),
                                                  ("lr", float("inf"), "--lr: expected a finite number > 0"),
                                                  ("batch_size", 0, "--batch-size"), ("workers", -1, "--workers"),
                                                  ("device", "cuda:7" if torch.cuda.is_available() else "cuda", "--device cuda")])
def test_config_is_range_checked_without_the_cli(tmp_path, field, value, match):
    cfg = TrainConfig(model="lnlattennet", data="synth:60", out=str(tmp_path / "x"), **{field: value})
    with pytest.raises(FertrtError, match=match):
        train(cfg)
    assert not (tmp_path / "x").exists()


def test_resume_honours_epochs_and_reports_the_best_on_disk(tiny_run, tmp_path):
    """--resume --epochs N trains to N; a last.pt claiming more than best.pt holds (a kill between the
    two saves) does not leak into the report."""
    run, _ = tiny_run
    folder = _copy_run(run, tmp_path / "run")
    last = torch.load(folder / "last.pt", weights_only=True)
    done = last["epoch"] + 1
    last["best_accuracy"] = 0.999
    torch.save(last, folder / "last.pt")
    with pytest.raises(FertrtError, match=f"--epochs {done}: the run in .* has already done {done} epochs"):
        train(TrainConfig(model="lnlattennet", data="synth:1500:easy", out=str(folder), epochs=done, resume=True))
    result = train(TrainConfig(model="lnlattennet", data="synth:1500:easy", out=str(folder), epochs=done + 1, resume=True,
                               batch_size=32), log=lambda *a: None)
    final = read_checkpoint(folder / "last.pt")
    best = read_checkpoint(folder / "best.pt")
    assert final["epoch"] == done and final["schedule"]["epochs"] == done + 1 and result["epochs"] == done + 1
    assert result["best_accuracy"] == best["best_accuracy"] == best["metrics"]["val_accuracy"] < 0.999
    lines = [json.loads(l)["epoch"] for l in (folder / "metrics.jsonl").read_text().splitlines()]
    assert lines == list(range(1, done + 2))  # rewritten from last.pt's history: no duplicated or missing epoch


def test_minutes_budget_is_kept_in_the_checkpoint_and_over_resumes(tmp_path):
    cfg = dict(model="lnlattennet", data="synth:64:easy", out=str(tmp_path), batch_size=32, minutes=0.001)
    first = train(TrainConfig(epochs=10, **cfg), log=lambda *a: None)
    ckpt = read_checkpoint(tmp_path / "last.pt")
    assert first["epochs"] == 1 and ckpt["schedule"]["epochs"] == 1  # fitted before last.pt was written
    assert ckpt["schedule"]["train_seconds"] > 0.06  # the whole 0.06 s budget is spent
    # budget spent: an explicit --epochs 10 on resume still runs just one more epoch, not nine
    resumed = train(TrainConfig(epochs=10, resume=True, **cfg), log=lambda *a: None)
    assert resumed["epochs"] == 2 and read_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_no_val_split_holds_out_part_of_train_never_test():
    import numpy as np

    from fertrt.train.data.spec import DataSource, Split
    from fertrt.train.trainer import _train_val

    names = ("a", "b")
    tr = Split("train", names, np.arange(50) % 2, images=np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(3, 3))
    te = Split("test", names, np.zeros(5, np.int64), images=np.full((5, 1, 1, 3), 200, np.uint8))
    data = DataSource("rafdb:/x", "rafdb", names, {"train": tr, "test": te})
    train_split, val_split, note = _train_val(data, seed=0)
    val_ids = {int(val_split.images[i, 0, 0, 0]) for i in range(len(val_split))}
    train_ids = {int(train_split.images[i, 0, 0, 0]) for i in range(len(train_split))}
    assert len(val_ids) == 5 and len(train_ids) == 45 and not (val_ids & train_ids) and 200 not in val_ids
    assert "no val split; holding out 5 of the 50 training images" in note and "test split stays unseen" in note
    small = DataSource("rafdb:/x", "rafdb", names, {"train": tr.subset(range(10)), "test": te})
    with pytest.raises(FertrtError, match="no val split and only 10 training images"):
        _train_val(small, seed=0)


def test_budget_refit_only_lowers_the_epoch_count():
    from fertrt.train.trainer import fit_epochs

    assert fit_epochs(30, 1, 15.0, 345.0) == 24  # first fit: 1 done + 23 more of 15 s in the 345 s left
    assert fit_epochs(24, 5, 15.0, 300.0) == 24  # on pace: unchanged, never raised past the fitted count
    assert fit_epochs(24, 5, 30.0, 200.0) == 11  # the machine got busier: 6 more epochs of 30 s fit
    assert fit_epochs(24, 5, 30.0, -10.0) == 5  # budget spent: stop after the epoch just done
    assert fit_epochs(3, 1, 0.0, 100.0) == 3  # a zero epoch time is no division error


@pytest.mark.parametrize("old_kwargs", [{"fusion": "concat", "weight_smoothing": 0.0}, {"weight_smoothing": 0.0}])
def test_checkpoints_from_before_a_design_default_changed_load_as_trained(tmp_path, old_kwargs):
    """An LNLAttenNet checkpoint written before `fusion` or `weight_smoothing` existed holds no such argument:
    it must be rebuilt as it was trained (concatenation, unsmoothed weights), not with today's defaults."""
    from fertrt.train.checkpoint import load_model, save_checkpoint
    from fertrt.train.models import create_model

    torch.manual_seed(0)
    model = create_model("lnlattennet", **old_kwargs).eval()
    save_checkpoint(tmp_path / "old.pt", {"model_name": "lnlattennet", "model_kwargs": {},
                                          "model_config": model.default_cfg.to_dict(), "class_names": list(model.default_cfg.class_names),
                                          "data_spec": "synth", "state_dict": model.state_dict()})
    loaded, _ = load_model(tmp_path / "old.pt")
    assert loaded.fusion == old_kwargs.get("fusion", "ensemble") and loaded.weight_smoothing == 0.0
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_run_records_the_design_it_was_trained_with(tiny_run):
    run, _ = tiny_run
    assert read_checkpoint(run / "best.pt")["model_kwargs"]["weight_smoothing"] == 0.4


def test_resuming_a_run_from_before_weight_smoothing_keeps_its_design(tmp_path):
    """--resume of a run whose last.pt predates `weight_smoothing` (no such key) continues it unsmoothed."""
    from fertrt.train.checkpoint import save_checkpoint

    cfg = dict(model="lnlattennet", data="synth:64:easy", out=str(tmp_path), batch_size=32)
    train(TrainConfig(epochs=1, model_kwargs={"weight_smoothing": 0.0}, **cfg), log=lambda *a: None)
    old = read_checkpoint(tmp_path / "last.pt")
    old["model_kwargs"] = {}  # as written before the argument existed
    save_checkpoint(tmp_path / "last.pt", old)
    train(TrainConfig(epochs=2, resume=True, **cfg), log=lambda *a: None)
    resumed = read_checkpoint(tmp_path / "last.pt")
    assert resumed["epoch"] == 1 and resumed["model_kwargs"]["weight_smoothing"] == 0.0
    model, _ = load_model(tmp_path / "last.pt")
    assert model.weight_smoothing == 0.0


def test_a_new_run_without_epochs_trains_the_default_count(tmp_path):
    """`fertrt train` with no --epochs (TrainConfig.epochs None) runs DEFAULT_EPOCHS and records them."""
    from fertrt.train.trainer import DEFAULT_EPOCHS

    cfg = dict(model="mobilenetv3_small", data="synth:60:easy", out=str(tmp_path / "run"), batch_size=32)
    result = train(TrainConfig(**cfg), log=lambda *a: None)
    assert result["epochs"] == DEFAULT_EPOCHS
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == DEFAULT_EPOCHS - 1 and ckpt["schedule"]["epochs"] == DEFAULT_EPOCHS


def _weights_digest(path):
    import hashlib

    state = read_checkpoint(path)["state_dict"]
    return hashlib.sha256(b"".join(name.encode() + state[name].numpy().tobytes() for name in sorted(state))).hexdigest()


def test_resumed_run_has_the_weights_of_an_uninterrupted_one(tmp_path):
    """Each epoch's order, augmentation and dropout come from (seed, epoch): a run killed after epoch 1 and
    resumed trains bitwise the same model as one that never stopped."""
    cfg = dict(model="lnlattennet", data="synth:64", epochs=2, batch_size=32)  # default augmentation: its draws count
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **cfg), log=lambda *a: None)

    class Killed(Exception):
        pass

    def kill_after_epoch_1(line):
        if line.startswith("epoch 1/2:"):  # logged once epoch 1's checkpoints are written
            raise Killed

    with pytest.raises(Killed):
        train(TrainConfig(out=str(tmp_path / "halted"), **cfg), log=kill_after_epoch_1)
    assert read_checkpoint(tmp_path / "halted" / "last.pt")["epoch"] == 0
    resumed = train(TrainConfig(out=str(tmp_path / "halted"), resume=True, **cfg), log=lambda *a: None)
    assert _weights_digest(resumed["last"]) == _weights_digest(straight["last"])


def test_cpu_threads_are_fixed_not_the_core_count(tmp_path, monkeypatch):
    """The thread count decides the last bits of the weights: it must not follow the machine's core count."""
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    torch.set_num_threads(1)
    try:
        train(TrainConfig(model="lnlattennet", data="synth:16:easy", out=str(tmp_path), epochs=1, batch_size=16),
              log=lambda *a: None)
        assert torch.get_num_threads() == 2
        ckpt = read_checkpoint(tmp_path / "last.pt")
        assert ckpt["train_config"]["threads"] == 2
    finally:
        torch.set_num_threads(2)
    with pytest.raises(SystemExit) as exit_info:  # argparse's exit 2, naming the option
        main(["train", "--threads", "0", "-o", str(tmp_path / "x")])
    assert exit_info.value.code == 2


def test_near_chance_warning():
    from fertrt.train.trainer import _warn_near_chance, chance_accuracy, near_chance

    assert chance_accuracy([0, 1, 2, 3, 4, 5, 6], 7) == pytest.approx(1 / 7)
    assert chance_accuracy([0, 0, 0, 1], 7) == 0.75  # always the most frequent class
    assert near_chance(0.1415, 1 / 7) and near_chance(0.22, 1 / 7) and not near_chance(0.25, 1 / 7)
    assert near_chance(1.0, 1.0)  # one class: 100 % says nothing
    said = []
    _warn_near_chance(0.1415, [0, 1, 2, 3, 4, 5, 6], 7, 1, said.append)
    assert len(said) == 1 and "WARNING: the best validation accuracy 0.1415 is near chance (0.1429" in said[0]
    assert "too few epochs (1)" in said[0]
    said.clear()
    _warn_near_chance(0.80, [0, 1, 2, 3, 4, 5, 6], 7, 10, said.append)
    assert said == []


def test_training_entry_points_set_openmp_before_torch_loads():
    """OMP_WAIT_POLICY=PASSIVE reaches libgomp only if set before torch is imported; a user's value is kept."""
    code = ("import os, sys; from fertrt.train.commands import set_cpu_threading; set_cpu_threading(); "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}

    def run(extra):
        return subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                              timeout=120, cwd=REPO).stdout.split()

    assert run({}) == ["PASSIVE", "2", "False"]
    assert run({"OMP_WAIT_POLICY": "ACTIVE"}) == ["ACTIVE", "2", "False"]
