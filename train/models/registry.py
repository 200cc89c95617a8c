"""Model registry in the timm style: `create_model(name, **kwargs)`, `list_models()`.

Each registered model carries a `ModelConfig` (input size, channels, mean/std, class names)
that travels into every checkpoint, ONNX file and engine sidecar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from fertrt.errors import FertrtError
from fertrt.labels import class_names as canonical_class_names
from fertrt.runtime.preprocess import PreprocessConfig


@dataclass(frozen=True)
class ModelConfig:
    name: str
    preprocess: PreprocessConfig
    num_classes: int = 7
    class_names: tuple[str, ...] = ()
    description: str = ""
    kwargs: dict = field(default_factory=dict)  # constructor overrides used to build it

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(
            name=d["name"],
            preprocess=PreprocessConfig.from_dict(d["preprocess"]),
            num_classes=int(d["num_classes"]),
            class_names=tuple(d["class_names"]),
            description=d.get("description", ""),
            kwargs=dict(d.get("kwargs", {})),
        )


@dataclass(frozen=True)
class _Entry:
    builder: Callable
    default_cfg: ModelConfig


_REGISTRY: dict[str, _Entry] = {}


def register_model(
    name: str, *, input_size=(112, 112), channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), description=""
):
    def deco(builder):
        cfg = ModelConfig(
            name=name,
            preprocess=PreprocessConfig(
                input_size=input_size,
                channels=channels,
                mean=mean,
                std=std,
                color_order="GRAY" if channels == 1 else "RGB",
            ),
            description=description,
        )
        _REGISTRY[name] = _Entry(builder, cfg)
        return builder

    return deco


def _ensure_loaded():
    # Importing the family modules registers them.
    from . import lnlattennet, mini_xception, mobilenet, resnet, scan_cci  # noqa: F401


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_default_config(name: str) -> ModelConfig:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise FertrtError(f"unknown model {name!r}; registered models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name].default_cfg


def create_model(name: str, num_classes: int = 7, class_names=None, **overrides):
    """Build a registered model. `in_chans` (1 = grey) and `input_size` adjust the preprocessing too."""
    default = get_default_config(name)
    pre = default.preprocess
    in_chans = int(overrides.get("in_chans", pre.channels))
    if in_chans != pre.channels:
        mean = (sum(pre.mean) / len(pre.mean),) * in_chans
        std = (sum(pre.std) / len(pre.std),) * in_chans
        pre = replace(pre, channels=in_chans, mean=mean, std=std, color_order="GRAY" if in_chans == 1 else "RGB")
    if "input_size" in overrides:
        size = overrides["input_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        overrides["input_size"] = size
        pre = replace(pre, input_size=size)
    names = tuple(class_names) if class_names else canonical_class_names(num_classes)
    if len(names) != num_classes:
        raise FertrtError(f"{name}: {len(names)} class names given for num_classes={num_classes}")
    cfg = replace(default, preprocess=pre, num_classes=num_classes, class_names=names, kwargs=dict(overrides))
    try:
        model = _REGISTRY[name].builder(num_classes=num_classes, **{**overrides, "in_chans": in_chans})
    except (ArithmeticError, AssertionError, RuntimeError, TypeError, ValueError) as exc:
        if not overrides:
            raise
        # a constructor argument out of its range (grid=0, a negative width): name what was given
        given = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise FertrtError(
            f"model {name!r} cannot be built with {given} ({exc.__class__.__name__}: {exc}); "
            "check the --model-arg values"
        ) from None
    model.default_cfg = cfg
    return model


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model, input_size=None, channels=None) -> int:
    """Multiply-accumulates of one batch-1 forward, from PyTorch's own FLOP counter (FLOPs / 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pre = model.default_cfg.preprocess
    h, w = input_size or pre.input_size
    c = channels or pre.channels
    was_training = model.training
    model.eval()
    x = torch.zeros(1, c, h, w)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2
