"""Dump the facts of one REAL cuda-python runtime module (run under the interpreter the wheel is for):
which import path works, every cuda* function's parameter names (inspect.signature of the Cython function,
else its embedsignature docstring) and its documented return values, and the members of every class/enum.

    python dump_module.py OUT.json        (the unpacked wheel on PYTHONPATH)

Python 3.8 compatible, standard library only: it runs under the JetPack 5 interpreter (3.8) too.
"""

import inspect
import json
import re
import sys


def import_runtime():
    try:
        from cuda.bindings import runtime as rt

        return rt, "cuda.bindings.runtime"
    except ImportError:
        from cuda import cudart as rt

        return rt, "cuda.cudart"


def params(fn):
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        first = (fn.__doc__ or "").strip().splitlines()[:1]
        if not first or "(" not in first[0]:
            return None
        inner = first[0].split("(", 1)[1].rsplit(")", 1)[0]
        return [p.split("=")[0].strip().replace("*", " ").split()[-1] for p in inner.split(",") if p.strip()]


def returns(fn):
    """Names of the documented return values (numpydoc 'Returns' section): the first is cudaError_t."""
    doc = fn.__doc__ or ""
    m = re.search(r"\n([ \t]*)Returns\n[ \t]*-+\n", doc)
    if not m:
        return None
    indent, out = m.group(1), []
    lines = doc[m.end() :].splitlines()
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.match(r"^[ \t]*-{3,}$", lines[i + 1]):
            break  # the next section's header
        if line.strip() and line.startswith(indent) and not line[len(indent) :].startswith((" ", "\t")):
            out.append(line.strip().split(" : ")[0])
    return out


def main(out_path):
    rt, path = import_runtime()
    facts = {"import": path, "version": None, "functions": {}, "members": {}, "attributes": []}
    try:
        import importlib.metadata as md
    except ImportError:  # 3.7
        md = None
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            facts["version"] = facts["version"] or md.version(dist)
        except Exception:  # noqa: BLE001 - not installed as that distribution
            pass
    for name in dir(rt):
        if name.startswith("_"):
            continue
        obj = getattr(rt, name)
        facts["attributes"].append(name)
        if inspect.isclass(obj):
            facts["members"][name] = [m for m in dir(obj) if not m.startswith("_")]
        elif callable(obj) and name.startswith("cuda"):
            facts["functions"][name] = {"params": params(obj), "returns": returns(obj)}
    with open(out_path, "w") as f:
        json.dump(facts, f)


if __name__ == "__main__":
    main(sys.argv[1])
