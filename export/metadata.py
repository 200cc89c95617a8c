"""fertrt metadata in ONNX `metadata_props`: everything later stages need, so that nothing
downstream needs the checkpoint again. Values are strings; structured ones are JSON.
This module builds and writes it; fertrt.runtime.metadata reads it (the device side imports nothing from here)."""

from __future__ import annotations

from fertrt import __version__

# reading lives on the device side; re-exported for the export code and the tests that import it from here
from fertrt.runtime.metadata import JSON_KEYS, PREFIX, decode, encode, get_metadata, read_metadata  # noqa: F401


def build_metadata(
    model_cfg: dict, *, checkpoint_sha256: str, data_spec: str, precision: str = "fp32", **extra
) -> dict:
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


def set_metadata(model, meta: dict):
    """Write (replace) fertrt's keys in an onnx.ModelProto's metadata_props."""
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in encode(meta).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model
