"""Measure LNLAttenNet's design, not just the model: its parts switched off one at a time, next to
a plain ResNet-18 and a MobileNetV3-small-like edge baseline, trained the same way in one run.

    python -m fertrt.benchmarks.ablation [--data synth synth:6000:hard] [--epochs 5] [--minutes 4]
                                         [--regime both|epochs|minutes] [--variants a,b,...] [-o results/ablation]

Two regimes: equal epochs (every variant sees the same images the same number of times) and equal
wall-clock (every variant gets the same training minutes on this machine, epochs fitted to it as
`fertrt train --minutes` does). Columns: params, MACs, test accuracy, macro-F1, cue share ratio
(LNLAttenNet variants on `synth`: the share of region weight on the cells that hold the face's
cues, over the uniform share), training img/s and ONNX Runtime CPU batch-1 latency (both measured
at the end, all variants side by side in one process, so they compare under the same load).
Trainings run one after another (never two at once on a small machine); each variant's run folder
is kept, and a re-run reuses finished runs (delete the folder to retrain). The equal-wall-clock
regime depends on the machine's load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import write_json_atomic, write_text_atomic
from fertrt.text import safe
from fertrt.train.evaluate import format_ratio

# label -> (registered model, constructor overrides)
VARIANTS = {
    "lnlattennet": ("lnlattennet", {}),
    "sharp_weights": ("lnlattennet", {"weight_smoothing": 0.0}),
    "no_feedback": ("lnlattennet", {"feedback": False}),
    "local_only": ("lnlattennet", {"paths": "local"}),
    "global_only": ("lnlattennet", {"paths": "global"}),
    "concat_fusion": ("lnlattennet", {"fusion": "concat"}),
    "resnet18": ("resnet18", {}),
    "mobilenetv3_small": ("mobilenetv3_small", {}),
}
DESCRIPTIONS = {
    "lnlattennet": "LNLAttenNet (weighted ensemble of local networks + non-local/global context)",
    "sharp_weights": "LNLAttenNet without weight smoothing (fertrt's previous default)",
    "no_feedback": "LNLAttenNet, non-local weights not fed back (uniform 1/16)",
    "local_only": "LNLAttenNet, local part only (weighted ensemble, no context head)",
    "global_only": "LNLAttenNet, global (U-Net) path only",
    "concat_fusion": "LNLAttenNet, the first fertrt design's fusion (weights scale concatenated features), smoothed weights",
    "resnet18": "ResNet-18, no pretraining",
    "mobilenetv3_small": "MobileNetV3-small-like edge baseline",
}


def ort_latency_ms(model, repeats: int = 200) -> float:
    """Median batch-1 latency of the model's ONNX graph on ONNX Runtime's CPU provider (one session)."""
    import onnxruntime as ort
    import torch

    from fertrt.export.onnx_export import export_module

    pre = model.default_cfg.preprocess
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            export_module(model.eval()),
            (torch.zeros(1, pre.channels, *pre.input_size),),
            buf,
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
        )
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, pre.channels, *pre.input_size)).astype(np.float32)
    for _ in range(20):
        sess.run(None, {"input": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def speed_pass(labels, rounds: int = 3, steps: int = 5, batch: int = 64, latency_repeats: int = 200) -> dict:
    """Training img/s (batch 64, joint loss, AdamW step) and ORT CPU batch-1 latency of each variant,
    measured side by side in one process: training steps interleaved round by round so every variant
    sees the same machine load; the median round counts."""
    import torch
    import torch.nn.functional as F

    from fertrt.runtime.preprocess import normalize
    from fertrt.train.data.synth import SynthConfig, generate
    from fertrt.train.models import create_model

    imgs, labels_np, _ = generate(SynthConfig(size=112), "train", batch)
    setups = {}
    for label in labels:
        name, kwargs = VARIANTS[label]
        model = create_model(name, **kwargs).train()
        x = torch.from_numpy(normalize(imgs, model.default_cfg.preprocess))
        setups[label] = (model, x, torch.optim.AdamW(model.parameters(), 1e-3))
    y = torch.from_numpy(labels_np)

    def step(model, x, opt):
        loss, _ = model.joint_loss(model(x, return_aux=True), y, F.cross_entropy)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for s in setups.values():
        step(*s)  # warm-up
    rates = {label: [] for label in labels}
    for _ in range(rounds):
        for label, s in setups.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(*s)
            rates[label].append(steps * batch / (time.perf_counter() - t0))
    return {
        label: {
            "train_img_per_s": float(np.median(rates[label])),
            "ort_cpu_b1_ms": ort_latency_ms(setups[label][0], latency_repeats),
        }
        for label in labels
    }


def run_variant(label: str, data: str, out: Path, *, epochs: int, minutes: float | None, seed: int = 0) -> dict:
    from fertrt.train.checkpoint import checkpoint_model_kwargs, load_model, read_checkpoint
    from fertrt.train.commands import run_eval
    from fertrt.train.models import count_macs, count_params, create_model
    from fertrt.train.trainer import TrainConfig, train

    model_name, kwargs = VARIANTS[label]
    # the variant's whole design, defaults included: a folder made by another fertrt design is not reused under this label
    design = {**getattr(create_model(model_name, **kwargs), "design_kwargs", {}), **kwargs}
    result_path = out / "ablation_result.json"
    if result_path.is_file():
        row = _read_row(result_path)
        _check_design(row.get("model_kwargs"), design, result_path)
        if row.get("cue_share_ratio") is None:  # rows written before the per-class ratios followed the overall one
            row["cue_share_ratio_per_class"] = None
        return row
    out.mkdir(parents=True, exist_ok=True)
    quiet = lambda *a, **k: None  # noqa: E731
    last = out / "last.pt"
    done, planned, spent = 0, None, 0.0
    if last.is_file():
        ckpt = read_checkpoint(last)
        _check_design(checkpoint_model_kwargs(ckpt), design, last)
        try:
            done, planned = int(ckpt["epoch"]) + 1, int(ckpt["schedule"]["epochs"])
            spent = float(ckpt["schedule"].get("train_seconds", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise FertrtError(
                f"{last}: not a fertrt training checkpoint ({exc.__class__.__name__}); delete {out} to retrain it"
            ) from None
    # a run killed between its last epoch and its result file: evaluate it, do not train past its plan or budget
    finished = planned is not None and (done >= planned or (minutes is not None and spent >= minutes * 60))
    t0 = time.perf_counter()
    if finished and (out / "best.pt").is_file():
        res = {"epochs": done}
    else:
        # resuming under a wall-clock budget keeps the run's fitted epoch count (and so its cosine schedule)
        res = train(
            TrainConfig(
                model=model_name,
                data=data,
                out=str(out),
                seed=seed,
                model_kwargs=dict(kwargs),
                epochs=None if (planned is not None and minutes is not None) else epochs,
                minutes=minutes,
                resume=planned is not None,
            ),
            log=quiet,
        )
    wall = time.perf_counter() - t0 + spent
    ev = run_eval(out / "best.pt", None, "test", out / "eval", log=quiet)
    model, ckpt = load_model(out / "best.pt")
    row = {
        "variant": label,
        "model": model_name,
        "model_kwargs": checkpoint_model_kwargs(ckpt),
        "data": data,
        "seed": seed,
        "epochs": res["epochs"],
        "minutes_budget": minutes,
        "train_wall_s": round(wall, 1),
        "params": count_params(model),
        "macs": count_macs(model),
        "accuracy": ev["accuracy"],
        "macro_f1": ev["macro_f1"],
        "cue_share_ratio": None,
        "cue_share_ratio_per_class": None,
    }
    # undefined where the weights are not used (uniform, or the global path alone)
    if kwargs.get("feedback", True) and kwargs.get("paths") != "global" and "cue_share_ratio" in ev.get("regions", {}):
        row["cue_share_ratio"] = ev["regions"]["cue_share_ratio"]
        row["cue_share_ratio_per_class"] = ev["regions"].get("cue_share_ratio_per_class")
    write_json_atomic(result_path, row)
    return row


def _read_row(path: Path) -> dict:
    try:
        row = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FertrtError(
            f"{path}: unreadable ({exc.__class__.__name__}); delete {path.parent} to retrain it"
        ) from None
    if not isinstance(row, dict) or not isinstance(row.get("model_kwargs"), dict):
        raise FertrtError(
            f"{path}: expected an ablation result (a JSON object with model_kwargs); delete {path.parent} to retrain it"
        )
    return row


def _check_design(found: dict, design: dict, where: Path) -> None:
    # both ways: an extra override in the folder (say feedback=False under the lnlattennet label) is another design too
    differs = {
        k: (found.get(k, "unset"), design.get(k, "unset"))
        for k in {**design, **found}
        if found.get(k, "unset") != design.get(k, "unset")
    }
    if differs:
        raise FertrtError(
            f"{where}: made with another design ({', '.join(f'{k}={a!r}, expected {b!r}' for k, (a, b) in differs.items())}); "
            f"delete {where.parent} to retrain it"
        )


def format_table(rows: list[dict]) -> str:
    head = "| variant | data | regime | epochs | params | MACs | accuracy | macro-F1 | cue share ratio | train img/s | ORT CPU b1 ms |"
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        regime = f"{r['minutes_budget']:g} min" if r.get("minutes_budget") else f"{r['epochs']} epochs"
        cue = format_ratio(r.get("cue_share_ratio"))
        ips = "-" if not r.get("train_img_per_s") else f"{r['train_img_per_s']:.0f}"
        lines.append(
            f"| {r['variant']} | {r['data']} | {regime} | {r['epochs']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | "
            f"{r['accuracy'] * 100:.2f} % | {r['macro_f1'] * 100:.2f} % | {cue} | {ips} | {r['ort_cpu_b1_ms']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    from fertrt.cli import int_range, positive_float, positive_int

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=["synth", "synth:6000:hard"])
    ap.add_argument("--epochs", type=positive_int, default=5, help="equal-epochs regime: epochs per variant")
    ap.add_argument(
        "--minutes", type=positive_float, default=4.0, help="equal-wall-clock regime: training minutes per variant"
    )
    ap.add_argument("--regime", choices=["both", "epochs", "minutes"], default="both")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {', '.join(VARIANTS)}")
    ap.add_argument(
        "--seed",
        type=int_range(0, 2**32 - 1),
        default=0,
        help="training seed; runs of a seed other than 0 go to folders named ..._seedN",
    )
    ap.add_argument("--speed-batch", type=int_range(1, 4096), default=64, help="speed pass: training batch size")
    ap.add_argument(
        "--speed-rounds", type=int_range(1, 1000), default=3, help="speed pass: interleaved rounds (the median counts)"
    )
    ap.add_argument(
        "--latency-repeats",
        type=int_range(1, 100000),
        default=200,
        help="speed pass: timed ORT batch-1 runs per variant",
    )
    ap.add_argument("-o", "--out", default="results/ablation")
    ap.add_argument("--force", action="store_true", help="replace results.json and table.md of a finished suite in OUT")
    args = ap.parse_args(argv)
    labels = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not labels:
        ap.error(f"--variants {args.variants!r}: names no variant; expected some of {', '.join(VARIANTS)}")
    unknown = [v for v in labels if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {', '.join(unknown)}; expected some of {', '.join(VARIANTS)}")
    return args, labels


def main(argv=None):
    args, labels = parse_args(argv)
    try:
        _run_suite(args, labels)
    except FertrtError as exc:
        print(f"error: {safe(str(exc))}", file=sys.stderr)
        raise SystemExit(2) from None


def _run_suite(args, labels):
    from fertrt.fileio import check_folder_outputs, make_output_dir

    out = make_output_dir(args.out, "folder for the ablation suite")  # before any training: a file, read-only or full
    check_folder_outputs(out, ("results.json", "table.md"), overwrite=args.force)
    regimes = {"both": ["epochs", "minutes"], "epochs": ["epochs"], "minutes": ["minutes"]}[args.regime]
    rows = []
    for data in args.data:
        for regime in regimes:
            for label in labels:
                folder = (
                    out
                    / data.replace(":", "_")
                    / (f"{args.epochs}ep" if regime == "epochs" else f"{args.minutes:g}min")
                    / (label if args.seed == 0 else f"{label}_seed{args.seed}")
                )
                print(f"[{data} | {regime}] {label}: {DESCRIPTIONS[label]}", flush=True)
                row = run_variant(
                    label,
                    data,
                    folder,
                    epochs=args.epochs if regime == "epochs" else 10**6,
                    minutes=None if regime == "epochs" else args.minutes,
                    seed=args.seed,
                )
                rows.append(row)
                print(
                    f"  accuracy {row['accuracy'] * 100:.2f} %, macro-F1 {row['macro_f1'] * 100:.2f} %, epochs {row['epochs']}"
                    + (
                        ""
                        if row.get("cue_share_ratio") is None
                        else f", cue share ratio {format_ratio(row['cue_share_ratio'])}"
                    ),
                    flush=True,
                )
    print("speed pass: training img/s and ORT CPU batch-1 latency, all variants side by side", flush=True)
    speed = speed_pass(labels, rounds=args.speed_rounds, batch=args.speed_batch, latency_repeats=args.latency_repeats)
    for row in rows:
        row.update(speed[row["variant"]])
    table = format_table(rows)
    write_json_atomic(out / "results.json", rows, overwrite=args.force)
    write_text_atomic(out / "table.md", table + "\n", overwrite=args.force)
    print("\n" + table)


if __name__ == "__main__":
    main()
