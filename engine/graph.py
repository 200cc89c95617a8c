"""Facts about an ONNX file the builder needs, read with onnx (no TensorRT)."""
from __future__ import annotations

from fertrt.errors import FertrtError
from fertrt.fileio import require_file, sha256_file

from .plan import GraphInfo


def graph_info(path) -> tuple[GraphInfo, dict]:
    """-> (GraphInfo, fertrt metadata). Validates the file before anyone reaches a GPU."""
    import onnx

    from fertrt.export.metadata import get_metadata

    require_file(path, "an ONNX model from `fertrt export` or `fertrt quantize`")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(f"{path}: not a valid ONNX model ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise FertrtError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise FertrtError(f"{path}: input {inputs[0].name!r} has shape {shape}; expected N x C x H x W with fixed C, H, W")
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops:
        precision = "int8"
    elif any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        precision = "fp16"
    else:
        precision = "fp32"
    meta = get_metadata(model)
    outputs = tuple(o.name for o in model.graph.output)
    return GraphInfo(inputs[0].name, shape, precision, sha256_file(path), outputs), meta
