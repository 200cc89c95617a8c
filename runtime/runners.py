"""One runner interface for every backend: `with open_runner(path) as r: logits = r.infer(batch)`.

`.onnx` -> ONNX Runtime, `.engine`/`.plan` -> TensorRT, `.pt` -> PyTorch (the reference; the only
place the runtime touches torch, imported lazily). Labels and preprocessing come from the model
file's metadata (ONNX metadata_props, the engine's JSON sidecar, the checkpoint), never from guesses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import require_file
from fertrt.text import safe, safe_list

from .preprocess import PreprocessConfig

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")


def check_metadata(path, metadata: dict, pre: PreprocessConfig) -> None:
    """Refuse model files whose metadata would give silently wrong results (labels, normalisation)."""
    names = metadata.get("class_names")
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) and n for n in names):
        raise FertrtError(
            f"{path}: metadata class_names must be a non-empty list of names, got {safe(repr(names)[:80])}"
        )
    if len(set(names)) != len(names):
        raise FertrtError(f"{path}: metadata class_names has duplicates ({safe_list(names)})")
    if len(pre.input_size) != 2 or min(pre.input_size) <= 0:
        raise FertrtError(
            f"{path}: metadata preprocess.input_size {pre.input_size}: expected (height, width), both > 0"
        )
    if any(not np.isfinite(s) or s == 0 for s in pre.std) or any(not np.isfinite(m) for m in pre.mean):
        raise FertrtError(
            f"{path}: metadata preprocess mean {pre.mean} / std {pre.std}: expected finite values and non-zero std"
        )
    if pre.color_order not in ("RGB", "BGR", "GRAY"):
        raise FertrtError(
            f"{path}: metadata preprocess.color_order {safe(pre.color_order)!r}: expected RGB, BGR or GRAY"
        )


class Runner:
    backend = "base"

    def __init__(self, path, metadata: dict):
        self.path = Path(path)
        self.metadata = metadata
        try:
            self.class_names = tuple(metadata["class_names"])
            self.preprocess = PreprocessConfig.from_dict(metadata["preprocess"])
        except KeyError as exc:
            raise FertrtError(
                f"{path}: has no fertrt metadata ({exc.args[0]} missing); export it with `fertrt export`"
            ) from None
        except (TypeError, ValueError, FertrtError) as exc:
            raise FertrtError(f"{path}: its fertrt metadata is malformed ({safe(exc)})") from None
        check_metadata(path, metadata, self.preprocess)
        self.precision = metadata.get("precision", "fp32")
        self.output_names = ["logits"] + list(metadata.get("explain_outputs", []))

    # -- interface
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW batch -> logits N x K (float32)."""
        return self.infer_outputs(batch)["logits"]

    def infer_outputs(self, batch: np.ndarray) -> dict:
        raise NotImplementedError

    @property
    def describe(self) -> str:
        return f"{self.backend}:{self.path.name}"

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_batch(self, batch):
        c, (h, w) = self.preprocess.channels, self.preprocess.input_size
        if batch.ndim != 4 or batch.shape[1:] != (c, h, w):
            raise FertrtError(f"{self.path}: expects input N x {c} x {h} x {w}, got {tuple(batch.shape)}")
        return np.ascontiguousarray(batch, dtype=np.float32)


MAX_INPUT_SIDE = 4096  # a metadata input size above this is a damaged or hostile file, not a face classifier


def _check_input_shape(path, shape, pre) -> None:
    """The graph's own input shape against the metadata's preprocessing: a lying size would fail deep inside
    ONNX Runtime (or allocate gigabytes) instead of here."""
    want = (pre.channels,) + tuple(pre.input_size)
    if max(want[1:]) > MAX_INPUT_SIDE:
        raise FertrtError(
            f"{path}: its metadata gives an input size of {want[1]}x{want[2]} (at most {MAX_INPUT_SIDE} expected)"
        )
    if len(shape) != 4 or any(isinstance(g, int) and g != w for g, w in zip(shape[1:], want)):
        raise FertrtError(
            f"{path}: the graph's input is {list(shape)} but its metadata says N x {want[0]} x {want[1]} x {want[2]}; "
            "the metadata does not belong to this graph (re-export it with `fertrt export`)"
        )


class OrtRunner(Runner):
    backend = "onnxruntime"
    _PROVIDERS = {
        "cpu": "CPUExecutionProvider",
        "cuda": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
    }

    def __init__(self, path, provider: str = "cpu", threads: int | None = None, spin: bool = True):
        from fertrt.deps import require

        from .metadata import decode

        ort = require("onnxruntime", f"running {Path(path).name} on ONNX Runtime")
        require_file(path, "an ONNX model")
        available = ort.get_available_providers()
        if provider == "auto":
            chain = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available] + [
                "CPUExecutionProvider"
            ]
        else:
            if provider not in self._PROVIDERS:
                raise FertrtError(f"--provider {provider!r}: expected auto, cpu, cuda or tensorrt")
            wanted = self._PROVIDERS[provider]
            if wanted not in available:
                raise FertrtError(
                    f"--provider {provider}: this onnxruntime has only {', '.join(available)} "
                    f"(install onnxruntime-gpu for CUDA/TensorRT providers)"
                )
            chain = [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])
        opts = ort.SessionOptions()
        # errors only: ORT warns once per node it cannot constant-fold in FP16 graphs (harmless, many lines)
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        if not spin:
            # a server shares the cores with Triton, its stubs and the request threads: pool threads that
            # spin while waiting for work take CPU from them (ORT spins by default)
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=chain)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types for bad files
            raise FertrtError(f"{path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from exc
        try:
            metadata = decode(self.session.get_modelmeta().custom_metadata_map)
        except FertrtError as exc:
            raise FertrtError(f"{path}: {exc}") from None
        super().__init__(path, metadata)
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise FertrtError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
        self.input_name = inputs[0].name
        dim0 = inputs[0].shape[0]
        self.fixed_batch = dim0 if isinstance(dim0, int) else None
        _check_input_shape(path, inputs[0].shape, self.preprocess)
        self.provider = self.session.get_providers()[0]
        known = {o.name for o in self.session.get_outputs()}
        self.output_names = [n for n in self.output_names if n in known]
        logits = [o for o in self.session.get_outputs() if o.name == "logits"]
        width = logits[0].shape[-1] if logits and logits[0].shape else None
        if isinstance(width, int) and width != len(self.class_names):
            raise FertrtError(
                f"{path}: the graph gives {width} logits but its metadata names {len(self.class_names)} classes "
                f"({safe_list(self.class_names)})"
            )

    def infer_outputs(self, batch):
        x = self._check_batch(batch)
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: x})))
        # a static-batch graph: run in chunks, padding the last one
        b = self.fixed_batch
        outs = {n: [] for n in self.output_names}
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.zeros((b - n,) + chunk.shape[1:], np.float32)])
            for name, val in zip(self.output_names, self.session.run(self.output_names, {self.input_name: chunk})):
                outs[name].append(val[:n])
        return {k: np.concatenate(v) for k, v in outs.items()}


class TorchRunner(Runner):
    """The PyTorch reference (a fertrt checkpoint). The only runner that imports torch."""

    backend = "torch"

    def __init__(self, path, device: str = "cpu"):
        import torch

        from fertrt.train.checkpoint import load_model

        model, ckpt = load_model(path)
        meta = {
            "model_name": ckpt["model_name"],
            "class_names": ckpt["class_names"],
            "preprocess": ckpt["preprocess"],
            "data_spec": ckpt["data_spec"],
            "precision": "fp32",
            "model_config": ckpt["model_config"],
        }
        super().__init__(path, meta)
        self.torch = torch
        self.device = device
        self.model = model.to(device)
        # region weights only where the model has them (LNLAttenNet's global-path ablation has none)
        self.has_explain = hasattr(model, "explain") and getattr(model, "has_region_weights", True)

    def infer(self, batch):
        x = self.torch.from_numpy(self._check_batch(batch)).to(self.device)
        with self.torch.no_grad():
            return self.model(x).float().cpu().numpy()  # logits only: no auxiliary heads

    def infer_outputs(self, batch):
        x = self.torch.from_numpy(self._check_batch(batch)).to(self.device)
        with self.torch.no_grad():
            if self.has_explain:
                out = self.model(x, return_aux=True)
                return {
                    "logits": out["logits"].float().cpu().numpy(),
                    "region_weights": out["region_weights"].float().cpu().numpy(),
                }
            return {"logits": self.model(x).float().cpu().numpy()}


_NATIVE_BACKEND = {
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
    ".trt": "tensorrt",
    ".pt": "torch",
    ".pth": "torch",
}


def backend_for(path) -> str:
    """The backend a model file runs on by default, from its suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in _NATIVE_BACKEND:
        raise FertrtError(f"{path}: unknown model file type {suffix!r}; expected .onnx, .engine/.plan or .pt")
    return _NATIVE_BACKEND[suffix]


def open_runner(path, backend: str = "auto", provider: str = "cpu", **kwargs) -> Runner:
    path = Path(path)
    suffix = path.suffix.lower()
    if backend == "auto":
        backend = backend_for(path)
    if backend == "onnxruntime":
        return OrtRunner(path, provider=provider, threads=kwargs.get("threads"), spin=kwargs.get("spin", True))
    if backend == "torch":
        return TorchRunner(path, device=kwargs.get("device", "cpu"))
    if backend == "tensorrt":
        if suffix == ".onnx":
            from fertrt.engine.cache import engine_for_onnx

            path = engine_for_onnx(path, rebuild=kwargs.get("rebuild", False))
        from .trt_backend import TrtRunner

        return TrtRunner(path, **{k: v for k, v in kwargs.items() if k in ("cuda_graph", "zero_copy", "rebuild")})
    raise FertrtError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")


def run_batched(runner: Runner, x: np.ndarray, batch_size: int = 64, outputs=False):
    """Run a whole preprocessed array through a runner in batches."""
    parts = [
        runner.infer_outputs(x[i : i + batch_size]) if outputs else runner.infer(x[i : i + batch_size])
        for i in range(0, len(x), batch_size)
    ]
    if outputs:
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)
