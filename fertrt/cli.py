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
                   help="data spec: synth[:N[:easy|hard]], fer2013:PATH, ferplus:PATH, rafdb:PATH, affectnet:PATH[:8], folder:PATH")


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


@command("train", "fertrt.train.commands:cmd_train", "train a model (resumable; torchrun for multi-GPU)")
def _train(p):
    p.add_argument("--model", default="lnlattennet", help="registered model name (see `fertrt models`)")
    _add_data_arg(p, required=False, default="synth")
    p.add_argument("-o", "--out", default="runs/train", help="run folder for checkpoints, metrics and plots")
    p.add_argument("--epochs", type=int, default=10, help="default 10: about 7.5 min for lnlattennet on synth with 2 CPU cores")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget; epochs are fitted to it after the first")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling")
    p.add_argument("--clip-grad", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data loader processes (useful for file-backed data sets)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--grey", action="store_true", help="1-channel grey input")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="model constructor override, e.g. share_local=true, grid=4 (repeatable)")
    p.add_argument("--no-augment", action="store_true")


@command("eval", "fertrt.train.commands:cmd_eval", "evaluate a checkpoint: accuracy, macro-F1, confusion, region weights")
def _eval(p):
    p.add_argument("checkpoint", help="a .pt checkpoint written by fertrt train")
    _add_data_arg(p, required=False, default=None)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("-o", "--out", default=None, help="folder for the confusion matrix, heatmap and JSON (default: beside the checkpoint)")
    p.add_argument("--batch-size", type=int, default=128)


@command("export", "fertrt.export.commands:cmd_export", "checkpoint -> ONNX with metadata, verified on ONNX Runtime")
def _export(p):
    p.add_argument("checkpoint", help="a .pt checkpoint written by fertrt train")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--batch", type=int, default=None, help="fixed batch size (default: dynamic batch axis)")
    p.add_argument("--explain", action="store_true", help="LNLAttenNet: add region_weights as a second output")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--no-verify", action="store_true", help="skip the PyTorch vs ONNX Runtime check")
    p.add_argument("--verify-samples", type=int, default=64)
    p.add_argument("--atol", type=float, default=1e-4, help="max absolute logit difference allowed (default 1e-4)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


@command("quantize", "fertrt.export.commands:cmd_quantize", "FP16 or calibrated INT8 (Q/DQ) ONNX; --sensitivity ranks layers")
def _quantize(p):
    p.add_argument("model", help="an FP32 .onnx file from fertrt export")
    p.add_argument("--precision", choices=["fp16", "int8"], default="int8")
    p.add_argument("-o", "--output", help="the .onnx file to write (with --sensitivity: the JSON report)")
    p.add_argument("--calib-data", help="INT8 calibration data: a data spec (drawn from its train split) or a preprocessed .npy")
    p.add_argument("--calib-size", type=int, default=512)
    p.add_argument("--calib-method", choices=["entropy", "minmax", "percentile"], default="entropy")
    p.add_argument("--percentile", type=float, default=99.99)
    p.add_argument("--exclude", action="append", default=[], metavar="NODE_OR_OP",
                   help="node name or op type kept in higher precision (repeatable)")
    p.add_argument("--keep-fp32", default=None, help="FP16: comma-separated op types kept in FP32 (default: Softmax and reductions)")
    p.add_argument("--quantize-add", action="store_true", help="INT8: Q/DQ on residual Adds as well")
    p.add_argument("--keep-classifier", action="store_true", help="INT8: keep the final classifier in FP32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="calibration range cache (default ~/.cache/fertrt/calibration)")
    p.add_argument("--trt-cache", default=None, help="TensorRT calibration cache to write (default OUTPUT.calib.cache)")
    p.add_argument("--trt-version", default="8601", help="TensorRT version tag for that cache's header, e.g. 8601 or 8.6.1")
    p.add_argument("--sensitivity", action="store_true", help="quantize one layer at a time and rank layers by the accuracy they cost")
    p.add_argument("--eval-data", default=None, help="--sensitivity: data spec to score on (default: the model's, val split)")
    p.add_argument("--eval-size", type=int, default=500)
    p.add_argument("--max-drop", type=float, default=1.0, help="--sensitivity: allowed top-1 drop in points")
    p.add_argument("--force", action="store_true")


@command("compare", "fertrt.export.compare:cmd_compare", "compare models on labelled data: accuracy, agreement, logit drift")
def _compare(p):
    p.add_argument("models", nargs="+", help="model files: .pt, .onnx, .engine; the first is the reference")
    _add_data_arg(p, required=False, default=None)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("-o", "--output", default=None, help="write the comparison as JSON")


@command("build-engine", "fertrt.engine.commands:cmd_build_engine", "build a TensorRT engine (TensorRT 8.5 to 11) with a JSON sidecar")
def _build_engine(p):
    p.add_argument("onnx", help="an .onnx file from fertrt export/quantize")
    p.add_argument("-o", "--output", required=True, help="the .engine file to write (a .engine.json sidecar goes beside it)")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8", "best"], default="fp32",
                   help="strongly typed builds take precision from the graph: fp16/int8 on an FP32 graph quantize it first")
    p.add_argument("--batch", default=None, help="optimisation profile of the batch axis MIN,OPT,MAX (default 1,8,32)")
    p.add_argument("--workspace", type=int, default=None, help="workspace memory pool limit in MiB")
    p.add_argument("--builder-opt-level", type=int, default=None, help="0..5 (TensorRT 8.6+)")
    p.add_argument("--timing-cache", default=None, help="timing cache file: loaded before, saved after the build")
    p.add_argument("--dla-core", type=int, default=None, help="Jetson: build for DLA core N")
    p.add_argument("--gpu-fallback", action="store_true", help="with --dla-core: run unsupported layers on the GPU")
    p.add_argument("--version-compatible", action="store_true", help="engine runs on later TensorRT versions (8.6+)")
    p.add_argument("--hardware-compat", choices=["none", "ampere+", "same-cc"], default=None, help="engine portable across GPUs (8.6+)")
    p.add_argument("--legacy-int8", action="store_true", help="implicit INT8 with the entropy calibrator (TensorRT 8.x/10.x)")
    p.add_argument("--calib-data", default=None, help="calibration data spec (int8 on an FP32 graph, or --legacy-int8)")
    p.add_argument("--calib-cache", default=None, help="--legacy-int8: TensorRT calibration cache to read/write")
    p.add_argument("--calib-size", type=int, default=512)
    p.add_argument("--weakly-typed", action="store_true", help="TensorRT 10.x: use the FP16/INT8 builder flags instead of strong typing")
    p.add_argument("--no-cache", action="store_true", help="always build (skip the engine cache)")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


@command("inspect-engine", "fertrt.engine.commands:cmd_inspect_engine", "summarise an engine and check whether it can run here")
def _inspect_engine(p):
    p.add_argument("engine", help="a .engine file with its .engine.json sidecar")
    p.add_argument("--json", default=None, help="also write the summary and layer table as JSON")


@command("infer", "fertrt.runtime.commands:cmd_infer", "run a model on images, folders, video or a camera (no torch needed)")
def _infer(p):
    p.add_argument("model", help=".onnx (ONNX Runtime), .engine (TensorRT) or .pt (PyTorch reference)")
    p.add_argument("input", help="image, folder of images, video file, camera index, /dev/videoN or a GStreamer pipeline")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt", "torch"], default="auto")
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt", "auto"], default="cpu", help="ONNX Runtime execution provider")
    p.add_argument("--save", default=None, help="annotated output: an image, a folder (for folder input) or a video file")
    p.add_argument("--jsonl", default=None, help="write one JSON line per image/frame (boxes, labels, probabilities, timings)")
    p.add_argument("--summary-json", default=None, help="write the run summary as JSON")
    p.add_argument("--no-detect", action="store_true", help="inputs are already face crops")
    p.add_argument("--detector", choices=["haar"], default="haar", help="face detector (OpenCV's Haar cascade)")
    p.add_argument("--detector-model", default=None, help="a YuNet face detector .onnx to use instead (gives eye landmarks)")
    p.add_argument("--margin", type=float, default=0.1, help="crop margin around the face box, as a fraction of its size")
    p.add_argument("--no-align", action="store_true", help="do not rotate faces upright by the eye landmarks")
    p.add_argument("--regions", action="store_true", help="draw the 4x4 region weights (models exported with --explain)")
    p.add_argument("--smooth", type=float, default=0.4, help="video: EMA weight of the newest frame's probabilities")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture a CUDA graph per batch size")
    p.add_argument("--zero-copy", choices=["on", "off"], default=None, help="TensorRT: mapped host memory (default on for Jetson)")
    p.add_argument("--rebuild", action="store_true", help="TensorRT: rebuild an engine made for another GPU/TensorRT version")
    p.add_argument("--quiet", action="store_true")


@command("bench", "fertrt.benchmarks.harness:cmd_bench", "latency, throughput, memory, accuracy (and power on Jetson) per model and batch")
def _bench(p):
    p.add_argument("models", nargs="*", help="model files: .pt, .onnx (FP32/FP16/INT8), .engine")
    _add_data_arg(p, required=False, default=None)
    p.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes")
    p.add_argument("--seconds", type=float, default=2.0, help="timed budget per configuration")
    p.add_argument("--warmup", type=int, default=5, help="warm-up calls per configuration")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=None, help="accuracy on the first N images only")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    p.add_argument("--streams", type=int, default=1, help="also measure throughput with N threads, each with its own context/session")
    p.add_argument("--no-baselines", action="store_true", help="skip the bare onnxruntime / PyTorch eager rows")
    p.add_argument("--torch-compile", action="store_true", help="add a torch.compile baseline row")
    p.add_argument("-o", "--out", default="bench-results", help="folder for results.json, report.md and plots")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="print ratios between two results.json files")


@command("demo", "fertrt.benchmarks.demo:cmd_demo", "the whole pipeline on the embedded synthetic data, into one report")
def _demo(p):
    p.add_argument("-o", "--out", default="fertrt-demo", help="report folder")
    p.add_argument("--model", default="lnlattennet")
    p.add_argument("--data", default="synth")
    p.add_argument("--epochs", type=int, default=10, help="at most this many epochs")
    p.add_argument("--minutes", type=float, default=6.0, help="training budget in minutes")
    p.add_argument("--fresh", action="store_true", help="rebuild everything instead of reusing the report folder")
    p.add_argument("--bench-seconds", type=float, default=1.0)
    p.add_argument("--calib-size", type=int, default=512)
    p.add_argument("--batch", default="1,8,32")


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
        extra = "train" if exc.name in ("torch", "onnx", "onnxslim", "matplotlib", "tqdm") else None
        hint = f" (install it with: pip install 'fertrt[{extra}]')" if extra else ""
        print(f"fertrt {args.command}: error: this command needs the Python package {exc.name!r}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fertrt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
