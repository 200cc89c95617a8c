"""Benchmark harness, tegrastats parser, results comparison, and the demo end to end (slow)."""

import json
from pathlib import Path

import numpy as np
import pytest

from fertrt.benchmarks.harness import SCHEMA, bench, compare_results, latency_stats, overhead_ratios
from fertrt.benchmarks.tegrastats import parse_line, summarize
from fertrt.errors import FertrtError

SAMPLES = Path(__file__).resolve().parent.parent / "benchmarks" / "data" / "tegrastats_samples.txt"


def _lines():
    return [l for l in SAMPLES.read_text().splitlines() if l and not l.startswith("#")]


def test_tegrastats_parser_on_recorded_lines():
    nano, nx, agx = (parse_line(l) for l in _lines())
    assert nano["total_mw"] == 5017 and nano["rails_mw"]["VDD_CPU_GPU_CV"] == 1197
    assert nano["temps_c"]["gpu"] == pytest.approx(46.625) and nano["gpu_util"] == 45 and nano["ram_mb"] == 2448
    assert nx["total_mw"] == 12345 and nx["temps_c"]["cpu"] == pytest.approx(50.25) and nx["gpu_util"] == 99
    assert agx["total_mw"] == 9580 + 1592 + 4030 + 906  # AGX Orin has no module input rail: rails summed
    assert agx["temps_c"]["tj"] == pytest.approx(43.5)
    s = summarize([nano, nano], seconds=2.0, inferences=100)
    assert s["mean_power_w"] == pytest.approx(5.017) and s["energy_j"] == pytest.approx(10.034)
    assert s["energy_per_inference_mj"] == pytest.approx(100.34)


def test_latency_stats_order():
    st = latency_stats(np.random.default_rng(0).lognormal(14, 0.5, 500))
    assert st["min"] <= st["p50"] <= st["p90"] <= st["p99"] <= st["max"]


def test_bench_results_schema_and_accuracy_equals_eval(tiny_run, tiny_onnx, tmp_path):
    from fertrt.train.commands import run_eval

    run, _ = tiny_run
    out = tmp_path / "bench"
    bench([run / "best.pt", tiny_onnx], None, (1, 4), seconds=0.2, warmup=2, out_dir=out, log=lambda *a: None)
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == SCHEMA and data["environment"]["onnxruntime"] and data["environment"]["cpu_count"] >= 1
    fertrt_rows = [r for r in data["results"] if r["tool"] == "fertrt"]
    assert {(r["backend"], r["batch"]) for r in fertrt_rows} == {
        ("torch", 1),
        ("torch", 4),
        ("onnxruntime", 1),
        ("onnxruntime", 4),
    }
    for r in data["results"]:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["throughput_ips"] > 0
    for r in fertrt_rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0 and r["peak_rss_mb"] > 0
        assert set(r["stages_ms"]) == {"preprocess", "infer", "postprocess"}
    ev = run_eval(run / "best.pt", None, "test", tmp_path / "eval", log=lambda *a: None)
    torch_row = next(r for r in fertrt_rows if r["backend"] == "torch")
    assert torch_row["accuracy"] == ev["accuracy"]
    onnx_row = next(r for r in fertrt_rows if r["backend"] == "onnxruntime")
    assert onnx_row["agreement_with_reference"] == 1.0
    backends = {r["backend"] for r in data["results"]}
    assert {"onnxruntime-bare", "torch-eager"} <= backends
    ratios = overhead_ratios(data["results"])
    assert len(ratios) == 4 and all(q["ratio"] > 0 for q in ratios)
    for q in ratios:  # measured interleaved on one session: the ratio comes with its per-round spread
        assert q["rounds"] == 10 and q["round_ratio_q25"] <= q["round_ratio_q75"]
        assert q["resolved"] == (q["round_ratio_q25"] > 1 or q["round_ratio_q75"] < 1)
    side_by_side = (out / "report.md").read_text().split("Side by side", 1)[1]
    for q in ratios:  # each row's own line: its spread, and a ratio only where the spread excludes 1.0
        spread = f"per-round IQR {q['round_ratio_q25']:.3f}-{q['round_ratio_q75']:.3f} over {q['rounds']} rounds"
        line = next(ln for ln in side_by_side.splitlines() if spread in ln and f"| {q['batch']} |" in ln)
        shown = f"{q['ratio']:.3f} ({spread})" in line
        assert shown == q["resolved"]  # never a ratio whose spread holds 1.0
        assert shown or "no difference beyond the spread" in line
    for name in ("report.md", "latency_distribution.png", "accuracy_vs_latency.png", "throughput_vs_batch.png"):
        assert (out / name).is_file()
    assert "| tiny.onnx | onnxruntime | fp32 | 1 |" in (out / "report.md").read_text()


def test_interleaved_overhead_shows_a_ratio_only_beyond_the_spread():
    import time

    from fertrt.benchmarks.harness import _ratio_text, interleaved_overhead

    def spin(seconds):
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            pass

    slow = interleaved_overhead(lambda: spin(4e-4), lambda: spin(2e-4), warmup=1, seconds=0.4)
    assert slow["resolved"] and 1.5 < slow["ratio"] < 2.6  # twice the work: a clear effect, shown
    assert _ratio_text(slow).startswith(f"{slow['ratio']:.3f} (per-round IQR")
    same = {"ratio": 1.004, "round_ratio_q25": 0.97, "round_ratio_q75": 1.05, "rounds": 10, "resolved": False}
    assert _ratio_text(same) == "no difference beyond the spread (per-round IQR 0.970-1.050 over 10 rounds)"


def test_bench_refuses_to_replace_results_without_force(tmp_path, capsys):
    from fertrt.cli import main

    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.json").write_text("{}")
    assert main(["bench", "model.onnx", "-o", str(out)]) == 2
    assert "holds results of an earlier run" in capsys.readouterr().err and (out / "results.json").read_text() == "{}"


def test_bench_streams(tiny_onnx):
    from fertrt.benchmarks.harness import concurrent_throughput

    x = np.zeros((2, 3, 112, 112), np.float32)
    res = concurrent_throughput(tiny_onnx, "onnxruntime", x, streams=2, seconds=0.3, threads=1)
    assert res["streams"] == 2 and res["calls"] > 0 and res["throughput_ips"] > 0


def test_bench_compare_ratios(tmp_path):
    def rec(p50, thr, acc):
        return {
            "model": "m.onnx",
            "backend": "onnxruntime",
            "precision": "fp32",
            "batch": 1,
            "latency_ms": {"p50": p50},
            "throughput_ips": thr,
            "accuracy": acc,
        }

    for name, r in (("old.json", rec(2.0, 500.0, 0.90)), ("new.json", rec(1.0, 1000.0, 0.91))):
        (tmp_path / name).write_text(json.dumps({"schema": SCHEMA, "results": [r]}))
    rows = compare_results(tmp_path / "old.json", tmp_path / "new.json")
    assert rows[0]["p50_ratio"] == 0.5 and rows[0]["throughput_ratio"] == 2.0
    assert rows[0]["accuracy_delta"] == pytest.approx(0.01)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(FertrtError, match="bad.json: schema None"):
        compare_results(tmp_path / "bad.json", tmp_path / "new.json")
    (tmp_path / "zero.json").write_text(json.dumps({"schema": SCHEMA, "results": [rec(0.0, 500.0, 0.9)]}))
    with pytest.raises(FertrtError, match="zero.json: damaged results.json"):
        compare_results(tmp_path / "zero.json", tmp_path / "new.json")


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    from fertrt.benchmarks.demo import run_demo

    out = tmp_path / "demo"
    # min_accuracy 0: two epochs are not a trained model; the quality gate has its own tests (test_demo.py)
    run_demo(
        out=str(out),
        data="synth:600:easy",
        epochs=2,
        bench_seconds=0.2,
        calib_size=64,
        batches=(1, 4),
        min_accuracy=0.0,
    )
    for name in (
        "report.md",
        "data_preview.png",
        "train/best.pt",
        "eval/eval_test_confusion.png",
        "eval/eval_test_region_weights.png",
        "model.onnx",
        "model_fp16.onnx",
        "model_int8.onnx",
        "model_int8.onnx.calib.cache",
        "bench/results.json",
        "bench/report.md",
        "bench/accuracy_vs_latency.png",
        "samples_predicted.png",
        "samples.jsonl",
    ):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "## Accuracy on the test split" in report and "TensorRT" in report and "region weight" in report
    # a second run reuses everything
    t = run_demo(
        out=str(out), data="synth:600:easy", epochs=2, bench_seconds=0.2, calib_size=64, batches=(1,), min_accuracy=0.0
    )
    assert t["seconds"] < 120
