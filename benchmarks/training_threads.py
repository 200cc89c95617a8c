"""Training images/s under competing load, for a few torch CPU thread settings.

    python -m fertrt.benchmarks.training_threads -o /tmp/threads [--seconds 12] [--loads 0,1,2]

Why: on a 2-core machine `make demo` trained 9x slower with a load of about 2, not 2x. Each row trains
LNLAttenNet (batch 64, the trainer's augmentation) in a fresh process, with 0, 1 and 2 busy processes
(`python -c "while True: pass"`, started and killed here) competing for the cores. A setting that
degrades in proportion to the load keeps about 1/(1 + load/cores) of its quiet speed.

Environment settings reach the OpenMP runtime only before it loads (when torch is imported), so each
setting runs in its own process. torch's CPU wheels for Linux x86 ship GNU OpenMP (libgomp): it honours
OMP_WAIT_POLICY and GOMP_SPINCOUNT; KMP_BLOCKTIME is read by Intel's OpenMP only (the runtime found is
printed and recorded, and KMP_BLOCKTIME rows are measured instead where it is Intel's).
The "0 competing" rows are only as quiet as the machine: the load average is recorded with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

GNU_SETTINGS = [  # (label, intra-op threads, environment)
    ("2 threads, OpenMP defaults", 2, {}),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, OMP_WAIT_POLICY=ACTIVE", 2, {"OMP_WAIT_POLICY": "ACTIVE"}),
    ("2 threads, GOMP_SPINCOUNT=10000", 2, {"GOMP_SPINCOUNT": "10000"}),
    ("2 threads, GOMP_SPINCOUNT=30000", 2, {"GOMP_SPINCOUNT": "30000"}),
    ("2 threads, GOMP_SPINCOUNT=100000", 2, {"GOMP_SPINCOUNT": "100000"}),
    ("1 thread", 1, {}),
]
INTEL_SETTINGS = GNU_SETTINGS[:3] + [("2 threads, KMP_BLOCKTIME=0", 2, {"KMP_BLOCKTIME": "0"}), GNU_SETTINGS[-1]]
SPIN_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ------------------------------------------------------------------ child side (one setting, one load)
def openmp_runtime() -> str:
    """The OpenMP library this process has loaded (call after importing torch)."""
    with open("/proc/self/maps") as maps:
        names = {line.rsplit("/", 1)[-1].strip() for line in maps if "omp" in line.rsplit("/", 1)[-1]}
    return ", ".join(sorted(names)) or "none found"


def measure(threads: int, seconds: float, batch_size: int = 64) -> dict:
    """Images/s of full training steps (augment, forward, joint loss, backward, AdamW) for `seconds`."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from fertrt.runtime.preprocess import normalize
    from fertrt.train.augment import AugmentConfig, augment_batch
    from fertrt.train.data.synth import SynthConfig, generate
    from fertrt.train.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("lnlattennet").train()
    pre = model.default_cfg.preprocess
    imgs, labels, _ = generate(SynthConfig(size=pre.input_size[0]), "train", batch_size * 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)

    def step(k):
        sel = slice((k % 4) * batch_size, (k % 4 + 1) * batch_size)
        x = torch.from_numpy(normalize(augment_batch(imgs[sel], rng, AugmentConfig()), pre))
        loss, _ = model.joint_loss(model(x, return_aux=True), torch.from_numpy(labels[sel]), F.cross_entropy)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for k in range(2):  # warm-up: allocator, oneDNN primitives, OpenMP pool
        step(k)
    n, t0, cpu0 = 0, time.perf_counter(), _cpu_seconds()
    while time.perf_counter() - t0 < seconds:
        step(n)
        n += 1
    elapsed, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    # CPU time per image does not depend on how much of the machine others take, unless threads spin while
    # waiting: then it grows with the load, and that spinning is what takes the cores from the work
    return {
        "images_per_second": n * batch_size / elapsed,
        "cpu_ms_per_image": cpu * 1000 / (n * batch_size),
        "steps": n,
        "seconds": elapsed,
        "torch_threads": torch.get_num_threads(),
        "openmp": openmp_runtime(),
    }


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


# ------------------------------------------------------------------ parent side
def start_busy(n: int) -> list:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_busy(procs) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def run_setting(threads: int, env_extra: dict, seconds: float) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in SPIN_VARIABLES}
    env.update(env_extra)
    env["OMP_NUM_THREADS"] = str(threads)
    cmd = [
        sys.executable,
        "-m",
        "fertrt.benchmarks.training_threads",
        "--measure",
        str(threads),
        "--seconds",
        str(seconds),
    ]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds * 20 + 300)
    if r.returncode != 0:
        raise RuntimeError(f"measurement failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def probe_runtime() -> str:
    code = "import torch; from fertrt.benchmarks.training_threads import openmp_runtime; print(openmp_runtime())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return r.stdout.strip() or f"unknown ({r.stderr.strip()[-200:]})"


def run_all(loads, seconds: float, repeats: int = 1, log=print) -> dict:
    """Every setting under every load; with repeats, the settings take turns (round robin) so that a change in
    the machine's other load hits them alike, and each row keeps the median."""
    uptime_start = _uptime()
    runtime = probe_runtime()
    settings = INTEL_SETTINGS if "iomp" in runtime else GNU_SETTINGS
    log(f"OpenMP runtime: {runtime}; {os.cpu_count()} CPUs; {len(settings)} settings x loads {list(loads)}")
    rows = []
    for load in loads:  # busy processes started once per load, every setting measured under them
        busy = start_busy(load)
        try:
            time.sleep(1.0)  # let the scheduler see them
            samples = {label: [] for label, _, _ in settings}
            for _ in range(repeats):
                for label, threads, env_extra in settings:
                    before = os.getloadavg()[0]
                    res = run_setting(threads, env_extra, seconds)
                    samples[label].append({"loadavg_1min_before": before, **res})
                    log(
                        f"{load} competing | {label:<38} | {res['images_per_second']:6.1f} img/s "
                        f"| {res['cpu_ms_per_image']:5.1f} CPU ms/img ({res['steps']} steps, load average "
                        f"{before:.2f} before)"
                    )
            for label, threads, env_extra in settings:
                rows.append(
                    {
                        "setting": label,
                        "threads": threads,
                        "env": env_extra,
                        "competing": load,
                        "samples": samples[label],
                        **{
                            key: statistics.median(x[key] for x in samples[label])
                            for key in ("images_per_second", "cpu_ms_per_image")
                        },
                    }
                )
        finally:
            stop_busy(busy)
    return {
        "openmp_runtime": runtime,
        "cpu_count": os.cpu_count(),
        "seconds_per_sample": seconds,
        "repeats": repeats,
        "rows": rows,
        "uptime_start": uptime_start,
        "python": sys.version.split()[0],
    }


def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average %.2f %.2f %.2f" % os.getloadavg()


def format_table(result: dict) -> str:
    """Markdown: one row per setting, images/s per load, the share of the 0-competing speed kept, and CPU ms per
    image (constant when nothing spins)."""
    loads = sorted({r["competing"] for r in result["rows"]})
    by = {(r["setting"], r["competing"]): r["images_per_second"] for r in result["rows"]}
    cpu = {(r["setting"], r["competing"]): r.get("cpu_ms_per_image") for r in result["rows"]}
    settings = list(dict.fromkeys(r["setting"] for r in result["rows"]))
    head = "| setting | " + " | ".join(f"{n} competing img/s" for n in loads)
    kept = [n for n in loads if n and 0 in loads]
    head += "".join(f" | kept at {n}" for n in kept) + " | CPU ms/img at " + ", ".join(map(str, loads)) + " |"
    lines = [head, "|---|" + "---:|" * (len(loads) + len(kept) + 1)]
    cores = result["cpu_count"] or 1
    for s in settings:
        cells = [f"{by[(s, n)]:.1f}" if (s, n) in by else "-" for n in loads]
        cells += [f"{by[(s, n)] / by[(s, 0)]:.2f}" if (s, n) in by and by.get((s, 0)) else "-" for n in kept]
        cells.append(" / ".join(f"{cpu[(s, n)]:.1f}" if cpu.get((s, n)) else "-" for n in loads))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    share = ", ".join(f"{n}: {cores / (cores + n):.2f}" for n in kept)
    lines += ["", f"Proportional share of {cores} cores with N competing busy processes, cores / (cores + N): {share}."]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", help="folder for results.json and table.md")
    ap.add_argument("--force", action="store_true", help="replace the results of an earlier run in OUT")
    ap.add_argument("--seconds", type=float, default=12.0, help="measured seconds per row (after 2 warm-up steps)")
    ap.add_argument("--repeats", type=int, default=2, help="measurements per row, taken in turns; the median is kept")
    ap.add_argument("--loads", default="0,1,2", help="comma-separated numbers of competing busy processes")
    ap.add_argument("--measure", type=int, metavar="THREADS", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.seconds)))
        return 0
    try:
        loads = [int(n) for n in args.loads.split(",")]
    except ValueError:
        ap.error(f"--loads {args.loads!r}: expected comma-separated integers")
    bad_range = any(n < 0 or n > 64 for n in loads) or not 0 < args.seconds <= 600 or not 1 <= args.repeats <= 20
    if not args.out or bad_range:
        ap.error("expected -o FOLDER, --loads of integers 0..64, --seconds in (0, 600] and --repeats 1..20")
    from fertrt.fileio import make_output_dir, write_json_atomic, write_text_atomic

    out = make_output_dir(args.out, "folder for the results")
    if (out / "results.json").exists() and not args.force:
        ap.error(f"{out / 'results.json'} exists; pass --force to replace it")
    result = run_all(loads, args.seconds, args.repeats)
    result["uptime_end"] = _uptime()
    table = format_table(result)
    write_json_atomic(out / "results.json", result)
    head = f"OpenMP runtime: {result['openmp_runtime']}; at the start: {result['uptime_start']}"
    write_text_atomic(out / "table.md", f"{head}\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
