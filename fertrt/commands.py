"""Handlers of the `fertrt` subcommands. Heavy imports stay inside each handler."""

from __future__ import annotations

import importlib
import platform

from . import __version__


def cmd_models(args):
    from fertrt.train.models import count_macs, count_params, create_model, list_models

    rows = []
    for name in list_models():
        model = create_model(name)
        pre = model.default_cfg.preprocess
        macs = None if args.no_macs else count_macs(model)
        rows.append(
            (
                name,
                f"{pre.channels}x{pre.input_size[0]}x{pre.input_size[1]}",
                count_params(model),
                macs,
                model.default_cfg.description,
            )
        )
    print(f"{'model':<20} {'input':<12} {'params':>12} {'MACs':>16}  description")
    for name, inp, params, macs, desc in rows:
        mac_text = "-" if macs is None else f"{macs:,}"
        print(f"{name:<20} {inp:<12} {params:>12,} {mac_text:>16}  {desc}")
    return 0


def _module_version(name):
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - absent or broken optional packages just show as missing
        return None
    return getattr(mod, "__version__", "unknown")


def version_info() -> dict:
    info = {"fertrt": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("numpy", "cv2", "onnxruntime", "torch", "onnx", "tensorrt", "pycuda"):
        info[name] = _module_version(name)
    info["cuda"] = None
    if info["torch"]:
        import torch

        if torch.cuda.is_available():
            info["cuda"] = {"torch_cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0)}
    return info


def cmd_version(args):
    for key, value in version_info().items():
        print(f"{key:<12} {value if value is not None else 'not installed'}")
    return 0


def cmd_data(args):
    from fertrt.train.data import commands as data_commands

    return data_commands.run(args)
