"""Strict stand-ins for the TensorRT objects that need the native library (Builder, Runtime, OnnxParser
and everything they return), checked against the REAL classes of the imported bindings.

A stand-in `Strict(real_class, model)`:
  - raises AttributeError (an `ApiMissing`) for any attribute the real class lacks, so unguarded use of a
    name a version does not have fails exactly as it would on that TensorRT, and hasattr() answers as it would;
  - refuses to set anything that is not a settable property of the real class;
  - checks every method call against the real pybind11 signature (from its docstring): argument count,
    keyword names, and the types that matter (TensorRT enums and interfaces, bool, int, str, buffers);
  - records every call and property write in a journal, so tests can check the order the docs require.
The small `Model*` classes below give plausible answers (shapes, booleans) so the code under test can go
on; they compute nothing and produce no engine, timing or output. API checks only.
"""

from __future__ import annotations

import json
import re
import threading

import numpy as np

API_CHECK_MARK = b"FERTRT-TRT-API-CHECK (not an engine): "


class ApiMissing(AttributeError):
    pass


class ApiMisuse(AssertionError):
    pass


# ---------------------------------------------------------------- pybind11 signatures
_SIG_CACHE: dict = {}


def _split_top(text: str, sep=",") -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def signatures(func, name: str) -> list[list[tuple[str, str, bool]]]:
    """Overloads of a pybind11 function: [[(param, type, has_default), ...], ...] (self included)."""
    key = (id(func), name)
    if key in _SIG_CACHE:
        return _SIG_CACHE[key]
    doc = getattr(func, "__doc__", None) or ""
    out = []
    for line in doc.splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->\s*(.+)$", line)
        if not m:
            continue
        params = []
        for part in _split_top(m.group(1)):
            pname, _, rest = part.partition(":")
            ptype, eq, _default = rest.partition(" = ")
            params.append((pname.strip(), ptype.strip(), bool(eq)))
        out.append(params)
    if not out:
        raise ApiMisuse(f"{name}: no pybind11 signature in its docstring; the stand-in cannot check calls to it")
    _SIG_CACHE[key] = out
    return out


def _type_problem(trt, ptype: str, value) -> str | None:
    t = re.sub(r"^(typing\.)?Optional\[(.*)\]$", r"\2", ptype)
    short = t.rsplit(".", 1)[-1]
    if t in ("bool",):
        return None if isinstance(value, (bool, np.bool_)) else f"expected bool, got {type(value).__name__}"
    if t in ("int", "typing.SupportsInt"):
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        return None if ok or _is_trt_enum(value) else f"expected int, got {type(value).__name__}"
    if t == "str":
        return None if isinstance(value, str) else f"expected str, got {type(value).__name__}"
    if t == "buffer":
        return (
            None
            if isinstance(value, (bytes, bytearray, memoryview)) or isinstance(value, Strict)
            else f"expected a buffer, got {type(value).__name__}"
        )
    if "tensorrt" in t and hasattr(trt, short):
        cls = getattr(trt, short)
        if value is None:
            return None
        if isinstance(value, Strict):
            return None if issubclass(value._real, cls) else f"expected {short}, got a {value._real.__name__}"
        if isinstance(value, cls):
            return None
        if hasattr(cls, "__members__"):
            return f"expected the enum {short}, got {type(value).__name__} {value!r}"
        if short.startswith("Dims"):
            ok = isinstance(value, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in value)
            return None if ok else f"expected a shape (Dims), got {value!r}"
        return f"expected {short}, got {type(value).__name__}"
    return None


def _is_trt_enum(value) -> bool:
    return hasattr(type(value), "__members__") and "tensorrt" in type(value).__module__


def check_call(trt, real_cls, name: str, args: tuple, kwargs: dict):
    member = getattr(real_cls, name)
    problems = []
    for params in signatures(member, name):
        rest = params[1:] if params and params[0][0] == "self" else params
        if len(args) > len(rest):
            problems.append(f"{len(args)} positional arguments, the signature takes {len(rest)}")
            continue
        bound = {p[0]: (p, a) for p, a in zip(rest, args)}
        names = [p[0] for p in rest]
        bad = [k for k in kwargs if k not in names or k in bound]
        if bad:
            problems.append(f"keyword {bad} not in ({', '.join(names)})")
            continue
        for k, v in kwargs.items():
            bound[k] = (rest[names.index(k)], v)
        missing = [p[0] for p in rest if p[0] not in bound and not p[2]]
        if missing:
            problems.append(f"missing {missing}")
            continue
        type_errors = [f"{p[0]}: {err}" for p, v in bound.values() if (err := _type_problem(trt, p[1], v))]
        if type_errors:
            problems.append("; ".join(type_errors))
            continue
        return
    sigs = " | ".join(
        f"{name}({', '.join(p[0] + ': ' + p[1] for p in params[1:])})" for params in signatures(member, name)
    )
    raise ApiMisuse(
        f"{real_cls.__name__}.{name} called with args={args!r} kwargs={kwargs!r}: {'; '.join(problems)}; real: {sigs}"
    )


# ---------------------------------------------------------------- the stand-in
class Strict:
    """Looks like an instance of `real` (a class of the real bindings); behaves as `model` says."""

    def __init__(self, trt, real, model, journal):
        object.__setattr__(self, "_trt", trt)
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_journal", journal)

    def _member(self, name):
        if not hasattr(self._real, name):
            raise ApiMissing(f"TensorRT {self._trt.__version__}: {self._real.__name__} has no attribute {name!r}")
        return getattr(self._real, name)

    def __getattr__(self, name):
        member = self._member(name)
        self._journal.used.add(f"{self._real.__name__}.{name}")
        if isinstance(member, property):
            if not hasattr(self._model, name):
                raise ApiMisuse(f"stand-in for {self._real.__name__} does not model the property {name!r}")
            return getattr(self._model, name)
        if not callable(member):
            return member
        impl = getattr(self._model, name, None)
        if impl is None:
            raise ApiMisuse(f"stand-in for {self._real.__name__} does not model {name}()")

        def call(*args, **kwargs):
            check_call(self._trt, self._real, name, args, kwargs)
            self._journal.log(f"{self._real.__name__}.{name}", args, kwargs)
            return impl(*args, **kwargs)

        return call

    def __setattr__(self, name, value):
        member = self._member(name)
        if not isinstance(member, property) or member.fset is None:
            raise ApiMisuse(
                f"TensorRT {self._trt.__version__}: {self._real.__name__}.{name} is not a settable property"
            )
        sig = re.search(r"arg1:\s*([\w.\[\]]+)", member.fset.__doc__ or "")
        if sig:
            err = _type_problem(self._trt, sig.group(1), value)
            if err:
                raise ApiMisuse(f"{self._real.__name__}.{name} = {value!r}: {err}")
        self._journal.used.add(f"{self._real.__name__}.{name}")
        self._journal.log(f"set {self._real.__name__}.{name}", (value,), {})
        setattr(self._model, name, value)

    def __bytes__(self):  # IHostMemory: the real one exports a buffer
        if self._real.__name__ != "IHostMemory":
            raise ApiMisuse(f"bytes() of a {self._real.__name__}")
        return bytes(self._model.data)


class Journal:
    def __init__(self):
        self.events: list[tuple[str, tuple, dict]] = []
        self.used: set[str] = set()
        self.violations: list[str] = []

    def log(self, what, args=(), kwargs=None):
        self.events.append((what, args, kwargs or {}))

    def names(self) -> list[str]:
        return [e[0] for e in self.events]


# ---------------------------------------------------------------- behaviour models (no computation)
class Scenario:
    """Knobs for the failure paths: what the stand-ins answer."""

    def __init__(self, **kw):
        self.dla_cores = kw.get("dla_cores", 0)
        self.refuse_timing_cache = kw.get("refuse_timing_cache", False)
        self.no_timing_cache = kw.get("no_timing_cache", False)
        self.execute_fails = kw.get("execute_fails", False)
        self.shape_refused = kw.get("shape_refused", False)
        self.none_from = set(
            kw.get("none_from", ())
        )  # factories that return None: "Builder", "create_execution_context", ...
        self.address_refused = kw.get("address_refused", False)  # set_tensor_address -> False
        self.profile_invalid = kw.get("profile_invalid", False)  # add_optimization_profile -> -1
        self.calib_profile_refused = kw.get("calib_profile_refused", False)  # set_calibration_profile -> False
        self.parse_errors = kw.get("parse_errors", None)  # [(node, name, op, desc), ...]: the parser fails with these
        self.dla_layers = kw.get("dla_layers", 1)  # layers that run on DLA in a DLA build (0: all fell back to the GPU)


class ModelBuilder:
    def __init__(self, env, logger):
        self.env = env
        self.num_DLA_cores = env.scenario.dla_cores
        self.platform_has_fast_fp16 = True

    def create_network(self, flags=0):
        return self.env.made("create_network", lambda: self.env.strict("INetworkDefinition", ModelNetwork(int(flags))))

    def create_builder_config(self):
        return self.env.made("create_builder_config", lambda: self.env.strict("IBuilderConfig", ModelConfig(self.env)))

    def create_optimization_profile(self):
        return self.env.made(
            "create_optimization_profile", lambda: self.env.strict("IOptimizationProfile", ModelProfile())
        )

    def build_serialized_network(self, network, config):
        env, cfg, net = self.env, config._model, network._model
        trt = env.trt
        flags = {
            n
            for n in ("FP16", "INT8", "VERSION_COMPATIBLE", "GPU_FALLBACK")
            if hasattr(trt.BuilderFlag, n) and getattr(trt.BuilderFlag, n) in cfg.flags
        }
        strongly = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") and net.flags & (
            1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        )
        if strongly and flags & {"FP16", "INT8"}:
            env.journal.violations.append(
                f"precision flags {sorted(flags & {'FP16', 'INT8'})} on a strongly typed network (TensorRT rejects the build)"
            )
            return None
        if not cfg.profiles:
            env.journal.violations.append("a dynamic-batch network built without an optimization profile")
            return None
        on_dla = cfg.default_device_type is not None and cfg.default_device_type == trt.DeviceType.DLA
        if on_dla and self.num_DLA_cores == 0:
            env.journal.violations.append("DLA requested on a device without DLA")
            return None
        if on_dla:
            shapes = next(iter(cfg.profiles[0].shapes.values()))
            if not (flags & {"FP16", "INT8"} or strongly):
                env.journal.violations.append(
                    "an FP32 build on DLA (DLA runs FP16/INT8 only: every layer would go to the GPU)"
                )
            if len(set(shapes)) != 1:
                env.journal.violations.append(
                    f"a DLA build with a dynamic profile {shapes} (DLA needs MIN = OPT = MAX)"
                )
        if "INT8" in flags and cfg.int8_calibrator is not None:
            if not self._calibrate(cfg):
                return None
        payload = {
            "version_compatible": "VERSION_COMPATIBLE" in flags,
            "profile": cfg.profiles[0].shapes,
            "precision": "Half" if "FP16" in flags or strongly else "Float",
            "dla_layers": env.scenario.dla_layers if on_dla else 0,
        }
        return env.strict("IHostMemory", ModelHostMemory(API_CHECK_MARK + json.dumps(payload).encode()))

    def _calibrate(self, cfg):
        """What TensorRT does with an IInt8Calibrator: read the cache, else pull batches of the calibration
        profile's OPT shape until get_batch returns None."""
        env, cal = self.env, cfg.int8_calibrator
        profile = cfg.calibration_profile or cfg.profiles[0]
        name, shapes = next(iter(profile.shapes.items()))
        opt_batch = shapes[1][0]
        bs = cal.get_batch_size()
        env.journal.log("calibrator.get_batch_size", (), {"returned": bs})
        if bs != opt_batch:
            env.journal.violations.append(
                f"calibrator batch size {bs} differs from the calibration profile's OPT batch {opt_batch}"
            )
        cache = cal.read_calibration_cache()
        if cache:
            return True
        batches = 0
        while batches < 10_000:
            ptrs = cal.get_batch([name])
            if ptrs is None:
                break
            if not (isinstance(ptrs, list) and len(ptrs) == 1 and all(isinstance(p, int) for p in ptrs)):
                env.journal.violations.append(f"get_batch returned {ptrs!r}, expected a list of one device pointer")
                return False
            batches += 1
        env.journal.log("calibrator.batches", (batches,), {})
        if batches == 0:
            env.journal.violations.append("calibration with neither a cache nor a single batch")
            return False
        cal.write_calibration_cache(API_CHECK_MARK + b"calibration")
        return True


class ModelNetwork:
    def __init__(self, flags):
        self.flags = flags
        self.num_layers = 0
        self.num_inputs = 1


class ModelParser:
    def __init__(self, env, network, logger):
        self.env, self.network = env, network
        self.num_errors = 0

    def parse_from_file(self, model):
        return self.parse(b"", model)

    def parse(self, model, path=None):
        self.env.require_plugins("parse")
        if self.env.scenario.parse_errors:
            self.num_errors = len(self.env.scenario.parse_errors)
            return False
        trt, net = self.env.trt, self.network._model
        ncf = trt.NetworkDefinitionCreationFlag
        explicit = any(
            hasattr(ncf, n) and net.flags & (1 << int(getattr(ncf, n))) for n in ("EXPLICIT_BATCH", "STRONGLY_TYPED")
        )
        if hasattr(ncf, "EXPLICIT_BATCH") and not hasattr(ncf, "STRONGLY_TYPED") and not explicit:
            self.env.journal.violations.append("ONNX parsed into an implicit-batch network (8.x needs EXPLICIT_BATCH)")
            return False
        net.num_layers = 3
        return True

    def get_error(self, index):
        errors = self.env.scenario.parse_errors or []
        if not 0 <= index < len(errors):
            raise ApiMisuse(f"get_error({index}) with {len(errors)} errors")
        return self.env.strict("ParserError", ModelParserError(*errors[index]))


class ModelParserError:
    def __init__(self, node, name, op, desc):
        self._node, self._name, self._op, self._desc = node, name, op, desc

    def node(self):
        return self._node

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op

    def desc(self):
        return self._desc

    def code(self):
        return 8  # ErrorCode.UNSUPPORTED_NODE


class ModelConfig:
    def __init__(self, env):
        self.env = env
        self.flags = set()
        self.profiles, self.calibration_profile = [], None
        self.int8_calibrator = None
        self.default_device_type = None
        self.DLA_core = -1
        self.builder_optimization_level = 3
        self.profiling_verbosity = None
        self.hardware_compatibility_level = None
        self.timing_cache = None

    def set_flag(self, flag):
        self.flags.add(flag)

    def set_memory_pool_limit(self, pool, pool_size):
        self.pool = (pool, pool_size)

    def add_optimization_profile(self, profile):
        if not profile._model.shapes:
            self.env.journal.violations.append("an optimization profile without shapes")
        if self.env.scenario.profile_invalid:
            return -1
        self.profiles.append(profile._model)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile):
        if self.env.scenario.calib_profile_refused:
            return False
        self.calibration_profile = profile._model
        return True

    def create_timing_cache(self, serialized_timing_cache):
        return self.env.made(
            "create_timing_cache",
            lambda: self.env.strict("ITimingCache", ModelTimingCache(self.env, bytes(serialized_timing_cache))),
        )

    def set_timing_cache(self, cache, ignore_mismatch):
        if self.env.scenario.refuse_timing_cache and cache._model.blob:
            return False
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return None if self.env.scenario.no_timing_cache else self.timing_cache


class ModelTimingCache:
    def __init__(self, env, blob):
        self.env, self.blob = env, blob
        self.merged = []

    def serialize(self):
        return self.env.strict(
            "IHostMemory", ModelHostMemory(API_CHECK_MARK + b"timing cache " + b"+".join([b"own"] + self.merged))
        )

    def combine(self, input_cache, ignore_mismatch):
        if self.env.scenario.refuse_timing_cache:
            return False
        self.merged.append(input_cache._model.blob[len(API_CHECK_MARK) :] or b"empty")
        return True


class ModelProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, input, min, opt, max):
        self.shapes[input] = (tuple(min), tuple(opt), tuple(max))


class ModelHostMemory:
    def __init__(self, data):
        self.data = data
        self.nbytes = len(data)


class ModelRuntime:
    def __init__(self, env, logger):
        self.env = env
        self.engine_host_code_allowed = False

    def deserialize_cuda_engine(self, serialized_engine):
        self.env.require_plugins("deserialize_cuda_engine")
        data = bytes(serialized_engine)
        if not data.startswith(API_CHECK_MARK):
            return None
        payload = json.loads(data[len(API_CHECK_MARK) :])
        if payload["version_compatible"] and not self.engine_host_code_allowed:
            # TensorRT refuses the lean runtime embedded in a version-compatible plan unless host code is allowed
            self.env.journal.violations.append(
                "version-compatible engine deserialized without engine_host_code_allowed = True"
            )
            return None
        return self.env.strict("ICudaEngine", ModelEngine(self.env, payload))


class ModelEngine:
    def __init__(self, env, payload):
        self.env, self.payload = env, payload
        ((self.input_name, shapes),) = payload["profile"].items()
        self.min, self.opt, self.max = (tuple(s) for s in shapes)
        self.num_io_tensors = 2
        self.num_optimization_profiles = 1
        self.num_layers = 3

    def get_tensor_name(self, index):
        return [self.input_name, "logits"][index]

    def get_tensor_mode(self, name):
        return self.env.trt.TensorIOMode.INPUT if name == self.input_name else self.env.trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self.env.trt.Dims((-1,) + self.opt[1:] if name == self.input_name else (-1, 7))

    def get_tensor_dtype(self, name):
        return self.env.trt.DataType.FLOAT

    def get_tensor_profile_shape(self, name, profile_index):
        if name != self.input_name or profile_index != 0:
            raise ApiMisuse(f"profile shape of {name!r} profile {profile_index}")
        return [self.env.trt.Dims(s) for s in (self.min, self.opt, self.max)]

    def create_execution_context(self):
        return self.env.made(
            "create_execution_context", lambda: self.env.strict("IExecutionContext", ModelContext(self.env, self))
        )

    def create_engine_inspector(self):
        return self.env.strict(self.env.inspector_class, ModelInspector(self.env, self))


class ModelContext:
    def __init__(self, env, engine):
        self.env, self.engine = env, engine
        self.shape, self.addresses = None, {}
        self.shape_changed = True

    def set_input_shape(self, name, shape):
        e = self.engine
        shape = tuple(shape)
        if self.env.cuda.capturing:
            self.env.journal.violations.append(f"set_input_shape({shape}) inside a CUDA graph capture")
        if (
            self.env.scenario.shape_refused
            or name != e.input_name
            or not all(lo <= s <= hi for lo, s, hi in zip(e.min, shape, e.max))
        ):
            return False
        if shape != self.shape:
            self.shape_changed = True
        self.shape = shape
        return True

    def set_tensor_address(self, name, memory):
        if self.env.scenario.address_refused or name not in (self.engine.input_name, "logits"):
            return False
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle):
        cuda = self.env.cuda
        cuda.require_context("execute_async_v3")
        self.env.journal.log("enqueue", (), {"captured": cuda.capturing, "shape": self.shape})
        if self.env.scenario.execute_fails or self.shape is None or len(self.addresses) != 2:
            return False
        if cuda.capturing and self.shape_changed:
            self.env.journal.violations.append(
                "enqueue captured into a CUDA graph before an uncaptured enqueue at this shape"
            )
            return False
        if not cuda.capturing:
            self.shape_changed = False
        return True


class ModelInspector:
    def __init__(self, env, engine):
        self.env, self.engine = env, engine
        self.execution_context = None

    def get_engine_information(self, format):
        if format != self.env.trt.LayerInformationFormat.JSON:
            raise ApiMisuse(f"get_engine_information({format!r})")
        ctx = self.execution_context
        known = ctx is not None and ctx._model.shape is not None
        fmt = f"Row major linear {self.engine.payload['precision']}" if known else "N/A due to dynamic shapes"
        n_dla = self.engine.payload.get("dla_layers", 0)
        return json.dumps(
            {
                "Layers": [
                    {
                        "Name": f"layer{i}",
                        "LayerType": "DLA" if i < n_dla else "API-check",
                        "Outputs": [{"Format/Datatype": fmt}],
                    }
                    for i in range(3)
                ]
            }
        )


# ---------------------------------------------------------------- the CUDA side (fertrt's own small interface)
class DevicePtr(int):
    def __new__(cls, address, nbytes):
        obj = int.__new__(cls, address)
        obj.nbytes = nbytes
        return obj


class ModelCuda:
    """Stands in for fertrt.runtime.trt_backend.cuda_api(): records stream work, checks copy sizes, counts every
    allocation (device, host, event, stream) against its free, and flags a sync inside a CUDA graph capture."""

    name = "api-check"
    features = frozenset({"cuda-graph", "zero-copy", "threads"})

    def __init__(self, journal, integrated=False):
        self.journal, self.integrated = journal, integrated
        self.capturing = False
        self.next_address = 0x10000
        self.live = {}  # id -> kind of every allocation not yet freed
        self.allocated = {"device": 0, "host": 0, "event": 0, "stream": 0}
        self.freed = {"device": 0, "host": 0, "event": 0, "stream": 0}
        self.activations = 0
        # the CUDA threading rule: the context is current on the thread that opened the binding; any other thread
        # must make it current first (fertrt's ThreadContext does: this models push/pop per thread)
        from fertrt.runtime.trt_backend import ThreadContext

        self._threads = threading.local()
        self.owner = threading.get_ident()

        def push():
            self.activations += 1
            self._threads.current = True

        def pop():
            self._threads.current = False

        self.activate = ThreadContext(push, pop)

    def require_context(self, what):
        if threading.get_ident() != self.owner and not getattr(self._threads, "current", False):
            self.journal.violations.append(f"{what} on a thread where the CUDA context is not current")

    def _alloc(self, kind, obj):
        self.allocated[kind] += 1
        self.live[id(obj)] = (kind, obj)
        return obj

    def _free(self, kind, obj):
        entry = self.live.pop(id(obj), None)
        if entry is None or entry[0] != kind:
            self.journal.violations.append(f"free of a {kind} that is not allocated (double free?)")
            return
        self.freed[kind] += 1

    def device_info(self):
        return {"name": "API-check stand-in (no GPU)", "compute_capability": "8.7", "integrated": self.integrated}

    def stream(self):
        return self._alloc("stream", object())

    def stream_handle(self, s):
        return 0x5000

    def alloc_device(self, nbytes):
        self.next_address += int(nbytes) + 256
        return self._alloc("device", DevicePtr(self.next_address, int(nbytes)))

    def alloc_host(self, shape, dtype, mapped=False):
        arr = self._alloc("host", np.zeros(shape, dtype))
        if not mapped:
            return arr, None
        self.next_address += arr.nbytes + 256
        return arr, DevicePtr(self.next_address, arr.nbytes)  # the mapped view of the host buffer: freed with it

    def free_device(self, dev):
        self._free("device", dev)

    def free_host(self, arr):
        self._free("host", arr)

    def destroy_event(self, ev):
        self._free("event", ev)

    def destroy_stream(self, s):
        self._free("stream", s)

    def _copy(self, what, dev, host):
        self.require_context(what)
        if isinstance(dev, DevicePtr) and host.nbytes > dev.nbytes:
            self.journal.violations.append(f"{what} of {host.nbytes} bytes into a {dev.nbytes}-byte device buffer")
        self.journal.log(what, (host.nbytes,), {"captured": self.capturing})

    def htod_async(self, dev, host, s):
        self._copy("htod", dev, host)

    def dtoh_async(self, host, dev, s):
        self._copy("dtoh", dev, host)

    def copy_htod(self, dev, host):
        self._copy("htod_sync", dev, host)

    def sync(self, s):
        if self.capturing:  # cudaStreamSynchronize on a capturing stream fails and invalidates the capture
            self.journal.violations.append("stream synchronised inside a CUDA graph capture")
        self.journal.log("sync")

    def graph_capture(self, s, fn):
        from fertrt.runtime.trt_backend import CapturedGraph

        self.journal.log("capture_begin")
        self.capturing = True
        try:
            fn()
        finally:
            self.capturing = False
            self.journal.log("capture_end")
        graph_id = len([e for e in self.journal.names() if e == "capture_end"])
        return CapturedGraph(
            launch=lambda: self.journal.log("graph_launch", (graph_id,)),
            free=lambda: self.journal.log("graph_free", (graph_id,)),
        )

    def event(self):
        return self._alloc("event", object())

    def record(self, ev, s):
        if id(ev) not in self.live:
            self.journal.violations.append("an event recorded after it was destroyed")
        self.journal.log("event_record")

    def elapsed_ms(self, start, end):
        return float("nan")  # nothing ran: no time to report

    def mem_used_bytes(self):
        return 0


# ---------------------------------------------------------------- the module seen by fertrt
class Env:
    """The real bindings module with Builder, Runtime and OnnxParser replaced by strict factories."""

    def __init__(self, real_trt, scenario=None, integrated=False):
        import types

        self.trt = real_trt
        self.journal = Journal()
        self.scenario = scenario or Scenario()
        self.cuda = ModelCuda(self.journal, integrated)
        self.inspector_class = "EngineInspector" if hasattr(real_trt, "EngineInspector") else "IEngineInspector"
        module = types.ModuleType("tensorrt")
        module.__dict__.update(
            {k: v for k, v in vars(real_trt).items() if not k.startswith("__") or k == "__version__"}
        )
        module.Builder = _Factory(self, real_trt.Builder, lambda logger: ModelBuilder(self, logger))
        module.Runtime = _Factory(self, real_trt.Runtime, lambda logger: ModelRuntime(self, logger))
        module.OnnxParser = _Factory(
            self, real_trt.OnnxParser, lambda network, logger: ModelParser(self, network, logger)
        )
        module.init_libnvinfer_plugins = self._init_plugins
        self.module = module
        self.loggers = []  # every logger handed to Builder/Runtime/OnnxParser/init_libnvinfer_plugins

    def strict(self, class_name, model):
        return Strict(self.trt, getattr(self.trt, class_name), model, self.journal)

    def made(self, factory, make):
        """What a TensorRT factory returns: None when the scenario says it fails (no device, out of memory)."""
        self.journal.log(f"factory {factory}")
        return None if factory in self.scenario.none_from else make()

    def _init_plugins(self, logger, namespace):
        """The REAL init_libnvinfer_plugins (over the stub library), journaled."""
        self.loggers.append(logger)
        self.plugins_ready = True
        self.journal.log("init_libnvinfer_plugins", (namespace,), {})
        return self.trt.init_libnvinfer_plugins(logger, namespace)

    def require_plugins(self, what):
        if not getattr(self, "plugins_ready", False):
            self.journal.violations.append(
                f"{what} before init_libnvinfer_plugins (plugin-backed operators would not load)"
            )


class _Factory:
    """Called like the real class (its __init__ signature is checked); attribute lookups go to the real class."""

    def __init__(self, env, real, make):
        self._env, self._real, self._make = env, real, make

    def __call__(self, *args, **kwargs):
        check_call(self._env.trt, self._real, "__init__", args, kwargs)
        self._env.journal.log(f"{self._real.__name__}()", args, kwargs)
        self._env.loggers += [a for a in args if isinstance(a, self._env.trt.ILogger)]
        if self._real.__name__ in self._env.scenario.none_from:
            return None
        return Strict(self._env.trt, self._real, self._make(*args, **kwargs), self._env.journal)

    def __getattr__(self, name):
        return getattr(self._real, name)
