"""The device half on the devices' own Pythons (issue 20).

Marked `device_envs` (run alone: pytest -m device_envs tests/test_device_envs.py):
  * for JetPack 5.1 (CPython 3.8) and 6.x (CPython 3.10): a venv of that interpreter from pyenv with the
    JetPack's constraints file, holding the wheel of this tree with its `jetson` extra plus the x86 builds of
    the same onnxruntime/OpenCV versions (standing in for NVIDIA's Jetson onnxruntime-gpu and JetPack's cv2);
    there `infer` (default detector), `bench`, `doctor` and `build-engine` run as a user runs them, and no
    training module gets imported;
  * for JetPack 5.1, 6.x and 7: the documented install, `pip install "fertrt[jetson]" -c constraints/jetpack-X.txt`,
    resolved by pip for linux_aarch64 at that JetPack's glibc under the matching interpreter (--only-binary).
Venvs are cached in ~/.cache/fertrt/device-envs (keyed by interpreter, constraints and requirements), so a rerun
only reinstalls fertrt itself. An interpreter that is absent skips its tests with the reason.
The rest (unmarked) are quick checks of the pieces: the missing-package messages, the doctor's shipped graphs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("FERTRT_CACHE", Path.home() / ".cache" / "fertrt")) / "device-envs"
# JetPack -> (Python, glibc of its Ubuntu: 20.04 / 22.04 / 24.04)
JETPACKS = {"5.1": ("3.8", (2, 31)), "6": ("3.10", (2, 35)), "7": ("3.12", (2, 39))}
VENV_JETPACKS = ("5.1", "6")  # the ones whose Python the CI image has for a runnable venv (7 is resolved only)
TRAINING_PACKAGES = ("torch", "modelopt", "tflite2onnx", "onnxslim", "matplotlib", "onnx_graphsurgeon", "polygraphy")
STAND_INS = ("onnxruntime", "opencv-python-headless")  # desktop builds of what a Jetson has from NVIDIA / JetPack

# Runs one fertrt command in the venv and reports which modules it imported.
PROBE = """
import json, sys
from fertrt.cli import main
rc = main(sys.argv[1:])
mods = sorted(m for m in sys.modules if m.startswith("fertrt.") or m.split(".")[0] in {heavy!r})
print("FERTRT_PROBE " + json.dumps({{"rc": rc, "modules": mods}}))
""".format(heavy=TRAINING_PACKAGES)


def find_python(version: str):
    """pyenv's CPython `version` (3.8 -> versions/3.8.*/bin/python3.8), or $FERTRT_PYTHON_3_8; None when absent."""
    env = os.environ.get("FERTRT_PYTHON_" + version.replace(".", "_"))
    if env:
        return Path(env) if Path(env).is_file() else None
    roots = [os.environ.get("PYENV_ROOT"), str(Path.home() / ".pyenv")]
    if shutil.which("pyenv"):
        r = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        roots.insert(0, r.stdout.strip() if r.returncode == 0 else None)
    for root in filter(None, roots):
        hits = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python{version}"))
        if hits:
            return Path(hits[-1])
    return None


def require_python(version: str, jetpack: str) -> Path:
    py = find_python(version)
    if py is None:
        override = "FERTRT_PYTHON_" + version.replace(".", "_")
        pytest.skip(
            f"CPython {version} not found (pyenv versions/{version}.* or ${override}): "
            f"the JetPack {jetpack} device environment is not tested on this machine"
        )
    return py


def run(cmd, timeout=900, **kwargs):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    return r


@pytest.fixture(scope="session")
def fertrt_wheel(tmp_path_factory):
    """The wheel of this tree (pure Python; package data included), built once per session."""
    out = tmp_path_factory.mktemp("wheel")
    r = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "-q",
            "-w",
            out,
            ROOT,
        ]
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = out.glob("fertrt-*.whl")
    return wheel


def wheel_requirements(wheel: Path) -> list:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [line for line in lines if line.startswith(("Requires-Dist:", "Requires-Python:"))]


def device_venv(jetpack: str, wheel: Path) -> Path:
    """A cached venv of the JetPack's Python with fertrt[jetson] + stand-ins under its constraints; fertrt
    itself reinstalled from `wheel` every time (the cache key holds everything else it depends on)."""
    version = JETPACKS[jetpack][0]
    py = require_python(version, jetpack)
    constraints = ROOT / "constraints" / f"jetpack-{jetpack}.txt"
    pins = [f"{k}=={v}" for k, v in sorted(pinned(constraints).items())]  # the pins, not the comments
    key = hashlib.sha256("\n".join([str(py), *pins, *wheel_requirements(wheel), *STAND_INS]).encode())
    venv = CACHE / f"jetpack-{jetpack}-py{version}-{key.hexdigest()[:12]}"
    pip = [venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    if not (venv / ".complete").is_file():
        for stale in CACHE.glob(f"jetpack-{jetpack}-py{version}-*"):  # older keys of this JetPack: not used again
            shutil.rmtree(stale, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        r = run([py, "-m", "venv", venv])
        assert r.returncode == 0, r.stderr
        r = run(pip + ["install", "--only-binary=:all:", "-c", constraints, f"{wheel}[jetson]", *STAND_INS])
        assert r.returncode == 0, f"the JetPack {jetpack} device install failed:\n{r.stderr[-3000:]}"
        (venv / ".complete").write_text(f"{py}\n")
    r = run(pip + ["install", "--no-deps", "--force-reinstall", wheel])
    assert r.returncode == 0, r.stderr[-2000:]
    return venv


def draw_face(path: Path) -> None:
    """A plain drawn face on grey (BlazeFace finds it; the same drawing the detector export checks with)."""
    import cv2

    from fertrt.export.detectors_export import drawn_face

    cv2.imwrite(str(path), drawn_face()[:, :, ::-1])


@pytest.fixture(scope="session")
def device_inputs(tmp_path_factory, blazeface_onnx):
    """Made by this (main) environment, as a workstation would: a fertrt FER model (the doctor's tiny
    classifier: real fertrt metadata, 7 classes), the default detector in a fertrt cache, a photo."""
    d = tmp_path_factory.mktemp("device_inputs")
    shutil.copyfile(ROOT / "engine" / "data" / "doctor_tiny.onnx", d / "model.onnx")
    (d / "cache" / "detectors").mkdir(parents=True)
    shutil.copyfile(blazeface_onnx, d / "cache" / "detectors" / "blazeface-short.onnx")
    draw_face(d / "face.png")
    return d


@pytest.fixture(scope="session", params=VENV_JETPACKS, ids=lambda j: f"jetpack-{j}")
def device(request, fertrt_wheel, device_inputs):
    jetpack = request.param
    venv = device_venv(jetpack, fertrt_wheel)

    def fertrt(*args, cwd=None):
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env["FERTRT_CACHE"] = str(device_inputs / "cache")
        r = run([venv / "bin" / "python", "-c", PROBE, *args], cwd=cwd or device_inputs, env=env, timeout=600)
        lines = [line for line in r.stdout.splitlines() if line.startswith("FERTRT_PROBE ")]
        assert lines, f"fertrt {' '.join(args)} died before its report (rc {r.returncode}):\n{r.stderr[-3000:]}"
        probe = json.loads(lines[-1][len("FERTRT_PROBE ") :])
        return probe["rc"], r.stdout, r.stderr, probe["modules"]

    return jetpack, venv, fertrt


def pinned(constraints: Path) -> dict:
    """{package: version} of a constraints file's `name==version` lines."""
    lines = [line.split("#")[0].strip() for line in constraints.read_text().splitlines()]
    return dict(line.split("==") for line in lines if "==" in line)


def training_modules(modules, allow=()):
    """Modules of the training side in a list from PROBE: the heavy packages, fertrt.train (but `allow`)."""
    return [
        m
        for m in modules
        if m.split(".")[0] in TRAINING_PACKAGES
        or (m.startswith("fertrt.train") and not any(m == a or m.startswith(a + ".") for a in allow))
    ]


@pytest.mark.device_envs
def test_device_env_has_the_jetpack_versions(device, tmp_path):
    jetpack, venv, _ = device
    code = (
        "import sys, json, numpy, onnx, onnxruntime, cv2; from importlib.metadata import version; "
        "print(json.dumps([sys.version.split()[0], numpy.__version__, onnx.__version__, onnxruntime.__version__, "
        "cv2.__version__, version('cuda-python')]))"
    )
    # run outside the repository: its fertrt/ folder would shadow the installed package
    r = run([venv / "bin" / "python", "-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    python, numpy_v, onnx_v, ort_v, cv2_v, cuda_v = json.loads(r.stdout)
    pins = pinned(ROOT / "constraints" / f"jetpack-{jetpack}.txt")
    assert python.startswith(JETPACKS[jetpack][0] + ".")
    assert (numpy_v, onnx_v, ort_v, cuda_v) == (pins["numpy"], pins["onnx"], pins["onnxruntime"], pins["cuda-python"])
    assert pins["opencv-python-headless"].startswith(cv2_v)
    if jetpack == "5.1":
        assert tuple(int(v) for v in numpy_v.split(".")[:2]) < (1, 24)  # TensorRT 8.5's np.bool


@pytest.mark.device_envs
def test_device_env_infer_with_the_default_detector(device, device_inputs):
    _, _, fertrt = device
    rc, out, err, modules = fertrt("infer", "model.onnx", "face.png", "--jsonl", "infer.jsonl", "--force")
    assert rc == 0, err[-3000:]
    (record,) = [json.loads(line) for line in (device_inputs / "infer.jsonl").read_text().splitlines()]
    (face,) = record["faces"]
    x, y, w, h = face["box"]
    assert face["score"] > 0.6 and abs(x + w / 2 - 320) < 30 and abs(y + h / 2 - 240) < 40  # the drawn face
    assert face["label"] in face["probabilities"] and abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert "detector blazeface-short (onnxruntime" in out
    # the runtime alone: no training side, and not the export side either
    assert training_modules(modules) == [] and not [m for m in modules if m.startswith("fertrt.export")], modules


@pytest.mark.device_envs
def test_device_env_bench(device, device_inputs, tmp_path):
    """`fertrt bench` (its stage table used dict `|`, a Python 3.9 operator: it crashed on 3.8)."""
    _, _, fertrt = device
    rc, out, err, modules = fertrt(
        "bench", "model.onnx", "--data", "synth:64", "--batches", "1,8", "--seconds", "0.1", "-o", tmp_path / "bench"
    )
    assert rc == 0, err[-3000:]
    result = json.loads((tmp_path / "bench" / "results.json").read_text())
    rows = [r for r in result["results"] if r["backend"] == "onnxruntime"]
    assert sorted(r["batch"] for r in rows) == [1, 8]
    assert all(r["latency_ms"]["p50"] > 0 and r["stages_ms"]["infer"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    # the synthetic data comes from fertrt.train.data (numpy + OpenCV only); nothing else of the training side
    assert training_modules(modules, allow=("fertrt.train", "fertrt.train.data")) == [], modules


@pytest.mark.device_envs
def test_device_env_doctor(device, tmp_path):
    """doctor with the shipped graphs: everything but TensorRT passes; the engine checks are not applicable."""
    _, _, fertrt = device
    rc, out, err, modules = fertrt("doctor", "-o", tmp_path / "doc", "--seconds", "0.05")
    assert rc == 1, err[-3000:]  # TensorRT is missing here: one failed check
    report = json.loads((tmp_path / "doc" / "doctor.json").read_text())
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status.pop("tensorrt") == "fail" and "TensorRT is not installed here" in out
    assert status.pop("TensorRT engines (build, run, compare, time)") == "n/a"
    assert status == {
        "onnxruntime": "pass",
        "onnx": "pass",
        "tiny model: FP32, FP16 and INT8 (Q/DQ) ONNX": "pass",
        "ONNX Runtime CPU: fp16 graph vs fp32": "pass",
        "ONNX Runtime CPU: int8 graph vs fp32": "pass",
    }
    assert training_modules(modules) == [], modules


@pytest.mark.device_envs
def test_device_env_doctor_error_path(device, tmp_path):
    """doctor's error formatting (one-argument traceback.format_exception is Python 3.10+)."""
    _, venv, _ = device
    code = (
        "from fertrt.engine.doctor import _error\ntry:\n    1 / 0\nexcept ZeroDivisionError as e:\n    print(_error(e))"
    )
    r = run([venv / "bin" / "python", "-c", code], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("ZeroDivisionError: division by zero\nTraceback")
    assert 'File "<string>", line 3' in r.stdout


@pytest.mark.device_envs
def test_device_env_build_engine_stops_at_tensorrt(device):
    _, _, fertrt = device
    rc, out, err, modules = fertrt("build-engine", "model.onnx", "-o", "model.engine")
    assert rc == 2 and "Traceback" not in err
    assert "model.onnx is a valid FP32 model for an engine, but: TensorRT is not installed here" in err
    assert training_modules(modules) == [], modules


@pytest.fixture(scope="session")
def packed(device_inputs, blazeface_onnx):
    """`fertrt pack` run here (the workstation) for each JetPack whose venv runs: {jetpack: folder name}."""
    from fertrt.cli import main

    folders = {}
    for jetpack, pack_as in (("5.1", "5.1"), ("6", "6.0")):
        name = f"pack-jp{jetpack}"
        args = [
            "pack",
            str(device_inputs / "model.onnx"),
            "-o",
            str(device_inputs / name),
            "--jetpack",
            pack_as,
            "--calib-data",
            "synth:64",
            "--calib-size",
            "32",
            "--detector-model",
            str(blazeface_onnx),
            "--cache-dir",
            str(device_inputs / "calib"),
            "--force",
        ]
        assert main(args) == 0
        folders[jetpack] = name
    return folders


@pytest.mark.device_envs
def test_device_env_takes_the_pack_folder(device, device_inputs, packed, tmp_path):
    """The folder `fertrt pack` made on the workstation, consumed on the device's Python: infer picks its model
    and detector, bench times every model in it, build-engine checks it and stops at TensorRT."""
    jetpack, _, fertrt = device
    folder = packed[jetpack]
    rc, out, err, modules = fertrt("infer", folder, "face.png", "--jsonl", str(tmp_path / "pack.jsonl"))
    assert rc == 0, err[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "pack.jsonl").read_text().splitlines()]
    (face,) = record["faces"]
    assert face["score"] > 0.6 and abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert training_modules(modules) == [] and not [m for m in modules if m.startswith("fertrt.export")], modules
    rc, out, err, modules = fertrt(
        "bench", folder, "--data", "synth:64", "--batches", "1", "--seconds", "0.1", "-o", str(tmp_path / "bench")
    )
    assert rc == 0, err[-3000:]
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["results"]
    assert {Path(r["model"]).name for r in rows} >= {"model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx"}, rows
    rc, out, err, modules = fertrt("build-engine", folder)
    assert rc == 2 and "Traceback" not in err and "TensorRT is not installed" in err, err[-2000:]
    assert training_modules(modules) == [], modules


@pytest.mark.device_envs
def test_device_env_camera_pipeline_without_gstreamer(device):
    """A GStreamer camera pipeline with a pip OpenCV (no GStreamer) is refused saying why and what to use."""
    _, _, fertrt = device
    rc, _, err, _ = fertrt("infer", "model.onnx", "videotestsrc num-buffers=2 ! videoconvert ! appsink", "--no-detect")
    assert rc == 2 and "was built without GStreamer" in err and "JetPack's OpenCV" in err


def aarch64_platforms(glibc) -> list:
    """pip's --platform takes exact tags: every manylinux_2_17 .. 2_N aarch64 tag (and manylinux2014)."""
    major, minor = glibc
    return [f"manylinux_{major}_{m}_aarch64" for m in range(minor, 16, -1)] + ["manylinux2014_aarch64"]


@pytest.mark.device_envs
@pytest.mark.parametrize("jetpack", sorted(JETPACKS))
def test_documented_install_resolves_for_aarch64(jetpack, fertrt_wheel, tmp_path):
    """`pip install "fertrt[jetson]" -c constraints/jetpack-X.txt`, resolved by pip for the device (aarch64,
    its glibc, its CPython) from binary wheels only: what the README's install line installs there."""
    version, glibc = JETPACKS[jetpack]
    py = require_python(version, jetpack)
    constraints = ROOT / "constraints" / f"jetpack-{jetpack}.txt"
    assert f'pip install "fertrt[jetson]" -c constraints/jetpack-{jetpack}.txt' in constraints.read_text()
    report = tmp_path / "report.json"
    platforms = [a for p in aarch64_platforms(glibc) for a in ("--platform", p)]
    r = run(
        [
            py,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--dry-run",
            "--ignore-installed",
            "--report",
            report,
            "--target",
            tmp_path / "target",
            "--only-binary=:all:",
            *platforms,
            "--python-version",
            version,
            "--implementation",
            "cp",
            f"{fertrt_wheel}[jetson]",
            "-c",
            constraints,
        ]
    )
    assert r.returncode == 0, f"JetPack {jetpack}: the install does not resolve for aarch64:\n{r.stderr[-3000:]}"
    installs = {
        i["metadata"]["name"].lower().replace("_", "-"): (i["metadata"]["version"], i["download_info"]["url"])
        for i in json.loads(report.read_text())["install"]
    }
    pins = pinned(constraints)
    for name in ("numpy", "onnx", "cuda-python"):
        assert installs[name][0] == pins[name], (name, installs[name])
    # never shadow JetPack's cv2 or NVIDIA's onnxruntime-gpu, never pull the training side
    assert not {"opencv-python", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu"} & set(installs)
    assert not {"torch", "nvidia-modelopt", "tflite2onnx", "onnxslim", "matplotlib"} & set(installs)
    for name, (_, url) in installs.items():
        tags = re.findall(r"(manylinux_(\d+)_(\d+)_aarch64|manylinux2014_aarch64|none-any)", url.rsplit("/", 1)[-1])
        assert tags, f"{name}: {url.rsplit('/', 1)[-1]} is not an aarch64 or pure-Python wheel"
        assert all(not t[1] or (int(t[1]), int(t[2])) <= glibc for t in tags), (name, url)


# ---------------------------------------------------------------- quick checks of the pieces (not marked)


def test_missing_device_package_says_which_and_how(tmp_path):
    from fertrt.deps import install_help, jetpack_series, require
    from fertrt.errors import FertrtError

    with pytest.raises(FertrtError) as exc:
        require("fertrt_no_such_module", "fertrt infer")
    assert "fertrt infer needs the Python module 'fertrt_no_such_module', which is not installed" in str(exc.value)
    release = tmp_path / "nv_tegra_release"
    release.write_text("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n")
    assert jetpack_series(release) == "5.1" and jetpack_series(tmp_path / "none") is None
    assert "python3-opencv" in install_help("cv2", "5.1") and "--system-site-packages" in install_help("cv2", "5.1")
    assert "jp6/cu126" in install_help("onnxruntime", "6") and "python3-libnvinfer" in install_help("tensorrt", "6")
    assert "fertrt[desktop]" in install_help("cv2", None)


def test_runtime_imports_without_cv2_and_onnxruntime(tmp_path):
    """A bare device (numpy only): importing the runtime works; opening an ONNX model names what is missing."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("cv2", "onnxruntime"):
        (blocker / f"{name}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import fertrt.runtime\n"
        "from fertrt.cli import main; sys.exit(main(['infer', sys.argv[2], sys.argv[2]]))"
    )
    r = run([sys.executable, "-c", code, blocker, ROOT / "engine" / "data" / "doctor_tiny.onnx"])
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "needs the Python module 'cv2', which is not installed" in r.stderr and "fertrt[desktop]" in r.stderr


def test_doctor_graphs_are_shipped_and_regenerate_identically():
    """engine/data/ holds what scripts/make_doctor_graphs.py makes (deterministic, byte for byte)."""
    pytest.importorskip("modelopt")
    r = run([sys.executable, ROOT / "scripts" / "make_doctor_graphs.py", "--check"], cwd=ROOT)
    assert r.returncode == 0, r.stderr
    from fertrt.engine.doctor import TINY_DATA, TINY_FILES

    assert all((TINY_DATA / n).stat().st_size > 100 for n in TINY_FILES.values())


def test_doctor_needs_neither_torch_nor_modelopt(tmp_path):
    """The doctor's tiny graphs come from package data: with torch and ModelOpt unimportable it still has them."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("torch", "modelopt"):
        (blocker / f"{name}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import Path\n"
        "from fertrt.engine.doctor import tiny_variants\n"
        "print(sorted(p.name for p in tiny_variants(Path(sys.argv[2])).values()))"
    )
    r = run([sys.executable, "-c", code, blocker, tmp_path])
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "['doctor_tiny.fp16.onnx', 'doctor_tiny.int8.onnx', 'doctor_tiny.onnx']"


def test_tensorrt_help_names_the_jetpack(monkeypatch):
    """On a Jetson the no-TensorRT message (build-engine, infer --backend tensorrt, doctor) adds JetPack's way."""
    import fertrt.deps
    from fertrt.engine.compat import _jetson_install_help

    monkeypatch.setattr(fertrt.deps, "jetpack_series", lambda: "6")
    assert _jetson_install_help() == (
        " This is a Jetson with JetPack 6: JetPack 6 ships TensorRT: `sudo apt install python3-libnvinfer` (or "
        "nvidia-tensorrt); in a virtual environment, make it with `python3 -m venv --system-site-packages` so that "
        "JetPack's packages stay visible."
    )
    monkeypatch.setattr(fertrt.deps, "jetpack_series", lambda: None)
    assert _jetson_install_help() == ""
