"""fertrt metadata in ONNX `metadata_props`: everything later stages need, so that nothing
downstream needs the checkpoint again. Values are strings; structured ones are JSON."""
from __future__ import annotations

import json

from fertrt import __version__
from fertrt.errors import FertrtError

PREFIX = "fertrt."
JSON_KEYS = {"model_config", "class_names", "preprocess", "mean", "std", "input_size", "calibration", "export", "explain_outputs"}


def build_metadata(model_cfg: dict, *, checkpoint_sha256: str, data_spec: str, precision: str = "fp32", **extra) -> dict:
    pre = model_cfg["preprocess"]
    meta = {
        "format": "fertrt-onnx-1",
        "fertrt_version": __version__,
        "model_name": model_cfg["name"],
        "model_config": model_cfg,
        "class_names": list(model_cfg["class_names"]),
        "preprocess": pre,
        "input_layout": pre.get("layout", "NCHW"),
        "input_size": list(pre["input_size"]),
        "channels": str(pre["channels"]),
        "mean": list(pre["mean"]),
        "std": list(pre["std"]),
        "color_order": pre["color_order"],
        "source_checkpoint_sha256": checkpoint_sha256,
        "data_spec": data_spec,
        "precision": precision,
    }
    meta.update(extra)
    return meta


def encode(meta: dict) -> dict[str, str]:
    return {PREFIX + k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in meta.items()}


def decode(props: dict[str, str]) -> dict:
    out = {}
    for k, v in props.items():
        if not k.startswith(PREFIX):
            continue
        key = k[len(PREFIX):]
        if key in JSON_KEYS:
            try:
                v = json.loads(v)
            except json.JSONDecodeError as exc:
                raise FertrtError(f"metadata {k!r} is not valid JSON ({exc})") from exc
        out[key] = v
    return out


def set_metadata(model, meta: dict):
    """Write (replace) fertrt's keys in an onnx.ModelProto's metadata_props."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in encode(meta).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def get_metadata(model) -> dict:
    return decode({p.key: p.value for p in model.metadata_props})


def read_metadata(path) -> dict:
    """Read fertrt metadata from an ONNX file with onnx if present, else onnxruntime (runtime side)."""
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001
            raise FertrtError(f"{path}: not a readable ONNX file ({exc.__class__.__name__}: {exc})") from exc
        return get_metadata(model)
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(f"{path}: not a readable ONNX file ({exc})") from exc
    return decode(sess.get_modelmeta().custom_metadata_map)
