"""`fertrt bench`: latency, throughput, memory, accuracy (and power on Jetson) per model x backend x batch,
side by side with a bare onnxruntime session and PyTorch eager on the same inputs."""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import numpy as np

from fertrt.engine.device import environment
from fertrt.errors import FertrtError
from fertrt.fileio import sha256_file, write_json_atomic, write_text_atomic
from fertrt.metrics import summarize
from fertrt.text import safe

SCHEMA = "fertrt-bench-2"


def latency_stats(ns) -> dict:
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    return {
        "n": int(ms.size),
        "min": float(ms.min()),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
        "max": float(ms.max()),
    }


def time_fn(fn, warmup: int = 5, iters: int | None = None, seconds: float = 2.0, min_iters: int = 10) -> np.ndarray:
    """Call fn after `warmup` calls; `iters` timed calls, or as many as fit in `seconds` (at least min_iters)."""
    for _ in range(warmup):
        fn()
    out = []
    t_end = time.perf_counter() + seconds
    while (iters is not None and len(out) < iters) or (
        iters is None and (time.perf_counter() < t_end or len(out) < min_iters)
    ):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return np.asarray(out)


def interleaved_overhead(ours, bare, warmup: int = 3, seconds: float = 2.0, rounds: int = 10) -> dict:
    """Time two callables that do the same work (the runtime and a bare baseline over one session)
    in alternating short rounds, so drift in machine load hits both alike. The ratio is the median of
    the per-round ratios, reported with their interquartile range (a ratio of the pooled medians could
    fall outside that range, since rounds hold different numbers of calls): `resolved` is False when
    the range holds 1.0, i.e. when the run-to-run spread is larger than the effect."""
    for _ in range(warmup):
        ours()
        bare()
    per_side = seconds / (2 * rounds)
    ours_ns, bare_ns, round_ratios = [], [], []
    for _ in range(rounds):
        b = time_fn(bare, 0, None, per_side, min_iters=5)
        o = time_fn(ours, 0, None, per_side, min_iters=5)
        bare_ns.append(b)
        ours_ns.append(o)
        round_ratios.append(np.median(o) / np.median(b))
    ours_all, bare_all = np.concatenate(ours_ns), np.concatenate(bare_ns)
    q25, q75 = np.percentile(round_ratios, [25, 75])
    ratio = float(np.median(round_ratios))
    return {
        "ours_ms": float(np.median(ours_all) / 1e6),
        "bare_ms": float(np.median(bare_all) / 1e6),
        "ratio": ratio,
        "round_ratio_q25": float(q25),
        "round_ratio_q75": float(q75),
        "rounds": rounds,
        "resolved": bool(q25 > 1.0 or q75 < 1.0),
        "bare_ns": bare_all,
        "ours_ns": ours_all,
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def concurrent_throughput(path, backend, x, streams: int, seconds: float, threads=None) -> dict:
    """Images/s with `streams` threads, each with its own runner (own execution context / session)."""
    import threading

    from fertrt.runtime.runners import open_runner

    runners = [open_runner(path, backend=backend, threads=threads) for _ in range(streams)]
    counts = [0] * streams
    start = threading.Barrier(streams + 1)
    stop = threading.Event()

    def work(i):
        runners[i].infer(x)  # warm-up
        start.wait()
        while not stop.is_set():
            runners[i].infer(x)
            counts[i] += 1

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(streams)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    for r in runners:
        r.close()
    return {"streams": streams, "throughput_ips": sum(counts) * len(x) / elapsed, "calls": sum(counts)}


def bench(
    models,
    data_spec=None,
    batches=(1, 8, 32),
    seconds=2.0,
    warmup=5,
    split="test",
    limit=None,
    threads=None,
    baselines=True,
    torch_compile=False,
    out_dir=None,
    streams=1,
    log=print,
) -> dict:
    from fertrt.export.compare import load_eval_images
    from fertrt.runtime.preprocess import postprocess, preprocess
    from fertrt.runtime.runners import backend_for, open_runner, run_batched

    from .tegrastats import TegrastatsSampler, clocks_state, summarize as power_summary

    records, ref_pred, images, labels, class_names = [], None, None, None, None
    env = environment()
    clocks = clocks_state()
    if env.get("jetson") and clocks.get("clocks_locked") is False:
        log("warning: Jetson clocks are not locked (run `sudo jetson_clocks`); latencies will vary")
    for path in models:
        with open_runner(path, backend=backend_for(path), threads=threads) as runner:
            from fertrt.export.targets import target_mismatch  # pure Python, no torch/onnx

            if runner.backend == "onnxruntime" and target_mismatch(
                runner.metadata, "onnxruntime"
            ):  # bench runs ORT on CPU
                log(f"warning: {Path(path).name}: {target_mismatch(runner.metadata, 'onnxruntime')}")
            spec = data_spec or runner.metadata.get("data_spec")
            if images is None:
                if not spec:
                    raise FertrtError(f"{path}: no data spec in its metadata; pass --data")
                images, labels, class_names, _ = load_eval_images(spec, runner.preprocess, split, limit)
                log(f"data: {len(images)} images of {safe(spec)} [{split}]")
            trained_on = str(runner.metadata.get("data_spec") or "")
            if trained_on.startswith("synth") and not spec.startswith("synth") and path == models[0]:
                log(
                    f"note: {safe(Path(path).name)} was trained on {safe(trained_on)} (cartoon faces): its labels on real faces "
                    "are not meaningful. Train on a real data set for that, e.g. fertrt train --data rafdb:/data/RAF-DB/basic"
                )
            pre = runner.preprocess
            x_all = preprocess(images, pre)
            logits = run_batched(runner, x_all, 64)
            pred = logits.argmax(1)
            metrics = summarize(labels, pred, class_names)
            agreement = None if ref_pred is None else float((pred == ref_pred).mean())
            if ref_pred is None:
                ref_pred = pred
            log(
                f"{safe(Path(path).name)} [{runner.backend}, {safe(runner.precision)}]: accuracy {metrics['accuracy'] * 100:.2f}%"
                + (
                    f", agreement with the reference {agreement * 100:.2f}%"
                    if agreement is not None
                    else " (reference)"
                )
            )
            for b in batches:
                batch_imgs = [images[i % len(images)] for i in range(b)]
                x = x_all[:b] if b <= len(x_all) else np.concatenate([x_all] * (b // len(x_all) + 1))[:b]
                batch_logits = np.resize(logits, (b, logits.shape[1]))
                stages = {
                    "preprocess": time_fn(lambda: preprocess(batch_imgs, pre), warmup, None, seconds / 4),
                    "postprocess": time_fn(lambda: postprocess(batch_logits, class_names), warmup, None, seconds / 4),
                }
                with TegrastatsSampler() as sampler:
                    t_run = time.perf_counter()
                    infer_ns = time_fn(lambda: runner.infer(x), warmup, None, seconds)
                    run_s = time.perf_counter() - t_run
                e2e = time_fn(
                    lambda: postprocess(runner.infer(preprocess(batch_imgs, pre)), class_names),
                    warmup,
                    None,
                    seconds / 2,
                )
                rec = {
                    "model": str(path),
                    "model_sha256": sha256_file(path),
                    "backend": runner.backend,
                    "precision": runner.precision,
                    "batch": b,
                    "tool": "fertrt",
                    "latency_ms": latency_stats(infer_ns),
                    "end_to_end_ms": latency_stats(e2e),
                    "stages_ms": dict(
                        {k: latency_stats(v)["mean"] for k, v in stages.items()}, infer=float(np.mean(infer_ns) / 1e6)
                    ),
                    "throughput_ips": float(b / (np.mean(infer_ns) / 1e9)),
                    "accuracy": metrics["accuracy"],
                    "macro_f1": metrics["macro_f1"],
                    "per_class_accuracy": metrics["per_class_accuracy"],
                    "confusion": metrics["confusion"],
                    "agreement_with_reference": agreement,
                    "n_eval": len(labels),
                    "peak_rss_mb": peak_rss_mb(),
                    "power": power_summary(sampler.samples, run_s, b * len(infer_ns)) if sampler.samples else None,
                    "latency_samples_ms": (infer_ns / 1e6).round(4).tolist()[:2000],
                }
                if hasattr(runner, "infer_timed"):  # GPU backend: device-side stages from CUDA events
                    ev = [runner.infer_timed(x) for _ in range(20)]
                    rec["gpu_stages_ms"] = {k: float(np.median([e[k] for e in ev])) for k in ev[0]}
                    rec["device_memory_mb"] = runner.device_memory_mb()
                if streams > 1:
                    rec["concurrency"] = concurrent_throughput(path, runner.backend, x, streams, seconds, threads)
                    log(f"  batch {b:>3}: {streams} streams: {rec['concurrency']['throughput_ips']:.0f} img/s")
                records.append(rec)
                log(
                    f"  batch {b:>3}: p50 {rec['latency_ms']['p50']:.2f} ms  p99 {rec['latency_ms']['p99']:.2f} ms  "
                    f"{rec['throughput_ips']:.0f} img/s  (end to end p50 {rec['end_to_end_ms']['p50']:.2f} ms)"
                )
                if baselines and runner.backend == "onnxruntime":
                    records.append(_bare_ort_record(path, runner, x, b, warmup, seconds, threads, log))
                if baselines and runner.backend == "torch":
                    records.extend(_torch_records(path, runner, x, b, warmup, seconds, torch_compile, log))
    result = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": env,
        "clocks": clocks,
        "settings": {
            "batches": list(batches),
            "seconds": seconds,
            "warmup": warmup,
            "split": split,
            "data": data_spec,
            "threads": threads,
            "streams": streams,
        },
        "results": records,
    }
    if out_dir:
        write_outputs(result, Path(out_dir), log=log)
    return result


def _baseline_record(path, runner, backend, precision, b, overhead, log, label):
    ns = overhead.pop("bare_ns")
    overhead.pop("ours_ns")
    rec = {
        "model": str(path),
        "backend": backend,
        "precision": precision,
        "batch": b,
        "tool": "baseline",
        "latency_ms": latency_stats(ns),
        "throughput_ips": float(b / (np.mean(ns) / 1e9)),
        "latency_samples_ms": (ns / 1e6).round(4).tolist()[:2000],
        "overhead": overhead,
    }
    log(
        f"  batch {b:>3}: {label} p50 {rec['latency_ms']['p50']:.2f} ms; fertrt runtime vs it, interleaved: "
        f"{_ratio_text(overhead)}"
    )
    return rec


def _bare_ort_record(path, runner, x, b, warmup, seconds, threads, log):
    """What users would write by hand: a plain InferenceSession.run on the same preprocessed batch, on the
    runner's own session (two sessions on a few cores would also time their thread pools fighting)."""
    sess = getattr(runner, "session", None)
    if sess is None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # errors only: ORT warns once per node it cannot constant-fold in FP16 graphs (harmless, many lines)
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    overhead = interleaved_overhead(lambda: runner.infer(x), lambda: sess.run(None, {name: x}), warmup, seconds)
    return _baseline_record(path, runner, "onnxruntime-bare", runner.precision, b, overhead, log, "bare onnxruntime")


def _torch_records(path, runner, x, b, warmup, seconds, torch_compile, log):
    import torch

    recs = []
    xt = torch.from_numpy(x)
    model = runner.model

    def eager():
        with torch.no_grad():
            model(xt)

    overhead = interleaved_overhead(lambda: runner.infer(x), eager, warmup, seconds)
    recs.append(_baseline_record(path, runner, "torch-eager", "fp32", b, overhead, log, "PyTorch eager"))
    if torch_compile:
        try:
            compiled = torch.compile(model)

            def comp():
                with torch.no_grad():
                    compiled(xt)

            ns = time_fn(comp, max(warmup, 3), None, seconds)
            recs.append(
                {
                    "model": str(path),
                    "backend": "torch-compile",
                    "precision": "fp32",
                    "batch": b,
                    "tool": "baseline",
                    "latency_ms": latency_stats(ns),
                    "throughput_ips": float(b / (np.mean(ns) / 1e9)),
                }
            )
            log(f"  batch {b:>3}: torch.compile p50 {recs[-1]['latency_ms']['p50']:.2f} ms")
        except Exception as exc:  # noqa: BLE001 - torch.compile failures vary by platform; record and go on
            log(f"  torch.compile unavailable here ({exc.__class__.__name__}); skipped")
    return recs


# ---------------------------------------------------------------- outputs
def overhead_ratios(records) -> list[dict]:
    """fertrt runtime vs bare onnxruntime / PyTorch eager per model x batch, from the interleaved
    measurement each baseline record carries (records without one are not compared: two separately
    timed sessions differ by more than the overhead being measured)."""
    rows = []
    for r in records:
        o = r.get("overhead")
        if r.get("tool") != "baseline" or not o:
            continue
        rows.append(
            {
                "model": r["model"],
                "batch": r["batch"],
                "fertrt_ms": o["ours_ms"],
                "bare_ms": o["bare_ms"],
                "ratio": o["ratio"],
                "round_ratio_q25": o["round_ratio_q25"],
                "round_ratio_q75": o["round_ratio_q75"],
                "resolved": o["resolved"],
                "rounds": o["rounds"],
                "baseline": "bare onnxruntime" if r["backend"] == "onnxruntime-bare" else "PyTorch eager",
            }
        )
    return rows


def _ratio_text(q: dict) -> str:
    """A ratio only where it stands out of the run-to-run spread; otherwise say that it does not."""
    spread = f"per-round IQR {q['round_ratio_q25']:.3f}-{q['round_ratio_q75']:.3f} over {q['rounds']} rounds"
    if q["resolved"]:
        return f"{q['ratio']:.3f} ({spread})"
    return f"no difference beyond the spread ({spread})"


def report_markdown(result: dict) -> str:
    env = result["environment"]
    lines = [
        "# fertrt benchmark",
        "",
        f"Machine: {env.get('cpu')} ({env.get('cpu_count')} cores), GPU: {(env.get('gpu') or {}).get('name', 'none')}, "
        f"onnxruntime {env.get('onnxruntime')}, torch {env.get('torch')}, TensorRT {env.get('tensorrt') or 'not installed'}, "
        f"fertrt {env.get('fertrt')}. Created {result['created']}.",
        "",
        "| model | backend | precision | batch | p50 ms | p90 ms | p99 ms | img/s | top-1 | macro-F1 | agreement |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["results"]:
        lat = r["latency_ms"]
        acc = f"{r['accuracy'] * 100:.2f}%" if r.get("accuracy") is not None else ""
        f1 = f"{r['macro_f1'] * 100:.2f}%" if r.get("macro_f1") is not None else ""
        agr = (
            "ref"
            if r.get("tool") == "fertrt" and r.get("agreement_with_reference") is None
            else (
                f"{r['agreement_with_reference'] * 100:.2f}%" if r.get("agreement_with_reference") is not None else ""
            )
        )
        lines.append(
            f"| {Path(r['model']).name} | {r['backend']} | {r['precision']} | {r['batch']} | {lat['p50']:.2f} | {lat['p90']:.2f} | "
            f"{lat['p99']:.2f} | {r['throughput_ips']:.0f} | {acc} | {f1} | {agr} |"
        )
    ratios = overhead_ratios(result["results"])
    if ratios:
        lines += [
            "",
            "Side by side (median latency, same inputs, same session, the two timed in alternating rounds; a ratio is "
            "shown only where the per-round interquartile range excludes 1.0):",
            "",
            "| model | batch | fertrt runtime ms | baseline | baseline ms | fertrt / baseline |",
            "|---|---:|---:|---|---:|---|",
        ]
        for q in ratios:
            lines.append(
                f"| {Path(q['model']).name} | {q['batch']} | {q['fertrt_ms']:.3f} | {q['baseline']} | "
                f"{q['bare_ms']:.3f} | {_ratio_text(q)} |"
            )
    power = [r for r in result["results"] if r.get("power")]
    if power:
        lines += [
            "",
            "| model | backend | batch | mean power W | mJ / inference | max temps °C |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in power:
            p = r["power"]
            lines.append(
                f"| {Path(r['model']).name} | {r['backend']} | {r['batch']} | {p['mean_power_w']:.2f} | "
                f"{p['energy_per_inference_mj']:.2f} | {p['max_temps_c']} |"
            )
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out: Path, log=print):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FertrtError(f"{out}: cannot create the results folder ({exc.strerror or exc})") from exc
    write_json_atomic(out / "results.json", result)
    write_text_atomic(out / "report.md", report_markdown(result))
    try:
        from .plots import plot_all

        plot_all(result, out)
    except ModuleNotFoundError as exc:  # matplotlib is a [train] extra; a Jetson runtime install may lack it
        log(f"plots skipped ({exc.name} not installed)")
    log(f"wrote {out / 'results.json'} and {out / 'report.md'}")


_ROW_KEY = ("model", "backend", "precision", "batch")


def _positive(value, what: str) -> float:
    """A finite number > 0 (a bool, a string, Infinity or NaN is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} is {safe(json.dumps(value)[:40])}, expected a finite number > 0")
    return float(value)


def _accuracy(value, what: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{what} is {safe(json.dumps(value)[:40])}, expected null or a number in [0, 1]")
    return float(value)


def _result_row(r, k: int) -> tuple:
    """(key, the figures --compare uses) of one results.json row, each field checked."""
    if not isinstance(r, dict):
        raise ValueError(f"results[{k}] is not an object")
    key = tuple(r.get(f) for f in _ROW_KEY)
    if not all(isinstance(v, str) for v in key[:3]) or isinstance(key[3], bool) or not isinstance(key[3], int):
        raise ValueError(f"results[{k}]: model, backend, precision must be strings and batch an integer")
    lat = r.get("latency_ms")
    if not isinstance(lat, dict):
        raise ValueError(f"results[{k}].latency_ms is not an object")
    return (Path(key[0]).name,) + key[1:], {
        "p50": _positive(lat.get("p50"), f"results[{k}].latency_ms.p50"),
        "throughput_ips": _positive(r.get("throughput_ips"), f"results[{k}].throughput_ips"),
        "accuracy": _accuracy(r.get("accuracy"), f"results[{k}].accuracy"),
    }


def load_results(p) -> dict:
    """The rows of one results.json by (model file name, backend, precision, batch); anything else is a FertrtError."""

    def refuse_constant(name):  # Infinity, -Infinity, NaN: not JSON, and no latency
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        data = json.loads(Path(p).read_bytes().decode("utf-8"), parse_constant=refuse_constant)
    except OSError as exc:
        raise FertrtError(f"{p}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise FertrtError(f"{p}: not a text file; expected a results.json written by `fertrt bench`") from None
    except RecursionError:
        raise FertrtError(f"{p}: JSON nested too deeply; expected a results.json written by `fertrt bench`") from None
    except ValueError as exc:
        raise FertrtError(f"{p}: not a results.json ({safe(exc)})") from None
    if not isinstance(data, dict):
        raise FertrtError(f"{p}: holds a JSON {type(data).__name__}; expected the object `fertrt bench` writes")
    if data.get("schema") != SCHEMA:
        raise FertrtError(f"{p}: schema {safe(repr(data.get('schema'))[:60])}, expected {SCHEMA!r}")
    if not isinstance(data.get("results"), list) or not data["results"]:
        raise FertrtError(f"{p}: damaged results.json (no list of results)")
    rows = {}
    for k, r in enumerate(data["results"]):
        try:
            key, row = _result_row(r, k)
        except ValueError as exc:
            raise FertrtError(f"{p}: damaged results.json ({safe(exc)})") from None
        if key in rows:
            raise FertrtError(
                f"{p}: damaged results.json (results[{k}] repeats the row {safe(' / '.join(map(str, key)))})"
            )
        rows[key] = row
    return rows


def compare_results(old_path, new_path) -> list[dict]:
    old, new = load_results(old_path), load_results(new_path)
    shared = sorted(set(old) & set(new), key=str)
    if not shared:
        raise FertrtError(
            f"{old_path} and {new_path} share no row (same model file name, backend, precision and batch); "
            "nothing to compare"
        )
    rows = []
    for key in shared:
        o, n = old[key], new[key]
        delta = None if o["accuracy"] is None or n["accuracy"] is None else n["accuracy"] - o["accuracy"]
        rows.append(
            {
                "model": key[0],
                "backend": key[1],
                "precision": key[2],
                "batch": key[3],
                "old_p50_ms": o["p50"],
                "new_p50_ms": n["p50"],
                "p50_ratio": n["p50"] / o["p50"],
                "throughput_ratio": n["throughput_ips"] / o["throughput_ips"],
                "accuracy_delta": delta,
            }
        )
    return rows


def cmd_bench(args):
    if args.compare:
        rows = compare_results(*args.compare)
        print(
            f"{'model':<28} {'backend':<17} {'prec':<5} {'batch':>5} {'old p50':>9} {'new p50':>9} {'ratio':>7} {'thru x':>7} {'Δacc':>7}"
        )
        for r in rows:
            d = "" if r["accuracy_delta"] is None else f"{r['accuracy_delta'] * 100:+.2f}"
            print(
                f"{safe(r['model'])[:28]:<28} {safe(r['backend']):<17} {safe(r['precision']):<5} {safe(r['batch']):>5} {r['old_p50_ms']:>9.3f} "
                f"{r['new_p50_ms']:>9.3f} {r['p50_ratio']:>7.3f} {r['throughput_ratio']:>7.3f} {d:>7}"
            )
        return 0
    if not args.models:
        raise FertrtError("give model files to benchmark (or --compare OLD NEW)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FertrtError(f"-o {out}: is a file; expected a folder for results.json, report.md and plots")
    if (out / "results.json").exists() and not args.force:
        raise FertrtError(
            f"-o {out}: holds results of an earlier run ({out / 'results.json'}); pass --force to replace them "
            "or choose another folder"
        )
    if out.is_dir():  # every file the run writes, not only results.json; a device node or FIFO even with --force
        from fertrt.fileio import check_folder_outputs

        check_folder_outputs(
            out,
            (
                "results.json",
                "report.md",
                "latency_distribution.png",
                "accuracy_vs_latency.png",
                "throughput_vs_batch.png",
            ),
            overwrite=args.force,
        )
    batches = tuple(args.batches)  # parsed and range-checked by the CLI (fertrt.cli.batch_list)
    from fertrt.runtime.deploy import expand_folders  # a `fertrt pack` folder: checked, then its models

    models = expand_folders(args.models)
    result = bench(
        models,
        args.data,
        batches,
        args.seconds,
        args.warmup,
        args.split,
        args.limit,
        args.threads,
        baselines=not args.no_baselines,
        torch_compile=args.torch_compile,
        out_dir=args.out,
        streams=args.streams,
    )
    print(report_markdown(result))
    return 0
