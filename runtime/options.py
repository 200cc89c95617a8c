"""`InferOptions`: what `fertrt infer` (and fertrt.runtime.pipeline.run) is asked to do, checked in one place.
Limits and choices are fertrt/ranges.py's, the ones the CLI's parser uses, so both accept the same values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from fertrt.errors import FertrtError
from fertrt.ranges import (
    CROP_MARGIN,
    DETECT_EVERY,
    DETECTOR_BACKENDS,
    FACE_DETECTORS,
    FER_BACKENDS,
    MAX_FRAMES,
    ORT_PROVIDERS,
    SMOOTH_WEIGHT,
)

DEFAULT_MARGIN = 0.1  # without --margin and without a detector that names its own crop margin


@dataclass
class InferOptions:
    """The options of one run. Output paths are checked against the inputs and the file system by
    pipeline.plan_outputs, which needs the inputs; everything else is checked here."""

    # outputs
    save: Optional[str] = None  # annotated image, video, or a folder of them
    jsonl: Optional[str] = None
    summary_json: Optional[str] = None
    force: bool = False
    # the face pipeline
    margin: Optional[float] = None  # crop margin, a fraction of the face box; None: the detector's
    align: bool = True  # rotate faces upright by the eye landmarks
    regions: bool = False  # draw the 4x4 region weights
    smooth_alpha: float = 0.4  # video: EMA weight of the newest frame's probabilities
    every: int = 1  # video: detect on every Nth frame, track in between
    max_frames: Optional[int] = None
    # the FER model
    backend: str = "auto"
    provider: str = "cpu"  # ONNX Runtime execution provider
    cuda_graph: bool = False  # TensorRT
    zero_copy: Optional[bool] = None  # TensorRT; None: on for Jetson
    rebuild: bool = False  # TensorRT: an engine made for another GPU/TensorRT version
    # the face detector
    detect: bool = True  # False: the inputs are face crops already
    detector: str = "blazeface"
    detector_model: Optional[str] = None  # a detector file instead of the registered one
    detector_backend: str = "auto"
    quiet: bool = False

    def __post_init__(self):
        if self.margin is not None:
            CROP_MARGIN.check(self.margin, "--margin")
        SMOOTH_WEIGHT.check(self.smooth_alpha, "--smooth")
        DETECT_EVERY.check(self.every, "--every")
        if self.max_frames is not None:
            MAX_FRAMES.check(self.max_frames, "--max-frames")
        for option, value, choices in (
            ("--backend", self.backend, FER_BACKENDS),
            ("--provider", self.provider, ORT_PROVIDERS),
            ("--detector", self.detector, FACE_DETECTORS),
            ("--detector-backend", self.detector_backend, DETECTOR_BACKENDS),
        ):
            if value not in choices:
                raise FertrtError(f"{option} {value!r}: expected one of {', '.join(choices)}")
        if not (self.zero_copy is None or isinstance(self.zero_copy, bool)):
            raise FertrtError(f"--zero-copy {self.zero_copy!r}: expected on or off")

    @property
    def detector_kind(self) -> str:
        """make_detector's kind: "none" for face crops (--no-detect)."""
        return self.detector if self.detect else "none"

    def crop_margin(self, detector) -> float:
        """--margin, else the detector's own crop margin (BlazeFace's boxes are tighter than Haar's), else 0.1."""
        if self.margin is not None:
            return self.margin
        return getattr(getattr(detector, "cfg", None), "crop_margin", DEFAULT_MARGIN)

    def runner_kwargs(self) -> dict:
        """open_runner's TensorRT options, only those asked for (the other backends take none of them)."""
        kwargs = {}
        if self.cuda_graph:
            kwargs["cuda_graph"] = True
        if self.zero_copy is not None:
            kwargs["zero_copy"] = self.zero_copy
        if self.rebuild:
            kwargs["rebuild"] = True
        return kwargs
