"""Checkpoints that hold everything downstream needs, written atomically."""
from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from fertrt import __version__
from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path

FORMAT = "fertrt-checkpoint-1"


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def save_checkpoint(path, payload: dict) -> Path:
    payload = {"format": FORMAT, "fertrt_version": __version__, "code_version": git_commit(),
               "torch_version": torch.__version__, **payload}
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as exc:  # torch raises RuntimeError on a full disk mid-write
        raise FertrtError(f"{path}: could not save the checkpoint ({exc}); the previous file is untouched") from exc
    return Path(path)


def read_checkpoint(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FertrtError(f"{p}: no such checkpoint (expected a .pt file written by fertrt train)")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        raise FertrtError(f"{p}: not a readable PyTorch checkpoint ({exc.__class__.__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FertrtError(f"{p}: not a fertrt checkpoint (expected format {FORMAT!r}; is it a raw state dict?)")
    return ckpt


def load_model(path):
    """Checkpoint -> (eval-mode model with its default_cfg, checkpoint dict)."""
    from fertrt.train.models import create_model

    ckpt = read_checkpoint(path)
    cfg = ckpt["model_config"]
    model = create_model(ckpt["model_name"], num_classes=cfg["num_classes"], class_names=cfg["class_names"], **ckpt.get("model_kwargs", {}))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise FertrtError(f"{path}: weights do not fit model {ckpt['model_name']!r} ({str(exc).splitlines()[0]})") from exc
    return model.eval(), ckpt
