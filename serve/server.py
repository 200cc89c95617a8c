"""`fertrt serve`: fertrt's runtime behind a real Triton Inference Server, through PyTriton (its wheel
carries tritonserver with the Python backend). Triton does the HTTP/gRPC endpoints, shape and dtype checks,
dynamic batching, metrics and the restricted endpoints; the models run in this process on fertrt's runners."""

from __future__ import annotations

import os
import signal
import stat
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError

from .models import FACES_INPUT, FACES_OUTPUT, FER, FER_FACES, FER_INPUT, FER_OUTPUT, BadRequest, FacesModel, FerModel

LOOPBACK = "127.0.0.1"
# Triton endpoints that need the access token: model load/unload, statistics, shared memory, trace, logging.
RESTRICTED = ["model-repository", "statistics", "shared-memory", "trace", "logging"]


@dataclass(frozen=True)
class ServeConfig:
    model: Path
    host: str = LOOPBACK
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 32
    max_queue_delay_us: int = 2000
    instances: int = 1
    backend: str = "auto"
    provider: str = "cpu"
    threads: int | None = None
    detector: str = "blazeface"
    detector_model: str | None = None
    faces: bool = True
    max_images: int = 16
    token_file: Path | None = None

    def validate(self):
        ports = [self.http_port, self.grpc_port, self.metrics_port]
        if len(set(ports)) != len(ports):
            raise FertrtError(f"--http-port/--grpc-port/--metrics-port {ports}: expected three different ports")
        for option, port in zip(("--http-port", "--grpc-port", "--metrics-port"), ports):
            port_free(self.host, port, option)


def port_free(host: str, port: int, option: str) -> None:
    """Refuse a port another process listens on now, before Triton starts (it would fail later, less clearly)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise FertrtError(
                f"{option} {port}: cannot listen on {host}:{port} ({exc.strerror or exc}); choose another port"
            ) from None


def python_libdir_env(env: dict) -> dict:
    """Triton's Python-backend stub links libpython dynamically: without this interpreter's LIBDIR first on
    LD_LIBRARY_PATH it loads the system's libpython (another patch release, or none) and models fail to load."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and Path(libdir).is_dir():
        env = dict(env)
        rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
        env["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + rest)
    return env


def write_token(token: str, path: Path | None) -> Path:
    """The access token in a file only its owner can read (printed: its path, never the token)."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="fertrt-serve-")) / "access-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    try:
        os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    return path


def _fer_infer(model: FerModel):
    """PyTriton callable for `fer`: Triton hands over the dynamically batched requests; they are run as one
    batch and split back."""

    def infer(requests):
        sizes = [len(r[FER_INPUT]) for r in requests]
        if not all(sizes):
            raise BadRequest(
                f"{FER}: input '{FER_INPUT}' is empty; expected FP32 [1..{model.max_batch}, "
                f"{', '.join(map(str, model.input_shape))}]"
            )
        x = np.concatenate([r[FER_INPUT] for r in requests]) if len(requests) > 1 else requests[0][FER_INPUT]
        probs = softmax_in_chunks(model, x)
        return [{FER_OUTPUT: p} for p in np.split(probs, np.cumsum(sizes)[:-1])]

    return infer


def softmax_in_chunks(model: FerModel, x: np.ndarray) -> np.ndarray:
    """Triton may form batches up to max_batch; the runner's own check applies per chunk."""
    return np.concatenate([model(x[i : i + model.max_batch]) for i in range(0, len(x), model.max_batch)])


def _faces_infer(model: FacesModel):
    def infer(requests):
        out = []
        for r in requests:  # fer_faces has no dynamic batching: each request fails or succeeds alone
            docs = model(list(r[FACES_INPUT].reshape(-1)))
            out.append({FACES_OUTPUT: np.array([d.encode() for d in docs], dtype=object)})
        return out

    return infer


def open_models(cfg: ServeConfig, log=print):
    """One FER runner (and detector) per Triton instance: each instance runs on its own thread."""
    from fertrt.runtime.face import make_detector
    from fertrt.runtime.predictor import Predictor
    from fertrt.runtime.runners import open_runner

    fer, faces = [], []
    runner_args = dict(backend=cfg.backend, provider=cfg.provider, threads=cfg.threads, spin=False)
    for _ in range(cfg.instances):
        fer.append(warm_up(FerModel(open_runner(cfg.model, **runner_args), cfg.max_batch)))
        if cfg.faces:
            pred = Predictor(open_runner(cfg.model, **runner_args))
            det = make_detector(cfg.detector, cfg.detector_model, provider=cfg.provider, log=log)
            faces.append(FacesModel(pred, det, max_images=cfg.max_images))
    return fer, faces


def warm_up(model: FerModel) -> FerModel:
    """Run the largest and the smallest batch once before serving: the runtime sizes its memory for the
    largest batch now, not under the first clients (measured in the soak as memory growth during the first
    minutes), and the first request does not pay for it."""
    for n in (model.max_batch, 1):
        model(np.zeros((n,) + model.input_shape, np.float32))
    return model


def bind_models(triton, cfg: ServeConfig, fer: list, faces: list):
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    first = fer[0]
    batcher = DynamicBatcher(max_queue_delay_microseconds=cfg.max_queue_delay_us)
    triton.bind(
        model_name=FER,
        infer_func=[_fer_infer(m) for m in fer],
        inputs=[Tensor(name=FER_INPUT, dtype=np.float32, shape=first.input_shape)],
        outputs=[Tensor(name=FER_OUTPUT, dtype=np.float32, shape=(len(first.class_names),))],
        config=ModelConfig(max_batch_size=cfg.max_batch, batcher=batcher),
        strict=True,
    )
    label_parameters(triton, FER, first)
    if faces:
        triton.bind(
            model_name=FER_FACES,
            infer_func=[_faces_infer(m) for m in faces],
            inputs=[Tensor(name=FACES_INPUT, dtype=bytes, shape=(-1,))],
            outputs=[Tensor(name=FACES_OUTPUT, dtype=bytes, shape=(-1,))],
            config=ModelConfig(batching=False),
            strict=True,
        )
        label_parameters(triton, FER_FACES, first)


def label_parameters(triton, name: str, fer: FerModel):
    """The labels and preprocessing in the model's Triton config (`GET /v2/models/NAME/config`, `parameters`).
    PyTriton 0.7 has no public field for config parameters; its model keeps them in backend_parameters."""
    import json

    pre = fer.runner.preprocess
    for model in triton._model_manager.models:  # noqa: SLF001 - see the docstring
        if model.model_name == name:
            params = model._get_triton_model_config().backend_parameters  # noqa: SLF001
            params["class_names"] = json.dumps(fer.class_names)
            params["preprocess"] = pre.to_json()


def serve(cfg: ServeConfig, log=print, ready=None) -> int:
    """Run until SIGTERM/SIGINT; then Triton stops taking requests, answers those in flight, and exits."""
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    cfg.validate()
    if cfg.host != LOOPBACK:
        print(
            f"WARNING: --host {cfg.host}: Triton's HTTP, gRPC and metrics endpoints will listen beyond this machine; "
            "inference needs no token. Put it behind a firewall or a proxy with authentication.",
            file=sys.stderr,
        )
    fer, faces = open_models(cfg, log)
    os.environ.update(python_libdir_env(os.environ))
    security = TritonSecurityConfig(restricted_endpoints=list(RESTRICTED))
    token_path = write_token(security.access_token, cfg.token_file)
    tcfg = TritonConfig(
        http_address=cfg.host,
        http_port=cfg.http_port,
        grpc_address=cfg.host,
        grpc_port=cfg.grpc_port,
        metrics_address=cfg.host,
        metrics_port=cfg.metrics_port,
        exit_timeout_secs=30,
        log_verbose=0,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    triton = Triton(config=tcfg, security_config=security)
    try:
        bind_models(triton, cfg, fer, faces)
        try:
            triton.run()
        except Exception as exc:  # noqa: BLE001 - PyTriton's own types: Triton or a model did not come up
            raise FertrtError(
                f"Triton did not start ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                "its log is above"
            ) from None
        models = FER + (f", {FER_FACES}" if faces else "")
        log(
            f"serving {models} ({cfg.model}, {fer[0].runner.describe}, {cfg.instances} instance(s), max batch "
            f"{cfg.max_batch}) on http://{cfg.host}:{cfg.http_port}, grpc {cfg.host}:{cfg.grpc_port}, metrics "
            f"http://{cfg.host}:{cfg.metrics_port}/metrics"
        )
        log(
            f"restricted endpoints ({', '.join(RESTRICTED)}) need the header triton-access-token: its value is in "
            f"{token_path} (readable by you only)"
        )
        if ready is not None:
            ready()
        while not stop.wait(1.0):
            if not triton.is_alive():
                raise FertrtError("Triton stopped unexpectedly (see its log above)")
        log("stopping: answering the requests in flight, then exiting")
    finally:
        triton.stop()
        if cfg.token_file is None:
            token_path.unlink(missing_ok=True)
            token_path.parent.rmdir()
    return 0
