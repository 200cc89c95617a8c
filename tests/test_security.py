"""Untrusted files: a checkpoint's pickle must never run code, data-set paths stay inside their root,
file-provided strings are printed escaped. Commands run through the real CLI in subprocesses."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fertrt.errors import FertrtError
from fertrt.text import safe

REPO = Path(__file__).resolve().parent.parent


class _OpenForWriting:
    """Unpickling this calls open(marker, "w"): the file appears exactly when the payload runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _checkpoint(path, payload=None):
    """A checkpoint in fertrt's own format (an untrained model is enough to reach the loader)."""
    import torch

    from fertrt.train.checkpoint import save_checkpoint
    from fertrt.train.models import create_model

    model = create_model("resnet18", num_classes=7)
    ckpt = {
        "model_name": "resnet18",
        "model_kwargs": {},
        "model_config": model.default_cfg.to_dict(),
        "class_names": list(model.default_cfg.class_names),
        "preprocess": model.default_cfg.preprocess.to_dict(),
        "data_spec": "synth:60",
        "state_dict": model.state_dict(),
        "epoch": 0,
        "best_accuracy": 0.5,
        "history": [],
        "metrics": {},
        "train_config": {},
    }
    if payload is None:
        return save_checkpoint(path, ckpt)
    ckpt["history"] = [payload]
    torch.save({"format": "fertrt-checkpoint-1", **ckpt}, path)
    return path


def _fertrt(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "fertrt", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=180, env=env
    )


def test_payload_is_live_when_loaded_unsafely(tmp_path):
    """Guards the test below: the payload really runs when a loader trusts the pickle."""
    import torch

    marker = tmp_path / "ran"
    evil = _checkpoint(tmp_path / "evil.pt", _OpenForWriting(marker))
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_malicious_checkpoint_runs_no_code_on_any_command(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    evil = _checkpoint(tmp_path / "evil.pt", _OpenForWriting(marker))
    img = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    resume_dir = tmp_path / "resume_run"
    resume_dir.mkdir()
    (resume_dir / "last.pt").write_bytes(evil.read_bytes())
    demo_dir = tmp_path / "demo"
    (demo_dir / "train").mkdir(parents=True)
    (demo_dir / "train" / "last.pt").write_bytes(evil.read_bytes())  # the demo reads last.pt to resume or reuse
    cv2.imwrite(str(demo_dir / "data_preview.png"), np.zeros((8, 8, 3), np.uint8))  # demo reuses its folder
    runs = {
        "eval": (["eval", evil], evil),
        "export": (["export", evil, "-o", tmp_path / "out.onnx"], evil),
        "infer": (["infer", evil, img, "--no-detect", "--backend", "torch"], evil),
        "bench": (["bench", evil, "--batches", "1", "--seconds", "0.1", "-o", tmp_path / "bench"], evil),
        "compare": (["compare", evil, "--limit", "8"], evil),
        "train --resume": (
            ["train", "--model", "resnet18", "--data", "synth:60", "-o", resume_dir, "--resume", "--epochs", "1"],
            resume_dir / "last.pt",
        ),
        "demo (reusing a folder)": (["demo", "-o", demo_dir, "--model", "resnet18"], demo_dir / "train" / "last.pt"),
    }
    with ThreadPoolExecutor(3) as pool:
        results = dict(zip(runs, pool.map(lambda item: _fertrt(*item[0], cwd=tmp_path), runs.values())))
    for name, proc in results.items():
        where = str(runs[name][1])
        assert "Traceback" not in proc.stderr, f"{name}: {proc.stderr}"
        assert proc.returncode == 2, f"{name}: rc {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-800:]}"
        assert f"{where}: refused to load" in proc.stderr and "'io.open'" in proc.stderr, f"{name}: {proc.stderr}"
        assert not marker.exists(), f"the payload ran during {name}"


def test_clean_checkpoint_still_loads_and_fields_are_checked(tmp_path):
    from fertrt.train.checkpoint import read_checkpoint

    good = _checkpoint(tmp_path / "good.pt")
    ckpt = read_checkpoint(good)
    assert ckpt["model_name"] == "resnet18" and isinstance(ckpt["torch_version"], str)
    import torch

    bad = dict(ckpt, class_names="anger")  # a string where a list belongs
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(FertrtError, match="bad.pt: damaged fertrt checkpoint: field 'class_names' should be a list"):
        read_checkpoint(tmp_path / "bad.pt")
    (tmp_path / "noise.pt").write_bytes(b"garbage, not a pickle")  # damaged, not dangerous: said so
    with pytest.raises(
        FertrtError, match=r"noise.pt: not a readable PyTorch checkpoint: damaged, or not written by torch.save"
    ):
        read_checkpoint(tmp_path / "noise.pt")
    torch.save(dict(ckpt, class_names=["a", "b"]), tmp_path / "short.pt")
    with pytest.raises(FertrtError, match="short.pt: damaged fertrt checkpoint: class_names .* num_classes 7"):
        read_checkpoint(tmp_path / "short.pt")


def test_old_checkpoints_with_a_torch_version_object_load(tmp_path):
    """Checkpoints written before the version became a str hold a TorchVersion: the one allow-listed type."""
    import torch

    from fertrt.train.checkpoint import read_checkpoint

    ckpt = read_checkpoint(_checkpoint(tmp_path / "good.pt"))
    ckpt["torch_version"] = torch.__version__  # a TorchVersion object
    torch.save(ckpt, tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")["torch_version"] == str(torch.__version__)


def test_safe_escapes_terminal_control_characters():
    assert safe("happiness") == "happiness" and safe("colère 表情") == "colère 表情"
    out = safe("ok\x1b[2J\x1b]0;title\x07\u202egpj.exe\r\n")
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\r" not in out and "\n" not in out
    assert out == "ok\\x1b[2J\\x1b]0;title\\x07\\u202egpj.exe\\r\\n"
    assert safe(["a\x1b"]) == "['a\\x1b']"


def test_data_set_strings_are_printed_escaped(tmp_path):
    """A class folder named with an escape sequence is shown escaped by `fertrt data info`."""
    import cv2

    root = tmp_path / "faces"
    for cls in ("happiness", "sadness"):
        (root / "train" / cls).mkdir(parents=True)
        cv2.imwrite(str(root / "train" / cls / "a.png"), np.zeros((8, 8, 3), np.uint8))
    bad = root / "train" / "anger\x1b[31m"
    bad.mkdir()
    proc = _fertrt("data", "info", f"folder:{root}", cwd=tmp_path)
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "anger\\x1b[31m" in proc.stderr, proc.stderr
