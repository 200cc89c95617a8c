"""`fertrt export-triton`: a Triton model repository with the models `fertrt serve` has, for a production
Triton (NGC container, or the JetPack tarball on a Jetson):

    REPO/fer/            ensemble: fer_net -> fer_softmax; input `input` FP32 [-1,C,H,W], output `probabilities`
                         FP32 [-1,K] (labels.txt as its label file; class names and preprocessing in `parameters`)
    REPO/fer_net/        the classifier: tensorrt_plan (model.plan), onnxruntime_onnx (model.onnx) or python
    REPO/fer_softmax/    logits -> probabilities, float64 as `fertrt infer` computes them (Python backend)
    REPO/face_detector/  the detector graph (its own tensor names), tensorrt_plan / onnxruntime_onnx / python
    REPO/fer_faces/      Python BLS model: decode, detect (face_detector), crop, classify (fer_net) with fertrt's
                         runtime code; input `image` BYTES [-1], output `faces` BYTES [-1] (JSON per image)

Configs are built with tritonclient's model_config_pb2 and parsed back before they are written. Python models
are two-line shims importing fertrt.serve.python_models: fertrt must be installed where the backend runs.
DeepStream's nvinferserver config (task C2) points at this layout: keep the names in models.py.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import check_replaceable_folder, replacing_folder, write_json_atomic, write_text_atomic

from .models import FACE_DETECTOR, FACES_INPUT, FACES_OUTPUT, FER, FER_FACES, FER_INPUT, FER_OUTPUT

FER_NET, FER_SOFTMAX = "fer_net", "fer_softmax"
LOGITS = "logits"
PLATFORMS = ("tensorrt_plan", "onnxruntime_onnx", "python")
# TensorRT plans run on a GPU; Triton's ONNX Runtime backend takes one when there is one; Python models on CPU
INSTANCE_KIND = {"tensorrt_plan": "KIND_GPU", "onnxruntime_onnx": "KIND_AUTO"}
METADATA_FILE = "fertrt.json"  # what the Python models read in their version folder
SHIM = (
    '"""Triton Python backend model written by `fertrt export-triton`: fertrt\'s runtime does the work\n'
    '(pip install fertrt in the environment this backend runs in)."""\n'
    "from fertrt.serve.python_models import {cls} as TritonPythonModel  # noqa: F401\n"
)


@dataclass(frozen=True)
class RepoOptions:
    platform: str = "tensorrt_plan"
    max_batch: int = 32
    max_queue_delay_us: int = 2000
    instances: int = 1
    faces_instances: int = 2
    max_images: int = 16
    force: bool = False

    def validate(self):
        if self.platform not in PLATFORMS:
            raise FertrtError(f"--platform {self.platform}: expected one of {', '.join(PLATFORMS)}")


# ---------------------------------------------------------------- the model files and their metadata


def model_info(model: Path, platform: str) -> dict:
    """Class names, preprocessing, tensor names and limits of the FER model (ONNX metadata or engine sidecar)."""
    from fertrt.runtime.runners import check_metadata
    from fertrt.runtime.preprocess import PreprocessConfig

    if model.suffix.lower() in (".engine", ".plan"):
        if platform != "tensorrt_plan":
            raise FertrtError(
                f"{model}: an engine serves as --platform tensorrt_plan only; pass the .onnx for {platform}"
            )
        from fertrt.engine.sidecar import read_sidecar

        meta = read_sidecar(model)
        profile = (meta.get("profile") or {}).get(FER_INPUT) or {}
        info = {
            "class_names": meta.get("class_names"),
            "preprocess": meta.get("preprocess"),
            "max_batch": (profile.get("max") or [None])[0],
            "tensorrt_version": meta.get("tensorrt_version"),
        }
    else:
        if platform == "tensorrt_plan":
            raise FertrtError(
                f"{model}: --platform tensorrt_plan needs a TensorRT engine (.engine with its "
                ".engine.json; build one on the target with `fertrt build-engine`), or choose "
                "--platform onnxruntime_onnx"
            )
        from fertrt.runtime.runners import OrtRunner

        with OrtRunner(model) as runner:
            if runner.input_name != FER_INPUT or LOGITS not in runner.output_names:
                raise FertrtError(
                    f"{model}: expected a fertrt FER graph with input '{FER_INPUT}' and output '{LOGITS}'"
                )
            info = {
                "class_names": list(runner.class_names),
                "preprocess": runner.preprocess.to_dict(),
                "max_batch": runner.fixed_batch,
                "tensorrt_version": None,
                "fixed_batch": runner.fixed_batch,
            }
    pre = PreprocessConfig.from_dict(info["preprocess"] or {})
    check_metadata(model, info, pre)
    info["preprocess"] = pre.to_dict()
    return info


def detector_info(path: Path) -> dict:
    """The detector's metadata and graph tensors, from the file `fertrt infer` would run."""
    from fertrt.runtime.detectors import open_detector

    det = open_detector(path, backend="onnxruntime" if path.suffix.lower() == ".onnx" else "auto")
    try:
        runner = det.runner
        meta = {k: v for k, v in runner.metadata.items() if k != "detector"}
        meta["detector"] = json.loads(det.cfg.to_json())
        meta["task"] = "face-detection"
        inputs = runner.session.get_inputs() if hasattr(runner, "session") else []
        shape = [int(d) if isinstance(d, int) else -1 for d in inputs[0].shape] if inputs else []
        outputs = {}
        if hasattr(runner, "session"):
            outputs = {
                o.name: [int(d) if isinstance(d, int) else -1 for d in o.shape]
                for o in runner.session.get_outputs()
                if o.name in det.cfg.outputs
            }
        if not shape or min(shape) <= 0 or len(outputs) != len(det.cfg.outputs):
            raise FertrtError(
                f"{path}: export-triton needs a detector ONNX with a fixed input shape and outputs "
                f"{', '.join(det.cfg.outputs)}"
            )
        return {"metadata": meta, "input_name": inputs[0].name, "input_shape": shape, "outputs": outputs}
    finally:
        det.close()


# ---------------------------------------------------------------- configs


def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _tensor(msg, name, dtype, dims, label_filename=None):
    msg.name, msg.data_type = name, dtype
    msg.dims.extend(int(d) for d in dims)
    if label_filename:
        msg.label_filename = label_filename
    return msg


def _params(cfg, values: dict):
    for k, v in values.items():
        cfg.parameters[k].string_value = v if isinstance(v, str) else json.dumps(v)


def _instances(cfg, count: int, kind: str):
    pb = _pb()
    group = cfg.instance_group.add()
    group.count, group.kind = count, getattr(pb.ModelInstanceGroup.Kind, kind)


def fer_net_config(info: dict, opts: RepoOptions):
    pb = _pb()
    cfg = pb.ModelConfig(name=FER_NET, max_batch_size=opts.max_batch)
    pre = info["preprocess"]
    chw = [pre["channels"], *pre["input_size"]]
    if opts.platform == "python":
        cfg.backend = "python"
    else:
        cfg.platform = opts.platform
    _tensor(cfg.input.add(), FER_INPUT, pb.TYPE_FP32, chw)
    _tensor(cfg.output.add(), LOGITS, pb.TYPE_FP32, [len(info["class_names"])])
    cfg.dynamic_batching.max_queue_delay_microseconds = opts.max_queue_delay_us
    _instances(cfg, opts.instances, INSTANCE_KIND.get(opts.platform, "KIND_CPU"))
    if info.get("tensorrt_version"):
        _params(cfg, {"tensorrt_version": info["tensorrt_version"]})
    return cfg


def fer_softmax_config(info: dict, opts: RepoOptions):
    pb = _pb()
    cfg = pb.ModelConfig(name=FER_SOFTMAX, backend="python", max_batch_size=opts.max_batch)
    k = len(info["class_names"])
    _tensor(cfg.input.add(), LOGITS, pb.TYPE_FP32, [k])
    _tensor(cfg.output.add(), FER_OUTPUT, pb.TYPE_FP32, [k])
    _instances(cfg, 1, "KIND_CPU")
    return cfg


def fer_config(info: dict, opts: RepoOptions):
    """`fer` as an ensemble (its version folder stays empty): the graph's logits, then the softmax."""
    pb = _pb()
    cfg = pb.ModelConfig(name=FER, platform="ensemble", max_batch_size=opts.max_batch)
    pre, k = info["preprocess"], len(info["class_names"])
    _tensor(cfg.input.add(), FER_INPUT, pb.TYPE_FP32, [pre["channels"], *pre["input_size"]])
    _tensor(cfg.output.add(), FER_OUTPUT, pb.TYPE_FP32, [k], label_filename="labels.txt")
    net = cfg.ensemble_scheduling.step.add(model_name=FER_NET, model_version=-1)
    net.input_map[FER_INPUT] = FER_INPUT
    net.output_map[LOGITS] = "fer_logits"
    soft = cfg.ensemble_scheduling.step.add(model_name=FER_SOFTMAX, model_version=-1)
    soft.input_map[LOGITS] = "fer_logits"
    soft.output_map[FER_OUTPUT] = FER_OUTPUT
    _params(cfg, {"class_names": info["class_names"], "preprocess": pre})
    return cfg


def detector_config(det: dict, platform: str, opts: RepoOptions):
    """The detector graph takes one frame (its batch axis is fixed): no Triton batching."""
    pb = _pb()
    cfg = pb.ModelConfig(name=FACE_DETECTOR, max_batch_size=0)
    if platform == "python":
        cfg.backend = "python"
    else:
        cfg.platform = platform
    _tensor(cfg.input.add(), det["input_name"], pb.TYPE_FP32, det["input_shape"])
    for name, shape in det["outputs"].items():
        _tensor(cfg.output.add(), name, pb.TYPE_FP32, shape)
    _instances(cfg, opts.instances, INSTANCE_KIND.get(platform, "KIND_CPU"))
    return cfg


def faces_config(opts: RepoOptions):
    """BLS on CPU instances: Triton's Python backend on JetPack has no GPU instances."""
    pb = _pb()
    cfg = pb.ModelConfig(name=FER_FACES, backend="python", max_batch_size=0)
    _tensor(cfg.input.add(), FACES_INPUT, pb.TYPE_STRING, [-1])
    _tensor(cfg.output.add(), FACES_OUTPUT, pb.TYPE_STRING, [-1])
    _instances(cfg, opts.faces_instances, "KIND_CPU")
    _params(cfg, {"max_images": str(opts.max_images)})
    return cfg


def config_text(cfg) -> str:
    """protobuf text format, checked by parsing it back into an equal message."""
    from google.protobuf import text_format

    text = text_format.MessageToString(cfg)
    back = parse_config(text, cfg.name)
    if back != cfg:
        raise FertrtError(f"{cfg.name}: the generated config.pbtxt does not parse back to the same configuration")
    return text


def parse_config(text: str, where):
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, _pb().ModelConfig())
    except text_format.ParseError as exc:
        raise FertrtError(f"{where}: config.pbtxt does not parse as a Triton ModelConfig ({exc})") from None


# ---------------------------------------------------------------- the repository


def write_repository(model, out, opts: RepoOptions = RepoOptions(), detector=None, log=print) -> Path:
    """Write the repository into `out` (a temporary sibling renamed into place: complete or absent).
    model: the FER .onnx (onnxruntime_onnx, python) or .engine (tensorrt_plan); detector: its file, default the
    cached BlazeFace (`fertrt detector export`)."""
    from fertrt.runtime.face import cached_detector

    opts.validate()
    model, out = Path(model), Path(out)
    inputs = (model, detector)
    check_replaceable_folder(out, force=opts.force, inputs=inputs, what="model repository")  # before the slow parts
    info = model_info(model, opts.platform)
    if info.get("fixed_batch"):
        raise FertrtError(
            f"{model}: has a fixed batch of {info['fixed_batch']}; export it with a dynamic batch axis "
            "(`fertrt export` without --static-batch) so Triton can batch requests"
        )
    if info["max_batch"] and opts.max_batch > info["max_batch"]:
        raise FertrtError(f"--max-batch {opts.max_batch}: the engine's profile stops at batch {info['max_batch']}")
    det_path = Path(detector) if detector else cached_detector("blazeface-short")
    det_platform = opts.platform
    if opts.platform == "tensorrt_plan" and det_path.suffix.lower() == ".onnx":
        det_platform = "onnxruntime_onnx"  # no detector engine given: Triton's ONNX Runtime backend runs it
        log(
            f"note: {det_path.name} is an ONNX file: face_detector uses onnxruntime_onnx (pass --detector-model "
            "DETECTOR.engine for tensorrt_plan)"
        )
    onnx_det = det_path if det_path.suffix.lower() == ".onnx" else None
    if onnx_det is None:
        raise FertrtError(
            f"--detector-model {det_path}: export-triton reads the detector's tensors from its ONNX; "
            "pass the .onnx (an engine beside it, DETECTOR.engine, is then used for tensorrt_plan)"
        )
    det = detector_info(onnx_det)
    if opts.platform == "tensorrt_plan" and onnx_det.with_suffix(".engine").is_file():
        det_platform = "tensorrt_plan"
    with replacing_folder(out, force=opts.force, inputs=inputs, what="model repository", log=log) as tmp:
        _write_all(tmp, model, onnx_det, info, det, opts, det_platform)
        check_repository(tmp)
    return out


def _write_all(root: Path, model: Path, det_path: Path, info: dict, det: dict, opts: RepoOptions, det_platform: str):
    def model_dir(name, cfg, files=(), shim=None, meta=None):
        version = root / name / "1"
        version.mkdir(parents=True)  # an ensemble's version folder stays empty, but must exist
        write_text_atomic(root / name / "config.pbtxt", config_text(cfg))
        for src, dst in files:
            shutil.copyfile(src, version / dst)
        if shim:
            write_text_atomic(version / "model.py", SHIM.format(cls=shim))
        if meta is not None:
            write_json_atomic(version / METADATA_FILE, meta)

    net_file = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx", "python": "model.onnx"}[opts.platform]
    model_dir(
        FER_NET,
        fer_net_config(info, opts),
        [(model, net_file)],
        shim="FerNetModel" if opts.platform == "python" else None,
    )
    model_dir(FER_SOFTMAX, fer_softmax_config(info, opts), shim="SoftmaxModel")
    model_dir(FER, fer_config(info, opts))
    write_text_atomic(root / FER / "labels.txt", "".join(f"{n}\n" for n in info["class_names"]))
    det_src = det_path.with_suffix(".engine") if det_platform == "tensorrt_plan" else det_path
    det_file = "model.plan" if det_platform == "tensorrt_plan" else "model.onnx"
    model_dir(
        FACE_DETECTOR,
        detector_config(det, det_platform, opts),
        [(det_src, det_file)],
        shim="DetectorNetModel" if det_platform == "python" else None,
        meta={"detector": det["metadata"]} if det_platform == "python" else None,
    )
    meta = {
        "fer": {k: info[k] for k in ("class_names", "preprocess")},
        "detector": det["metadata"],
        "detector_outputs": list(det["outputs"]),
        "detector_input": det["input_name"],
        "max_images": opts.max_images,
        "fer_max_batch": opts.max_batch,
    }
    model_dir(FER_FACES, faces_config(opts), shim="FacesBlsModel", meta=meta)
    write_json_atomic(
        root / "fertrt-repository.json",
        {
            "format": "fertrt-triton-1",
            "platform": opts.platform,
            "face_detector_platform": det_platform,
            "source_model": str(model),
            "source_detector": str(det_path),
            "tensorrt_version": info.get("tensorrt_version"),
            "models": [FER, FER_NET, FER_SOFTMAX, FACE_DETECTOR, FER_FACES],
        },
    )


def check_repository(root) -> dict:
    """Every model folder's config.pbtxt parses and names its folder; returns {name: ModelConfig}."""
    root = Path(root)
    configs = {}
    for cfg_file in sorted(root.glob("*/config.pbtxt")):
        cfg = parse_config(cfg_file.read_text(), cfg_file)
        if cfg.name != cfg_file.parent.name:
            raise FertrtError(f"{cfg_file}: names the model {cfg.name!r}, its folder is {cfg_file.parent.name!r}")
        if not (cfg_file.parent / "1").is_dir():
            raise FertrtError(f"{cfg_file.parent}: has no version folder 1/")
        configs[cfg.name] = cfg
    return configs
