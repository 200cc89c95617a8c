"""What numpy 1.26 (the project's pin: Triton's Python backend, PyTriton and JetPack need numpy < 2) costs
against numpy 2.x on fertrt's own hot paths, side by side in one run.

    python -m fertrt.benchmarks.numpy_cost MODEL.onnx OTHER_PYTHON [--rounds 5]

OTHER_PYTHON is the interpreter of a second environment with the other numpy (and the same onnxruntime and
opencv) where fertrt imports (e.g. the same editable install's .pth copied into it). Each round runs the
micro-benchmark once in each environment, alternating, so that machine load drifts over both alike; the
table gives each environment's median over rounds and the ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

CASES = ("prepare_normalize_b32", "normalize_b32", "postprocess_b32", "ort_infer_b8", "blazeface_decode_nms")


def measure(model: str, seconds: float = 1.0) -> dict:
    """Median time in microseconds of each case, in this interpreter."""
    import time

    from fertrt.runtime.detectors import DETECTORS, blazeface_anchors, decode_blazeface, nms
    from fertrt.runtime.preprocess import PreprocessConfig, normalize, postprocess, prepare_images
    from fertrt.runtime.runners import open_runner

    rng = np.random.default_rng(0)
    cfg = PreprocessConfig()
    crops = [rng.integers(0, 255, (140, 140, 3), dtype=np.uint8) for _ in range(32)]
    batch = prepare_images(crops, cfg)
    logits = rng.standard_normal((32, 7)).astype(np.float32)
    names = ("a", "b", "c", "d", "e", "f", "g")
    det = DETECTORS["blazeface-short"]
    anchors = blazeface_anchors(det.input_size, det.anchor_layers)
    regs = rng.standard_normal((len(anchors), 16)).astype(np.float32) * 5
    scores = rng.standard_normal((len(anchors), 1)).astype(np.float32)
    runner = open_runner(model, threads=1)
    x8 = normalize(batch[:8], cfg)

    def decode():
        b, s, k = decode_blazeface(regs, scores, anchors, 0.5)
        nms(b, s, k, det.nms_iou, det.weighted_nms, det.max_faces)

    fns = {
        "prepare_normalize_b32": lambda: normalize(prepare_images(crops, cfg), cfg),
        "normalize_b32": lambda: normalize(batch, cfg),
        "postprocess_b32": lambda: postprocess(logits, names),
        "ort_infer_b8": lambda: runner.infer(x8),
        "blazeface_decode_nms": decode,
    }
    out = {}
    for name in CASES:
        fn = fns[name]
        for _ in range(3):
            fn()
        times, stop = [], time.perf_counter() + seconds
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times) * 1e6)
    out["numpy"] = np.__version__
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("other_python")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    code = (
        "import json; from fertrt.benchmarks.numpy_cost import measure; "
        f"print(json.dumps(measure({args.model!r}, {args.seconds})))"
    )
    runs = {sys.executable: [], args.other_python: []}
    for _ in range(args.rounds):
        for py in runs:
            r = subprocess.run([py, "-c", code], capture_output=True, text=True, check=True)
            runs[py].append(json.loads(r.stdout.strip().splitlines()[-1]))
    (a, ra), (b, rb) = runs.items()
    va, vb = ra[0]["numpy"], rb[0]["numpy"]
    print(f"| case | numpy {va} (us) | numpy {vb} (us) | {va} / {vb} |\n|---|---|---|---|")
    result = {"numpy": [va, vb], "rounds": args.rounds, "cases": {}}
    for case in CASES:
        ma, mb = np.median([r[case] for r in ra]), np.median([r[case] for r in rb])
        result["cases"][case] = {va: ma, vb: mb, "ratio": ma / mb}
        print(f"| {case} | {ma:.1f} | {mb:.1f} | {ma / mb:.2f} |")
    if args.json:
        from fertrt.fileio import write_json_atomic

        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
