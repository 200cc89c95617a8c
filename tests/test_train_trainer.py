"""train/trainer.py: TrainConfig's checks, checkpoints, resume (after a real SIGKILL too), --minutes budgets,
run folders that are never lost, bitwise reproducible weights."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from fertrt.errors import FertrtError
from fertrt.ranges import TRAIN_RANGES
from fertrt.train.checkpoint import load_model, read_checkpoint
from fertrt.train.trainer import TrainConfig, train, train_option


def test_checkpoint_contents(tiny_run):
    run, result = tiny_run
    ckpt = read_checkpoint(run / "best.pt")
    for key in (
        "model_name",
        "model_config",
        "class_names",
        "preprocess",
        "data_spec",
        "metrics",
        "code_version",
        "fertrt_version",
        "state_dict",
        "optimizer",
        "epoch",
    ):
        assert key in ckpt, key
    assert ckpt["class_names"][0] == "neutral" and list(ckpt["preprocess"]["input_size"]) == [112, 112]
    assert result["best_accuracy"] > 0.6  # easy synth: well above the 1/7 chance level
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == list(range(1, len(lines) + 1))
    assert {"val_accuracy", "val_macro_f1", "val_per_class_accuracy"} <= set(lines[0])
    assert (run / "confusion_val.png").stat().st_size > 1000


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


def test_sigkill_mid_epoch_then_resume(tmp_path):
    """A real process killed with SIGKILL in its second epoch resumes from last.pt and finishes."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "fertrt",
        "train",
        "--model",
        "lnlattennet",
        "--data",
        "synth:400:easy",
        "-o",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--model-arg",
        "share_local=true",
    ]
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
    r = subprocess.run(
        [
            torchrun,
            "--nproc-per-node",
            "2",
            fertrt,
            "train",
            "--model",
            "lnlattennet",
            "--data",
            "synth:128:easy",
            "-o",
            str(out),
            "--epochs",
            "3",
            "--minutes",
            "0.001",
            "--batch-size",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("done: best val accuracy") == 1  # only rank 0 reports
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 0 and ckpt["schedule"]["epochs"] == 1


# ---------------------------------------------------------------- TrainConfig: every value checked once, naming its option
@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, "--epochs 0: expected an integer >= 1"),
        ("epochs", 2.5, "--epochs 2.5: expected an integer >= 1"),
        ("epochs", True, "--epochs True: expected an integer"),  # a bool is an int to Python only
        ("minutes", 0.0, r"--minutes 0.0: expected a finite number in \(0, inf\]"),
        ("minutes", float("inf"), "--minutes inf: expected a finite number"),
        ("batch_size", 0, "--batch-size 0: expected an integer from 1 to 4096"),
        ("batch_size", 4097, "--batch-size 4097: expected an integer from 1 to 4096"),
        ("lr", 0.0, r"--lr 0.0: expected a finite number in \(0, inf\]"),
        ("lr", float("nan"), "--lr nan: expected a finite number"),
        ("lr", "0.1", "--lr '0.1': expected a finite number"),  # text is argparse's to parse, not the config's
        ("weight_decay", -0.01, r"--weight-decay -0.01: expected a finite number in \[0, inf\]"),
        ("warmup_epochs", -1.0, "--warmup-epochs -1.0: expected a finite number"),
        ("label_smoothing", 1.0, r"--label-smoothing 1.0: expected a finite number in \[0, 1\)"),
        ("clip_grad", -1.0, "--clip-grad -1.0: expected a finite number"),
        ("seed", -1, "--seed -1: expected an integer from 0 to 4294967295"),
        ("seed", 2**32, "--seed 4294967296: expected an integer from 0 to 4294967295"),
        ("workers", -1, "--workers -1: expected an integer from 0 to 64"),
        ("threads", 0, "--threads 0: expected an integer from 1 to 256"),
        ("optimizer", "adam", "--optimizer 'adam': expected one of adamw, sgd"),
        ("device", "gpu0", "--device 'gpu0': expected auto, cpu, cuda or cuda:N"),
        ("device", "cuda:x", "--device 'cuda:x': expected auto, cpu, cuda or cuda:N"),
        (
            "model_kwargs",
            {"not a name": 1},
            "--model-arg 'not a name': expected KEY=VALUE with KEY a constructor argument",
        ),
        ("model_kwargs", [("grid", 4)], "--model-arg: expected KEY=VALUE arguments"),
    ],
)
def test_config_refuses_a_bad_value_naming_its_option(field, value, message):
    with pytest.raises(FertrtError, match=message):
        TrainConfig(**{field: value})


def _ends(allowed):
    """(values a range holds at its ends, values just beyond them) of an IntRange or a FloatRange."""
    if hasattr(allowed, "interval"):  # a FloatRange: an open end is itself outside
        lo_in = allowed.lo + 1e-6 if allowed.lo_open else allowed.lo
        hi_in = allowed.hi - 1e-6 if allowed.hi_open else allowed.hi
        inside = [lo_in] + ([hi_in] if allowed.hi < float("inf") else [1e9])
        outside = [allowed.lo if allowed.lo_open else allowed.lo - 1e-6, float("nan")]
        outside += (
            [allowed.hi if allowed.hi_open else allowed.hi + 1e-6] if allowed.hi < float("inf") else [float("inf")]
        )
        return inside, outside
    inside = [allowed.lo] + ([allowed.hi] if allowed.hi is not None else [10**9])
    return inside, [allowed.lo - 1] + ([allowed.hi + 1] if allowed.hi is not None else [])


@pytest.mark.parametrize("field", sorted(TRAIN_RANGES))
def test_config_takes_the_ends_of_each_range_and_nothing_beyond(field):
    inside, outside = _ends(TRAIN_RANGES[field])
    for value in inside:
        assert getattr(TrainConfig(**{field: value}), field) == value
    for value in outside:
        with pytest.raises(FertrtError, match=f"^{train_option(field)} "):
            TrainConfig(**{field: value})


def test_the_cli_checks_each_option_with_the_configs_range():
    """One definition of each limit: `fertrt train`'s argparse type of an option is the range TrainConfig checks,
    and the CLI's defaults are the config's."""
    from fertrt import cli

    parser = argparse.ArgumentParser()
    cli._COMMANDS["train"][2](parser)
    actions = {option: action for action in parser._actions for option in action.option_strings}
    defaults = TrainConfig()
    for field, allowed in TRAIN_RANGES.items():
        action = actions[train_option(field)]
        assert action.type is allowed, field
        assert action.default == getattr(defaults, field), field
    assert (
        tuple(actions["--optimizer"].choices) == ("adamw", "sgd")
        and actions["--optimizer"].default == defaults.optimizer
    )


def test_a_cuda_device_this_machine_lacks_is_refused_before_the_run_folder_is_made(tmp_path):
    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    cfg = TrainConfig(model="lnlattennet", data="synth:60", out=str(tmp_path / "x"), device=device)
    with pytest.raises(FertrtError, match=f"--device {device}: "):
        train(cfg)
    assert not (tmp_path / "x").exists()


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
    with pytest.raises(
        FertrtError, match=r"holds another training run \(last.pt, best.pt, metrics.jsonl.*--resume.*--force"
    ):
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
    with pytest.raises(
        FertrtError,
        match=r"epoch 1: the training loss became (nan|inf).*training stopped.*No checkpoint was written.*--lr",
    ):
        train(
            TrainConfig(
                model="lnlattennet",
                data="synth:64:easy",
                out=str(tmp_path),
                epochs=2,
                batch_size=16,
                lr=1e30,
                warmup_epochs=0,
            ),
            log=lambda *a: None,
        )
    assert not (tmp_path / "last.pt").exists() and not (tmp_path / "best.pt").exists()


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
    result = train(
        TrainConfig(
            model="lnlattennet", data="synth:1500:easy", out=str(folder), epochs=done + 1, resume=True, batch_size=32
        ),
        log=lambda *a: None,
    )
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
    tr = Split(
        "train", names, np.arange(50) % 2, images=np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(3, 3)
    )
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
        train(
            TrainConfig(model="lnlattennet", data="synth:16:easy", out=str(tmp_path), epochs=1, batch_size=16),
            log=lambda *a: None,
        )
        assert torch.get_num_threads() == 2
        ckpt = read_checkpoint(tmp_path / "last.pt")
        assert ckpt["train_config"]["threads"] == 2
    finally:
        torch.set_num_threads(2)


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
