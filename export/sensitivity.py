"""`fertrt quantize --sensitivity`: quantize one layer at a time, rank layers by what they cost,
and suggest the exclude list that keeps the full INT8 model within --max-drop (the idea behind
Polygraphy's `debug precision` and ModelOpt's sensitivity analysis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fertrt.fileio import private_tempdir, write_json_atomic

from .quantize import Int8Options, calibrate, load_source, quantizable_nodes, quantize_int8, quantize_int8_variants


def _score(path, x, labels, ref_logits=None):
    from fertrt.runtime.runners import OrtRunner, run_batched

    with OrtRunner(path) as r:
        logits = run_batched(r, x, 128).astype(np.float64)
    res = {"accuracy": float((logits.argmax(1) == labels).mean())}
    if ref_logits is not None:
        res["agreement"] = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
        res["mean_abs_diff"] = float(np.abs(logits - ref_logits).mean())
    return res, logits


def run_sensitivity(
    src, opts: Int8Options, eval_data=None, eval_size=500, max_drop=1.0, report_path=None, log=print, force: bool = True
) -> dict:
    from fertrt.runtime.preprocess import PreprocessConfig, preprocess

    from .compare import load_eval_images

    model, meta = load_source(src)
    spec = eval_data or meta.get("data_spec")
    opts = Int8Options(**{**opts.__dict__, "calib": opts.calib or spec})
    pre = PreprocessConfig.from_dict(meta["preprocess"])
    images, labels, _, _ = load_eval_images(spec, pre, "val", eval_size)
    x = preprocess(images, pre)
    base, ref_logits = _score(src, x, labels)
    if not opts.scales_from:
        calibrate(src, model, meta, opts, log=log)  # once; every per-layer model reuses the cached ranges
    ops, excluded = quantizable_nodes(model, opts)
    candidates = [n.name for n in model.graph.node if n.op_type in ops and n.name not in excluded]
    rows = []
    with private_tempdir("fertrt-sens-") as tmp:  # a killed run's folder is removed by the next one
        # one model per layer, each quantizing that layer alone (for --target tensorrt: one ModelOpt process for all)
        outs = quantize_int8_variants(
            src, [(Path(tmp) / f"l{k}.onnx", [name]) for k, name in enumerate(candidates)], opts, log=log
        )
        for k, (name, out) in enumerate(zip(candidates, outs)):
            res, _ = _score(out, x, labels, ref_logits)
            res.update(
                {
                    "node": name,
                    "op": next(n.op_type for n in model.graph.node if n.name == name),
                    "accuracy_drop": base["accuracy"] - res["accuracy"],
                }
            )
            rows.append(res)
            log(
                f"  [{k + 1}/{len(candidates)}] {name}: drop {res['accuracy_drop'] * 100:+.2f} pt, "
                f"agreement {res['agreement'] * 100:.1f}%, mean |d| {res['mean_abs_diff']:.3e}"
            )
        # most costly first: accuracy drop, then disagreement, then logit drift
        rows.sort(key=lambda r: (-r["accuracy_drop"], r["agreement"], -r["mean_abs_diff"]))
        suggestion, full = [], None
        for k in range(len(rows) + 1):
            exclude = tuple(opts.exclude) + tuple(r["node"] for r in rows[:k])
            out = Path(tmp) / f"full{k}.onnx"
            quantize_int8(
                src, out, Int8Options(**{**opts.__dict__, "exclude": exclude}), force=True, log=lambda *_: None
            )
            full, _ = _score(out, x, labels, ref_logits)
            full["excluded"] = list(exclude)
            if base["accuracy"] - full["accuracy"] <= max_drop / 100.0:
                suggestion = list(exclude)
                break
            if k >= 8:  # keep the search bounded; beyond this quantization is not the right tool
                suggestion = None
                break
    report = {
        "model": str(src),
        "target": opts.target,
        "eval_data": spec,
        "eval_split": "val",
        "n": len(labels),
        "fp32_accuracy": base["accuracy"],
        "ranking": rows,
        "max_drop_points": max_drop,
        "suggested_exclude": suggestion,
        "int8_with_suggestion": full,
    }
    log(f"FP32 accuracy {base['accuracy'] * 100:.2f}% on {len(labels)} val images; most sensitive layers:")
    for r in rows[:8]:
        log(
            f"  {r['node']:<48} {r['op']:<7} drop {r['accuracy_drop'] * 100:+.2f} pt  agreement {r['agreement'] * 100:.1f}%"
        )
    if suggestion is not None:
        log(
            f"suggested --exclude ({len(suggestion)} nodes): {' '.join(suggestion) or '(none needed)'} -> INT8 accuracy "
            f"{full['accuracy'] * 100:.2f}% (drop {(base['accuracy'] - full['accuracy']) * 100:.2f} pt, agreement {full['agreement'] * 100:.1f}%)"
        )
    else:
        log(f"no exclude list of up to 8 layers meets a {max_drop} pt drop")
    if report_path:
        write_json_atomic(report_path, report, overwrite=force, inputs=(src,), option="-o/--output")
        log(f"wrote {report_path}")
    return report
