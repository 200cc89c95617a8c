"""Layering by construction: data flows train -> export -> engine -> runtime -> benchmarks, and the device
side imports nothing from the training side. Every import statement of runtime/ and engine/ (module level
or inside a function) is read with ast and checked; an upward one fails with its file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the package each top-level folder becomes (pyproject's package-dir)
PACKAGE_OF = {
    "fertrt": "fertrt",
    "train": "fertrt.train",
    "export": "fertrt.export",
    "engine": "fertrt.engine",
    "runtime": "fertrt.runtime",
    "benchmarks": "fertrt.benchmarks",
}
# folder -> packages it must never import
FORBIDDEN = {
    "runtime": ("fertrt.train", "fertrt.export", "fertrt.benchmarks"),
    "engine": ("fertrt.train",),
}
# The one allowed exception, and only inside a function: the `.pt` runner is the PyTorch reference, i.e. the
# training side itself (a checkpoint means torch and the model zoo are installed); a device has ONNX/engine
# files only and never reaches it (tests/test_device_envs.py checks that no training module gets imported).
ALLOWED_LAZY = {("runtime/runners.py", "fertrt.train.checkpoint")}


def imports_of(path: Path, source: str | None = None):
    """-> [(absolute module, line, inside a function)] of every import in a file of this repository."""
    rel = path.relative_to(ROOT)
    package = PACKAGE_OF[rel.parts[0]] + "".join("." + p for p in rel.parts[1:-1])
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                # `from fertrt import train` imports a subpackage too
                names = [f"{module}.{a.name}" for a in child.names] if module in ("fertrt",) else [module]
                found.extend((m, child.lineno, in_function) for m in names)
            visit(child, nested)

    visit(tree, False)
    return found


def upward_imports(folder: str, sources=None):
    """-> one line per forbidden import in folder/ (sources: {path: text} to check instead of the files)."""
    bad = []
    for path in sources or sorted((ROOT / folder).rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        for module, line, in_function in imports_of(path, sources[path] if sources else None):
            hit = next((p for p in FORBIDDEN[folder] if module == p or module.startswith(p + ".")), None)
            if hit and not (in_function and (rel, module) in ALLOWED_LAZY):
                bad.append(f"{rel}:{line} imports {module} ({folder}/ must not import {hit})")
    return bad


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_upward_imports(folder):
    assert upward_imports(folder) == []


def test_the_walker_sees_every_kind_of_import():
    """The checker itself: relative, absolute, lazy and `from fertrt import x` imports are all caught."""
    fake = ROOT / "runtime" / "_layering_probe.py"
    source = (
        "from ..export import metadata\nimport fertrt.train.checkpoint\nfrom fertrt import benchmarks\n"
        "def f():\n    from fertrt.export.metadata import set_metadata\n"
    )
    found = imports_of(fake, source)
    assert [(m, line, lazy) for m, line, lazy in found] == [
        ("fertrt.export", 1, False),
        ("fertrt.train.checkpoint", 2, False),
        ("fertrt.benchmarks", 3, False),
        ("fertrt.export.metadata", 5, True),
    ]
    bad = upward_imports("runtime", {fake: source})
    assert len(bad) == 4
    assert bad[0] == "runtime/_layering_probe.py:1 imports fertrt.export (runtime/ must not import fertrt.export)"


def test_the_torch_runner_exception_is_lazy_only():
    """The one exception holds only inside a function: at module level it would load torch on every device."""
    source = "from fertrt.train.checkpoint import load_model\n"
    path = ROOT / "runtime" / "runners.py"
    found = imports_of(path, source)
    assert found == [("fertrt.train.checkpoint", 1, False)]
    assert not any(lazy and (str(path.relative_to(ROOT)), m) in ALLOWED_LAZY for m, _, lazy in found)


def test_detector_conversion_lives_on_the_export_side():
    assert not (ROOT / "runtime" / "detectors_export.py").exists()
    assert (ROOT / "export" / "detectors_export.py").is_file()
    from fertrt.cli import _COMMANDS

    assert _COMMANDS["detector"][0] == "fertrt.export.detectors_export:cmd_detector"
