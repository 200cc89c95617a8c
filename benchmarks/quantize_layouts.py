"""INT8 laid out for TensorRT (ModelOpt) vs for ONNX Runtime (quantize_static), side by side in one run:
accuracy, agreement with FP32, time to quantize (calibration included, fresh range cache), ONNX
Runtime CPU latency at batch 1 and 8, and Q/DQ pairs by placement.

    python -m fertrt.benchmarks.quantize_layouts MODEL.onnx [MODEL.onnx ...] [--calib-size 256] [--eval-size 1000]

Each argument is an FP32 ONNX from `fertrt export`. Both targets use the same calibration method,
data and size; the latencies of one model's FP32/INT8 graphs are taken interleaved so drift in
machine load hits them alike. This measures ORT on CPU only: TensorRT latency needs a GPU host
(`fertrt build-engine` + `fertrt bench` there).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

TARGETS = ("tensorrt", "onnxruntime")


def _latency(runners: dict, x: np.ndarray, batches=(1, 8), rounds=5, seconds=2.0) -> dict:
    from .harness import time_fn

    out = {}
    for b in batches:
        xb = np.ascontiguousarray(x[np.arange(b) % len(x)])
        samples = {k: [] for k in runners}
        for _ in range(rounds):  # interleaved rounds
            for k, r in runners.items():
                samples[k].append(time_fn(lambda: r.infer(xb), 2, None, seconds / rounds, min_iters=5))
        for k, v in samples.items():
            out.setdefault(k, {})[b] = float(np.median(np.concatenate(v))) / 1e6
    return out


def run(
    models,
    calib=None,
    calib_size=256,
    method="entropy",
    eval_data=None,
    eval_size=1000,
    seconds=2.0,
    threads=None,
    log=print,
) -> list[dict]:
    import onnx

    from fertrt.export.compare import load_eval_images
    from fertrt.export.qdq_layout import qdq_layout
    from fertrt.export.quantize import Int8Options, quantize_int8
    from fertrt.runtime.preprocess import preprocess
    from fertrt.runtime.runners import OrtRunner, run_batched

    rows = []
    for path in models:
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="fertrt-layouts-") as tmp:
            tmp = Path(tmp)
            fp32 = OrtRunner(path, threads=threads)
            spec = eval_data or fp32.metadata.get("data_spec")
            images, labels, _, _ = load_eval_images(spec, fp32.preprocess, "test", eval_size)
            x = preprocess(images, fp32.preprocess)
            ref = run_batched(fp32, x, 64)
            runners = {"fp32": fp32}
            row = {
                "model": fp32.metadata.get("model_name", path.stem),
                "file": str(path),
                "eval": f"{spec} [test] {len(labels)}",
                "fp32_accuracy": float((ref.argmax(1) == labels).mean()),
                "calib": f"{calib or spec} {method} {calib_size}",
            }
            for target in TARGETS:
                out = tmp / f"{target}.onnx"
                opts = Int8Options(
                    calib=calib or spec,
                    calib_size=calib_size,
                    method=method,
                    target=target,
                    cache_dir=tmp / f"cache-{target}",
                    trt_version="8.6.1",
                )
                t0 = time.perf_counter()
                quantize_int8(path, out, opts, log=lambda *_: None)
                seconds_q = time.perf_counter() - t0
                r = OrtRunner(out, threads=threads)
                logits = run_batched(r, x, 64)
                counts = qdq_layout(onnx.load(str(out))).counts()
                row[target] = {
                    "accuracy": float((logits.argmax(1) == labels).mean()),
                    "agreement": float((logits.argmax(1) == ref.argmax(1)).mean()),
                    "max_abs_diff": float(np.abs(logits.astype(np.float64) - ref).max()),
                    "quantize_s": seconds_q,
                    "qdq": counts,
                }
                runners[target] = r
                log(
                    f"{path.name} {target}: accuracy {row[target]['accuracy'] * 100:.2f}%, agreement "
                    f"{row[target]['agreement'] * 100:.2f}%, quantized in {seconds_q:.1f}s, Q/DQ {counts}"
                )
            lat = _latency(runners, x, seconds=seconds)
            for k, v in lat.items():
                row.setdefault(k, {})["latency_ms"] = v
            for r in runners.values():
                r.close()
        rows.append(row)
    return rows


def format_table(rows) -> str:
    head = (
        "| model | layout | accuracy | agreement with FP32 | quantize time (s) | ORT CPU b1 (ms) | ORT CPU b8 (ms) | "
        "Q/DQ: weights / weighted-op inputs / after weighted ops / Add inputs |"
    )
    lines = [head, "|" + "---|" * 8]
    for row in rows:
        f = row["fp32"]["latency_ms"]
        lines.append(f"| {row['model']} | FP32 | {row['fp32_accuracy'] * 100:.2f}% | | | {f[1]:.2f} | {f[8]:.2f} | |")
        for target, label in (
            ("tensorrt", "INT8 `--target tensorrt` (ModelOpt)"),
            ("onnxruntime", "INT8 `--target onnxruntime`"),
        ):
            t = row[target]
            q = t["qdq"]
            lines.append(
                f"| {row['model']} | {label} | {t['accuracy'] * 100:.2f}% | {t['agreement'] * 100:.2f}% | {t['quantize_s']:.1f} | "
                f"{t['latency_ms'][1]:.2f} | {t['latency_ms'][8]:.2f} | {q['weights']} / {q['weighted_op_inputs']} / "
                f"{q['weighted_op_outputs']} / {q['add_inputs']} |"
            )
    return "\n".join(lines)


def main(argv=None):
    from fertrt.fileio import write_json_atomic

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="FP32 .onnx files from fertrt export")
    ap.add_argument("--calib-data", default=None, help="calibration data spec (default: each model's own)")
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--calib-method", choices=["entropy", "minmax", "percentile"], default="entropy")
    ap.add_argument("--eval-data", default=None, help="data spec scored on its test split (default: each model's own)")
    ap.add_argument("--eval-size", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing budget per batch size and graph")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    rows = run(
        args.models,
        args.calib_data,
        args.calib_size,
        args.calib_method,
        args.eval_data,
        args.eval_size,
        args.seconds,
        args.threads,
    )
    print(format_table(rows))
    if args.json:
        write_json_atomic(args.json, rows)


if __name__ == "__main__":
    main()
