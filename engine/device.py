"""Facts about the device: GPU name and compute capability, Jetson L4T/JetPack release."""
from __future__ import annotations

import re
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
    try:
        from fertrt.runtime.trt_backend import cuda_api

        cuda = cuda_api()
        return cuda.device_info()
    except Exception:  # noqa: BLE001 - no GPU stack: the caller reports what is missing
        return {}
