"""runtime/trt_backend.py, its pure parts: TensorRT data types, cuda-python signatures, the binding choice and
the per-thread CUDA context rule (on a model of it)."""

from types import SimpleNamespace

import numpy as np
import pytest

from fertrt.errors import FertrtError


def test_numpy_dtype_map_needs_no_trt_nptype():
    """Issue 20: TensorRT 8.5's trt.nptype uses np.bool (gone in numpy 1.24); fertrt maps DataType names itself."""
    from fertrt.runtime.trt_backend import numpy_dtype

    member = lambda name: SimpleNamespace(name=name)  # noqa: E731 - TensorRT's enum members have .name
    assert numpy_dtype(member("FLOAT")) == np.float32 and numpy_dtype(member("HALF")) == np.float16
    assert numpy_dtype(member("BOOL")) == np.bool_ and numpy_dtype(member("INT64")) == np.int64
    with pytest.raises(FertrtError, match="data type BF16 has no numpy equivalent"):
        numpy_dtype(member("BF16"))


def test_cuda_graph_instantiate_signature_is_read_from_the_function():
    """Issue 20: cuda-python 11.x has cudaGraphInstantiate(graph, pLogBuffer, bufferSize), 12.x/13.x (graph, flags)."""
    from fertrt.runtime.trt_backend import arg_names, graph_instantiate_args

    def v11(graph, pLogBuffer, bufferSize):
        pass

    def v12(graph, flags):
        pass

    assert graph_instantiate_args(v11, "G") == ("G", b"", 0) and graph_instantiate_args(v12, "G") == ("G", 0)

    class Cython:  # a builtin without an introspectable signature: read from the embedsignature docstring
        __doc__ = "cudaGraphInstantiate(graph, char *pLogBuffer, size_t bufferSize)\n Creates an executable graph."

        def __call__(self, *a):
            pass

    fn = Cython()
    fn.__signature__ = None
    assert arg_names(len) == ["obj"]
    with pytest.raises(FertrtError, match="a signature fertrt does not know"):
        graph_instantiate_args(lambda a: None, "G")


def test_binding_choice_prefers_the_one_with_every_feature():
    """Defect 4: cuda-python supports CUDA graphs, pycuda does not; the choice names what is missing."""
    from fertrt.runtime.trt_backend import choose_binding

    assert choose_binding({"pycuda", "cuda-python"}) == "cuda-python"
    assert choose_binding({"pycuda", "cuda-python"}, ["cuda-graph"]) == "cuda-python"
    assert choose_binding({"pycuda"}) == "pycuda"
    with pytest.raises(FertrtError, match=r"cuda-graph needs cuda-python .*only pycuda is installed"):
        choose_binding({"pycuda"}, ["cuda-graph"])
    with pytest.raises(FertrtError, match="needs cuda-python or pycuda"):
        choose_binding(set())


class ContextModel:
    """The CUDA threading rule as a pure model: a context is current per thread; a call into CUDA/TensorRT on a
    thread where the runner's context is not current fails (on a GPU: an invalid-context error or a hang)."""

    def __init__(self):
        import threading

        self.local = threading.local()
        self.errors = []

    def stack(self):
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def push(self):
        self.stack().append("ctx")

    def pop(self):
        self.stack().pop()

    def call(self, what):
        if not self.stack() or self.stack()[-1] != "ctx":
            self.errors.append(f"{what}: no current context on this thread")


def test_thread_context_rule_on_a_pure_model():
    """Defect 3: calls from other threads push the context first and pop it after; the owner thread needs nothing."""
    import threading

    from fertrt.runtime.trt_backend import ThreadContext

    model = ContextModel()
    model.push()  # the thread that opens the binding makes the context current (pycuda: retain + push)
    activate = ThreadContext(model.push, model.pop)

    def work(guarded):
        for i in range(3):
            if guarded:
                with activate():
                    with activate():  # re-entrant: infer inside close etc. pushes once
                        model.call(f"execute {i}")
                assert model.stack() == []  # popped again: the worker's own state is as it was
            else:
                model.call(f"execute {i}")

    with activate():
        model.call("on the owner thread")
    assert model.errors == [] and model.stack() == ["ctx"]
    for guarded, expected in ((False, 6), (True, 0)):
        model.errors.clear()
        workers = [threading.Thread(target=work, args=(guarded,)) for _ in range(2)]
        [t.start() for t in workers]
        [t.join() for t in workers]
        assert len(model.errors) == expected, model.errors
