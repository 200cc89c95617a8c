"""Fetch (once) the real TensorRT Python bindings of every supported version, compile the stub libraries
they link against, and run check_version.py over each; used by tests/test_trt_api.py and write_table.py.

Cache: $FERTRT_TRT_API_CACHE or ~/.cache/fertrt/trt_api (outside the repository): wheels/ holds the
unpacked bindings (about 1.1 MB each, 9 MB in all), stubs-<hash>/ the compiled stubs. Reruns are offline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STUB_SOURCE = HERE / "nvinfer_stub.c"

# (PyPI distribution, version, what ships it). 8.5 (JetPack 5.1) has no bindings wheel on PyPI: checked from its docs.
VERSIONS = [
    ("tensorrt-bindings", "8.6.1", "desktop 8.6; JetPack 6.0 ships 8.6.2"),
    ("tensorrt-cu12-bindings", "10.0.1", "first 10.x"),
    ("tensorrt-cu12-bindings", "10.3.0", "JetPack 6.1 / 6.2"),
    ("tensorrt-cu12-bindings", "10.8.0.43", "last before SAME_COMPUTE_CAPABILITY"),
    ("tensorrt-cu12-bindings", "10.9.0.34", "first with SAME_COMPUTE_CAPABILITY"),
    ("tensorrt-cu12-bindings", "10.10.0.31", "10.10"),
    ("tensorrt-cu12-bindings", "10.11.0.33", "10.11"),
    ("tensorrt-cu12-bindings", "10.13.0.35", "JetPack 7 era 10.x"),
    ("tensorrt-cu12-bindings", "11.0.0.114", "first 11.x: strongly typed only"),
    ("tensorrt-cu12-bindings", "11.4.0.106", "newest on PyPI when written"),
]
LIBS = ("nvinfer", "nvonnxparser", "nvinfer_plugin", "nvparsers")


class Unavailable(Exception):
    """The check cannot run here for a reason outside fertrt (no network to PyPI, no wheel for this Python)."""


def cache_dir() -> Path:
    path = Path(os.environ.get("FERTRT_TRT_API_CACHE", Path.home() / ".cache" / "fertrt" / "trt_api"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home on some CI runners: the temp folder still caches within the run
        path = Path(tempfile.gettempdir()) / "fertrt-trt-api"
        path.mkdir(parents=True, exist_ok=True)
    return path


def stub_dir() -> Path:
    """Compile the stubs once per source version: lib{nvinfer,...}.so.{8,10,11}, each with its soname."""
    digest = hashlib.sha256(STUB_SOURCE.read_bytes()).hexdigest()[:12]
    out = cache_dir() / f"stubs-{digest}"
    if (out / ".complete").is_file():
        return out
    compiler = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if not compiler:
        raise RuntimeError("the trt_api tests compile small stub libraries with gcc: install it (apt install gcc)")
    tmp = Path(tempfile.mkdtemp(prefix="stubs-", dir=_mkdir(cache_dir())))
    for major in (8, 10, 11):
        for lib in LIBS:
            name = f"lib{lib}.so.{major}"
            subprocess.run(
                [compiler, "-shared", "-fPIC", "-O1", f"-Wl,-soname,{name}", "-o", str(tmp / name), str(STUB_SOURCE)],
                check=True,
                capture_output=True,
                text=True,
            )
    (tmp / ".complete").write_text("ok\n")
    if out.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)
    return out


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def wheel_dir(dist: str, version: str) -> Path:
    """The unpacked bindings wheel for this Python (downloaded once with pip)."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    out = cache_dir() / "wheels" / f"{dist}-{version}-{tag}"
    if (out / ".complete").is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="dl-", dir=_mkdir(cache_dir())) as dl:
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--timeout",
                "20",
                "--retries",
                "1",
                "--dest",
                dl,
                f"{dist}=={version}",
            ],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(dl).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            text = r.stdout + r.stderr
            if any(
                s in text
                for s in (
                    "NewConnectionError",
                    "Could not fetch URL",
                    "Max retries exceeded",
                    "Temporary failure in name",
                    "Network is unreachable",
                    "ConnectTimeout",
                    "ReadTimeout",
                )
            ):
                raise Unavailable(f"pip cannot reach PyPI to download {dist}=={version}")
            if "No matching distribution" in text or "from versions: none" in text or not wheels:
                raise Unavailable(
                    f"{dist}=={version} has no wheel for Python {sys.version_info.major}.{sys.version_info.minor} on this platform"
                )
            raise RuntimeError(f"pip download {dist}=={version} failed:\n{text[-2000:]}")
        tmp = Path(tempfile.mkdtemp(prefix="whl-", dir=_mkdir(cache_dir() / "wheels")))
        with zipfile.ZipFile(wheels[0]) as z:
            z.extractall(tmp)
    (tmp / ".complete").write_text(wheels[0].name + "\n")
    if out.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)
    return out


_OFFLINE: list[str] = []  # once PyPI is found unreachable, the other versions do not wait for their own timeouts


def run_version(dist: str, version: str, stubs: Path, timeout=120) -> dict:
    """check_version.py over one version in a fresh interpreter (the stubs must be on LD_LIBRARY_PATH at start)."""
    try:
        if _OFFLINE and not any((cache_dir() / "wheels").glob(f"{dist}-{version}-*/.complete")):
            raise Unavailable(_OFFLINE[0])
        site = wheel_dir(dist, version)
    except Unavailable as exc:
        if "cannot reach PyPI" in str(exc):
            _OFFLINE.append(str(exc))
        return {"version": version, "unavailable": str(exc)}
    with tempfile.TemporaryDirectory(prefix="trt-api-") as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(stubs), env.get("LD_LIBRARY_PATH", "")) if p)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), str(REPO), env.get("PYTHONPATH", "")) if p)
        r = subprocess.run(
            [sys.executable, str(HERE / "check_version.py"), str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp,
        )
        if r.returncode != 0 or not out.is_file():
            return {"version": version, "crashed": f"exit {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"}
        result = json.loads(out.read_text())
    result["dist"], result["wheel_version"] = dist, version
    return result


def run_all(workers: int | None = None) -> dict[str, dict]:
    """{version: result} for every version in VERSIONS; two at a time on a 2-core machine."""
    stubs = stub_dir()
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda v: run_version(v[0], v[1], stubs), VERSIONS))
    return {v[1]: r for v, r in zip(VERSIONS, results)}
