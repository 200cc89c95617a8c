"""`fertrt compare`: one comparator for every pair of models (checkpoint, FP32/FP16/INT8 ONNX,
TensorRT engines), built on the runtime's runner interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import check_output, write_json_atomic
from fertrt.text import safe
from fertrt.metrics import summarize


def load_eval_images(data_spec: str, pre, split="test", limit=None, seed=0):
    """-> (list of RGB uint8 images, labels) from a spec; unreadable files dropped and counted."""
    from fertrt.train.data import load_data

    data = load_data(data_spec, image_size=pre.input_size[0], seed=seed, splits=(split,), limit=limit)
    s = data.split(split)
    n = len(s) if limit is None else min(limit, len(s))
    images, labels, skipped = [], [], 0
    for i in range(n):
        img = s.load(i)
        if img is None:
            skipped += 1
            continue
        images.append(img)
        labels.append(int(s.labels[i]))
    if not images:
        raise FertrtError(f"data {data_spec!r} [{split}]: no readable images")
    return images, np.asarray(labels), data.class_names, skipped


def compare_models(paths, data_spec=None, split="test", limit=None, batch_size=64, backends=None, log=print) -> dict:
    from fertrt.runtime.preprocess import preprocess
    from fertrt.runtime.runners import open_runner, run_batched

    if len(paths) < 1:
        raise FertrtError("compare needs at least one model file")
    backends = backends or ["auto"] * len(paths)
    runners = [open_runner(p, backend=b) for p, b in zip(paths, backends)]
    try:
        ref = runners[0]
        spec = data_spec or ref.metadata.get("data_spec")
        if not spec:
            raise FertrtError(f"{paths[0]}: no data spec in its metadata; pass --data")
        for r in runners[1:]:
            if tuple(r.class_names) != tuple(ref.class_names):
                raise FertrtError(
                    f"{r.path}: classes {list(r.class_names)} differ from {ref.path}'s {list(ref.class_names)}"
                )
        images, labels, class_names, skipped = load_eval_images(spec, ref.preprocess, split, limit)
        if tuple(class_names) != tuple(ref.class_names):
            raise FertrtError(f"data {spec!r} has classes {list(class_names)}, the models {list(ref.class_names)}")
        inputs = {}
        results = []
        ref_logits = None
        for r in runners:
            key = r.preprocess.to_json()
            if key not in inputs:
                inputs[key] = preprocess(images, r.preprocess)
            logits = run_batched(r, inputs[key], batch_size).astype(np.float64)
            pred = logits.argmax(1)
            row = {
                "model": str(r.path),
                "backend": r.backend,
                "precision": r.precision,
                "n": len(labels),
                "finite": bool(np.isfinite(logits).all()),
            }
            row.update({k: v for k, v in summarize(labels, pred, class_names).items() if k != "confusion"})
            if ref_logits is None:
                ref_logits = logits
                row.update({"agreement": 1.0, "max_abs_diff": 0.0, "mean_abs_diff": 0.0, "p99_abs_diff": 0.0})
            else:
                diff = np.abs(logits - ref_logits)
                row.update(
                    {
                        "agreement": float((pred == ref_logits.argmax(1)).mean()),
                        "max_abs_diff": float(np.nanmax(diff)),
                        "mean_abs_diff": float(np.nanmean(diff)),
                        "p99_abs_diff": float(np.nanpercentile(diff, 99)),
                    }
                )
                row["accuracy_delta"] = row["accuracy"] - results[0]["accuracy"]
                row["per_class_delta"] = {
                    c: row["per_class_accuracy"].get(c, 0.0) - results[0]["per_class_accuracy"].get(c, 0.0)
                    for c in results[0]["per_class_accuracy"]
                }
            results.append(row)
        return {
            "data_spec": spec,
            "split": split,
            "n": len(labels),
            "skipped_images": skipped,
            "reference": str(ref.path),
            "models": results,
        }
    finally:
        for r in runners:
            r.close()


def format_table(report: dict) -> str:
    head = f"{'model':<34} {'backend':<12} {'prec':<5} {'acc':>7} {'F1':>7} {'agree':>8} {'max|d|':>9} {'mean|d|':>9}  finite"
    lines = [
        f"{report['n']} images of {safe(report['data_spec'])} [{report['split']}], reference {safe(Path(report['reference']).name)}",
        head,
    ]
    for r in report["models"]:
        lines.append(
            f"{safe(Path(r['model']).name)[:34]:<34} {safe(r['backend']):<12} {safe(r['precision']):<5} {r['accuracy'] * 100:>6.2f}% "
            f"{r['macro_f1'] * 100:>6.2f}% {r['agreement'] * 100:>7.2f}% {r['max_abs_diff']:>9.2e} {r['mean_abs_diff']:>9.2e}  {r['finite']}"
        )
    return "\n".join(lines)


def cmd_compare(args):
    if args.output:  # before the work: never one of the models, an existing file only with --force
        check_output(args.output, overwrite=args.force, inputs=args.models, option="-o")
    report = compare_models(args.models, args.data, args.split, args.limit, args.batch_size)
    print(format_table(report))
    if len(report["models"]) > 1:
        print("per-class accuracy deltas vs the reference (points):")
        for r in report["models"][1:]:
            print(
                f"  {safe(Path(r['model']).name)}: "
                + "  ".join(f"{safe(c)} {d * 100:+.1f}" for c, d in r["per_class_delta"].items())
            )
    if args.output:
        write_json_atomic(args.output, report, overwrite=args.force, inputs=args.models)
        print(f"wrote {args.output}")
    bad = [r["model"] for r in report["models"] if not r["finite"]]
    if bad:
        print(f"NaN/Inf in the logits of: {', '.join(bad)}")
        return 1
    return 0
