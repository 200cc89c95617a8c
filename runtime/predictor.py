"""`Predictor`: images in, labels and probabilities out, on any backend (torch-free)."""

from __future__ import annotations

import time


from .preprocess import postprocess, preprocess
from .runners import Runner, open_runner


class Predictor:
    def __init__(self, runner: Runner):
        self.runner = runner
        self.class_names = runner.class_names
        self.preprocess_cfg = runner.preprocess
        self.last_timings: dict[str, float] = {}

    @classmethod
    def open(cls, path, backend: str = "auto", provider: str = "cpu", **kwargs) -> "Predictor":
        """`.engine` -> TensorRT, `.onnx` -> ONNX Runtime (`provider` cpu/cuda/tensorrt/auto), `.pt` -> PyTorch."""
        return cls(open_runner(path, backend=backend, provider=provider, **kwargs))

    def predict(self, images) -> list[dict]:
        """RGB uint8 images of any size (grey and RGBA are converted) -> one dict per image:
        label, class_id, confidence, probabilities, and region_weights when the model exports them."""
        if len(images) == 0:
            return []
        t0 = time.perf_counter()
        x = preprocess(list(images), self.preprocess_cfg)
        t1 = time.perf_counter()
        outputs = self.runner.infer_outputs(x)
        t2 = time.perf_counter()
        results = postprocess(outputs["logits"], self.class_names)
        if "region_weights" in outputs:
            for r, w in zip(results, outputs["region_weights"]):
                r["region_weights"] = [float(v) for v in w]
        t3 = time.perf_counter()
        self.last_timings = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return results

    def close(self):
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
