"""engine/device.py: Jetson release files and the environment report that doctor and bench share."""

import subprocess
import sys

import numpy as np

from fertrt.engine.device import parse_nv_tegra_release


def test_nv_tegra_release():
    assert parse_nv_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == {
        "l4t": "35.4.1",
        "jetpack": "5.1.x",
    }
    assert parse_nv_tegra_release("# R36 (release), REVISION: 4.0, GCID: 1, BOARD: generic")["jetpack"] == "6.x"
    assert parse_nv_tegra_release("garbage") is None


def test_one_environment_for_doctor_and_bench():
    """doctor's report and every benchmark's results record the same environment, from one function, with the
    fields both read: versions (doctor's checks), CPU and GPU (the bench report's first line), tools."""
    import os
    import platform

    import onnxruntime

    from fertrt.benchmarks import harness
    from fertrt.engine import device

    assert harness.environment is device.environment
    env = device.environment()
    assert env["python"] == platform.python_version() and env["machine"] == platform.machine()
    assert env["cpu_count"] == os.cpu_count() and env["cpu"]
    assert env["onnxruntime"] == onnxruntime.__version__ and env["numpy"] == np.__version__
    assert {
        "fertrt",
        "onnx",
        "tensorrt",
        "torch",
        "pycuda",
        "cuda-python",
        "jetson",
        "nvidia_smi",
        "nvcc",
        "gpu",
        "cuda_api",
    } <= set(env)
    if env["gpu"] is None:  # no CUDA binding here: the reason is what doctor's cuda check prints
        assert "cuda-python or pycuda" in env["cuda_api"]


def test_the_environment_does_not_import_torch():
    """The device side never imports torch: the environment reads torch's version from its installed metadata."""
    code = (
        "import sys; from fertrt.engine.device import environment; env = environment(); "
        "print('torch' in sys.modules, env['torch'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.split()
    from importlib import metadata

    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        installed = None
    assert out == ["False", str(installed)]
