"""Numeric option ranges, each defined once. A range is both the argparse `type=` of its option (a bad value is
an argparse error naming the option: exit 2) and the check a config dataclass runs on values given in Python (the
demo, tests, library users), so the CLI and a config can never accept different values.

Ranges of configs on the training side live here too: the CLI builds every parser on the device side, which may
not import the training side. No torch, Python 3.8 (the device side imports this module)."""

from __future__ import annotations

import argparse
import math
import numbers

from .errors import FertrtError


class IntRange:
    """Integers in [lo, hi] (hi None: no upper bound)."""

    def __init__(self, lo: int, hi: int | None = None):
        self.lo, self.hi = lo, hi
        self.expected = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"
        self.__name__ = (
            f"integer >= {lo}" if hi is None else f"integer {lo}..{hi}"
        )  # argparse and the CLI table read it

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # True is an int to Python, not to us
            return False
        return value >= self.lo and (self.hi is None or value <= self.hi)

    def check(self, value, option: str):
        """`value` itself, or FertrtError naming the option: '--epochs 0: expected an integer >= 1'."""
        if not self.contains(value):
            raise FertrtError(f"{option} {value!r}: expected {self.expected}")
        return value

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {value}")
        return value


class FloatRange:
    """Finite numbers in the interval lo..hi, each end open or closed."""

    def __init__(self, lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        self.interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        self.__name__ = f"number in {self.interval}"  # argparse and the CLI table read it

    def _inside(self, value: float) -> bool:
        return not (
            value < self.lo
            or value > self.hi
            or (self.lo_open and value == self.lo)
            or (self.hi_open and value == self.hi)
        )

    def contains(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        return math.isfinite(value) and self._inside(value)

    def check(self, value, option: str):
        """`value` itself, or FertrtError naming the option: '--lr 0: expected a finite number in (0, inf]'."""
        if not self.contains(value):
            raise FertrtError(f"{option} {value!r}: expected a finite number in {self.interval}")
        return value

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if not self._inside(value):
            raise argparse.ArgumentTypeError(f"expected a number in {self.interval}, got {text}")
        return value


def check_choice(value, choices, option: str):
    """`value` itself when it is one of `choices`, else FertrtError naming the option (argparse's `choices=` check)."""
    if value not in choices:
        raise FertrtError(f"{option} {value!r}: expected one of {', '.join(choices)}")
    return value


# ---------------------------------------------------------------- fertrt train (fertrt.train.trainer.TrainConfig)
MAX_TRAIN_BATCH = 4096
MAX_SEED = 2**32 - 1  # numpy's global seeding (np.random.seed) takes 32 bits
# Intra-op threads for CPU training: fixed, never the core count or the load, because the thread count decides how
# reductions are split and so the last bits of every weight: with it fixed the same seed gives the same model on a
# quiet or a busy machine (and on machines with other core counts).
TRAIN_DEFAULT_THREADS = 2
# TrainConfig field -> range; the option is the field's name with dashes (batch_size: --batch-size)
TRAIN_RANGES = {
    "epochs": IntRange(1),
    "minutes": FloatRange(0, lo_open=True),
    "batch_size": IntRange(1, MAX_TRAIN_BATCH),
    "lr": FloatRange(0, lo_open=True),
    "weight_decay": FloatRange(0),
    "warmup_epochs": FloatRange(0),
    "label_smoothing": FloatRange(0, 1, hi_open=True),
    "clip_grad": FloatRange(0),  # 0 = off
    "seed": IntRange(0, MAX_SEED),
    "workers": IntRange(0, 64),
    "threads": IntRange(1, 256),
}
TRAIN_OPTIMIZERS = ("adamw", "sgd")


# ---------------------------------------------------------------- fertrt infer (fertrt.runtime.options.InferOptions)
CROP_MARGIN = FloatRange(0, 1)  # --margin: a fraction of the face box's size
SMOOTH_WEIGHT = FloatRange(0, 1, lo_open=True)  # --smooth: the newest frame's weight in the EMA; 1 = no smoothing
DETECT_EVERY = IntRange(1)  # --every
MAX_FRAMES = IntRange(1)  # --max-frames
FER_BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
ORT_PROVIDERS = ("cpu", "cuda", "tensorrt", "auto")
FACE_DETECTORS = ("blazeface", "blazeface-full", "haar")
DETECTOR_BACKENDS = ("auto", "onnxruntime", "tensorrt")


# ---------------------------------------------------------------- fertrt build-engine (fertrt.engine.plan.BuildOptions)
BUILD_PRECISIONS = ("fp32", "fp16", "int8", "best")
HARDWARE_COMPAT = ("none", "ampere+", "same-cc")  # --hardware-compat: TensorRT's HardwareCompatibilityLevel
WORKSPACE_MIB = IntRange(1)  # --workspace: the workspace memory pool limit in MiB
BUILDER_OPT_LEVEL = IntRange(0, 5)  # --builder-opt-level: TensorRT's builder optimisation levels
DLA_CORE = IntRange(0)  # --dla-core

# ---------------------------------------------------------------- INT8 calibration: build-engine, quantize, pack, demo
CALIB_SIZE = IntRange(1, 20_000)  # --calib-size: images held in memory at once (about 3 GB of float32 at 3x112x112)

# ---------------------------------------------------------------- fertrt quantize (fertrt.export.quantize.Int8Options)
QUANTIZE_TARGETS = ("tensorrt", "onnxruntime")  # --target: the backend the INT8 Q/DQ layout is for
CALIB_METHODS = ("entropy", "minmax", "percentile")  # --calib-method
CALIB_PERCENTILE = FloatRange(0, 100, lo_open=True)  # --percentile
CALIB_SEED = IntRange(0)  # --seed: which calibration images are drawn
