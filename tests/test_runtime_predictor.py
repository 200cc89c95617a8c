"""runtime/predictor.py: the Predictor gives the same labels and probabilities on every backend."""

import numpy as np

from fertrt.runtime.predictor import Predictor
from fertrt.train.data.synth import SynthConfig, generate


def test_onnxruntime_and_torch_backends_agree(tiny_run, tiny_onnx):
    run, _ = tiny_run
    imgs, _, _ = generate(SynthConfig(), "test", 16)
    with Predictor.open(tiny_onnx) as ort_p, Predictor.open(run / "best.pt") as pt_p:
        assert ort_p.runner.backend == "onnxruntime" and pt_p.runner.backend == "torch"
        a, b = ort_p.predict(list(imgs)), pt_p.predict(list(imgs))
    assert [r["label"] for r in a] == [r["label"] for r in b]
    pa = np.array([list(r["probabilities"].values()) for r in a])
    pb = np.array([list(r["probabilities"].values()) for r in b])
    assert np.abs(pa - pb).max() < 1e-5
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-6 for r in a)
