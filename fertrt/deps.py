"""The device's own packages: fertrt uses the cv2, onnxruntime and tensorrt that are importable and, when
one is missing, says which and how to get it on this machine (this JetPack, or a desktop).

They are not hard dependencies on purpose: a pip-installed opencv-python-headless or onnxruntime would
shadow JetPack's own cv2 (built with GStreamer, which camera pipelines such as nvarguscamerasrc need) and
NVIDIA's Jetson build of onnxruntime-gpu. Every device command imports them through `require`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .errors import FertrtError

# pip names of the desktop wheels (the `desktop` extra); tensorrt has none we install for the user
PIP_NAMES = {"cv2": "opencv-python-headless", "onnxruntime": "onnxruntime", "onnx": "onnx", "tensorrt": "tensorrt"}


def jetpack_series(path="/etc/nv_tegra_release") -> str | None:
    """'5.1', '6', '7' on a Jetson (from its L4T release), else None. No import of the engine package."""
    import re

    p = Path(path)
    if not p.is_file():
        return None
    m = re.search(r"R(\d+)\s*\(release\)", p.read_text(errors="replace"))
    major = int(m.group(1)) if m else 0
    return {35: "5.1", 36: "6", 38: "7"}.get(major, "unknown")


def _jetson_help(module: str, jetpack: str) -> str:
    """How to get a device package on a Jetson: JetPack's own build first, never a wheel that shadows it."""
    venv = (
        "in a virtual environment, make it with `python3 -m venv --system-site-packages` so that "
        "JetPack's packages stay visible"
    )
    if module == "cv2":
        return (
            f"JetPack's OpenCV (with GStreamer, for CSI/USB cameras): `sudo apt install python3-opencv` "
            f'(or nvidia-opencv); {venv}. `pip install "opencv-python-headless<5"` also works for files, '
            "but has no GStreamer, so camera pipelines will not open"
        )
    if module == "onnxruntime":
        index = {"6": " (index https://pypi.jetson-ai-lab.io/jp6/cu126)"}.get(jetpack, "")
        return (
            f"NVIDIA's Jetson build of onnxruntime-gpu for JetPack {jetpack}{index}, from the Jetson Zoo / "
            "Jetson AI Lab wheels; or `pip install onnxruntime` (CPU only)"
        )
    if module == "tensorrt":
        return f"JetPack {jetpack} ships TensorRT: `sudo apt install python3-libnvinfer` (or nvidia-tensorrt); {venv}"
    return f'`pip install "fertrt[jetson]" -c constraints/jetpack-{jetpack}.txt` from the fertrt repository'


def _desktop_help(module: str) -> str:
    if module == "tensorrt":
        return '`pip install "fertrt[trt]"` (NVIDIA\'s tensorrt wheels with pycuda) on a desktop GPU host'
    return f'`pip install "fertrt[desktop]"` (or `pip install {PIP_NAMES.get(module, module)}`)'


def install_help(module: str, jetpack: str | None = None) -> str:
    jetpack = jetpack if jetpack is not None else jetpack_series()
    return _jetson_help(module, jetpack) if jetpack else _desktop_help(module)


def require(module: str, purpose: str):
    """Import a device package or raise FertrtError naming it, what needs it and how to install it here."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) in (module, None) and "No module named" in str(exc)
        state = "is not installed" if missing else f"is installed but does not import ({exc})"
        raise FertrtError(
            f"{purpose} needs the Python module {module!r}, which {state}. Install: {install_help(module)}"
        ) from None
