"""Which backend an INT8 graph was laid out for (`fertrt quantize --target`), read back from its
metadata by build-engine, infer and bench. Pure Python: the runtime imports it without torch/onnx."""
from __future__ import annotations

TARGETS = ("tensorrt", "onnxruntime")
# each layout in a phrase, for the warnings
_LAYOUT = {
    "tensorrt": "Q/DQ on weighted-op inputs and residual Adds only (ModelOpt)",
    "onnxruntime": "Q/DQ around Conv outputs too (ONNX Runtime's quantizer), not the placement NVIDIA recommends for TensorRT",
}


def target_mismatch(meta: dict, backend: str) -> str | None:
    """A one-line warning when an INT8 graph made for one backend is handed to the other, else None.
    `backend` is 'tensorrt' or 'onnxruntime' (CPU)."""
    if not isinstance(meta, dict) or meta.get("precision") != "int8":
        return None
    target = meta.get("quantize_target")
    if target not in TARGETS or target == backend:
        return None
    better = "--target tensorrt" if backend == "tensorrt" else "--target onnxruntime"
    rest = meta.get("int8_rest_precision")
    layout = _LAYOUT[target] + (f", {rest.upper()} elsewhere" if rest in ("fp16", "fp32") else "")
    return (f"this INT8 graph was laid out for {target} ({layout}); it runs on {backend}, but the layout made for "
            f"{backend} is `fertrt quantize --precision int8 {better}` on the FP32 model")
