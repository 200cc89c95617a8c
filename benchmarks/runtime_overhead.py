"""The runtime's overhead over a bare onnxruntime.InferenceSession.run on the same batch, and the
face pipeline's per-stage timings on 640x480 frames with 1 and 4 faces, measured side by side.

    python -m fertrt.benchmarks.runtime_overhead MODEL.onnx [--seconds 5]
"""
from __future__ import annotations

import argparse

import numpy as np


def main(argv=None):
    import onnxruntime as ort

    from fertrt.runtime.face import HaarDetector, crop_face
    from fertrt.runtime.preprocess import preprocess
    from fertrt.runtime.predictor import Predictor
    from fertrt.runtime.runners import OrtRunner
    from fertrt.train.data.synth import SynthConfig, generate

    from .harness import time_fn

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args(argv)
    runner = OrtRunner(args.model)
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    imgs, _, _ = generate(SynthConfig(size=140), "test", 4)
    for b in (1, 8):
        x = preprocess(list(imgs[:1]) * b, runner.preprocess)
        # interleave the two so drift in machine load hits both alike
        bare, ours = [], []
        for _ in range(5):
            bare.append(time_fn(lambda: sess.run(["logits"], {"input": x}), 3, None, args.seconds / 10))
            ours.append(time_fn(lambda: runner.infer(x), 3, None, args.seconds / 10))
        bare, ours = np.concatenate(bare), np.concatenate(ours)
        print(f"batch {b}: bare InferenceSession.run p50 {np.median(bare) / 1e3:.1f} us, fertrt runner p50 {np.median(ours) / 1e3:.1f} us, "
              f"overhead {(np.median(ours) / np.median(bare) - 1) * 100:+.2f}%")
    det = HaarDetector()
    pred = Predictor(runner)
    for n in (1, 4):
        frame = np.full((480, 640, 3), 190, np.uint8)
        for j in range(n):
            frame[170:310, 10 + j * 155:150 + j * 155] = imgs[j]
        stages = {"detect": [], "crop": [], "preprocess": [], "infer": [], "postprocess": []}
        import time

        for _ in range(30):
            t0 = time.perf_counter()
            faces = det.detect(frame)
            t1 = time.perf_counter()
            crops = [crop_face(frame, f, 0.1) for f in faces]
            t2 = time.perf_counter()
            pred.predict(crops)
            stages["detect"].append((t1 - t0) * 1e3)
            stages["crop"].append((t2 - t1) * 1e3)
            for k, v in pred.last_timings.items():
                stages[k].append(v)
        print(f"640x480 frame, {n} face(s) pasted ({len(faces)} detected): " + ", ".join(f"{k} {np.median(v):.2f} ms" for k, v in stages.items()))


if __name__ == "__main__":
    main()
