"""`fertrt export-deepstream`: a folder of DeepStream configuration for a fertrt FER model.

What it writes (every file through fertrt.fileio: temp file + rename, replaced only with --force):
  fer.onnx                          the graph nvinfer builds: fertrt's ONNX with a Softmax after the logits
                                    (output `probabilities`) and, where one net-scale-factor cannot express a
                                    per-channel std, a Mul by 1/std in front (checked on ONNX Runtime against
                                    fertrt's own preprocessing before anything is written)
  fer_triton.onnx                   only with a folded std: the same fold, logits kept (the Triton repository's fer_net)
  config_infer_secondary_fer.txt    Gst-nvinfer secondary classifier on the detector's face objects
  labels.txt                        the class names on one line, ';'-separated (nvinfer's classifier format)
  config_triton_face_detector.txt   Gst-nvinferserver primary detector: the Triton model `face_detector_ssd`
  config_triton_fer.txt             Gst-nvinferserver secondary classifier: the Triton model `fer`
  triton/                           the Triton repository, by `fertrt export-triton`'s writer (fer, face_detector,
                                    fer_faces, ...), plus face_detector_ssd: a Python-backend model that runs
                                    face_detector (BlazeFace) and decodes its anchors into the four tensors
                                    DeepStream's stock SSD parser reads
  deepstream_app_fer.txt            a deepstream-app configuration chaining detector and classifier
  pipeline.md                       the same as a gst-launch line, and what was verified where

Why it lives in export/: it reads and rewrites ONNX graphs (onnx is a training-side package); the files it
writes are the device's. Every key is checked against DeepStream's own key lists kept in export/data/
(deepstream_nvinfer_keys.json, deepstream_nvinferserver_fields.json, deepstream_app_keys.json, each with its source
addresses and the DeepStream version) before anything is written.
"""

from __future__ import annotations

import configparser
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, make_output_dir, require_file, write_text_atomic
from fertrt.text import safe, safe_list

DATA = Path(__file__).resolve().parent / "data"
NVINFER_KEYS = DATA / "deepstream_nvinfer_keys.json"
NVINFERSERVER_FIELDS = DATA / "deepstream_nvinferserver_fields.json"
APP_KEYS = DATA / "deepstream_app_keys.json"
SSD_MODEL_SOURCE = DATA / "deepstream_face_detector_ssd.py"

NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2, "best": 3}
COLOR_FORMAT = {"RGB": 0, "BGR": 1, "GRAY": 2}
SERVER_FORMAT = {"RGB": "IMAGE_FORMAT_RGB", "BGR": "IMAGE_FORMAT_BGR", "GRAY": "IMAGE_FORMAT_GRAY"}
BILINEAR = 1  # NvBufSurfTransformInter_Bilinear: the GPU default is nearest, which aliases small face crops
STOCK_PARSER_LIB = "/opt/nvidia/deepstream/deepstream/lib/libnvds_infercustomparser.so"
SSD_OUTPUTS = ("num_detections", "detection_boxes", "detection_scores", "detection_classes")
FILES = (
    "fer.onnx",
    "labels.txt",
    "labels_face.txt",
    "config_infer_secondary_fer.txt",
    "config_triton_fer.txt",
    "config_triton_face_detector.txt",
    "deepstream_app_fer.txt",
    "pipeline.md",
)


@dataclass(frozen=True)
class DeepStreamOptions:
    batch_size: int | None = None  # nvinfer batch-size; default: the engine's profile maximum, else 16
    detector_gie_id: int = 1
    gie_id: int = 2
    face_class_id: int = 0
    classifier_threshold: float = 0.0  # 0: every face gets its top class, as `fertrt infer` reports it
    gpu_id: int = 0
    triton_repo: str = "triton"  # the Triton model repository, relative to the output folder (or absolute)
    verify_samples: int = 64
    atol: float = 1e-4
    force: bool = False

    def validate(self):
        if self.detector_gie_id == self.gie_id:
            raise FertrtError(f"--gie-id {self.gie_id}: must differ from --detector-gie-id {self.detector_gie_id}")
        if not Path(self.triton_repo).is_absolute() and ".." in Path(self.triton_repo).parts:
            raise FertrtError(f"--triton-repo {safe(self.triton_repo)}: a relative path must stay inside -o (no '..')")
        if not self.triton_repo or "\n" in self.triton_repo or '"' in self.triton_repo:
            raise FertrtError(
                f"--triton-repo {safe(self.triton_repo)!r}: expected a folder path without quotes or newlines"
            )


# ---------------------------------------------------------------- the model: metadata -> DeepStream numbers


@dataclass(frozen=True)
class ModelInfo:
    class_names: tuple
    channels: int
    input_size: tuple  # (height, width)
    color_order: str  # RGB | BGR | GRAY
    mean: tuple
    std: tuple
    precision: str  # fp32 | fp16 | int8
    max_batch: int | None  # a static batch or an engine profile's maximum


def model_info(meta: dict, source) -> ModelInfo:
    """The numbers DeepStream needs, from fertrt metadata (ONNX metadata_props or an engine sidecar), checked."""
    from fertrt.runtime.preprocess import PreprocessConfig
    from fertrt.runtime.runners import check_metadata

    try:
        pre = PreprocessConfig.from_dict(meta["preprocess"])
    except KeyError:
        raise FertrtError(
            f"{source}: has no fertrt metadata (preprocess missing); export it with `fertrt export`"
        ) from None
    except (TypeError, ValueError, FertrtError) as exc:
        raise FertrtError(f"{source}: its fertrt metadata is malformed ({safe(exc)})") from None
    check_metadata(source, meta, pre)
    bad = [n for n in meta["class_names"] if ";" in n or "\n" in n or "\r" in n]
    if bad:
        raise FertrtError(
            f"{source}: class names {safe_list(bad)} contain ';' or a line break, which nvinfer's labels "
            "file uses as separators"
        )
    order = "GRAY" if pre.channels == 1 else pre.color_order
    return ModelInfo(
        tuple(meta["class_names"]),
        pre.channels,
        tuple(pre.input_size),
        order,
        pre.mean,
        pre.std,
        str(meta.get("precision", "fp32")),
        None,
    )


def _uniform(values, rel=1e-6) -> bool:
    return all(abs(v - values[0]) <= rel * abs(values[0]) for v in values)


def nvinfer_normalisation(mean, std) -> tuple[float, tuple, tuple | None]:
    """fertrt's y = (x/255 - mean) / std as nvinfer's y = net-scale-factor * (x - offsets) on 0..255 pixels.
    -> (net-scale-factor, offsets, per-channel factors to fold into the graph or None). One scale factor
    covers every channel, so a per-channel std is folded: nvinfer gives (x/255 - mean), the graph multiplies
    by 1/std."""
    offsets = tuple(255.0 * m for m in mean)
    if _uniform(std):
        return 1.0 / (255.0 * std[0]), offsets, None
    return 1.0 / 255.0, offsets, tuple(1.0 / s for s in std)


def simulate_nvinfer(images_hwc: np.ndarray, color_format: int, scale: float, offsets) -> np.ndarray:
    """What nvinfer hands the network for uint8 RGB crops already at the network size: the colour format's
    channels, y = net-scale-factor * (x - offsets[c]), planar float32 (its documented preprocessing)."""
    x = images_hwc.astype(np.float32)
    if color_format == COLOR_FORMAT["GRAY"]:
        # the same BT.601 luma weights fertrt's preprocessing uses
        x = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    elif color_format == COLOR_FORMAT["BGR"]:
        x = x[..., ::-1]
    y = np.float32(scale) * (x - np.asarray(offsets, np.float32))
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


# ---------------------------------------------------------------- the graph nvinfer builds


def deepstream_graph(model, fold: tuple | None, softmax: bool = True):
    """fertrt's classifier graph -> the graph DeepStream runs: inputs multiplied by `fold` per channel (when
    given); with softmax, one output `probabilities` = Softmax(logits) in FP32, other outputs (region weights)
    dropped, since nvinfer would parse every output layer as another classifier attribute."""
    import onnx

    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
    if len(inputs) != 1:
        raise FertrtError(f"expected one image input, found {[i.name for i in inputs]}")
    if "logits" not in [o.name for o in graph.output]:
        raise FertrtError(f"expected a 'logits' output (a fertrt classifier), found {[o.name for o in graph.output]}")
    if fold is not None:
        _fold_input(graph, inputs[0], fold)
    if softmax:
        _append_softmax(graph)
    onnx.checker.check_model(model)
    return model


def _fold_input(graph, image, fold):
    """Prepend input * fold (one factor per channel, broadcast over N, H, W)."""
    from onnx import helper, numpy_helper

    scaled = "fertrt_ds_input_scaled"
    for node in graph.node:
        node.input[:] = [scaled if n == image.name else n for n in node.input]
    dtype = helper.tensor_dtype_to_np_dtype(image.type.tensor_type.elem_type)
    factors = np.asarray(fold, dtype=dtype).reshape(1, -1, 1, 1)
    graph.initializer.append(numpy_helper.from_array(factors, "fertrt_ds_inv_std"))
    mul = helper.make_node("Mul", [image.name, "fertrt_ds_inv_std"], [scaled], name="fertrt_ds_fold_std")
    graph.node.insert(0, mul)


def _append_softmax(graph):
    """logits -> probabilities (FP32) as the only output."""
    from onnx import TensorProto, helper

    logits = next(o for o in graph.output if o.name == "logits")
    dims = logits.type.tensor_type.shape.dim
    src = "logits"
    if logits.type.tensor_type.elem_type != TensorProto.FLOAT:
        graph.node.append(
            helper.make_node("Cast", ["logits"], ["fertrt_ds_logits_fp32"], to=TensorProto.FLOAT, name="fertrt_ds_cast")
        )
        src = "fertrt_ds_logits_fp32"
    graph.node.append(helper.make_node("Softmax", [src], ["probabilities"], axis=1, name="fertrt_ds_softmax"))
    shape = [(d.dim_param or d.dim_value or None) for d in dims] if len(dims) == 2 else ["batch", None]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, shape))


def deepstream_metadata(meta: dict, fold: tuple | None, softmax: bool = True) -> dict:
    """fertrt metadata of a rewritten graph: with the std folded in, its input is (x/255 - mean), std 1."""
    out = dict(meta)
    pre = dict(meta["preprocess"])
    if fold is not None:
        pre["std"] = [1.0] * len(pre["std"])
        out["std"] = pre["std"]
    out["preprocess"] = pre
    notes = []
    if softmax:
        out["explain_outputs"] = []
        notes.append("output 'probabilities' (Softmax of the logits)")
    if fold is not None:
        notes.append(f"input multiplied by 1/std = {[round(f, 6) for f in fold]} per channel")
    out["deepstream"] = "; ".join(notes)
    return out


def verification_crops(n: int, size) -> np.ndarray:
    """n uint8 RGB crops at the network size: fertrt's synthetic faces (so the model's classes vary), and seeded
    noise for the other half (every pixel value, every channel order)."""
    from fertrt.runtime.preprocess import PreprocessConfig, prepare_images
    from fertrt.train.data.synth import SynthConfig, generate

    faces = n // 2
    imgs, _, _ = generate(SynthConfig(size=max(size), seed=0), "test", faces)
    noise = np.random.default_rng(0).integers(0, 256, size=(n - faces, *size, 3), dtype=np.uint8)
    return np.concatenate([prepare_images(list(imgs), PreprocessConfig(input_size=size)), noise])


def verify_graph(
    original_bytes: bytes,
    candidate_bytes: bytes,
    info: ModelInfo,
    scale: float,
    offsets,
    color_format: int,
    samples: int,
    atol: float,
    output: str = "probabilities",
) -> dict:
    """ONNX Runtime: fertrt's preprocessing + the original graph + softmax vs the config's nvinfer
    preprocessing + the rewritten graph (softmax applied here when its output is `logits`), on seeded random
    crops. -> figures; FertrtError beyond atol or below 100 % top-1 agreement."""
    import onnxruntime as ort

    from fertrt.metrics import softmax
    from fertrt.runtime.preprocess import PreprocessConfig, normalize

    h, w = info.input_size
    crops = verification_crops(samples, (h, w))
    pre = PreprocessConfig(
        input_size=(h, w),
        channels=info.channels,
        mean=info.mean,
        std=info.std,
        color_order=info.color_order if info.channels == 3 else "GRAY",
    )
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    ref_sess = ort.InferenceSession(original_bytes, opts, providers=["CPUExecutionProvider"])
    new_sess = ort.InferenceSession(candidate_bytes, opts, providers=["CPUExecutionProvider"])
    dim0 = ref_sess.get_inputs()[0].shape[0]
    step = dim0 if isinstance(dim0, int) and dim0 > 0 else 16
    if samples < step:
        raise FertrtError(f"--verify-samples {samples}: fewer than the graph's fixed batch {step}")
    ref, got = [], []
    for i in range(0, samples - samples % step, step):
        chunk = crops[i : i + step]
        ref.append(ref_sess.run(["logits"], {ref_sess.get_inputs()[0].name: normalize(chunk, pre)})[0])
        x = simulate_nvinfer(chunk, color_format, scale, offsets)
        got.append(new_sess.run([output], {new_sess.get_inputs()[0].name: x})[0])
    ref_p = softmax(np.concatenate(ref).astype(np.float64), axis=1)
    got_p = np.concatenate(got).astype(np.float64)
    if output != "probabilities":
        got_p = softmax(got_p, axis=1)
    report = {
        "n": int(len(ref_p)),
        "max_abs_diff": float(np.abs(ref_p - got_p).max()),
        "top1_agreement": float((ref_p.argmax(1) == got_p.argmax(1)).mean()),
        "finite": bool(np.isfinite(got_p).all()),
    }
    if not report["finite"] or report["max_abs_diff"] > atol or report["top1_agreement"] < 1.0:
        raise FertrtError(
            f"the rewritten graph differs from fertrt's own preprocessing + model on ONNX Runtime "
            f"(max |diff| {report['max_abs_diff']:.2e} > {atol:g} or agreement "
            f"{report['top1_agreement'] * 100:.2f}% < 100%); nothing written"
        )
    return report


# ---------------------------------------------------------------- nvinfer (GKeyFile INI)


@lru_cache(maxsize=None)
def nvinfer_keys() -> dict:
    return json.loads(NVINFER_KEYS.read_text(encoding="utf-8"))


_INT = re.compile(r"-?\d+")
_BOOL = {"true", "false", "1", "0"}


def _scalar_problem(key: str, text: str, spec: dict) -> str | None:
    kind = spec["type"].replace("-list", "")
    if kind == "int":
        if not _INT.fullmatch(text):
            return f"{key}={text}: expected an integer"
        value = int(text)
    elif kind == "float":
        try:
            value = float(text)
        except ValueError:
            return f"{key}={text}: expected a number"
        if not math.isfinite(value):
            return f"{key}={text}: expected a finite number"
    elif kind == "bool":
        return None if text in _BOOL else f"{key}={text}: expected true, false, 1 or 0"
    else:  # string, path
        return None if text and "\n" not in text else f"{key}: expected a non-empty one-line string"
    if "choices" in spec and value not in spec["choices"]:
        return f"{key}={text}: expected one of {spec['choices']}"
    if "min" in spec and value < spec["min"]:
        return f"{key}={text}: expected >= {spec['min']}"
    if "max" in spec and value > spec["max"]:
        return f"{key}={text}: expected <= {spec['max']}"
    if "min_open" in spec and value <= spec["min_open"]:
        return f"{key}={text}: expected > {spec['min_open']}"
    return None


def nvinfer_problems(text: str) -> list[str]:
    """Every way an nvinfer config text departs from DeepStream's documented [property] keys: unknown or
    legacy keys, values of the wrong type or out of the documented range, lists of the wrong length."""
    parser = configparser.ConfigParser(
        delimiters=("=",), comment_prefixes=("#",), interpolation=None, strict=True, empty_lines_in_values=False
    )
    parser.optionxform = str  # GKeyFile keys are case-sensitive
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        return [f"not a key file: {str(exc).splitlines()[0]}"]
    if not parser.has_section("property"):
        return ["no [property] group"]
    known = nvinfer_keys()["property"]
    problems = []
    for section in parser.sections():
        if section != "property" and not section.startswith("class-attrs-"):
            problems.append(f"[{section}]: not a group nvinfer reads")
    for key, value in parser.items("property"):
        spec = known.get(key)
        if spec is None:
            problems.append(f"{key}: not a documented nvinfer key")
            continue
        if "legacy" in spec:
            problems.append(f"{key}: a legacy key (use {spec['legacy']})")
        items = [v.strip() for v in value.split(";")] if spec["type"].endswith("-list") else [value.strip()]
        if spec["type"].endswith("-list") and items and items[-1] == "":
            items = items[:-1]  # GKeyFile allows a trailing separator
        if "length" in spec and len(items) != spec["length"]:
            problems.append(f"{key}={value}: expected {spec['length']} values")
        if "max_length" in spec and len(items) > spec["max_length"]:
            problems.append(f"{key}={value}: expected at most {spec['max_length']} values")
        problems += [p for p in (_scalar_problem(key, item, spec) for item in items) if p]
    return problems


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.10g}"
    if isinstance(value, (list, tuple)):
        return ";".join(_fmt(v) for v in value)
    return str(value)


def nvinfer_text(props: list, comment: str) -> str:
    """[property] lines from (key, value, why) triples; the why becomes a comment line above the key."""
    lines = [f"# {line}" for line in comment.splitlines()] + ["[property]"]
    for key, value, why in props:
        if why:
            lines.append(f"# {why}")
        lines.append(f"{key}={_fmt(value)}")
    return "\n".join(lines) + "\n"


def nvinfer_config(
    info: ModelInfo,
    opts: DeepStreamOptions,
    *,
    batch: int,
    scale: float,
    offsets,
    fold,
    engine_name: str,
    onnx_name: str | None,
    calib_name: str | None,
) -> str:
    mode = NETWORK_MODE.get(info.precision, 0)
    h, w = info.input_size
    props = [
        ("gpu-id", opts.gpu_id, None),
        ("gie-unique-id", opts.gie_id, None),
        ("process-mode", 2, "secondary: runs on the objects of the face detector below, not on whole frames"),
        ("operate-on-gie-id", opts.detector_gie_id, None),
        ("operate-on-class-ids", [opts.face_class_id], None),
        ("network-type", 1, "classifier"),
        (
            "classifier-threshold",
            float(opts.classifier_threshold),
            "probabilities at or below it give no label (0: the top class always, as `fertrt infer` reports)",
        ),
        ("batch-size", batch, None),
        ("network-mode", mode, f"0 FP32, 1 INT8, 2 FP16: the model's precision ({info.precision})"),
        ("infer-dims", [info.channels, h, w], "C;H;W"),
        ("model-color-format", COLOR_FORMAT[info.color_order], f"0 RGB, 1 BGR, 2 GRAY: the model's {info.color_order}"),
        (
            "net-scale-factor",
            scale,
            "y = net-scale-factor * (x - offsets), x in 0..255: fertrt's (x/255 - mean) / std"
            + (" with the per-channel 1/std folded into fer.onnx" if fold else ""),
        ),
        ("offsets", list(offsets), "255 * mean"),
        ("maintain-aspect-ratio", 0, "fertrt resizes face crops to the input size without padding"),
        ("scaling-filter", BILINEAR, "bilinear: the GPU default is nearest"),
    ]
    if onnx_name:
        props.append(("onnx-file", onnx_name, None))
    props.append(
        (
            "model-engine-file",
            engine_name,
            "nvinfer builds this file from onnx-file on first start when it is missing or stale"
            if onnx_name
            else "the engine fertrt build-engine made (TensorRT and GPU must match this device)",
        )
    )
    if calib_name:
        props.append(
            ("int8-calib-file", calib_name, "activation scales from fertrt quantize (TensorRT calibration cache)")
        )
    props += [("labelfile-path", "labels.txt", None), ("output-blob-names", ["probabilities"], None)]
    header = (
        "Gst-nvinfer secondary classifier for a fertrt FER model, written by `fertrt export-deepstream`.\n"
        "Keys checked against DeepStream 9.1's documented [property] keys\n"
        "(fertrt export/data/deepstream_nvinfer_keys.json)."
    )
    text = nvinfer_text(props, header)
    problems = nvinfer_problems(text)
    if problems:  # a bug in this module, never the user's input
        raise AssertionError("export-deepstream wrote undocumented nvinfer keys: " + "; ".join(problems))
    return text


# ---------------------------------------------------------------- nvinferserver (protobuf text)

_SCALARS = {
    "double": 1,
    "float": 2,
    "int64": 3,
    "uint64": 4,
    "int32": 5,
    "bool": 8,
    "string": 9,
    "bytes": 12,
    "uint32": 13,
}  # FieldDescriptorProto.Type numbers
_PKG = "fertrt_ds"


def _resolve(name: str, scope: str, table) -> str | None:
    """A .proto type reference resolved C++-style: innermost scope first."""
    parts = scope.split(".")
    for i in range(len(parts), -1, -1):
        candidate = ".".join(parts[:i] + [name])
        if candidate in table:
            return candidate
    return None


@lru_cache(maxsize=None)
def nvinferserver_message_class():
    """The PluginControl message class, built from the field list in export/data (descriptor_pb2), so that
    protobuf's own text parser checks field names, types, enum values and oneofs of what fertrt writes."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    spec = json.loads(NVINFERSERVER_FIELDS.read_text(encoding="utf-8"))
    messages, enums = spec["messages"], spec["enums"]
    flat = lambda name: name.replace(".", "_")  # noqa: E731 - nested types flattened to one level
    fdp = descriptor_pb2.FileDescriptorProto(name="fertrt_nvinferserver.proto", package=_PKG, syntax="proto3")
    for name, values in enums.items():
        enum = fdp.enum_type.add(name=flat(name))
        for value_name, number in sorted(values.items(), key=lambda kv: kv[1]):  # proto3: the zero value first
            enum.value.add(name=value_name, number=number)
    for name, fields in messages.items():
        msg = fdp.message_type.add(name=flat(name))
        oneofs: list[str] = []
        for fname, f in sorted(fields.items(), key=lambda kv: kv[1]["number"]):
            field = msg.field.add(name=fname, number=f["number"])
            field.label = 3 if f["label"] == "repeated" else 1
            if f["type"] == "map":
                entry = msg.nested_type.add(name="".join(p.capitalize() for p in fname.split("_")) + "Entry")
                entry.options.map_entry = True
                for i, (part, typ) in enumerate((("key", f["key"]), ("value", f["value"])), start=1):
                    sub = entry.field.add(name=part, number=i, label=1)
                    _set_type(sub, typ, name, messages, enums, flat)
                field.type, field.type_name = 11, f".{_PKG}.{flat(name)}.{entry.name}"
            else:
                _set_type(field, f["type"], name, messages, enums, flat)
            if "oneof" in f:
                if f["oneof"] not in oneofs:
                    oneofs.append(f["oneof"])
                    msg.oneof_decl.add(name=f["oneof"])
                field.oneof_index = oneofs.index(f["oneof"])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.{flat(spec['top_level'])}"))


def _set_type(field, typ, scope, messages, enums, flat):
    if typ in _SCALARS:
        field.type = _SCALARS[typ]
        return
    for table, kind in ((messages, 11), (enums, 14)):
        found = _resolve(typ, scope, table)
        if found:
            field.type, field.type_name = kind, f".{_PKG}.{flat(found)}"
            return
    raise FertrtError(f"{NVINFERSERVER_FIELDS}: type {typ!r} of {scope} is not declared")


def nvinferserver_problems(text: str) -> list[str]:
    """Parse an nvinferserver config as protobuf text against DeepStream's PluginControl field list."""
    from google.protobuf import text_format

    try:
        text_format.Parse(text, nvinferserver_message_class()())
    except text_format.ParseError as exc:
        return [str(exc)]
    return []


def nvinferserver_text(config: dict, header: str) -> str:
    from google.protobuf import json_format, text_format

    msg = nvinferserver_message_class()()
    json_format.ParseDict(config, msg)
    body = text_format.MessageToString(msg)
    text = "".join(f"# {line}\n" for line in header.splitlines()) + body
    problems = nvinferserver_problems(text)
    if problems:
        raise AssertionError(
            "export-deepstream wrote an nvinferserver config its field list refuses: " + "; ".join(problems)
        )
    return text


def _triton_backend(model: str, repo: str, outputs) -> dict:
    return {
        "triton": {
            "model_name": model,
            "version": -1,
            "model_repo": {"root": [repo], "strict_model_config": True, "log_level": 1},
        },
        "outputs": [{"name": n} for n in outputs],
    }


def triton_fer_config(info: ModelInfo, opts: DeepStreamOptions, *, batch: int, scale: float, offsets) -> str:
    config = {
        "infer_config": {
            "unique_id": opts.gie_id,
            "gpu_ids": [opts.gpu_id],
            "max_batch_size": batch,
            "backend": _triton_backend("fer", opts.triton_repo, ["probabilities"]),
            "preprocess": {
                "network_format": SERVER_FORMAT[info.color_order],
                "tensor_order": "TENSOR_ORDER_LINEAR",
                "tensor_name": "input",
                "maintain_aspect_ratio": 0,
                "frame_scaling_filter": BILINEAR,
                "normalize": {"scale_factor": scale, "channel_offsets": list(offsets)},
            },
            "postprocess": {
                "labelfile_path": "labels.txt",
                "classification": {"threshold": float(opts.classifier_threshold)},
            },
        },
        "input_control": {
            "process_mode": "PROCESS_MODE_CLIP_OBJECTS",
            "operate_on_gie_id": opts.detector_gie_id,
            "operate_on_class_ids": [opts.face_class_id],
        },
        "output_control": {"output_tensor_meta": False},
    }
    header = (
        "Gst-nvinferserver secondary classifier: the Triton model `fer` (input `input` FP32 [-1,C,H,W], output\n"
        "`probabilities` FP32 [-1,K]) of the repository `fertrt export-triton` writes. Written by\n"
        "`fertrt export-deepstream`; fields checked against DeepStream 9.1's nvinferserver .proto\n"
        "(fertrt export/data/deepstream_nvinferserver_fields.json)."
    )
    return nvinferserver_text(config, header)


def triton_detector_config(det, opts: DeepStreamOptions, *, batch: int) -> str:
    """The primary detector through Triton: BlazeFace's anchors need decoding that nvinfer's built-in parsers
    lack, so `face_detector_ssd` (Python backend) decodes them into DeepStream's stock TF-SSD tensors."""
    scale, offsets, fold = nvinfer_normalisation(det["mean"], det["std"])
    if fold is not None:
        raise FertrtError("the face detector's preprocessing has a per-channel std; nvinferserver cannot express it")
    config = {
        "infer_config": {
            "unique_id": opts.detector_gie_id,
            "gpu_ids": [opts.gpu_id],
            "max_batch_size": batch,
            "backend": _triton_backend("face_detector_ssd", opts.triton_repo, SSD_OUTPUTS),
            "preprocess": {
                "network_format": SERVER_FORMAT[det["color_order"]],
                "tensor_order": "TENSOR_ORDER_LINEAR",
                "tensor_name": "input",
                "maintain_aspect_ratio": 1,
                "symmetric_padding": 1,
                "frame_scaling_filter": BILINEAR,
                "normalize": {"scale_factor": scale, "channel_offsets": list(offsets)},
            },
            "postprocess": {
                "labelfile_path": "labels_face.txt",
                "detection": {
                    "num_detected_classes": 1,
                    "custom_parse_bbox_func": "NvDsInferParseCustomTfSSD",
                    # face_detector_ssd already applied fertrt's NMS: threshold only, no
                    # second clustering (copyWithoutCluster in nvdsinferserver)
                    "simple_cluster": {"threshold": det["score_threshold"]},
                },
            },
            "custom_lib": {"path": STOCK_PARSER_LIB},
        },
        "input_control": {"process_mode": "PROCESS_MODE_FULL_FRAME", "interval": 0},
        "output_control": {"output_tensor_meta": False},
    }
    header = (
        "Gst-nvinferserver primary face detector: the Triton model `face_detector_ssd` (letterboxed frame in,\n"
        "boxes out as num_detections / detection_boxes / detection_scores / detection_classes), parsed by\n"
        "DeepStream's stock NvDsInferParseCustomTfSSD. Written by `fertrt export-deepstream`; fields checked\n"
        "against DeepStream 9.1's nvinferserver .proto."
    )
    return nvinferserver_text(config, header)


# ---------------------------------------------------------------- the Triton model that decodes BlazeFace


def ssd_model_config(det: dict, batch: int) -> str:
    """config.pbtxt of `face_detector_ssd`, built and parsed back with tritonclient's model_config_pb2."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    h, w = det["input_size"]
    n = det["max_faces"]
    cfg = {
        "name": "face_detector_ssd",
        "backend": "python",
        "max_batch_size": batch,
        "input": [{"name": "input", "data_type": "TYPE_FP32", "dims": [3, h, w]}],
        "output": [
            {"name": "num_detections", "data_type": "TYPE_FP32", "dims": [1]},
            {"name": "detection_boxes", "data_type": "TYPE_FP32", "dims": [n, 4]},
            {"name": "detection_scores", "data_type": "TYPE_FP32", "dims": [n]},
            {"name": "detection_classes", "data_type": "TYPE_FP32", "dims": [n]},
        ],
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],  # JetPack's Python backend has no GPU instances
        "parameters": {
            "detector": {"string_value": json.dumps(det)},
            "detector_model": {"string_value": "face_detector"},
        },
    }
    msg = json_format.ParseDict(cfg, model_config_pb2.ModelConfig())
    text = text_format.MessageToString(msg)
    text_format.Parse(text, model_config_pb2.ModelConfig())  # parses back
    return text


def detector_settings(path) -> dict:
    """The decoding settings of a fertrt BlazeFace detector file (its metadata), as the SSD model reads them."""
    from fertrt.runtime.detectors import DETECTORS, DetectorConfig
    from fertrt.runtime.metadata import read_metadata

    if path is None:
        cfg = DETECTORS["blazeface-short"]
    else:
        meta = read_metadata(require_file(path, "a face detector .onnx from `fertrt detector export`"))
        if meta.get("task") != "face-detection" or "detector" not in meta:
            raise FertrtError(
                f"--detector-model {path}: not a fertrt face detector (no 'task': 'face-detection' metadata)"
            )
        raw = meta["detector"]
        cfg = DetectorConfig.from_json(raw if isinstance(raw, str) else json.dumps(raw), path)
    if cfg.family != "blazeface":
        raise FertrtError(
            f"--detector-model {path}: a {safe(cfg.family)} detector; the DeepStream path decodes BlazeFace only"
        )
    pre = cfg.preprocess
    return {
        "name": cfg.name,
        "input_size": list(cfg.input_size),
        "anchor_layers": [list(a) for a in cfg.anchor_layers],
        "outputs": list(cfg.outputs),
        "input_name": _graph_input(path) if path else "input",
        "score_threshold": cfg.score_threshold,
        "nms_iou": cfg.nms_iou,
        "weighted_nms": cfg.weighted_nms,
        "max_faces": cfg.max_faces,
        "crop_margin": cfg.crop_margin,
        "crop_shift": cfg.crop_shift,
        "mean": list(pre["mean"]),
        "std": list(pre["std"]),
        "color_order": pre.get("color_order", "RGB"),
    }


def _graph_input(path) -> str:
    """The detector graph's input name: face_detector_ssd sends its frames to `face_detector` under it."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in weights)


# ---------------------------------------------------------------- deepstream-app and the pipeline text


def deepstream_app_text(opts: DeepStreamOptions, batch: int) -> str:
    return f"""# deepstream-app -c deepstream_app_fer.txt : a face detector through Triton (nvinferserver), then the FER
# classifier on each face (nvinfer). Written by `fertrt export-deepstream`; the source is an example: edit uri.
[application]
enable-perf-measurement=1
perf-measurement-interval-sec=5

[source0]
enable=1
# 3 = multi-URI
type=3
uri=file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_1080p_h264.mp4
num-sources=1

[streammux]
batch-size=1
width=1280
height=720
batched-push-timeout=40000

[primary-gie]
enable=1
# 1 = nvinferserver
plugin-type=1
gie-unique-id={opts.detector_gie_id}
config-file=config_triton_face_detector.txt

[tracker]
enable=1
ll-lib-file=/opt/nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so

[secondary-gie0]
enable=1
# 0 = nvinfer (TensorRT engine from fer.onnx); set 1 and config_triton_fer.txt to classify through Triton instead
plugin-type=0
gie-unique-id={opts.gie_id}
operate-on-gie-id={opts.detector_gie_id}
batch-size={batch}
config-file=config_infer_secondary_fer.txt

[osd]
enable=1

[sink0]
enable=1
# 1 = fakesink (headless); 2 = EGL window, 3 = file
type=1
sync=0
"""


def app_problems(text: str) -> list[str]:
    """Groups and keys of a deepstream-app config that its parsers do not read (deepstream_app_keys.json)."""
    spec = json.loads(APP_KEYS.read_text(encoding="utf-8"))
    parser = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#",), interpolation=None, strict=True)
    parser.optionxform = str
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        return [f"not a key file: {str(exc).splitlines()[0]}"]
    problems = []
    for section in parser.sections():
        group = section.rstrip("0123456789") if section.rstrip("0123456789") in spec["numbered_groups"] else section
        keys = spec["groups"].get(group)
        if keys is None:
            problems.append(f"[{section}]: not a group fertrt checks (or deepstream-app reads)")
            continue
        problems += [
            f"[{section}] {key}: not a key deepstream-app reads there" for key in parser[section] if key not in keys
        ]
    return problems


def pipeline_text(info: ModelInfo, fold, scale, offsets, report: dict | None, repo_note: str) -> str:
    verified = (
        f"ONNX Runtime, {report['n']} crops (synthetic faces and noise): the config's preprocessing "
        "(net-scale-factor, "
        "offsets, "
        f"colour format) + fer.onnx vs fertrt's preprocessing + the original model + softmax: max |diff| "
        f"{report['max_abs_diff']:.2e}, top-1 agreement {report['top1_agreement'] * 100:.0f} %."
        if report
        else "not re-verified: the input was an engine built from a graph export-deepstream wrote."
    )
    fold_note = (
        f"The model's std {list(info.std)} differs per channel; one net-scale-factor cannot express it, "
        "so fer.onnx "
        f"starts with a Mul by 1/std ({[round(f, 6) for f in fold]}) and nvinfer only subtracts the mean.\n"
        if fold
        else ""
    )
    return f"""# DeepStream with a fertrt model

Files: `config_infer_secondary_fer.txt` (Gst-nvinfer), `config_triton_face_detector.txt` and
`config_triton_fer.txt` (Gst-nvinferserver), `deepstream_app_fer.txt` (deepstream-app), `labels.txt`, `fer.onnx`.

    deepstream-app -c deepstream_app_fer.txt

or, as one gst-launch line (Triton detector, then the FER classifier on TensorRT):

    gst-launch-1.0 uridecodebin uri=file:///path/video.mp4 ! m.sink_0 \\
      nvstreammux name=m batch-size=1 width=1280 height=720 ! \\
      nvinferserver config-file-path=config_triton_face_detector.txt ! \\
      nvtracker ll-lib-file=/opt/nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so ! \\
      nvinfer config-file-path=config_infer_secondary_fer.txt ! nvvideoconvert ! nvdsosd ! fakesink sync=0

Preprocessing: nvinfer computes y = net-scale-factor * (x - offsets)
= {scale:.10g} * (x - {[round(o, 6) for o in offsets]}).
{fold_note}Verified here: {verified}
Triton repository: {repo_note}

Face crops: `face_detector_ssd` reports the square crop fertrt's pipeline classifies (the detection enlarged by the
detector's crop margin, moved by its crop shift), so nvinfer classifies the same framing; it does not rotate faces
upright by the eyes as `fertrt infer` does, and a crop reaching past the frame is clipped (fertrt replicates the
border).

Not verified here (no GPU, no DeepStream on the development machine): that nvinfer builds and runs the engine,
that nvinferserver loads the repository and DeepStream's parser reads face_detector_ssd's tensors as intended.
"""


# ---------------------------------------------------------------- the command


@dataclass(frozen=True)
class Source:
    """What export-deepstream reads: the FER model file, its calibration cache and the face detector file."""

    model: Path
    calib_cache: Path | None
    detector: Path | None


def resolve_source(path, precision: str | None = None, detector_model=None) -> Source:
    """MODEL|DIR -> the files to read: a model file as given (its OUTPUT.calib.cache beside it), or from a
    `fertrt pack` folder (checked against its manifest) the ONNX of `precision` (default FP16, else FP32,
    else INT8; DeepStream builds its own engine from it), its calibration cache and detector.onnx."""
    from fertrt.runtime.deploy import detector_path, is_deploy_dir, onnx_name, open_folder

    p = Path(path)
    det = Path(detector_model) if detector_model else None
    if not p.is_dir():
        require_file(p, "a fertrt .onnx, an .engine or a deployment folder from `fertrt pack`")
        if p.suffix.lower() not in (".onnx", ".engine", ".plan"):
            raise FertrtError(
                f"{p}: expected a .onnx or .engine model or a deployment folder, got {p.suffix or 'no suffix'!r}"
            )
        if precision:
            raise FertrtError(f"--precision {precision}: picks a model in a deployment folder; {p} is one model file")
        cache = Path(str(p) + ".calib.cache")
        return Source(p, cache if cache.is_file() else None, det)
    if not is_deploy_dir(p):
        raise FertrtError(
            f"{p}: a folder without manifest.json; expected a fertrt .onnx, an .engine or a deployment "
            "folder from `fertrt pack`"
        )
    manifest = open_folder(p)
    for prec in [precision] if precision else ["fp16", "fp32", "int8"]:
        if onnx_name(prec) in manifest["files"]:
            cache = f"model.{prec}.calib.cache"
            return Source(
                p / onnx_name(prec),
                p / cache if cache in manifest["files"] else None,
                det or detector_path(p, manifest),
            )
    wanted = onnx_name(precision) if precision else "model.fp16/fp32/int8.onnx"
    raise FertrtError(f"{p}: its manifest lists no {wanted}")


def _read_engine(path) -> tuple[dict, int | None]:
    from fertrt.engine.sidecar import read_sidecar

    side = read_sidecar(path)
    outputs = (side.get("io") or {}).get("outputs") or []
    if list(outputs) != ["probabilities"]:
        raise FertrtError(
            f"{path}: its outputs are {safe_list(outputs) or 'unknown'}; nvinfer's classifier needs one "
            "'probabilities' output. Run `fertrt export-deepstream` on the ONNX it was built from "
            "(nvinfer "
            "then builds the engine itself), or build one from the fer.onnx that writes"
        )
    meta = {
        "class_names": side["class_names"],
        "preprocess": side["preprocess"],
        "precision": side["precision"].get("requested") or side["precision"].get("graph", "fp32"),
    }
    profile = side.get("profile") or {}
    maxes = [v.get("max") for v in profile.values() if isinstance(v, dict) and v.get("max")]
    return meta, (int(maxes[0][0]) if maxes else None)


@dataclass
class Prepared:
    """The model side of the output, computed and verified before anything is written."""

    info: ModelInfo
    scale: float
    offsets: tuple
    fold: tuple | None
    ds_bytes: bytes | None  # fer.onnx
    triton_bytes: bytes | None  # fer_triton.onnx: std folded, logits kept (what the Triton repository's fer_net runs)
    reports: dict


def prepare_onnx(path: Path, opts: DeepStreamOptions, log) -> Prepared:
    import onnx

    from fertrt.export.metadata import get_metadata, set_metadata

    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises many types for bad files
        raise FertrtError(f"{path}: not a readable ONNX file ({exc.__class__.__name__})") from None
    meta = get_metadata(proto)
    info = model_info(meta, path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    if dims and dims[0].dim_value > 0:
        info = ModelInfo(**{**info.__dict__, "max_batch": int(dims[0].dim_value)})
    scale, offsets, fold = nvinfer_normalisation(info.mean, info.std)
    original = proto.SerializeToString()
    fmt = COLOR_FORMAT[info.color_order]
    rewritten, reports = {}, {}
    for name, softmax in (("fer.onnx", True), ("fer_triton.onnx", False)):
        if name == "fer_triton.onnx" and fold is None:
            continue  # the Triton repository runs the original graph
        graph = onnx.load_from_string(original)
        try:
            deepstream_graph(graph, fold, softmax=softmax)
        except FertrtError as exc:
            raise FertrtError(f"{path}: {exc}") from None
        set_metadata(graph, deepstream_metadata(meta, fold, softmax=softmax))
        rewritten[name] = graph.SerializeToString()
        reports[name] = verify_graph(
            original,
            rewritten[name],
            info,
            scale,
            offsets,
            fmt,
            opts.verify_samples,
            opts.atol,
            output="probabilities" if softmax else "logits",
        )
        rep = reports[name]
        log(
            f"{name}: the config's preprocessing + this graph vs fertrt's preprocessing + {path.name} on ONNX "
            f"Runtime, {rep['n']} crops: max |diff| {rep['max_abs_diff']:.2e} (probabilities), top-1 agreement "
            f"{rep['top1_agreement'] * 100:.0f}%" + ("; per-channel std folded into the graph" if fold else "")
        )
    return Prepared(info, scale, offsets, fold, rewritten["fer.onnx"], rewritten.get("fer_triton.onnx"), reports)


def prepare_engine(path: Path) -> Prepared:
    meta, max_batch = _read_engine(path)
    info = model_info(meta, path)
    info = ModelInfo(**{**info.__dict__, "max_batch": max_batch})
    scale, offsets, fold = nvinfer_normalisation(info.mean, info.std)
    if fold is not None:
        raise FertrtError(
            f"{path}: its preprocessing has a per-channel std {list(info.std)} that one net-scale-factor "
            "cannot express, and an engine cannot be rewritten; run export-deepstream on the ONNX"
        )
    return Prepared(info, scale, offsets, None, None, None, {})


def _outputs(opts: DeepStreamOptions) -> list:
    names = list(FILES) + ["fer_triton.onnx", "fer.onnx.calib.cache"]
    if not Path(opts.triton_repo).is_absolute():
        names.append(opts.triton_repo)
    return names


def export_deepstream(
    model,
    output,
    opts: DeepStreamOptions = DeepStreamOptions(),
    detector_model=None,
    precision: str | None = None,
    triton_platform: str = "onnxruntime_onnx",
    log=print,
) -> dict:
    opts.validate()
    src = resolve_source(model, precision, detector_model)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise FertrtError(f"-o {out}: is a file; expected a folder")
    folder = Path(model)
    if folder.is_dir() and (out.resolve() == folder.resolve() or folder.resolve() in out.resolve().parents):
        raise FertrtError(
            f"-o {out}: inside the deployment folder {folder}; its manifest lists every file, so write "
            "the DeepStream folder elsewhere"
        )
    existing = [n for n in _outputs(opts) if (out / n).exists()]
    if existing and not opts.force:
        raise FertrtError(f"-o {out}: holds {', '.join(existing)} from an earlier run (pass --force to replace them)")
    engine_input = src.model.suffix.lower() in (".engine", ".plan")
    det_path = src.detector
    if det_path is None:
        from fertrt.runtime.detectors import default_detector_path

        det_path = default_detector_path("blazeface-short")
        det_path = det_path if det_path.is_file() else None  # the registry's settings are the cached file's
    det = detector_settings(det_path)
    if triton_platform != "none" and not engine_input and not Path(opts.triton_repo).is_absolute():
        _require_triton_writer()
    # every check before the first file is written
    prep = prepare_engine(src.model) if engine_input else prepare_onnx(src.model, opts, log)
    info = prep.info
    batch = opts.batch_size or info.max_batch or 16
    if info.max_batch and batch > info.max_batch:
        raise FertrtError(f"--batch-size {batch}: {src.model} takes at most batch {info.max_batch}")
    mode = ["fp32", "int8", "fp16", "fp32"][NETWORK_MODE.get(info.precision, 0)]
    if engine_input:
        engine_name, onnx_name = src.model.name, None
    else:  # where nvinfer serialises the engine it builds from onnx-file, so the next start reuses it
        engine_name, onnx_name = f"fer.onnx_b{batch}_gpu{opts.gpu_id}_{mode}.engine", "fer.onnx"
    with_cache = src.calib_cache is not None and info.precision == "int8" and not engine_input
    calib = "fer.onnx.calib.cache" if with_cache else None
    texts = {  # every config built (and checked against DeepStream's key lists) before the first file is written
        "labels.txt": ";".join(info.class_names) + "\n",
        "labels_face.txt": "face\n",
        "config_infer_secondary_fer.txt": nvinfer_config(
            info,
            opts,
            batch=batch,
            scale=prep.scale,
            offsets=prep.offsets,
            fold=prep.fold,
            engine_name=engine_name,
            onnx_name=onnx_name,
            calib_name=calib,
        ),
        "config_triton_fer.txt": triton_fer_config(info, opts, batch=batch, scale=prep.scale, offsets=prep.offsets),
        "config_triton_face_detector.txt": triton_detector_config(det, opts, batch=1),
        "deepstream_app_fer.txt": deepstream_app_text(opts, batch),
    }
    problems = app_problems(texts["deepstream_app_fer.txt"])
    if problems:  # a bug in this module, never the user's input
        raise AssertionError("export-deepstream wrote undocumented deepstream-app keys: " + "; ".join(problems))
    out = make_output_dir(out)
    inputs = tuple(p for p in (src.model, src.calib_cache, src.detector) if p is not None)
    write = lambda name, data: _write(out / name, data, opts.force, inputs)  # noqa: E731
    if engine_input:
        write(engine_name, src.model.read_bytes())
    else:
        write("fer.onnx", prep.ds_bytes)
        if prep.triton_bytes is not None:
            write("fer_triton.onnx", prep.triton_bytes)
    if calib:
        write(calib, src.calib_cache.read_bytes())
    for name, text in texts.items():
        write(name, text)
    # the Triton repository's fer_net runs the original graph, or fer_triton.onnx when the std was folded
    triton_model = out / "fer_triton.onnx" if prep.fold else src.model
    repo_note = write_triton_repository(out, opts, det, det_path, triton_model, triton_platform, engine_input, log)
    write(
        "pipeline.md", pipeline_text(info, prep.fold, prep.scale, prep.offsets, prep.reports.get("fer.onnx"), repo_note)
    )
    log(
        f"wrote {out}: config_infer_secondary_fer.txt (nvinfer), config_triton_face_detector.txt and "
        f"config_triton_fer.txt (nvinferserver), deepstream_app_fer.txt, labels.txt, {onnx_name or engine_name}; "
        "see pipeline.md"
    )
    return {
        "output": str(out),
        "model": str(src.model),
        "batch_size": batch,
        "net_scale_factor": prep.scale,
        "offsets": list(prep.offsets),
        "folded_std": list(prep.fold) if prep.fold else None,
        "verification": prep.reports,
        "triton": repo_note,
    }


def _write(path: Path, data, force: bool, inputs):
    with atomic_path(path, overwrite=force, inputs=inputs, option="-o") as tmp:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def _require_triton_writer():
    try:
        import importlib

        for name in ("tritonclient.grpc.model_config_pb2", "fertrt.serve.triton_repo"):  # what the writer needs
            importlib.import_module(name)
    except ImportError as exc:
        raise FertrtError(
            f"writing the Triton repository needs {exc.name or 'tritonclient'} (pip install "
            "'fertrt[serve]'); or pass --triton-platform none to write the DeepStream configs "
            "alone"
        ) from None


def write_triton_repository(
    out: Path, opts: DeepStreamOptions, det: dict, det_path, fer_model, platform: str, engine_input: bool, log
) -> str:
    """The Triton repository the nvinferserver configs name: `fertrt export-triton`'s writer (fer, fer_net,
    fer_softmax, face_detector, fer_faces) plus `face_detector_ssd`, under the output folder."""
    repo = Path(opts.triton_repo)
    how = f"`fertrt export-triton MODEL -o {repo}` (then add face_detector_ssd from this folder's copy)"
    if repo.is_absolute() or platform == "none" or engine_input:
        why = (
            "it is outside -o"
            if repo.is_absolute()
            else "--triton-platform none"
            if platform == "none"
            else "the input is an engine whose output is already `probabilities`; export-triton takes the ONNX "
            "or the "
            "engine of the original model"
        )
        return f"not written here ({why}); write it with {how}."
    if det_path is None:
        return (
            f"not written: no face detector file (make the default once with `fertrt detector export`); write it "
            f"with {how}."
        )
    from fertrt.serve.triton_repo import RepoOptions, write_repository

    target = out / repo
    repo_opts = RepoOptions(platform=platform, max_batch=opts.batch_size or 16, force=True)
    write_repository(fer_model, target, repo_opts, detector=det_path, log=log)
    folder = target / "face_detector_ssd"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "config.pbtxt", ssd_model_config(det, batch=8))
    write_text_atomic(folder / "1" / "model.py", SSD_MODEL_SOURCE.read_text(encoding="utf-8"))
    return (
        f"`{opts.triton_repo}/` beside the configs, written by export-triton's writer (--platform {platform}: "
        "fer, fer_net, "
        f"fer_softmax, face_detector, fer_faces) plus face_detector_ssd (Python backend; fertrt must be installed "
        "where Triton's Python backend runs)."
    )


def cmd_export_deepstream(args):
    opts = DeepStreamOptions(
        batch_size=args.batch_size,
        detector_gie_id=args.detector_gie_id,
        gie_id=args.gie_id,
        face_class_id=args.face_class_id,
        classifier_threshold=args.classifier_threshold,
        gpu_id=args.gpu_id,
        triton_repo=args.triton_repo,
        force=args.force,
    )
    export_deepstream(
        args.model,
        args.output,
        opts,
        detector_model=args.detector_model,
        precision=args.precision,
        triton_platform=args.triton_platform,
    )
    return 0
