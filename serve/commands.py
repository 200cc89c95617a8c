"""`fertrt serve` and `fertrt export-triton` handlers."""

from __future__ import annotations

from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import require_file

MODEL_SUFFIXES = (".onnx", ".engine", ".plan")


def resolve_model(path, backend: str = "auto") -> Path:
    """MODEL|DIR -> the FER model file: a file as given, or the one FER model in a deployment folder
    (an engine where TensorRT is importable, else its ONNX; detector files are skipped)."""
    p = Path(path)
    deploy = _deploy_folder(p)
    if deploy is not None:
        from fertrt.runtime.deploy import pick_model

        return pick_model(p, deploy, backend)
    if p.is_file():
        if p.suffix.lower() not in MODEL_SUFFIXES:
            raise FertrtError(f"{p}: expected an .onnx model, a TensorRT .engine/.plan or a deployment folder")
        return p
    if not p.is_dir():
        require_file(p, "an .onnx model, a TensorRT .engine or a deployment folder")
    found = sorted(
        f
        for f in p.iterdir()
        if f.suffix.lower() in MODEL_SUFFIXES and "detector" not in f.name.lower() and "blazeface" not in f.name.lower()
    )
    engines = [f for f in found if f.suffix.lower() != ".onnx"]
    onnx = [f for f in found if f.suffix.lower() == ".onnx"]
    if engines and _tensorrt_importable():
        pick = engines
    else:
        pick = onnx or engines
    if len(pick) != 1:
        names = ", ".join(f.name for f in found) or "none"
        raise FertrtError(
            f"{p}: expected one FER model (.onnx, or .engine where TensorRT runs) in this folder; found {names}"
        )
    return pick[0]


def resolve_detector(path, detector_model):
    """The folder's detector (detector*.onnx / blazeface*.onnx) unless --detector-model names one."""
    p = Path(path)
    if detector_model or not p.is_dir():
        return detector_model
    deploy = _deploy_folder(p)
    if deploy is not None:
        from fertrt.runtime.deploy import detector_path

        found = detector_path(p, deploy)
        return str(found) if found else None
    found = sorted(
        f
        for f in p.iterdir()
        if f.suffix.lower() == ".onnx" and ("detector" in f.name.lower() or "blazeface" in f.name.lower())
    )
    return str(found[0]) if len(found) == 1 else None


def _deploy_folder(p: Path):
    """The verified manifest when p is a deployment folder from `fertrt pack`, else None."""
    try:
        from fertrt.runtime.deploy import is_deploy_dir, open_folder
    except ImportError:
        return None
    return open_folder(p) if is_deploy_dir(p) else None


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means: not here
        return False
    return True


def cmd_serve(args):
    from .server import ServeConfig, serve

    cfg = ServeConfig(
        model=resolve_model(args.model, args.backend),
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        backend=args.backend,
        provider=args.provider,
        threads=args.threads,
        detector=args.detector,
        detector_model=resolve_detector(args.model, args.detector_model),
        faces=not args.no_faces,
        max_images=args.max_images,
        token_file=Path(args.token_file) if args.token_file else None,
    )
    return serve(cfg)


def cmd_export_triton(args):
    from .triton_repo import RepoOptions, write_repository

    opts = RepoOptions(
        platform=args.platform,
        max_batch=args.max_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        faces_instances=args.faces_instances,
        force=args.force,
    )
    detector = resolve_detector(args.model, args.detector_model)
    out = write_repository(resolve_model_for_platform(args.model, args.platform), args.output, opts, detector=detector)
    print(
        f"wrote the Triton model repository {out} ({args.platform}); start it with "
        f"`tritonserver --model-repository {out}`"
    )
    return 0


def resolve_model_for_platform(path, platform: str) -> Path:
    """tensorrt_plan takes the folder's engine; the others its ONNX."""
    p = Path(path)
    if not p.is_dir() or _deploy_folder(p) is not None:
        return resolve_model(p, "tensorrt" if platform == "tensorrt_plan" else "onnxruntime")
    want = (".engine", ".plan") if platform == "tensorrt_plan" else (".onnx",)
    found = sorted(
        f
        for f in p.iterdir()
        if f.suffix.lower() in want and "detector" not in f.name.lower() and "blazeface" not in f.name.lower()
    )
    if len(found) != 1:
        raise FertrtError(
            f"{p}: --platform {platform} needs one {'/'.join(want)} FER model in this folder; found "
            f"{', '.join(f.name for f in found) or 'none'}"
        )
    return found[0]
