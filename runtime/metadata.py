"""Reading fertrt metadata from ONNX `metadata_props` (the device side: onnx or onnxruntime, never torch).

Values are strings; structured ones are JSON. Writing it is the export side's job (fertrt.export.metadata),
which uses the same prefix and keys from here so that the two cannot drift apart.
"""

from __future__ import annotations

import json
from typing import Dict

from fertrt.errors import FertrtError

PREFIX = "fertrt."
JSON_KEYS = {
    "model_config",
    "class_names",
    "preprocess",
    "mean",
    "std",
    "input_size",
    "calibration",
    "export",
    "explain_outputs",
}


def encode(meta: dict) -> Dict[str, str]:
    return {PREFIX + k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in meta.items()}


def decode(props: Dict[str, str]) -> dict:
    out = {}
    for k, v in props.items():
        if not k.startswith(PREFIX):
            continue
        key = k[len(PREFIX) :]
        if key in JSON_KEYS:
            try:
                v = json.loads(v)
            except json.JSONDecodeError as exc:
                raise FertrtError(f"metadata {k!r} is not valid JSON ({exc})") from exc
        out[key] = v
    return out


def get_metadata(model) -> dict:
    """fertrt's keys of an onnx.ModelProto's metadata_props."""
    return decode({p.key: p.value for p in model.metadata_props})


def read_metadata(path) -> dict:
    """Read fertrt metadata from an ONNX file with onnx if present, else onnxruntime."""
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
    from fertrt.deps import require

    ort = require("onnxruntime", "reading ONNX model metadata")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(f"{path}: not a readable ONNX file ({exc})") from exc
    return decode(sess.get_modelmeta().custom_metadata_map)
