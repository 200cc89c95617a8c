"""The runtime's overhead over a bare onnxruntime.InferenceSession.run on the same batch, and the
face pipeline's per-stage timings on 640x480 frames with 1 and 4 faces, measured side by side.

    python -m fertrt.benchmarks.runtime_overhead MODEL.onnx [--seconds 5]
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None):
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
    # The same session underneath both, so the difference is the runtime's own work (checks, dict
    # building); two sessions on 2 cores would also measure their thread pools spinning against each other.
    sess = runner.session
    imgs, _, _ = generate(SynthConfig(size=140), "test", 4)
    for b in (1, 8):
        x = preprocess(list(imgs[:1]) * b, runner.preprocess)
        # interleave the two so drift in machine load hits both alike
        bare, ours = [], []
        for _ in range(5):
            bare.append(time_fn(lambda: sess.run(["logits"], {"input": x}), 3, None, args.seconds / 10))
            ours.append(time_fn(lambda: runner.infer(x), 3, None, args.seconds / 10))
        bare, ours = np.concatenate(bare), np.concatenate(ours)
        print(
            f"batch {b}: bare InferenceSession.run p50 {np.median(bare) / 1e3:.1f} us, fertrt runner p50 {np.median(ours) / 1e3:.1f} us, "
            f"overhead {(np.median(ours) / np.median(bare) - 1) * 100:+.2f}%"
        )
    det = HaarDetector()
    pred = Predictor(runner)
    # cartoon faces are not all found by the Haar cascade: keep candidates it finds on their own
    candidates, _, _ = generate(SynthConfig(size=140), "test", 40)
    found = []
    for face in candidates:
        probe = np.full((480, 640, 3), 190, np.uint8)
        probe[170:310, 250:390] = face
        if len(det.detect(probe)) == 1:
            found.append(face)
        if len(found) == 4:
            break
    for n in (1, 4):
        frame = np.full((480, 640, 3), 190, np.uint8)
        for j in range(n):
            frame[170:310, 10 + j * 155 : 150 + j * 155] = found[j]
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
        total = sum(np.median(v) for v in stages.values())
        print(
            f"640x480 frame, {n} face(s) ({len(faces)} detected), medians of 30: "
            + ", ".join(f"{k} {np.median(v):.2f} ms" for k, v in stages.items())
            + f"; total {total:.2f} ms"
        )


if __name__ == "__main__":
    main()
