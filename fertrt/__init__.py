"""fertrt: facial expression recognition from PyTorch to TensorRT on Jetson and desktop GPUs.

This top-level package stays free of torch and of every optional backend, so that
``fertrt --help`` and the runtime work on a Jetson image that has neither.
"""

__version__ = "0.1.0"

from .errors import FertrtError  # noqa: E402,F401
