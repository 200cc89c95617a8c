"""Benchmark figures: latency distributions, accuracy vs latency, throughput vs batch, confusion matrices."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_all(result: dict, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fertrt.fileio import atomic_path

    recs = result["results"]

    def save(fig, name):
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)

    # latency distribution per configuration
    with_samples = [r for r in recs if r.get("latency_samples_ms")]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(with_samples))))
    data = [r["latency_samples_ms"] for r in with_samples]
    try:
        ax.boxplot(data, orientation="horizontal", showfliers=False)  # matplotlib >= 3.10
    except TypeError:
        ax.boxplot(data, vert=False, showfliers=False)
    ax.set_yticks(
        range(1, len(with_samples) + 1),
        [f"{Path(r['model']).name} {r['backend']} b{r['batch']}" for r in with_samples],
        fontsize=7,
    )
    ax.set_xscale("log")
    ax.set_xlabel("latency per batch (ms, log)")
    fig.tight_layout()
    save(fig, "latency_distribution.png")
    # accuracy vs latency (batch 1, fertrt rows)
    rows = [r for r in recs if r.get("tool") == "fertrt" and r.get("accuracy") is not None]
    b1 = [r for r in rows if r["batch"] == min(x["batch"] for x in rows)] if rows else []
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in b1:
        ax.scatter(r["latency_ms"]["p50"], r["accuracy"] * 100)
        ax.annotate(f"{r['backend']} {r['precision']}", (r["latency_ms"]["p50"], r["accuracy"] * 100), fontsize=7)
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title("accuracy vs latency (lower right is better)")
    fig.tight_layout()
    save(fig, "accuracy_vs_latency.png")
    # throughput vs batch
    fig, ax = plt.subplots(figsize=(6, 4))
    series = {}
    for r in recs:
        series.setdefault(f"{Path(r['model']).name} {r['backend']}", []).append((r["batch"], r["throughput_ips"]))
    for name, pts in series.items():
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch")
    ax.set_ylabel("images / s")
    ax.legend(fontsize=6)
    fig.tight_layout()
    save(fig, "throughput_vs_batch.png")
    # confusion matrices, one per model x backend
    seen = set()
    for r in rows:
        key = (Path(r["model"]).stem, r["backend"])
        if key in seen:
            continue
        seen.add(key)
        from fertrt.train.plots import plot_confusion

        names = (
            list(r["per_class_accuracy"].keys())
            if len(r["per_class_accuracy"]) == len(r["confusion"])
            else [str(i) for i in range(len(r["confusion"]))]
        )
        plot_confusion(
            out / f"confusion_{key[0]}_{key[1]}.png", np.asarray(r["confusion"]), names, f"{key[0]} ({key[1]})"
        )
