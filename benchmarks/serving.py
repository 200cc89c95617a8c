"""`fertrt serve` under load, side by side with in-process ONNX Runtime in the same run.

    python -m fertrt.benchmarks.serving MODEL.onnx [-o DIR] [--seconds 10] [--soak-minutes 10]

Starts `fertrt serve MODEL` on loopback (free ports), then for HTTP and gRPC at each concurrency (1, 2, 4, 8, 16
client threads, each sending one preprocessed face crop per request, as many cameras would): p50/p99 latency,
throughput, the mean batch Triton formed (its statistics, read with the access token), errors and lost requests.
In-process rows: fertrt's OrtRunner on batches of the same sizes, in this process, with the server idle.
The soak (--soak-minutes) runs concurrency 8 over HTTP with one request in ten a bad one (wrong shape, wrong
dtype, oversized batch, an undecodable image) and samples the resident memory of the server's process tree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CONCURRENCY = (1, 2, 4, 8, 16)
MAX_BATCH = 16


# ---------------------------------------------------------------- the server


def start_server(model, work: Path, detector=None, instances: int = 1, delay_us: int = 2000):
    """`fertrt serve` with its token and log in `work` (a private temporary folder, never the record)."""
    from fertrt.serve.bundled import free_ports, wait_ready

    http, grpc, metrics = free_ports(3)
    token = work / "token"
    cmd = [
        sys.executable,
        "-m",
        "fertrt",
        "serve",
        str(model),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        str(MAX_BATCH),
        "--max-queue-delay-us",
        str(delay_us),
        "--instances",
        str(instances),
        "--token-file",
        str(token),
    ]
    cmd += ["--detector-model", str(detector)] if detector else ["--no-faces"]
    log = open(work / "serve.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(http, proc, timeout=300, models=("fer",) + (("fer_faces",) if detector else ()))
    return proc, {"http": http, "grpc": grpc, "metrics": metrics}, token.read_text()


def _children() -> dict:
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int) -> list:
    children, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_mb(pid: int) -> dict:
    """Resident memory of a process and all its descendants (tritonserver, the Python-backend stubs), in MB:
    VmRSS, and RssAnon (private memory: what a leak grows; VmRSS also counts the shared-memory buffers PyTriton
    maps per request, which come and go by hundreds of MB)."""
    total = {"VmRSS": 0, "RssAnon": 0}
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    key = line.split(":")[0]
                    if key in total:
                        total[key] += int(line.split()[1])
        except OSError:
            pass
    return {k: v / 1024 for k, v in total.items()}


def cpu_seconds(pid: int) -> dict:
    """CPU time (user + system) used so far by this process ("client": the benchmark's request threads), the
    `fertrt serve` process ("model": the runtime, PyTriton's model side) and its descendants ("triton":
    tritonserver, the Python-backend stub, PyTriton's proxy)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"client": sum(os.times()[:2]), "model": 0.0, "triton": 0.0}
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out["model" if p == pid else "triton"] += (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_ms_per_image(before: dict, after: dict, images: int) -> dict:
    return {k: (after[k] - before[k]) * 1e3 / max(images, 1) for k in before}


# ---------------------------------------------------------------- clients


def client_for(protocol: str, port: int):
    if protocol == "http":
        import tritonclient.http as mod
    else:
        import tritonclient.grpc as mod
    return mod, mod.InferenceServerClient(f"127.0.0.1:{port}")


def fer_request(mod, x):
    inp = mod.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return [inp]


def batch_stats(ports, token) -> dict:
    import tritonclient.http as th

    client = th.InferenceServerClient(f"127.0.0.1:{ports['http']}")
    stats = client.get_inference_statistics("fer", headers={"triton-access-token": token})["model_stats"][0]
    return {int(s["batch_size"]): int(s["compute_infer"]["count"]) for s in stats.get("batch_stats", [])}


def mean_batch(before: dict, after: dict) -> float | None:
    new = {b: after.get(b, 0) - before.get(b, 0) for b in after}
    runs = sum(new.values())
    return sum(b * n for b, n in new.items()) / runs if runs else None


def load(protocol, port, threads: int, seconds: float, x, bad_every: int = 0, bad=()):
    """`threads` clients send requests back to back for `seconds`; returns latencies (ms) of good answers and counts."""
    lat, counts, lock = [], {"sent": 0, "ok": 0, "errors": 0, "bad_sent": 0, "bad_refused": 0}, threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(k):
        mod, client = client_for(protocol, port)
        good = fer_request(mod, x)
        i = 0
        while time.perf_counter() < stop:
            i += 1
            is_bad = bad_every and (i + k) % bad_every == 0
            t0 = time.perf_counter()
            try:
                if is_bad:
                    kind = bad[(i // bad_every) % len(bad)]
                    kind(mod, client)
                else:
                    client.infer("fer", good)
                ok = True
            except Exception:  # noqa: BLE001 - counted: an error on a good request, or a refused bad one
                ok = False
            ms = (time.perf_counter() - t0) * 1e3
            with lock:
                counts["sent"] += 1
                counts["bad_sent"] += bool(is_bad)
                if is_bad:
                    counts["bad_refused"] += not ok
                    counts["errors"] += ok  # a bad request that was answered is an error too
                elif ok:
                    counts["ok"] += 1
                    lat.append(ms)
                else:
                    counts["errors"] += 1
        # closed here, in the thread that made it: tritonclient's HTTP client closed by the garbage collector in
        # another thread prints a gevent error
        client.close()

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    counts["seconds"] = time.perf_counter() - t0
    counts["lost"] = counts["sent"] - counts["ok"] - counts["errors"] - counts["bad_refused"]
    return np.array(lat), counts


def bad_requests(with_faces: bool):
    def wrong_shape(mod, client):
        client.infer("fer", fer_request(mod, np.zeros((1, 3, 64, 64), np.float32)))

    def wrong_dtype(mod, client):
        inp = mod.InferInput("input", [1, 3, 112, 112], "FP64")
        inp.set_data_from_numpy(np.zeros((1, 3, 112, 112), np.float64))
        client.infer("fer", [inp])

    def too_big(mod, client):
        client.infer("fer", fer_request(mod, np.zeros((MAX_BATCH + 1, 3, 112, 112), np.float32)))

    def images(*blobs):
        def send(mod, client):
            inp = mod.InferInput("image", [len(blobs)], "BYTES")
            inp.set_data_from_numpy(np.array(blobs, dtype=np.object_))
            client.infer("fer_faces", [inp])

        return send

    faces = (images(b"\x89PNG\r\n\x1a\nbroken"), images(b"\xff\xd8\xff\xe0 not really"), images(b"GIF89a"))
    return (wrong_shape, wrong_dtype, too_big) + (faces if with_faces else ())


# ---------------------------------------------------------------- in process


def in_process(model, batches, seconds: float, x1, threads=None):
    """threads None: ONNX Runtime's default pool (one thread per core), as `fertrt serve` runs it; on a
    machine loaded by other jobs one thread can be faster (a pool waits for its descheduled threads)."""
    from fertrt.runtime.runners import open_runner

    rows = []
    with open_runner(model, threads=threads) as runner:
        for b in batches:
            x = np.repeat(x1, b, axis=0)
            for _ in range(3):
                runner.infer(x)
            lat, stop, cpu0 = [], time.perf_counter() + seconds, sum(os.times()[:2])
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                runner.infer(x)
                lat.append((time.perf_counter() - t0) * 1e3)
            cpu_ms = (sum(os.times()[:2]) - cpu0) * 1e3 / (b * len(lat))
            lat = np.array(lat)
            rows.append(
                {
                    "batch": b,
                    "threads": threads or "default",
                    "cpu_ms_per_img": cpu_ms,
                    "p50_ms": float(np.median(lat)),
                    "p99_ms": float(np.percentile(lat, 99)),
                    "img_per_s": float(b * len(lat) / lat.sum() * 1e3),
                    "calls": len(lat),
                }
            )
    return rows


# ---------------------------------------------------------------- report


def report(res: dict) -> str:
    lines = [
        f"Machine: {res['machine']}; load before: {res['load_before']}, after: {res['load_after']}.",
        "",
        "| client | concurrency / batch | p50 ms | p99 ms | img/s | mean batch formed | errors | lost "
        "| CPU ms per image: model / Triton / client |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["server"]:
        mb = f"{r['mean_batch']:.2f}" if r["mean_batch"] else "-"
        cpu = r.get("cpu_ms_per_img")
        cpu = f"{cpu['model']:.2f} / {cpu['triton']:.2f} / {cpu['client']:.2f}" if cpu else "-"
        lines.append(
            f"| Triton {r['protocol']} | {r['concurrency']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['img_per_s']:.0f} | {mb} | {r['errors']} | {r['lost']} | {cpu} |"
        )
    for r in res["in_process"]:
        cpu = f"{r['cpu_ms_per_img']:.2f} / - / -" if "cpu_ms_per_img" in r else "-"
        lines.append(
            f"| in-process ORT, {r['threads']} threads | batch {r['batch']} | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['img_per_s']:.0f} | - | 0 | 0 | {cpu} |"
        )
    for proto, ratio in res["ratio_at_8"].items():
        lines.append(
            f"\nConcurrency 8 over {proto}: {ratio * 100:.0f} % of in-process batch-8 throughput (the better "
            "thread setting) (target >= 70 %)." + ceiling(res, proto)
        )
    if res.get("soak"):
        s = res["soak"]
        lines.append(
            f"\nSoak: {s['minutes']:.1f} min at concurrency 8 over HTTP, one request in {s['bad_every']} "
            "a bad one: "
            f"{s['ok']} answered, {s['bad_refused']}/{s['bad_sent']} bad ones refused, {s['errors']} errors, "
            f"{s['lost']} lost; server private memory (RssAnon) {s['rss_start_mb']:.0f} MB after warm-up -> "
            f"{s['rss_end_mb']:.0f} MB "
            f"({s['rss_growth_pct']:+.1f} %, target < 5 %)."
        )
    return "\n".join(lines) + "\n"


def ceiling(res: dict, proto: str) -> str:
    """The most this machine's cores could serve at the CPU cost per image measured at concurrency 8 (model,
    Triton and client all on the same cores), as a share of the in-process baseline."""
    row = next((r for r in res["server"] if r["protocol"] == proto and r["concurrency"] == 8), None)
    if not row or not row.get("cpu_ms_per_img") or not res["ratio_at_8"].get(proto):
        return ""
    per_image = sum(row["cpu_ms_per_img"].values())
    bound = os.cpu_count() * 1e3 / per_image
    base = row["img_per_s"] / res["ratio_at_8"][proto]
    return (
        f" CPU per image {per_image:.2f} ms over {os.cpu_count()} cores: at most {bound:.0f} img/s here, "
        f"{bound / base * 100:.0f} % of in-process."
    )


def main(argv=None):
    from fertrt.fileio import make_output_dir, write_json_atomic, write_text_atomic
    from fertrt.runtime.preprocess import PreprocessConfig, preprocess
    from fertrt.serve.bundled import stop_process
    from fertrt.train.data.synth import SynthConfig, generate

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the FER .onnx")
    ap.add_argument("-o", "--out", default=f"benchmarks/records/serving-{time.strftime('%Y-%m-%d')}")
    ap.add_argument("--seconds", type=float, default=10.0, help="per configuration")
    ap.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)))
    ap.add_argument("--protocols", default="http,grpc")
    ap.add_argument("--detector-model", default=None, help="serve fer_faces too (its bad images join the soak's mix)")
    ap.add_argument("--soak-minutes", type=float, default=0.0)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    out = make_output_dir(args.out, "record folder")
    if (out / "results.json").exists() and not args.force:
        sys.exit(f"{out}/results.json exists (pass --force to replace it)")
    levels = [int(c) for c in args.concurrency.split(",")]
    imgs, _, _ = generate(SynthConfig(size=140), "test", 1)
    x1 = preprocess(list(imgs), PreprocessConfig())
    res = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "model": str(args.model),
        "load_before": os.getloadavg(),
        "server": [],
        "in_process": [],
        "seconds": args.seconds,
        "max_batch": MAX_BATCH,
        "max_queue_delay_us": 2000,
    }
    work = Path(tempfile.mkdtemp(prefix="fertrt-serving-bench-"))
    proc, ports, token = start_server(args.model, work, args.detector_model)
    protocols = args.protocols.split(",")
    try:
        for proto in protocols:
            load(proto, ports[proto], 2, 2.0, x1)  # warm-up
        # per level: the server over each protocol, then in-process at that batch size (the server idle),
        # so that the machine's load, shared with other jobs, drifts over all rows of a level alike
        for c in levels:
            for proto in protocols:
                before, cpu0 = batch_stats(ports, token), cpu_seconds(proc.pid)
                lat, counts = load(proto, ports[proto], c, args.seconds, x1)
                cpu = cpu_ms_per_image(cpu0, cpu_seconds(proc.pid), counts["ok"])
                formed = mean_batch(before, batch_stats(ports, token))
                row = {
                    "protocol": proto,
                    "concurrency": c,
                    **counts,
                    "mean_batch": formed,
                    "cpu_ms_per_img": cpu,
                    "p50_ms": float(np.median(lat)) if len(lat) else None,
                    "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
                    "img_per_s": counts["ok"] / counts["seconds"],
                }
                res["server"].append(row)
                print(json.dumps(row), flush=True)
            for threads in (None, 1):
                res["in_process"] += in_process(args.model, [c], args.seconds, x1, threads)
                print(json.dumps(res["in_process"][-1]), flush=True)
        if args.soak_minutes > 0:
            res["soak"] = soak(proc, ports, x1, args.soak_minutes, bool(args.detector_model))
            print(json.dumps(res["soak"]), flush=True)
    finally:
        res["server_exit_code"] = stop_process(proc)
        shutil.rmtree(work, ignore_errors=True)
    base = {}  # the better of the two thread settings: the stricter baseline
    for r in res["in_process"]:
        base[r["batch"]] = max(base.get(r["batch"], 0.0), r["img_per_s"])
    res["ratio_at_8"] = {
        r["protocol"]: r["img_per_s"] / base[8] for r in res["server"] if r["concurrency"] == 8 and 8 in base
    }
    res["load_after"] = os.getloadavg()
    write_json_atomic(out / "results.json", res)
    write_text_atomic(out / "report.md", report(res))
    print(report(res))


def soak(proc, ports, x1, minutes: float, with_faces: bool, bad_every: int = 10):
    """Concurrency 8 over HTTP for `minutes`, RSS sampled every 10 s; growth measured from the first sample
    after one minute of warm-up (allocator pools and Triton's buffers settle) to the last."""
    bad = bad_requests(with_faces)
    samples, done = [], threading.Event()
    total = {"sent": 0, "ok": 0, "errors": 0, "bad_sent": 0, "bad_refused": 0, "lost": 0}

    def sampler():
        t0 = time.perf_counter()
        while not done.wait(10.0):
            samples.append((time.perf_counter() - t0, tree_rss_mb(proc.pid)))

    th = threading.Thread(target=sampler)
    th.start()
    try:
        end = time.perf_counter() + minutes * 60
        while time.perf_counter() < end:
            chunk = min(30.0, max(end - time.perf_counter(), 1.0))
            _, counts = load("http", ports["http"], 8, chunk, x1, bad_every, bad)
            for k in total:
                total[k] += counts[k]
    finally:
        done.set()
        th.join()
    warm = [m["RssAnon"] for t, m in samples if t >= min(60.0, minutes * 60 / 3)] or [m["RssAnon"] for _, m in samples]
    start, end_rss = float(np.median(warm[:3])), float(np.median(warm[-3:]))  # medians of three: 30 s at each end
    return {
        "minutes": minutes,
        "bad_every": bad_every,
        **total,
        "rss_samples": samples,
        "rss_start_mb": start,
        "rss_end_mb": end_rss,
        "rss_growth_pct": (end_rss / start - 1) * 100,
    }


if __name__ == "__main__":
    main()
