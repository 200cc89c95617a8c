"""Params, MACs and CPU forward time per registered model, ONNX Runtime and PyTorch side by side.

    python -m fertrt.benchmarks.model_forward [--batches 1,32] [--seconds 3] [-o results/model_forward]
"""
from __future__ import annotations

import argparse
import io
import time

import numpy as np


def main(argv=None):
    import onnxruntime as ort
    import torch

    from fertrt.export.onnx_export import export_module
    from fertrt.train.models import count_macs, count_params, create_model, list_models

    from .harness import SCHEMA, environment, latency_stats, time_fn, write_outputs

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--models", default=None, help="comma-separated subset")
    ap.add_argument("-o", "--out", default="results/model_forward")
    args = ap.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())
    records = []
    names = args.models.split(",") if args.models else list_models()
    for name in names:
        model = create_model(name).eval()
        pre = model.default_cfg.preprocess
        params, macs = count_params(model), count_macs(model)
        buf = io.BytesIO()
        torch.onnx.export(export_module(model), (torch.zeros(1, pre.channels, *pre.input_size),), buf, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})
        sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
        for b in (int(x) for x in args.batches.split(",")):
            x = np.random.default_rng(0).standard_normal((b, pre.channels, *pre.input_size)).astype(np.float32)
            xt = torch.from_numpy(x)
            with torch.no_grad():
                pt = time_fn(lambda: model(xt), 2, None, args.seconds, min_iters=3)
            on = time_fn(lambda: sess.run(None, {"input": x}), 2, None, args.seconds, min_iters=3)
            for backend, ns in (("torch-eager", pt), ("onnxruntime-bare", on)):
                records.append({"model": name, "backend": backend, "precision": "fp32", "batch": b, "tool": "baseline",
                                "params": params, "macs": macs, "latency_ms": latency_stats(ns), "throughput_ips": float(b / (np.mean(ns) / 1e9))})
            print(f"{name:<18} params {params:>11,} MACs {macs:>14,} batch {b:>2}: PyTorch {np.median(pt) / 1e6:8.2f} ms  "
                  f"ORT {np.median(on) / 1e6:8.2f} ms  (ORT/PyTorch {np.median(on) / np.median(pt):.2f})", flush=True)
    result = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), "clocks": {},
              "settings": vars(args), "results": records}
    write_outputs(result, __import__("pathlib").Path(args.out))


if __name__ == "__main__":
    main()
