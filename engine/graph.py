"""Facts about an ONNX file the builder needs, read with onnx (no TensorRT)."""

from __future__ import annotations

from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import require_file, sha256_file
from fertrt.text import safe

from .plan import GraphInfo


def external_data_files(onnx_path) -> list[str]:
    """The external data files an ONNX model refers to (models over 2 GB, or saved with external data), each
    checked to exist beside it and to stay inside its folder; [] when its weights are all inside the file."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    folder = Path(onnx_path).resolve().parent
    files = []
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), None)
        if location is None:
            raise FertrtError(f"{onnx_path}: tensor {safe(tensor.name)!r} is stored externally but names no data file")
        target = (folder / location).resolve()
        if folder not in target.parents:
            raise FertrtError(
                f"{onnx_path}: tensor {safe(tensor.name)!r} names the data file {safe(location)!r} "
                "outside the model's folder"
            )
        if not target.is_file():
            raise FertrtError(
                f"{onnx_path}: its weights are stored in the external data file {safe(location)!r}, "
                f"which is missing: keep {safe(location)} beside {Path(onnx_path).name} "
                f"(expected at {target})"
            )
        if location not in files:
            files.append(location)
    return files


def graph_info(path) -> tuple[GraphInfo, dict]:
    """-> (GraphInfo, fertrt metadata). Validates the file before anyone reaches a GPU."""
    import onnx

    from fertrt.export.metadata import get_metadata

    require_file(path, "an ONNX model from `fertrt export` or `fertrt quantize`")
    try:
        external = external_data_files(path)
    except FertrtError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnx's parse errors
        raise FertrtError(f"{path}: not a valid ONNX model ({exc.__class__.__name__})") from None
    try:
        model = onnx.load(str(path))
        # the checker takes a path for models with external data (they may pass protobuf's 2 GB limit in memory)
        onnx.checker.check_model(str(path) if external else model)
    except Exception as exc:  # noqa: BLE001
        raise FertrtError(
            f"{path}: not a valid ONNX model ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise FertrtError(f"{path}: expected one image input, found {[i.name for i in inputs]}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise FertrtError(
            f"{path}: input {inputs[0].name!r} has shape {shape}; expected N x C x H x W with fixed C, H, W"
        )
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
