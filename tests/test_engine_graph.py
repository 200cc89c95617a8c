"""engine/graph.py: what the builder reads from an ONNX file (here: one saved with external data)."""

import numpy as np
import pytest

from fertrt.errors import FertrtError


def test_onnx_with_external_data(tmp_path):
    """Defect 8: a model saved with external data is read with its data file; a missing one is named."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fertrt.engine.graph import external_data_files, graph_info

    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    node = helper.make_node("Conv", ["input", "w"], ["logits"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.onnx.data",
        size_threshold=0,
    )
    assert external_data_files(path) == ["m.onnx.data"]
    info, _ = graph_info(path)
    assert info.input_name == "input" and info.precision == "fp32"
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(
        FertrtError, match=r"external data file 'm.onnx.data', which is missing: keep m.onnx.data beside m.onnx"
    ):
        graph_info(path)
