"""`fertrt infer` (torch-free unless the model is a .pt checkpoint)."""
from __future__ import annotations

from fertrt.fileio import write_json_atomic


def cmd_infer(args):
    from .face import make_detector
    from .pipeline import run
    from .predictor import Predictor

    detector = make_detector("none" if args.no_detect else args.detector, args.detector_model)
    kwargs = {}
    if args.cuda_graph:
        kwargs["cuda_graph"] = True
    if args.zero_copy is not None:
        kwargs["zero_copy"] = args.zero_copy == "on"
    if args.rebuild:
        kwargs["rebuild"] = True
    with Predictor.open(args.model, backend=args.backend, provider=args.provider, **kwargs) as pred:
        summary = run(pred, args.input, detector, save=args.save, jsonl=args.jsonl, margin=args.margin, align=not args.no_align,
                      regions=args.regions, smooth_alpha=args.smooth, max_frames=args.max_frames,
                      log=(lambda *a: None) if args.quiet else print)
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in summary["timings_ms"].items())
    print(f"{summary['frames']} frames, {summary['faces']} faces, {len(summary['unreadable'])} unreadable; "
          f"mean per frame: {timings}" + (f"; wrote {args.jsonl}" if args.jsonl else "") + (f"; saved {args.save}" if args.save else ""))
    if args.summary_json:
        write_json_atomic(args.summary_json, summary)
    return 0
