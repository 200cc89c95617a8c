"""Handlers of `fertrt train` and `fertrt eval`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import make_output_dir, write_json_atomic
from fertrt.ranges import TRAIN_DEFAULT_THREADS
from fertrt.text import safe


def _parse_model_args(items) -> dict:
    """['grid=4', 'share_local=true'] -> {'grid': 4, 'share_local': True}; TrainConfig checks the names."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise FertrtError(f"--model-arg {item!r}: expected KEY=VALUE with KEY a constructor argument name")
        try:
            out[key] = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def set_cpu_threading(threads: int = TRAIN_DEFAULT_THREADS) -> None:
    """OpenMP settings for CPU training, read once when torch loads its OpenMP runtime (so set before torch is
    imported; later they are ignored). With OMP_WAIT_POLICY=PASSIVE a thread that reaches a barrier first
    sleeps instead of spinning on a core that a descheduled partner needs: under competing load training slows
    in proportion instead of collapsing (benchmarks/training_threads.py). Values the user exported are kept."""
    if "torch" in sys.modules:
        return
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def cmd_train(args):
    set_cpu_threading(args.threads)
    from .augment import AugmentConfig
    from .trainer import TrainConfig, train

    augment = (
        AugmentConfig(hflip=0, crop_scale=(1.0, 1.0), rotation_deg=0, color_jitter=0, erasing=0)
        if args.no_augment
        else AugmentConfig()
    )
    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing,
        balanced=args.balanced,
        clip_grad=args.clip_grad,
        seed=args.seed,
        workers=args.workers,
        device=args.device,
        amp=not args.no_amp,
        resume=args.resume,
        force=args.force,
        grey=args.grey,
        model_kwargs=_parse_model_args(args.model_arg),
        augment=augment,
        init=args.init,
        threads=args.threads,
    )
    result = train(cfg)
    if not result["is_main"]:
        return 0  # under torchrun only rank 0 reports
    print(
        f"done: best val accuracy {result['best_accuracy']:.4f} after {result['epochs']} epochs "
        f"in {result['seconds'] / 60:.1f} min; checkpoints {result['best']} and {result['last']}"
    )
    return 0


def run_eval(checkpoint, data_spec=None, split_name="test", out=None, batch_size=128, log=print) -> dict:
    from fertrt.train.data import load_data

    from .checkpoint import load_model
    from .evaluate import evaluate
    from .evaluate import class_mean_faces, cue_region_table, example_faces, format_ratio
    from .plots import plot_confusion, plot_region_examples, plot_region_heatmaps, plot_region_overlays

    model, ckpt = load_model(checkpoint)
    pre = model.default_cfg.preprocess
    spec = data_spec or ckpt["data_spec"]
    data = load_data(
        spec, image_size=pre.input_size[0], seed=ckpt.get("train_config", {}).get("seed", 0), splits=(split_name,)
    )
    if tuple(data.class_names) != tuple(ckpt["class_names"]):
        raise FertrtError(
            f"{checkpoint}: trained on classes {ckpt['class_names']} but {spec!r} has {list(data.class_names)}"
        )
    split = data.split(split_name)
    res = evaluate(model, split, pre, batch_size=batch_size)
    out = make_output_dir(out if out else Path(checkpoint).parent, "folder for the eval outputs")
    stem = f"eval_{split_name}"
    plot_confusion(
        out / f"{stem}_confusion.png",
        res["confusion"],
        data.class_names,
        f"{ckpt['model_name']} on {spec} {split_name}",
    )
    log(
        f"{safe(ckpt['model_name'])} on {safe(spec)} [{split_name}]: accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  (n={res['n']}"
        f"{', skipped ' + str(res['skipped_images']) if res['skipped_images'] else ''})"
    )
    for name, acc in res["per_class_accuracy"].items():
        log(f"  {name:<10} {acc:.3f}")
    if "regions" in res:
        import numpy as np

        reg = res["regions"]
        per_class_w = np.asarray(reg["mean_weight_per_class"])
        plot_region_heatmaps(
            out / f"{stem}_region_weights.png",
            per_class_w,
            data.class_names,
            int(round(len(reg["mean_weight_per_class"][0]) ** 0.5)),
        )
        labels = split.labels[res["indices"]]
        faces = class_mean_faces(split, res["indices"], labels, len(data.class_names), pre.input_size)
        plot_region_overlays(out / f"{stem}_region_overlay.png", faces, per_class_w, data.class_names)
        ex_faces, ex_rows = example_faces(split, res["indices"], labels, len(data.class_names), pre.input_size)
        if ex_rows:
            pred = res["logits"][ex_rows].argmax(1)
            titles = [f"true {data.class_names[labels[r]]}\npred {data.class_names[p]}" for r, p in zip(ex_rows, pred)]
            plot_region_examples(out / f"{stem}_region_examples.png", ex_faces, res["region_weights"][ex_rows], titles)
        if "cue_weight_share" in reg:
            log(
                f"  cue share ratio {format_ratio(reg['cue_share_ratio'])}: the non-local weights put {reg['cue_weight_share']:.3f} of their "
                f"total on the regions that hold the face's cues (brows, eyes, nose, mouth), uniform weights would put "
                f"{reg['cue_uniform_share']:.3f} there (1.0x = no preference, above 1 = weight on the crucial regions)"
            )
            log(
                "  per class: "
                + "  ".join(
                    f"{n} {format_ratio(r)}" for n, r in zip(data.class_names, reg["cue_share_ratio_per_class"])
                )
            )
            log(
                "  per class and cue region (weight on that cue's cells over their uniform share; * = the class's "
                "highest ratio):"
            )
            for line in cue_region_table(reg, data.class_names):
                log(line)
    report = {k: v for k, v in res.items() if k not in ("logits", "indices", "region_weights")}
    report.update({"checkpoint": str(checkpoint), "data_spec": spec, "split": split_name, "model": ckpt["model_name"]})
    write_json_atomic(out / f"{stem}.json", report)
    res["report_path"] = str(out / f"{stem}.json")
    return res


EVAL_OUTPUTS = (
    "{}.json",
    "{}_confusion.png",
    "{}_region_weights.png",
    "{}_region_overlay.png",
    "{}_region_examples.png",
)


def cmd_eval(args):
    from fertrt.fileio import check_folder_outputs

    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    if out.is_dir():  # before the model is loaded: an earlier eval's files are replaced only with --force
        names = [n.format(f"eval_{args.split}") for n in EVAL_OUTPUTS]
        check_folder_outputs(out, names, overwrite=getattr(args, "force", False), option="-o")
    run_eval(args.checkpoint, args.data, args.split, args.out, args.batch_size)
    return 0
