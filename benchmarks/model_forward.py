"""Params, MACs and CPU forward time per registered model, ONNX Runtime and PyTorch side by side.

python -m fertrt.benchmarks.model_forward [--batches 1,32] [--seconds 3] [-o results/model_forward]
python -m fertrt.benchmarks.model_forward --models lnlattennet,mini_xception --pair  # + interleaved ORT ratio
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np


def main(argv=None):
    import onnxruntime as ort
    import torch

    from fertrt.engine.device import environment
    from fertrt.export.onnx_export import export_module
    from fertrt.train.models import count_macs, count_params, create_model, list_models

    from .harness import SCHEMA, latency_stats, time_fn, write_outputs

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--models", default=None, help="comma-separated subset")
    ap.add_argument("-o", "--out", default="results/model_forward")
    ap.add_argument(
        "--pair",
        action="store_true",
        help="with two --models: also time their ORT sessions at batch 1 in "
        "alternating rounds and report the second's latency over the first's",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    records = []
    names = args.models.split(",") if args.models else list_models()
    if args.pair and len(names) != 2:
        raise SystemExit("--pair needs exactly two --models, e.g. --models lnlattennet,mini_xception")
    sessions = {}
    for name in names:
        model = create_model(name).eval()
        pre = model.default_cfg.preprocess
        params, macs = count_params(model), count_macs(model)
        buf = io.BytesIO()
        torch.onnx.export(
            export_module(model),
            (torch.zeros(1, pre.channels, *pre.input_size),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}},
        )
        sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        x1 = np.random.default_rng(0).standard_normal((1, pre.channels, *pre.input_size)).astype(np.float32)
        sessions[name] = (sess, x1)
        for b in (int(x) for x in args.batches.split(",")):
            x = np.random.default_rng(0).standard_normal((b, pre.channels, *pre.input_size)).astype(np.float32)
            xt = torch.from_numpy(x)
            with torch.no_grad():
                pt = time_fn(lambda: model(xt), 2, None, args.seconds, min_iters=3)
            on = time_fn(lambda: sess.run(None, {"input": x}), 2, None, args.seconds, min_iters=3)
            for backend, ns in (("torch-eager", pt), ("onnxruntime-bare", on)):
                records.append(
                    {
                        "model": name,
                        "backend": backend,
                        "precision": "fp32",
                        "batch": b,
                        "tool": "baseline",
                        "params": params,
                        "macs": macs,
                        "latency_ms": latency_stats(ns),
                        "throughput_ips": float(b / (np.mean(ns) / 1e9)),
                    }
                )
            print(
                f"{name:<18} params {params:>11,} MACs {macs:>14,} batch {b:>2}: PyTorch {np.median(pt) / 1e6:8.2f} ms  "
                f"ORT {np.median(on) / 1e6:8.2f} ms  (ORT/PyTorch {np.median(on) / np.median(pt):.2f})",
                flush=True,
            )
    pair = _pair(sessions, names, args.seconds) if args.pair else None
    result = {
        "schema": SCHEMA,
        "pair": pair,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(),
        "clocks": {},
        "settings": vars(args),
        "results": records,
    }
    write_outputs(result, __import__("pathlib").Path(args.out))


def _pair(sessions: dict, names: list, seconds: float) -> dict:
    """ORT CPU batch-1 latency of two models timed in alternating rounds (load drift hits both alike)."""
    from .harness import interleaved_overhead

    (sa, xa), (sb, xb) = sessions[names[0]], sessions[names[1]]
    r = interleaved_overhead(
        lambda: sb.run(None, {"input": xb}), lambda: sa.run(None, {"input": xa}), seconds=2 * seconds, rounds=20
    )
    out = {
        "first": names[0],
        "second": names[1],
        "first_ms": r["bare_ms"],
        "second_ms": r["ours_ms"],
        "ratio": r["ratio"],
        "round_ratio_iqr": [r["round_ratio_q25"], r["round_ratio_q75"]],
        "rounds": r["rounds"],
    }
    print(
        f"interleaved ORT batch 1: {names[0]} {out['first_ms']:.3f} ms, {names[1]} {out['second_ms']:.3f} ms; "
        f"{names[1]} / {names[0]} = {out['ratio']:.3f} (per-round IQR {out['round_ratio_iqr'][0]:.3f}-"
        f"{out['round_ratio_iqr'][1]:.3f} over {out['rounds']} rounds)",
        flush=True,
    )
    return out


if __name__ == "__main__":
    main()
