"""Jetson power, energy and temperature from `tegrastats` (no TensorRT tool reports power).

Line formats differ by module: Orin Nano/NX report `VDD_IN 5017mW/5017mW VDD_CPU_GPU_CV ...`,
AGX Orin `VDD_GPU_SOC 2396mW/2396mW ... VIN_SYS_5V0 ...`, older modules `POM_5V_IN 3000/3000`.
Temperatures appear as `cpu@45.5C gpu@44.2C` (or `CPU@..`/`tj@..`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading

_RAIL = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?\b")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?[\d.]+)C\b")
_GPU = re.compile(r"GR3D_FREQ\s+(\d+)%")
_RAM = re.compile(r"RAM\s+(\d+)/(\d+)MB")
# rails that measure the whole module input, most complete first
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")  # module input rails; AGX Orin has none: its rails are summed


def parse_line(line: str) -> dict:
    """One tegrastats line -> {'rails_mw': {rail: instantaneous mW}, 'temps_c': {...}, 'gpu_util', 'ram_mb', 'total_mw'}."""
    rails = {name: int(now) for name, now, _avg in _RAIL.findall(line) if name not in ("RAM", "SWAP", "IRAM", "lfb")}
    temps = {name.lower(): float(v) for name, v in _TEMP.findall(line)}
    total = next((rails[r] for r in TOTAL_RAILS if r in rails), None)
    if total is None and rails:
        total = sum(rails.values())  # modules without an input rail: sum of what is reported
    gpu = _GPU.search(line)
    ram = _RAM.search(line)
    return {
        "rails_mw": rails,
        "temps_c": temps,
        "total_mw": total,
        "gpu_util": int(gpu.group(1)) if gpu else None,
        "ram_mb": int(ram.group(1)) if ram else None,
    }


def summarize(samples: list[dict], seconds: float, inferences: int) -> dict:
    power = [s["total_mw"] for s in samples if s.get("total_mw") is not None]
    temps = {}
    for s in samples:
        for k, v in s["temps_c"].items():
            temps[k] = max(temps.get(k, float("-inf")), v)
    mean_mw = sum(power) / len(power) if power else None
    energy_j = mean_mw / 1000.0 * seconds if mean_mw is not None else None
    return {
        "samples": len(samples),
        "mean_power_w": None if mean_mw is None else mean_mw / 1000.0,
        "energy_j": energy_j,
        "energy_per_inference_mj": None if energy_j is None or not inferences else energy_j / inferences * 1e3,
        "max_temps_c": temps,
    }


class TegrastatsSampler:
    """Runs `tegrastats --interval MS` in the background during a timed run."""

    def __init__(self, interval_ms: int = 100):
        self.interval_ms = interval_ms
        self.samples: list[dict] = []
        self.proc = None
        self.thread = None

    @staticmethod
    def available() -> bool:
        return shutil.which("tegrastats") is not None

    def __enter__(self):
        if not self.available():
            return self
        self.proc = subprocess.Popen(
            ["tegrastats", "--interval", str(self.interval_ms)], stdout=subprocess.PIPE, text=True
        )
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            self.samples.append(parse_line(line))

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.thread.join(timeout=2)


def clocks_state() -> dict:
    """nvpmodel mode and whether jetson_clocks has locked the clocks (None off Jetson)."""
    state = {"nvpmodel": None, "clocks_locked": None}
    if shutil.which("nvpmodel"):
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"NV Power Mode:\s*(\S+)", out)
        state["nvpmodel"] = m.group(1) if m else out.strip()[:80]
    if shutil.which("jetson_clocks"):
        out = subprocess.run(["jetson_clocks", "--show"], capture_output=True, text=True, timeout=10).stdout
        # locked clocks show MinFreq == MaxFreq == CurrentFreq for the GPU
        m = re.search(r"GPU MinFreq=(\d+) MaxFreq=(\d+) CurrentFreq=(\d+)", out)
        state["clocks_locked"] = bool(m and m.group(1) == m.group(2) == m.group(3))
    return state
