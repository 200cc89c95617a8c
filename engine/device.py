"""Facts about the device: GPU name and compute capability, Jetson L4T/JetPack release, and the whole environment
(versions, CPU, GPU, tools) that `fertrt doctor` and the benchmark results record."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

# L4T major release -> JetPack series (NVIDIA's release tables)
_JETPACK = {32: "4.x", 34: "5.0 (developer preview)", 35: "5.1.x", 36: "6.x", 38: "7.x"}


def parse_nv_tegra_release(text: str) -> dict | None:
    """'# R35 (release), REVISION: 4.1, GCID: ...' -> {'l4t': '35.4.1', 'jetpack': '5.1.x'}."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return None
    major = int(m.group(1))
    return {"l4t": f"{major}.{m.group(2)}", "jetpack": _JETPACK.get(major, "unknown")}


def jetson_release(path="/etc/nv_tegra_release") -> dict | None:
    p = Path(path)
    return parse_nv_tegra_release(p.read_text(errors="replace")) if p.is_file() else None


def gpu_info() -> dict:
    """{'name', 'compute_capability', 'integrated'} of GPU 0 through pycuda or cuda-python; {} when neither works."""
    return _gpu_and_binding()[0] or {}


def _run(cmd, timeout=5) -> str | None:
    """A tool's stdout, or None when it is missing, fails or hangs."""
    if not shutil.which(cmd[0]):
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _version_of(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - a broken install is reported as missing
        return None
    return str(getattr(mod, "__version__", "installed"))


def _distribution_version(name: str) -> str | None:
    """An installed distribution's version without importing it (importing torch takes seconds, and the device
    side never imports torch)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpu_and_binding() -> tuple[dict | None, str]:
    """(GPU 0's {'name', 'compute_capability', 'integrated'} or None, the CUDA binding in use or why there is none)."""
    try:
        from fertrt.runtime.trt_backend import cuda_api

        cuda = cuda_api()
        return cuda.device_info() or None, cuda.name
    except Exception as exc:  # noqa: BLE001 - no GPU stack: reported, not raised
        return None, str(exc)


def environment() -> dict:
    """Versions, CPU, GPU, Jetson release and tools of this machine: the environment section of `fertrt doctor`'s
    report and of every benchmark's results."""
    from fertrt import __version__

    env = {
        "fertrt": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
    }
    for module in ("numpy", "cv2", "onnxruntime", "onnx", "tensorrt", "pycuda"):
        env[module] = _version_of(module)
    env["cuda-python"] = _version_of("cuda")
    env["torch"] = _distribution_version("torch")
    env["jetson"] = jetson_release()
    smi = _run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"])
    env["nvidia_smi"] = smi.splitlines()[0] if smi else None
    env["nvcc"] = (_run(["nvcc", "--version"]) or "").splitlines()[-1:] or None
    if env["jetson"]:
        env["power_mode"] = _run(["nvpmodel", "-q"])
        clocks = _run(["jetson_clocks", "--show"])
        env["clocks"] = clocks.splitlines()[:3] if clocks else "unknown (jetson_clocks --show needs sudo)"
    env["gpu"], env["cuda_api"] = _gpu_and_binding()
    return env
