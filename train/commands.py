"""Handlers of `fertrt train` and `fertrt eval`."""
from __future__ import annotations

import json
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import write_json_atomic


def _parse_model_args(items) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise FertrtError(f"--model-arg {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value.lower() if value.lower() in ("true", "false") else value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def cmd_train(args):
    from .augment import AugmentConfig
    from .trainer import TrainConfig, train

    augment = AugmentConfig(hflip=0, crop_scale=(1.0, 1.0), rotation_deg=0, color_jitter=0, erasing=0) if args.no_augment else AugmentConfig()
    cfg = TrainConfig(model=args.model, data=args.data, out=args.out, epochs=args.epochs, minutes=args.minutes,
                      batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, optimizer=args.optimizer,
                      warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, balanced=args.balanced,
                      clip_grad=args.clip_grad, seed=args.seed, workers=args.workers, device=args.device,
                      amp=not args.no_amp, resume=args.resume, grey=args.grey,
                      model_kwargs=_parse_model_args(args.model_arg), augment=augment)
    result = train(cfg)
    if not result["is_main"]:
        return 0  # under torchrun only rank 0 reports
    print(f"done: best val accuracy {result['best_accuracy']:.4f} after {result['epochs']} epochs "
          f"in {result['seconds'] / 60:.1f} min; checkpoints {result['best']} and {result['last']}")
    return 0


def run_eval(checkpoint, data_spec=None, split_name="test", out=None, batch_size=128, log=print) -> dict:
    from fertrt.train.data import load_data

    from .checkpoint import load_model
    from .evaluate import evaluate
    from .plots import plot_confusion, plot_region_heatmaps

    model, ckpt = load_model(checkpoint)
    pre = model.default_cfg.preprocess
    spec = data_spec or ckpt["data_spec"]
    data = load_data(spec, image_size=pre.input_size[0], seed=ckpt.get("train_config", {}).get("seed", 0), splits=(split_name,))
    if tuple(data.class_names) != tuple(ckpt["class_names"]):
        raise FertrtError(f"{checkpoint}: trained on classes {ckpt['class_names']} but {spec!r} has {list(data.class_names)}")
    split = data.split(split_name)
    res = evaluate(model, split, pre, batch_size=batch_size)
    out = Path(out) if out else Path(checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    stem = f"eval_{split_name}"
    plot_confusion(out / f"{stem}_confusion.png", res["confusion"], data.class_names, f"{ckpt['model_name']} on {spec} {split_name}")
    log(f"{ckpt['model_name']} on {spec} [{split_name}]: accuracy {res['accuracy']:.4f}  macro-F1 {res['macro_f1']:.4f}  (n={res['n']}"
        f"{', skipped ' + str(res['skipped_images']) if res['skipped_images'] else ''})")
    for name, acc in res["per_class_accuracy"].items():
        log(f"  {name:<10} {acc:.3f}")
    if "regions" in res:
        import numpy as np

        reg = res["regions"]
        plot_region_heatmaps(out / f"{stem}_region_weights.png", np.asarray(reg["mean_weight_per_class"]), data.class_names,
                             int(round(len(reg["mean_weight_per_class"][0]) ** 0.5)))
        if "cue_weight_share" in reg:
            log(f"  region weight on cue regions: {reg['cue_weight_share']:.3f} of the total "
                f"(uniform weights would give {reg['cue_uniform_share']:.3f}; {reg['cue_share_ratio']:.2f}x); "
                f"mean weight per cue region {reg['mean_weight_per_cue_region']:.4f} vs {reg['mean_weight_per_other_region']:.4f} "
                f"elsewhere (uniform 0.0625)")
    report = {k: v for k, v in res.items() if k != "logits"}
    report.update({"checkpoint": str(checkpoint), "data_spec": spec, "split": split_name, "model": ckpt["model_name"]})
    write_json_atomic(out / f"{stem}.json", report)
    res["report_path"] = str(out / f"{stem}.json")
    return res


def cmd_eval(args):
    run_eval(args.checkpoint, args.data, args.split, args.out, args.batch_size)
    return 0
