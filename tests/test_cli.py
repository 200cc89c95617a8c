import subprocess
import sys

from conftest import REPO, run_without_torch


def test_help_and_version_without_torch():
    r = run_without_torch("from fertrt.cli import main\nmain(['--help'])")
    assert r.returncode == 0, r.stderr
    for cmd in ("models", "train", "export", "quantize", "build-engine", "infer", "bench", "demo"):
        assert cmd in r.stdout
    r = run_without_torch("from fertrt.cli import main\nraise SystemExit(main(['version']))")
    assert r.returncode == 0, r.stderr
    assert "torch        not installed" in r.stdout


def test_runtime_imports_without_torch():
    r = run_without_torch(
        "import fertrt.runtime, fertrt.runtime.preprocess\nimport sys\nprint('torch' in sys.modules and sys.modules['torch'] is not None)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_torch_command_without_torch_says_what_to_install():
    r = run_without_torch("from fertrt.cli import main\nraise SystemExit(main(['models']))")
    assert r.returncode == 2
    assert "needs the Python package 'torch'" in r.stderr and "fertrt[train]" in r.stderr


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "fertrt", "--version"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and r.stdout.startswith("fertrt ")
