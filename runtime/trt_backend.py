"""TensorRT backend: the tensor API of TensorRT 8.5 through 11 (num_io_tensors, get_tensor_name,
set_input_shape, set_tensor_address, execute_async_v3), never the removed binding API.

CUDA through pycuda by default, cuda-python when pycuda is absent. Page-locked host buffers and
device buffers are allocated once for the profile's maximum batch; copies in, execution and
copies out are queued on one stream. On integrated GPUs (Jetson) mapped page-locked memory lets
the GPU read the input in place (--zero-copy). Optional CUDA graph capture for a fixed shape
(cuda-python), re-captured when the batch size changes.

Thread safety: a TrtRunner owns one execution context and one stream and guards `infer` with a
lock, so sharing one across threads is safe but serial; for concurrency open one runner per
thread (they can share the engine file; each deserializes its own context).
"""
from __future__ import annotations

import sys
import threading

import numpy as np

from fertrt.errors import FertrtError

from .runners import Runner


# ---------------------------------------------------------------- CUDA helpers
class _PyCuda:
    name = "pycuda"

    def __init__(self):
        import pycuda.autoinit  # noqa: F401 - creates the primary context
        import pycuda.driver as cuda

        self.cuda = cuda

    def device_info(self):
        d = self.cuda.Device(0)
        cc = d.compute_capability()
        return {"name": d.name(), "compute_capability": f"{cc[0]}.{cc[1]}",
                "integrated": bool(d.get_attribute(self.cuda.device_attribute.INTEGRATED))}

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


class _CudaPython:
    name = "cuda-python"

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise FertrtError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def device_info(self):
        prop = self._check(self.rt.cudaGetDeviceProperties(0))
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return {"name": name.strip("\x00"), "compute_capability": f"{prop.major}.{prop.minor}", "integrated": bool(prop.integrated)}

    def stream(self):
        return self._check(self.rt.cudaStreamCreate())

    def stream_handle(self, s):
        return int(s)

    def alloc_device(self, nbytes):
        return self._check(self.rt.cudaMalloc(max(int(nbytes), 1)))

    def alloc_host(self, shape, dtype, mapped=False):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        flags = self.rt.cudaHostAllocMapped if mapped else self.rt.cudaHostAllocDefault
        ptr = self._check(self.rt.cudaHostAlloc(nbytes, flags))
        buf = (np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(int(ptr))))
        arr = buf.view(dtype).reshape(shape)
        dev = int(self._check(self.rt.cudaHostGetDevicePointer(ptr, 0))) if mapped else None
        return arr, dev

    def htod_async(self, dev, host, s):
        self._check(self.rt.cudaMemcpyAsync(int(dev), host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, s))

    def dtoh_async(self, host, dev, s):
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, int(dev), host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, s))

    def copy_htod(self, dev, host):
        self._check(self.rt.cudaMemcpy(int(dev), host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice))

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
            exec_graph = self._check(self.rt.cudaGraphInstantiate(graph, 0))
        except FertrtError:
            self.rt.cudaGraphDestroy(graph)
            raise
        return CapturedGraph(launch=lambda: self._check(self.rt.cudaGraphLaunch(exec_graph, s)),
                             free=lambda: (self.rt.cudaGraphExecDestroy(exec_graph), self.rt.cudaGraphDestroy(graph)))

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


_CUDA = None


def cuda_api():
    """pycuda if it imports, else cuda-python; one clear error when neither does."""
    global _CUDA
    if _CUDA is None:
        errors = []
        for cls in (_PyCuda, _CudaPython):
            try:
                _CUDA = cls()
                break
            except ImportError as exc:
                errors.append(f"{cls.name}: {exc}")
        if _CUDA is None:
            raise FertrtError("the TensorRT backend needs pycuda or cuda-python (pip install pycuda, or pip install cuda-python); "
                              + "; ".join(errors))
    return _CUDA


# ---------------------------------------------------------------- engine loading
def deserialize_engine(trt, data: bytes, *, version_compatible: bool = False, logger=None):
    """ICudaEngine from a plan; None if TensorRT refuses it. A version-compatible plan carries the lean
    runtime as host code, which TensorRT runs only when Runtime.engine_host_code_allowed is set first
    (as trtexec and Polygraphy do); it stays off for every other engine."""
    runtime = trt.Runtime(logger or trt.Logger(trt.Logger.WARNING))
    if version_compatible:
        if not hasattr(runtime, "engine_host_code_allowed"):
            raise FertrtError(f"this engine was built version-compatible; TensorRT {trt.__version__} cannot load such engines (8.6+ can)")
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

        side = read_sidecar(path)
        super().__init__(path, {"class_names": side["class_names"], "preprocess": side["preprocess"],
                                "precision": side.get("precision", {}).get("requested", "fp32"), "data_spec": side.get("data_spec"),
                                "model_name": side.get("model_name"), "explain_outputs": side.get("explain_outputs", [])})
        trt = import_tensorrt()
        require_supported(capabilities_of(trt))
        self.cuda = cuda_api()
        device = self.cuda.device_info()
        problems = compatibility_problems(side, trt.__version__, device)
        if problems:
            onnx = side.get("source_onnx")
            if rebuild and onnx:
                from fertrt.engine.commands import build
                from fertrt.engine.plan import BuildOptions

                build(onnx, path, BuildOptions(**{k: v for k, v in side["build_options"].items() if k in BuildOptions.__dataclass_fields__}))
                side = read_sidecar(path)
            else:
                raise FertrtError(f"{path}: cannot run here: {'; '.join(problems)}. Rebuild it on this device: "
                                  f"`fertrt build-engine {onnx or 'MODEL.onnx'} -o {path}` (or pass --rebuild)")
        self.trt = trt
        with open(path, "rb") as f:
            self.runtime_version_compatible = bool(side.get("build_options", {}).get("version_compatible"))
            self.engine = deserialize_engine(trt, f.read(), version_compatible=self.runtime_version_compatible)
        if self.engine is None:
            raise FertrtError(f"{path}: TensorRT could not deserialize this engine (corrupt, or another TensorRT version)")
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
        self.zero_copy = device.get("integrated", False) if zero_copy is None else zero_copy
        self.stream = self.cuda.stream()
        self.lock = threading.Lock()
        self.use_graph = cuda_graph
        self._graph, self._graph_batch = None, None
        self._input_shape = None
        self.host, self.dev = {}, {}
        for name in names:
            dims = list(self.engine.get_tensor_shape(name))
            dims[0] = self.max_batch
            if any(d < 0 for d in dims[1:]):
                raise FertrtError(f"{path}: tensor {name} has dynamic dims {dims} beyond the batch axis")
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))
            mapped = self.zero_copy
            host, mapped_ptr = self.cuda.alloc_host(tuple(dims), dtype, mapped=mapped)
            self.host[name] = host
            self.dev[name] = mapped_ptr if mapped_ptr is not None else self.cuda.alloc_device(host.nbytes)
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
        that plain run. If capture fails, the runner says so and stays on plain execution."""
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
            print(f"note: {self.path}: CUDA graph capture failed ({exc}); running without a CUDA graph", file=sys.stderr)

    def close(self):
        if self._graph is not None:
            self._graph.free()
            self._graph = None

    def infer_timed(self, batch) -> dict:
        """One inference with CUDA events around copy in, execute and copy out (ms, device-side)."""
        x = self._check_batch(batch)
        n = len(x)
        self._check_profile(n)
        ev = [self.cuda.event() for _ in range(4)]
        s = self.cuda.stream_handle(self.stream)
        with self.lock:
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
        return {"copy_in": self.cuda.elapsed_ms(ev[0], ev[1]), "execute": self.cuda.elapsed_ms(ev[1], ev[2]),
                "copy_out": self.cuda.elapsed_ms(ev[2], ev[3])}

    def device_memory_mb(self) -> float:
        return self.cuda.mem_used_bytes() / 2 ** 20

    def _check_profile(self, n):
        if not self.min_batch <= n <= self.max_batch:
            raise FertrtError(f"{self.path}: batch {n} is outside the engine's profile [{self.min_batch}, {self.max_batch}]; "
                              f"rebuild with --batch MIN,OPT,MAX covering it")

    def infer_outputs(self, batch):
        x = self._check_batch(batch)
        n = len(x)
        self._check_profile(n)
        with self.lock:
            self.host[self.input_name][:n] = x
            self._set_batch(x)
            if self.use_graph:
                self._run_graph(n)
            else:
                self._enqueue(n)
            self.cuda.sync(self.stream)
            return {name: np.array(self.host[name][:n], dtype=np.float32) for name in self.outputs if name in self.output_names}
