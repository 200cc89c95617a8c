"""The tritonserver inside the nvidia-pytriton wheel (Python backend only), started on a model repository
as a production Triton would be: how the `--platform python` repository is checked here."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fertrt.errors import FertrtError

from .server import LOOPBACK, python_libdir_env


def pytriton_dist() -> Path:
    try:
        import pytriton
    except ImportError:
        raise FertrtError("the bundled Triton needs the nvidia-pytriton package: pip install 'fertrt[serve]'") from None
    return Path(pytriton.__file__).parent


def prepare_tritonserver(workdir) -> Path:
    """A copy of the wheel's tritonserver with the Python-backend stub for this interpreter in place (the
    wheel keeps one stub per Python version aside); returns the install folder (bin/, backends/)."""
    dist = pytriton_dist()
    src, dst = dist / "tritonserver", Path(workdir) / "tritonserver"
    if not (dst / "bin" / "tritonserver").is_file():
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("python_backend_stubs"), dirs_exist_ok=True)
        version = f"{sys.version_info[0]}.{sys.version_info[1]}"
        stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise FertrtError(f"{stub}: nvidia-pytriton has no Python-backend stub for Python {sys.version.split()[0]}")
        shutil.copy2(stub, dst / "backends" / "python" / "triton_python_backend_stub")
    return dst


def server_env() -> dict:
    """The stub embeds Python: this interpreter's libpython first (python_libdir_env), the wheel's own libraries,
    and this environment's bin/ first on PATH so the embedded Python finds this venv's site-packages."""
    env = python_libdir_env(os.environ)
    libs = pytriton_dist().parent / "nvidia_pytriton.libs"
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (env.get("LD_LIBRARY_PATH"), str(libs)) if p)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def start_tritonserver(
    repo, workdir, http_port: int, grpc_port: int, metrics_port: int, log_file=None, extra_args=()
) -> subprocess.Popen:
    """tritonserver on loopback with the given ports; the caller stops it by its PID."""
    install = prepare_tritonserver(workdir)
    cmd = [
        str(install / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={install / 'backends'}",
        f"--http-address={LOOPBACK}",
        f"--http-port={http_port}",
        f"--grpc-address={LOOPBACK}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={LOOPBACK}",
        f"--metrics-port={metrics_port}",
        "--exit-timeout-secs=30",
        *extra_args,
    ]
    out = open(log_file, "wb") if log_file else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=server_env(), stdout=out, stderr=subprocess.STDOUT)


def free_ports(n: int) -> list:
    """n distinct TCP ports free on loopback right now (the OS picks them)."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_ready(http_port: int, proc=None, timeout: float = 120.0, models=()) -> None:
    """Until Triton on loopback says it and the given models are ready; FertrtError when the process exits
    or the time runs out."""
    import time

    import tritonclient.http as th

    deadline = time.monotonic() + timeout
    # closed on return: an open keep-alive connection would hold the server's shutdown for its exit timeout
    with contextlib.closing(th.InferenceServerClient(f"{LOOPBACK}:{http_port}")) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise FertrtError(f"the server exited with code {proc.returncode} before it was ready")
            try:
                if client.is_server_ready() and all(client.is_model_ready(m) for m in models):
                    return
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
    raise FertrtError(f"Triton on port {http_port} was not ready within {timeout:.0f} s")


def stop_process(proc, timeout: float = 60.0) -> int:
    """SIGTERM by PID, then SIGKILL if it has not exited within timeout; returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
