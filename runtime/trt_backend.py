"""TensorRT backend: the tensor API of TensorRT 8.5 through 11 (num_io_tensors, get_tensor_name,
set_input_shape, set_tensor_address, execute_async_v3), never the removed binding API.

CUDA through cuda-python when it imports (it supports every feature fertrt uses, CUDA graphs included),
else pycuda; `cuda_api()` says which one is used (its `.name`). Both work on the device's primary CUDA
context. Page-locked host buffers and device buffers are allocated once for the profile's maximum batch
and freed by close() (runners are context managers); copies in, execution and copies out are queued on
one stream. On integrated GPUs (Jetson) mapped page-locked memory lets the GPU read the input in place
(--zero-copy). Optional CUDA graph capture for a fixed shape, re-captured when the batch size changes.

Threads: a CUDA context is current per thread, so every call into TensorRT or CUDA runs inside
`cuda.activate()`, which makes the context current on a thread other than the one that opened the
binding (and restores that thread afterwards). A TrtRunner owns one execution context and one stream
and guards each call with a lock, so sharing one across threads is correct but serial; for concurrency
open one runner per thread (`bench --streams` does).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading

import numpy as np

from fertrt.errors import FertrtError

from .runners import Runner

# TensorRT DataType member -> numpy dtype. fertrt's own map: TensorRT 8.5's trt.nptype (JetPack 5.1) uses np.bool,
# which numpy removed in 1.24. BF16, FP8, INT4 and FP4 have no numpy type: such I/O tensors are refused by name.
NUMPY_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def numpy_dtype(trt_dtype) -> np.dtype:
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in NUMPY_DTYPES:
        raise FertrtError(
            f"TensorRT data type {name} has no numpy equivalent; fertrt runs engines whose inputs and "
            f"outputs are {', '.join(NUMPY_DTYPES)}"
        )
    return np.dtype(NUMPY_DTYPES[name])


# ---------------------------------------------------------------- TensorRT process state
_LOGGERS: dict = {}  # id(tensorrt module) -> (module, its one Logger)
_PLUGINS: dict = {}  # id(tensorrt module) -> (module, whether init_libnvinfer_plugins succeeded)


def trt_logger(trt, verbose: bool = False):
    """The process's one TensorRT logger: TensorRT keeps a single logger pointer for every Builder and Runtime
    (NVIDIA/TensorRT#1475), so each new Logger would only replace it; Polygraphy shares one the same way."""
    entry = _LOGGERS.get(id(trt))
    if entry is None or entry[0] is not trt:
        entry = (trt, trt.Logger(trt.Logger.WARNING))
        _LOGGERS[id(trt)] = entry
    logger = entry[1]
    if hasattr(logger, "min_severity"):
        logger.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return logger


def init_plugins(trt, logger) -> bool:
    """Register TensorRT's bundled plugins once, before any parse or deserialize, so plugin-backed ONNX operators
    and engines that contain plugin layers load (as trtexec and Polygraphy do)."""
    entry = _PLUGINS.get(id(trt))
    if entry is None or entry[0] is not trt:
        ok = bool(trt.init_libnvinfer_plugins(logger, ""))
        if not ok:
            print(
                "note: TensorRT's plugin library did not initialise (init_libnvinfer_plugins returned False); "
                "models that need its plugins will not parse or load",
                file=sys.stderr,
            )
        entry = (trt, ok)
        _PLUGINS[id(trt)] = entry
    return entry[1]


# ---------------------------------------------------------------- CUDA: contexts and threads
class ThreadContext:
    """Makes the binding's CUDA context current around a call from any thread.

    CUDA keeps a current context per host thread: the thread that opened the binding has it; any other thread
    (bench --streams workers, a server's request threads) must push it before calling TensorRT or CUDA and pop
    it afterwards. `push`/`pop` are the binding's own (pycuda: Context.push/pop; cuda-python: cudaSetDevice,
    whose pop does nothing). Re-entrant per thread."""

    def __init__(self, push, pop):
        self._push, self._pop = push, pop
        self.owner = threading.get_ident()
        self._local = threading.local()

    @contextlib.contextmanager
    def __call__(self):
        depth = getattr(self._local, "depth", 0)
        if threading.get_ident() == self.owner or depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        self._push()
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            self._pop()


class _PyCuda:
    name = "pycuda"
    features = frozenset({"zero-copy", "threads"})

    def __init__(self):
        import atexit

        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.device = cuda.Device(0)
        # the device's primary context (the one the CUDA runtime and TensorRT use), made current on this thread
        self.context = self.device.retain_primary_context()
        self.context.push()
        self.activate = ThreadContext(self.context.push, self.cuda.Context.pop)
        atexit.register(self._release)

    def _release(self):
        try:
            self.cuda.Context.pop()
        except Exception:  # noqa: BLE001 - at exit, on another thread or already popped: nothing left to do
            pass

    def device_info(self):
        d = self.device
        cc = d.compute_capability()
        return {
            "name": d.name(),
            "compute_capability": f"{cc[0]}.{cc[1]}",
            "integrated": bool(d.get_attribute(self.cuda.device_attribute.INTEGRATED)),
        }

    def stream(self):
        return self.cuda.Stream()

    def stream_handle(self, s):
        return s.handle

    def alloc_device(self, nbytes):
        return self.cuda.mem_alloc(max(int(nbytes), 1))

    def alloc_host(self, shape, dtype, mapped=False):
        if mapped:
            arr = self.cuda.pagelocked_empty(shape, dtype, mem_flags=self.cuda.host_alloc_flags.DEVICEMAP)
            return arr, int(arr.base.get_device_pointer())
        return self.cuda.pagelocked_empty(shape, dtype), None

    def free_device(self, dev):
        dev.free()

    def free_host(self, arr):
        arr.base.free()

    def destroy_event(self, ev):
        pass  # pycuda's Event frees itself when collected

    def destroy_stream(self, s):
        pass  # likewise its Stream

    def htod_async(self, dev, host, s):
        self.cuda.memcpy_htod_async(dev, host, s)

    def dtoh_async(self, host, dev, s):
        self.cuda.memcpy_dtoh_async(host, dev, s)

    def copy_htod(self, dev, host):
        self.cuda.memcpy_htod(dev, host)

    def sync(self, s):
        s.synchronize()

    def graph_capture(self, s, fn):
        raise FertrtError("CUDA graphs need cuda-python (pip install cuda-python); pycuda is in use here")

    def event(self):
        return self.cuda.Event()

    def record(self, ev, s):
        ev.record(s)

    def elapsed_ms(self, start, end):
        end.synchronize()
        return end.time_since(start)

    def mem_used_bytes(self):
        free, total = self.cuda.mem_get_info()
        return total - free


def arg_names(fn) -> list:
    """Parameter names of a cuda-python (Cython) function: from its signature, else from the docstring's first line
    (`name(a, char *b, size_t c)`), which Cython writes with embedsignature."""
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        pass
    first = (getattr(fn, "__doc__", None) or "").strip().splitlines()[:1]
    if not first or "(" not in first[0]:
        raise FertrtError(f"cannot read the signature of {getattr(fn, '__name__', fn)}")
    inner = first[0].split("(", 1)[1].rsplit(")", 1)[0]
    return [p.split("=")[0].strip().replace("*", " ").split()[-1] for p in inner.split(",") if p.strip()]


def graph_instantiate_args(fn, graph) -> tuple:
    """Arguments for cudaGraphInstantiate, whose signature changed: cuda-python 11.x (JetPack 5) has
    (graph, pLogBuffer, bufferSize) and returns (err, graphExec, errorNode); 12.x and 13.x have (graph, flags)
    and return (err, graphExec). Read from the function itself, not from a version number."""
    names = arg_names(fn)
    if len(names) == 3:
        return (graph, b"", 0)  # no log buffer
    if len(names) == 2:
        return (graph, 0)
    raise FertrtError(
        f"cudaGraphInstantiate{tuple(names)}: a signature fertrt does not know (expected 2 or 3 parameters)"
    )


class _CudaPython:
    name = "cuda-python"
    features = frozenset({"cuda-graph", "zero-copy", "threads"})

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self.device = device
        self._host_ptrs = {}  # host array address -> the cudaHostAlloc pointer to free
        # the runtime API uses the device's primary context on every thread once the device is set there
        self.activate = ThreadContext(lambda: self._check(self.rt.cudaSetDevice(self.device)), lambda: None)

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise FertrtError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def device_info(self):
        prop = self._check(self.rt.cudaGetDeviceProperties(self.device))
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return {
            "name": name.strip("\x00"),
            "compute_capability": f"{prop.major}.{prop.minor}",
            "integrated": bool(prop.integrated),
        }

    def stream(self):
        return self._check(self.rt.cudaStreamCreate())

    def stream_handle(self, s):
        return int(s)

    def alloc_device(self, nbytes):
        return self._check(self.rt.cudaMalloc(max(int(nbytes), 1)))

    def alloc_host(self, shape, dtype, mapped=False):
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        flags = self.rt.cudaHostAllocMapped if mapped else self.rt.cudaHostAllocDefault
        ptr = self._check(self.rt.cudaHostAlloc(nbytes, flags))
        buf = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(int(ptr)))
        arr = buf[: int(np.prod(shape)) * np.dtype(dtype).itemsize].view(dtype).reshape(shape)
        self._host_ptrs[arr.ctypes.data] = ptr
        dev = int(self._check(self.rt.cudaHostGetDevicePointer(ptr, 0))) if mapped else None
        return arr, dev

    def free_device(self, dev):
        self._check(self.rt.cudaFree(dev))

    def free_host(self, arr):
        ptr = self._host_ptrs.pop(arr.ctypes.data, None)
        if ptr is not None:
            self._check(self.rt.cudaFreeHost(ptr))

    def destroy_event(self, ev):
        self._check(self.rt.cudaEventDestroy(ev))

    def destroy_stream(self, s):
        self._check(self.rt.cudaStreamDestroy(s))

    def htod_async(self, dev, host, s):
        self._check(
            self.rt.cudaMemcpyAsync(
                int(dev), host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, s
            )
        )

    def dtoh_async(self, host, dev, s):
        self._check(
            self.rt.cudaMemcpyAsync(
                host.ctypes.data, int(dev), host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, s
            )
        )

    def copy_htod(self, dev, host):
        self._check(
            self.rt.cudaMemcpy(int(dev), host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
        )

    def sync(self, s):
        self._check(self.rt.cudaStreamSynchronize(s))

    def graph_capture(self, s, fn) -> "CapturedGraph":
        """Capture what `fn` enqueues on stream `s`; the capture is ended (and discarded) if `fn` fails."""
        self._check(self.rt.cudaStreamBeginCapture(s, self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            fn()
        except BaseException:
            err, graph = self.rt.cudaStreamEndCapture(s)
            if int(err) == 0 and graph is not None:
                self.rt.cudaGraphDestroy(graph)
            raise
        graph = self._check(self.rt.cudaStreamEndCapture(s))
        try:
            result = self.rt.cudaGraphInstantiate(*graph_instantiate_args(self.rt.cudaGraphInstantiate, graph))
            exec_graph = self._check(result[:2])  # 11.x adds the error node as a third value
        except FertrtError:
            self.rt.cudaGraphDestroy(graph)
            raise
        return CapturedGraph(
            launch=lambda: self._check(self.rt.cudaGraphLaunch(exec_graph, s)),
            free=lambda: (self.rt.cudaGraphExecDestroy(exec_graph), self.rt.cudaGraphDestroy(graph)),
        )

    def event(self):
        return self._check(self.rt.cudaEventCreate())

    def record(self, ev, s):
        self._check(self.rt.cudaEventRecord(ev, s))

    def elapsed_ms(self, start, end):
        self._check(self.rt.cudaEventSynchronize(end))
        return float(self._check(self.rt.cudaEventElapsedTime(start, end)))

    def mem_used_bytes(self):
        free, total = self._check(self.rt.cudaMemGetInfo())
        return total - free


class CapturedGraph:
    """An instantiated CUDA graph: launch() replays it, free() releases it (once)."""

    def __init__(self, launch, free):
        self.launch, self._free = launch, free

    def free(self):
        if self._free is not None:
            self._free()
            self._free = None


BINDINGS = (("cuda-python", _CudaPython), ("pycuda", _PyCuda))  # in order of preference
_CUDA = None


def choose_binding(importable, features=()) -> str:
    """The CUDA binding to use: the first in BINDINGS that imports and supports every feature asked for
    (cuda-python supports them all, so it wins whenever it is installed). `importable`: names that import."""
    wanted = set(features)
    for name, cls in BINDINGS:
        if name in importable and wanted <= cls.features:
            return name
    if not importable:
        raise FertrtError("the TensorRT backend needs cuda-python or pycuda (pip install cuda-python)")
    missing = ", ".join(sorted(wanted - set().union(*(cls.features for n, cls in BINDINGS if n in importable))))
    raise FertrtError(
        f"{missing} needs cuda-python (pip install cuda-python); only {', '.join(sorted(importable))} is installed here"
    )


def cuda_api(features=()):
    """The process's one CUDA binding (cuda-python if it imports, else pycuda), checked to support `features`
    ('cuda-graph', 'zero-copy', 'threads'); one clear error when none does. One per process, so every buffer,
    stream and engine lives in the same context."""
    global _CUDA
    if _CUDA is None:
        errors, importable = [], {}
        for name, cls in BINDINGS:
            try:
                importable[name] = cls()
            except ImportError as exc:
                errors.append(f"{name}: {exc}")
            if importable:
                break  # the preferred one that imports: never open a second binding in one process
        if not importable:
            raise FertrtError(
                "the TensorRT backend needs cuda-python or pycuda (pip install cuda-python); " + "; ".join(errors)
            )
        _CUDA = next(iter(importable.values()))
    missing = set(features) - set(getattr(_CUDA, "features", ()))
    if missing:  # the binding in use lacks a feature asked for
        raise FertrtError(
            f"{', '.join(sorted(missing))} needs cuda-python (pip install cuda-python); {_CUDA.name} is in use here"
        )
    return _CUDA


# ---------------------------------------------------------------- engine loading
def deserialize_engine(trt, data: bytes, *, version_compatible: bool = False, logger=None):
    """ICudaEngine from a plan; None if TensorRT refuses it. A version-compatible plan carries the lean
    runtime as host code, which TensorRT runs only when Runtime.engine_host_code_allowed is set first
    (as trtexec and Polygraphy do); it stays off for every other engine."""
    logger = logger or trt_logger(trt)
    init_plugins(trt, logger)
    runtime = trt.Runtime(logger)
    if runtime is None:
        raise FertrtError("TensorRT could not create a Runtime (is the CUDA driver usable? see TensorRT's log above)")
    if version_compatible:
        if not hasattr(runtime, "engine_host_code_allowed"):
            raise FertrtError(
                f"this engine was built version-compatible; TensorRT {trt.__version__} cannot load such engines (8.6+ can)"
            )
        runtime.engine_host_code_allowed = True
    return runtime.deserialize_cuda_engine(data)  # the bindings keep the runtime alive with the engine


def _expect(ok, what):
    """TensorRT reports many failures only as a False return; never carry on past one."""
    if not ok:
        raise FertrtError(f"TensorRT refused {what} (rerun with a TensorRT log for details)")


# ---------------------------------------------------------------- the runner
class TrtRunner(Runner):
    backend = "tensorrt"

    def __init__(self, path, cuda_graph: bool = False, zero_copy: bool | None = None, rebuild: bool = False):
        from fertrt.engine.compat import capabilities_of, import_tensorrt, require_supported
        from fertrt.engine.sidecar import compatibility_problems, read_sidecar

        self._closed = True  # until every resource below exists, close() has nothing to free
        side = read_sidecar(path)
        super().__init__(
            path,
            {
                "class_names": side["class_names"],
                "preprocess": side["preprocess"],
                "precision": side.get("precision", {}).get("requested", "fp32"),
                "data_spec": side.get("data_spec"),
                "model_name": side.get("model_name"),
                "explain_outputs": side.get("explain_outputs", []),
            },
        )
        trt = import_tensorrt()
        require_supported(capabilities_of(trt))
        self.cuda = cuda_api(("cuda-graph",) if cuda_graph else ())
        self.binding = self.cuda.name
        device = self.cuda.device_info()
        problems = compatibility_problems(side, trt.__version__, device)
        if problems:
            onnx = side.get("source_onnx")
            if rebuild and onnx:
                from fertrt.engine.build import build
                from fertrt.engine.plan import BuildOptions

                build(
                    onnx,
                    path,
                    BuildOptions(
                        **{k: v for k, v in side["build_options"].items() if k in BuildOptions.__dataclass_fields__}
                    ),
                )
                side = read_sidecar(path)
            else:
                raise FertrtError(
                    f"{path}: cannot run here: {'; '.join(problems)}. Rebuild it on this device: "
                    f"`fertrt build-engine {onnx or 'MODEL.onnx'} -o {path}` (or pass --rebuild)"
                )
        self.trt = trt
        self.zero_copy = device.get("integrated", False) if zero_copy is None else zero_copy
        self.lock = threading.Lock()
        self.use_graph = cuda_graph
        self._graph, self._graph_batch = None, None
        self._input_shape = None
        self.host, self.dev = {}, {}
        self._device_allocs, self._host_allocs, self._events, self.stream = [], [], [], None
        self._closed = False
        try:
            with self.cuda.activate():
                self._open(path, side)
        except BaseException:
            self.close()
            raise

    def _open(self, path, side):
        trt = self.trt
        with open(path, "rb") as f:
            self.runtime_version_compatible = bool(side.get("build_options", {}).get("version_compatible"))
            self.engine = deserialize_engine(trt, f.read(), version_compatible=self.runtime_version_compatible)
        if self.engine is None:
            raise FertrtError(
                f"{path}: TensorRT {trt.__version__} could not deserialize this engine (built with "
                f"TensorRT {side.get('tensorrt_version')}; the file may be damaged: TensorRT's log says why)"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise FertrtError(f"{path}: TensorRT could not create an execution context (out of device memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if len(self.inputs) != 1:
            raise FertrtError(f"{path}: expected one image input, the engine has {self.inputs}")
        self.input_name = self.inputs[0]
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        if shape[0] == -1:
            mn, _, mx = self.engine.get_tensor_profile_shape(self.input_name, 0)
            self.min_batch, self.max_batch = int(mn[0]), int(mx[0])
        else:
            self.min_batch = self.max_batch = int(shape[0])
        self.stream = self.cuda.stream()
        for name in names:
            dims = list(self.engine.get_tensor_shape(name))
            dims[0] = self.max_batch
            if any(d < 0 for d in dims[1:]):
                raise FertrtError(f"{path}: tensor {name} has dynamic dims {dims} beyond the batch axis")
            dtype = numpy_dtype(self.engine.get_tensor_dtype(name))
            host, mapped_ptr = self.cuda.alloc_host(tuple(dims), dtype, mapped=self.zero_copy)
            self._host_allocs.append(host)
            self.host[name] = host
            if mapped_ptr is None:
                mapped_ptr = self.cuda.alloc_device(host.nbytes)
                self._device_allocs.append(mapped_ptr)
            self.dev[name] = mapped_ptr
            _expect(self.context.set_tensor_address(name, int(self.dev[name])), f"the address of tensor {name}")

    def _enqueue(self, n):
        s = self.cuda.stream_handle(self.stream)
        if not self.zero_copy:
            self.cuda.htod_async(self.dev[self.input_name], self.host[self.input_name][:n], self.stream)
        _expect(self.context.execute_async_v3(s), "to enqueue the engine (execute_async_v3)")
        if not self.zero_copy:
            for name in self.outputs:
                self.cuda.dtoh_async(self.host[name][:n], self.dev[name], self.stream)

    def _set_batch(self, x):
        shape = tuple(x.shape)
        if shape == self._input_shape:  # unchanged: leave the context (and a captured graph) as they are
            return
        _expect(self.context.set_input_shape(self.input_name, shape), f"input shape {shape} for {self.input_name}")
        self._input_shape = shape

    def _run_graph(self, n):
        """CUDA graph path: replay the graph captured for this batch size, else capture one.

        TensorRT needs one uncaptured enqueue after a shape change (it finishes deferred work there), so
        the first call for a batch size runs plain, synchronises, then captures; its outputs come from
        that plain run. Nothing inside the capture synchronises or changes a shape. If capture fails, the
        runner says so and stays on plain execution."""
        if self._graph is not None and self._graph_batch == n:
            self._graph.launch()
            return
        if self._graph is not None:
            self._graph.free()
            self._graph, self._graph_batch = None, None
        self._enqueue(n)
        self.cuda.sync(self.stream)
        try:
            self._graph = self.cuda.graph_capture(self.stream, lambda: self._enqueue(n))
            self._graph_batch = n
        except FertrtError as exc:
            self.use_graph = False
            print(
                f"note: {self.path}: CUDA graph capture failed ({exc}); running without a CUDA graph", file=sys.stderr
            )

    def close(self):
        """Free the CUDA graph, buffers, events and stream and drop the TensorRT objects; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with self.lock, self.cuda.activate():
            if self._graph is not None:
                self._graph.free()
                self._graph = None
            if self.stream is not None:
                try:
                    self.cuda.sync(self.stream)  # nothing may still use the buffers below
                except FertrtError as exc:  # a failed stream: still free what can be freed
                    print(f"note: {self.path}: the CUDA stream failed while closing ({exc})", file=sys.stderr)
            for dev in self._device_allocs:
                self.cuda.free_device(dev)
            for host in self._host_allocs:
                self.cuda.free_host(host)
            for ev in self._events:
                self.cuda.destroy_event(ev)
            if self.stream is not None:
                self.cuda.destroy_stream(self.stream)
            self._device_allocs, self._host_allocs, self._events, self.stream = [], [], [], None
            self.host, self.dev = {}, {}
            self.__dict__.pop("context", None)  # the context before the engine it came from
            self.__dict__.pop("engine", None)

    @property
    def describe(self) -> str:
        return f"{self.backend}:{self.path.name} (CUDA via {self.binding})"

    def _check_open(self):
        if self._closed:
            raise FertrtError(f"{self.path}: this TensorRT runner is closed")

    def infer_timed(self, batch) -> dict:
        """One inference with CUDA events around copy in, execute and copy out (ms, device-side).
        The four events are created once per runner and reused."""
        x = self._check_batch(batch)
        n = len(x)
        self._check_profile(n)
        with self.lock, self.cuda.activate():
            self._check_open()
            if not self._events:
                self._events = [self.cuda.event() for _ in range(4)]
            ev = self._events
            s = self.cuda.stream_handle(self.stream)
            self.host[self.input_name][:n] = x
            self._set_batch(x)
            self.cuda.record(ev[0], self.stream)
            if not self.zero_copy:
                self.cuda.htod_async(self.dev[self.input_name], self.host[self.input_name][:n], self.stream)
            self.cuda.record(ev[1], self.stream)
            _expect(self.context.execute_async_v3(s), "to enqueue the engine (execute_async_v3)")
            self.cuda.record(ev[2], self.stream)
            if not self.zero_copy:
                for name in self.outputs:
                    self.cuda.dtoh_async(self.host[name][:n], self.dev[name], self.stream)
            self.cuda.record(ev[3], self.stream)
            self.cuda.sync(self.stream)
            return {
                "copy_in": self.cuda.elapsed_ms(ev[0], ev[1]),
                "execute": self.cuda.elapsed_ms(ev[1], ev[2]),
                "copy_out": self.cuda.elapsed_ms(ev[2], ev[3]),
            }

    def device_memory_mb(self) -> float:
        with self.cuda.activate():
            return self.cuda.mem_used_bytes() / 2**20

    def _check_profile(self, n):
        if not self.min_batch <= n <= self.max_batch:
            raise FertrtError(
                f"{self.path}: batch {n} is outside the engine's profile [{self.min_batch}, {self.max_batch}]; "
                f"rebuild with --batch-profile MIN,OPT,MAX covering it"
            )

    def infer_outputs(self, batch):
        x = self._check_batch(batch)
        n = len(x)
        self._check_profile(n)
        with self.lock, self.cuda.activate():
            self._check_open()
            self.host[self.input_name][:n] = x
            self._set_batch(x)
            if self.use_graph:
                self._run_graph(n)
            else:
                self._enqueue(n)
            self.cuda.sync(self.stream)
            return {
                name: np.array(self.host[name][:n], dtype=np.float32)
                for name in self.outputs
                if name in self.output_names
            }
