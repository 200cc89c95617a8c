"""The `fertrt` command. Parsers are declared here (cheap); each handler is imported only when its
subcommand runs, so `fertrt --help` and the runtime commands never import torch or TensorRT."""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import FertrtError

# name -> (handler "module:function", one-line help, function that adds the arguments)
_COMMANDS: dict[str, tuple[str, str, object]] = {}


def command(name: str, handler: str, help: str):
    def deco(add_args):
        _COMMANDS[name] = (handler, help, add_args)
        return add_args

    return deco


@command("models", "fertrt.commands:cmd_models", "table of registered models: input, params, MACs")
def _models(p):
    p.add_argument("--no-macs", action="store_true", help="skip the MAC count (faster)")


@command("version", "fertrt.commands:cmd_version", "versions of fertrt, torch, onnx, onnxruntime, TensorRT, CUDA")
def _version(p):
    pass


def _add_data_arg(p, required=True, default=None):
    p.add_argument("--data", required=required, default=default,
                   help="data spec: synth[:N], fer2013:PATH, ferplus:PATH, rafdb:PATH, affectnet:PATH[:8], folder:PATH")


@command("data", "fertrt.commands:cmd_data", "look at a data set (preview grid, counts)")
def _data(p):
    sub = p.add_subparsers(dest="data_cmd", required=True)
    prev = sub.add_parser("preview", help="write a labelled grid of samples to a PNG")
    prev.add_argument("spec", help="data spec, e.g. synth or rafdb:/data/RAF-DB")
    prev.add_argument("-o", "--output", default="preview.png", help="output PNG (default: preview.png)")
    prev.add_argument("--split", default="train", choices=["train", "val", "test"])
    prev.add_argument("--count", type=int, default=49, help="number of samples in the grid")
    prev.add_argument("--size", type=int, default=112, help="image size for synth and for the tiles")
    prev.add_argument("--seed", type=int, default=0)
    info = sub.add_parser("info", help="print split sizes and class counts")
    info.add_argument("spec")
    info.add_argument("--size", type=int, default=112)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fertrt", description="Facial expression recognition from PyTorch to TensorRT: "
                                     "train, export, quantize, build engines, run and benchmark.")
    parser.add_argument("--version", action="version", version=f"fertrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text, add_args) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    module_name, func_name = _COMMANDS[args.command][0].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except FertrtError as exc:
        print(f"fertrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = "train" if exc.name in ("torch", "onnx", "onnxslim", "onnxconverter_common", "matplotlib", "tqdm") else None
        hint = f" (install it with: pip install 'fertrt[{extra}]')" if extra else ""
        print(f"fertrt {args.command}: error: this command needs the Python package {exc.name!r}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fertrt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
