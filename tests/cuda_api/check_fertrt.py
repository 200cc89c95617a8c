"""Drive every method of fertrt's cuda-python binding (runtime/trt_backend.py `_CudaPython`) over a stand-in
module built from the REAL module's facts (dump_module.py): each function fertrt calls must exist there, bind
to its real parameter list (names and count, from the Cython signature), and return as many values as the
real one documents; each attribute fertrt reads (flags, enum members, cudaDeviceProp fields) must exist.
API checks only: nothing here touches a GPU or reports a CUDA result.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import sys
import threading
import types

import numpy as np


class ApiMismatch(AssertionError):
    pass


class Handle:
    """An opaque cuda-python object (stream, event, graph): int() gives its address."""

    def __init__(self, kind, value):
        self.kind, self.value = kind, value

    def __int__(self):
        return self.value


class Members:
    """A class or enum of the real module: only its real members exist."""

    def __init__(self, owner, name, members, journal):
        self._owner, self._name, self._members, self._journal = owner, name, set(members), journal

    def __getattr__(self, member):
        if member.startswith("_"):
            raise AttributeError(member)
        self._journal.used.add(f"{self._name}.{member}")
        if member not in self._members:
            raise ApiMismatch(f"cuda-python {self._owner}: {self._name} has no member {member!r}")
        return f"{self._name}.{member}"


class Journal:
    def __init__(self):
        self.calls = []  # (function, positional count, keyword names)
        self.used = set()
        self.problems = []


def fake_runtime(facts, journal) -> types.ModuleType:
    """A module whose attributes are the real module's names; its functions check each call's binding."""
    version = facts["version"]
    mod = types.ModuleType("fake_cuda_runtime")
    buffers = []
    counter = iter(range(0x1000, 1 << 30, 0x100))

    def make(name, spec):
        params = spec["params"]
        returns = spec["returns"]

        def call(*args, **kwargs):
            journal.calls.append((name, len(args), tuple(sorted(kwargs))))
            journal.used.add(f"{name}()")
            if params is None:
                raise ApiMismatch(f"cuda-python {version}: cannot read the parameters of {name}")
            sig = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params])
            try:
                sig.bind(*args, **kwargs)
            except TypeError as exc:
                raise ApiMismatch(
                    f"cuda-python {version}: {name}({', '.join(params)}) called with {len(args)} positional "
                    f"and keywords {sorted(kwargs)}: {exc}"
                ) from None
            n = len(returns) if returns else 1
            values = [0] + [value_for(name, i) for i in range(1, n)]
            return tuple(values) if n > 1 else (0,)

        call.__signature__ = inspect.Signature(
            [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params or []]
        )
        call.__name__ = name
        return call

    def value_for(name, index):
        if name == "cudaHostAlloc":
            buf = ctypes.create_string_buffer(1 << 16)  # real memory: fertrt views it as a numpy array
            buffers.append(buf)
            return ctypes.addressof(buf)
        if name == "cudaGetDeviceProperties":
            return Prop(facts, journal)
        if name == "cudaMemGetInfo":
            return 1 << 30
        if name == "cudaEventElapsedTime":
            return 0.0
        if name in ("cudaMalloc", "cudaHostGetDevicePointer"):
            return next(counter)
        return Handle(name, next(counter))

    for name, spec in facts["functions"].items():
        setattr(mod, name, make(name, spec))
    for name in facts["attributes"]:
        if name in facts["members"] and not hasattr(mod, name):
            setattr(mod, name, Members(version, name, facts["members"][name], journal))
        elif not hasattr(mod, name):
            setattr(mod, name, f"{name}")

    def missing(attr):
        journal.used.add(attr)
        raise ApiMismatch(f"cuda-python {version}: the runtime module has no {attr!r}")

    mod.__getattr__ = missing
    mod._buffers = buffers
    return mod


class Prop:
    """cudaDeviceProp: only the fields the real class has."""

    def __init__(self, facts, journal):
        self._fields, self._journal, self._version = (
            set(facts["members"].get("cudaDeviceProp", [])),
            journal,
            facts["version"],
        )

    def __getattr__(self, field):
        if field.startswith("_"):
            raise AttributeError(field)
        self._journal.used.add(f"cudaDeviceProp.{field}")
        if field not in self._fields:
            raise ApiMismatch(f"cuda-python {self._version}: cudaDeviceProp has no field {field!r}")
        return {"name": b"API-check stand-in\x00", "major": 8, "minor": 7, "integrated": 1}.get(field, 0)


class _Traced(types.ModuleType):
    """Module attribute reads are journaled (so the table lists flags and enums fertrt reads)."""


def install(facts, journal):
    """Make `from cuda.bindings import runtime` / `from cuda import cudart` resolve as in that version."""
    rt = fake_runtime(facts, journal)
    traced = _Traced(rt.__name__)
    traced.__dict__.update({k: v for k, v in vars(rt).items() if k != "__getattr__"})

    def getattr_(name):
        return rt.__getattr__(name)

    traced.__getattr__ = getattr_
    for key in [k for k in sys.modules if k == "cuda" or k.startswith("cuda.")]:
        del sys.modules[key]
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    sys.modules["cuda"] = cuda
    if facts["import"] == "cuda.bindings.runtime":
        bindings = types.ModuleType("cuda.bindings")
        bindings.__path__ = []
        bindings.runtime = traced
        cuda.bindings = bindings
        sys.modules["cuda.bindings"] = bindings
        sys.modules["cuda.bindings.runtime"] = traced
    else:
        cuda.cudart = traced
        sys.modules["cuda.cudart"] = traced
    return traced


class AttrSpy:
    """Wraps the module so plain attribute reads (flags like cudaHostAllocMapped) are journaled too."""

    def __init__(self, mod, journal):
        self._mod, self._journal = mod, journal

    def __getattr__(self, name):
        value = getattr(self._mod, name)
        if not callable(value) or isinstance(value, Members):
            self._journal.used.add(name)
        return value


def drive(facts) -> Journal:
    from fertrt.runtime import trt_backend

    journal = Journal()
    install(facts, journal)
    steps = []

    def step(label, fn):
        try:
            fn()
            steps.append(label)
        except Exception as exc:  # noqa: BLE001 - any exception is an API mismatch (or a defect) to report
            journal.problems.append(f"{label}: {exc.__class__.__name__}: {exc}")

    cu = trt_backend._CudaPython()
    cu.rt = AttrSpy(cu.rt, journal)
    step("device_info", lambda: cu.device_info())
    s = cu.stream()
    step("stream_handle", lambda: int(cu.stream_handle(s)))
    host, _ = cu.alloc_host((2, 3), np.float32)
    mapped, dev_view = cu.alloc_host((2, 3), np.float32, mapped=True)
    dev = cu.alloc_device(host.nbytes)
    step(
        "copies",
        lambda: (cu.htod_async(dev, host, s), cu.dtoh_async(host, dev, s), cu.copy_htod(dev, host), cu.sync(s)),
    )
    ev = [cu.event(), cu.event()]
    step("events", lambda: (cu.record(ev[0], s), cu.record(ev[1], s), cu.elapsed_ms(ev[0], ev[1])))
    step("mem_used_bytes", lambda: cu.mem_used_bytes())

    def capture():
        graph = cu.graph_capture(s, lambda: None)
        graph.launch()
        graph.free()

    def failed_capture():
        with contextlib.suppress(RuntimeError):
            cu.graph_capture(s, lambda: (_ for _ in ()).throw(RuntimeError("enqueue failed")))

    step("graph_capture", capture)
    step("graph_capture (fn fails)", failed_capture)

    def other_thread():
        errors = []

        def work():
            try:
                with cu.activate():
                    cu.sync(s)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        if errors:
            raise errors[0]

    step("activate on another thread", other_thread)
    step(
        "free",
        lambda: (
            cu.free_device(dev),
            cu.free_host(host),
            cu.free_host(mapped),
            [cu.destroy_event(e) for e in ev],
            cu.destroy_stream(s),
        ),
    )
    journal.steps = steps
    return journal


def check(facts) -> dict:
    """-> {"version", "import", "problems", "used": {name: present}, "calls": {function: params}}."""
    journal = drive(facts)
    used = {}
    for name in sorted(journal.used):
        if name.endswith("()"):
            fn = name[:-2]
            spec = facts["functions"].get(fn)
            used[name] = f"y ({len(spec['params'])})" if spec and spec["params"] is not None else "-"
        elif "." in name:
            owner, member = name.split(".", 1)
            used[name] = "y" if member in facts["members"].get(owner, []) else "-"
        else:
            used[name] = "y" if name in facts["attributes"] else "-"
    return {
        "version": facts["version"],
        "import": facts["import"],
        "problems": journal.problems,
        "steps": journal.steps,
        "used": used,
    }
