"""Checkpoints that hold everything downstream needs, written atomically."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path

import torch

from fertrt import __version__
from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path
from fertrt.text import safe

FORMAT = "fertrt-checkpoint-1"


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def save_checkpoint(path, payload: dict) -> Path:
    # str(): torch.__version__ is a TorchVersion object, which a weights_only load must otherwise allow-list
    payload = {
        "format": FORMAT,
        "fertrt_version": __version__,
        "code_version": git_commit(),
        "torch_version": str(torch.__version__),
        **payload,
    }
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as exc:  # torch raises RuntimeError on a full disk mid-write
        raise FertrtError(f"{path}: could not save the checkpoint ({exc}); the previous file is untouched") from exc
    return Path(path)


def _safe_globals() -> list:
    """The only non-builtin types fertrt's own checkpoints hold: checkpoints written before the
    torch_version field became a plain str hold a TorchVersion (a str subclass, no code runs)."""
    from torch.torch_version import TorchVersion

    return [TorchVersion]


def _load_weights_only(p: Path):
    # safe_globals (torch >= 2.5) is the scoped form of add_safe_globals: the allow-list applies to
    # this load only, not to every torch.load in the process.
    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is not None:
        with scoped(_safe_globals()):
            return torch.load(p, map_location="cpu", weights_only=True)
    if hasattr(torch.serialization, "add_safe_globals"):  # torch 2.4
        torch.serialization.add_safe_globals(_safe_globals())
    return torch.load(p, map_location="cpu", weights_only=True)


def _refused_global(exc: Exception) -> str | None:
    """The Python object a weights_only load refused, from PyTorch's message ('Unsupported global: GLOBAL
    x.y ...'); None when the file is simply not a pickle (garbage gives 'Unsupported operand')."""
    text = str(exc)
    for marker in ("Unsupported global: GLOBAL ", "Trying to load unsupported GLOBAL "):
        if marker in text:
            return text.split(marker, 1)[1].split()[0]
    for marker in (
        "Can only create new object for nn.Parameter or classes allowlisted via `add_safe_globals` but got ",
        "Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`, but got ",
    ):
        if marker in text:
            return text.split(marker, 1)[1].split("\n")[0].strip()[:120]
    return None


_REQUIRED = {"model_name": str, "model_config": dict, "class_names": list, "state_dict": dict, "data_spec": str}


def read_checkpoint(path) -> dict:
    """Load a fertrt checkpoint without running code from it (weights_only=True) and check its fields."""
    p = Path(path)
    if not p.is_file():
        raise FertrtError(f"{p}: no such checkpoint (expected a .pt file written by fertrt train)")
    try:
        ckpt = _load_weights_only(p)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if refused is None:
            # PyTorch's text suggests weights_only=False; the useful part is its WeightsUnpickler line
            text = str(exc)
            detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
            detail = next((ln.strip() for ln in detail.splitlines() if ln.strip()), "no detail")
            raise FertrtError(
                f"{p}: not a readable PyTorch checkpoint: damaged, or not written by torch.save ({safe(detail)[:200]})"
            ) from exc
        raise FertrtError(
            f"{p}: refused to load: it holds the Python object {refused!r}, which a pickle can use to run "
            "code. fertrt loads checkpoints with torch.load(weights_only=True): tensors and plain data only, "
            "which is all that fertrt train writes"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any other failure here means a bad file
        raise FertrtError(
            f"{p}: not a readable PyTorch checkpoint ({exc.__class__.__name__}: {safe(str(exc).splitlines()[0] if str(exc) else '')})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FertrtError(f"{p}: not a fertrt checkpoint (expected format {FORMAT!r}; is it a raw state dict?)")
    for key, kind in _REQUIRED.items():
        if not isinstance(ckpt.get(key), kind):
            raise FertrtError(
                f"{p}: damaged fertrt checkpoint: field {key!r} should be a {kind.__name__}, "
                f"found {type(ckpt.get(key)).__name__}"
            )
    names, cfg = ckpt["class_names"], ckpt["model_config"]
    if not names or not all(isinstance(n, str) for n in names) or cfg.get("num_classes") != len(names):
        raise FertrtError(
            f"{p}: damaged fertrt checkpoint: class_names {safe(names)} do not match num_classes "
            f"{safe(cfg.get('num_classes'))}"
        )
    _check_preprocess(p, ckpt)
    return ckpt


def _check_preprocess(p: Path, ckpt: dict) -> None:
    """The preprocessing export and eval carry into every later stage: checked once, here."""
    from fertrt.runtime.preprocess import PreprocessConfig

    if ckpt.get("preprocess") is None and isinstance(ckpt["model_config"].get("preprocess"), dict):
        ckpt["preprocess"] = ckpt["model_config"]["preprocess"]  # a checkpoint from before the top-level copy
    for where, pre in (
        ("preprocess", ckpt.get("preprocess")),
        ("model_config.preprocess", ckpt["model_config"].get("preprocess")),
    ):
        if pre is None and where != "preprocess":
            continue
        try:
            if not isinstance(pre, dict):
                raise TypeError(f"a {type(pre).__name__}")
            missing = [k for k in ("input_size", "channels", "mean", "std", "color_order") if k not in pre]
            if missing:
                raise KeyError(", ".join(missing) + " missing")
            PreprocessConfig.from_dict(pre)
        except (KeyError, TypeError, ValueError, FertrtError) as exc:
            raise FertrtError(
                f"{p}: damaged fertrt checkpoint: its {where} is not a preprocessing config "
                f"({exc.__class__.__name__}: {safe(exc)})"
            ) from None


def checkpoint_model_kwargs(ckpt: dict) -> dict:
    """The constructor arguments that rebuild the checkpoint's model. LNLAttenNet checkpoints written before
    a design argument existed get the value they were trained with, not today's default."""
    kwargs = ckpt.get("model_kwargs", {})
    kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
    if str(ckpt.get("model_name", "")).startswith("lnlattennet"):
        if "fusion" not in kwargs and "classifier.weight" in ckpt.get("state_dict", {}):
            kwargs["fusion"] = "concat"  # trained before the weighted-ensemble fusion (fertrt 0.1)
        kwargs.setdefault(
            "weight_smoothing", 0.0
        )  # trained before the weights were smoothed (every later run saves it)
    return kwargs


def load_model(path):
    """Checkpoint -> (eval-mode model with its default_cfg, checkpoint dict)."""
    from fertrt.train.models import create_model

    ckpt = read_checkpoint(path)
    cfg = ckpt["model_config"]
    kwargs = checkpoint_model_kwargs(ckpt)
    try:
        model = create_model(
            ckpt["model_name"], num_classes=cfg["num_classes"], class_names=cfg["class_names"], **kwargs
        )
    except (TypeError, ValueError) as exc:  # model_kwargs the model does not take
        raise FertrtError(
            f"{path}: model {ckpt['model_name']!r} cannot be built from the checkpoint's "
            f"model_kwargs {safe(kwargs)} ({safe(exc)})"
        ) from exc
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise FertrtError(
            f"{path}: weights do not fit model {ckpt['model_name']!r} ({safe(str(exc).splitlines()[0])})"
        ) from exc
    bad = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:  # a diverged run or a damaged file: every figure computed from it would be meaningless
        raise FertrtError(
            f"{path}: {len(bad)} weight tensors hold NaN or infinite values (first: {safe(bad[0])}); "
            "the run diverged or the file is damaged"
        )
    return model.eval(), ckpt
