"""The lightweight runtime: numpy + onnxruntime, or tensorrt + pycuda/cuda-python. Never torch.

Backends are imported lazily; importing this package needs numpy alone.
"""

from .preprocess import PreprocessConfig, postprocess, preprocess  # noqa: F401


def __getattr__(name):
    # Lazy so that `import fertrt.runtime` does not import onnxruntime/tensorrt.
    if name in ("Predictor", "open_runner"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
