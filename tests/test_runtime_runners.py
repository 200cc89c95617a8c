"""runtime/runners.py: bad model files, batches and backends are refused, and so are models whose metadata lies."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fertrt.errors import FertrtError
from fertrt.runtime.runners import open_runner
from helpers import write_bgr


def test_bad_models_and_batches(tiny_onnx, tmp_path):
    with pytest.raises(FertrtError, match="unknown model file type '.bin'"):
        open_runner(tmp_path / "m.bin")
    with pytest.raises(FertrtError, match="no such file"):
        open_runner(tmp_path / "missing.onnx")
    # an ONNX model with two inputs and no fertrt metadata
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    two = tmp_path / "two.onnx"
    onnx.save(
        helper.make_model(helper.make_graph([helper.make_node("Add", ["a", "b"], ["y"])], "g", [a, b], [y])), str(two)
    )
    with pytest.raises(FertrtError, match="two.onnx: has no fertrt metadata"):
        open_runner(two)
    with open_runner(tiny_onnx) as r:
        with pytest.raises(FertrtError, match=r"expects input N x 3 x 112 x 112, got \(2, 3, 64, 64\)"):
            r.infer(np.zeros((2, 3, 64, 64), np.float32))


def test_trt_backend_needs_tensorrt(tiny_onnx, tmp_path):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt installed")
    except ImportError:
        pass
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(FertrtError, match="no sidecar m.engine.json"):
        open_runner(engine)


def _fake_classifier(path, *, class_names, logits_width=7, std=(0.5, 0.5, 0.5), input_size=(32, 32)):
    from fertrt.export.metadata import set_metadata

    h, w = 32, 32
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, h, w])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, logits_width])
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "W"], ["logits"]),
    ]
    W = helper.make_tensor("W", TensorProto.FLOAT, [3, logits_width], [0.1] * (3 * logits_width))
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [W]), opset_imports=[helper.make_opsetid("", 13)])
    set_metadata(
        model,
        {
            "class_names": class_names,
            "data_spec": "rafdb:/data",
            "preprocess": {"input_size": list(input_size), "channels": 3, "mean": [0.5] * 3, "std": list(std)},
        },
    )
    onnx.save(model, str(path))
    return path


def test_models_whose_metadata_lies_are_refused(tmp_path, capsys):
    from fertrt.cli import main

    img = write_bgr(tmp_path / "face.png", np.full((32, 32, 3), 128, np.uint8))
    names = ["a", "b", "c", "d", "e", "f", "g"]
    good = _fake_classifier(tmp_path / "good.onnx", class_names=names)
    assert main(["infer", str(good), str(img), "--no-detect", "--quiet"]) == 0
    assert "not meaningful" not in capsys.readouterr().err  # trained on real data: no synth note
    cases = {
        "string_names.onnx": ({"class_names": '"abcdefg"'}, "class_names must be a non-empty list"),
        "few_outputs.onnx": (
            {"class_names": names, "logits_width": 3},
            "gives 3 logits but its metadata names 7 classes",
        ),
        "std_zero.onnx": ({"class_names": names, "std": (0.5, 0.0, 0.5)}, "non-zero std"),
        "size_zero.onnx": ({"class_names": names, "input_size": (0, 32)}, "input_size (0, 32)"),
        "escape.onnx": ({"class_names": names[:6] + ["\x1b[31mred"], "logits_width": 3}, "\\x1b[31mred"),
    }
    for name, (kw, message) in cases.items():
        path = _fake_classifier(tmp_path / name, **kw)
        assert main(["infer", str(path), str(img), "--no-detect"]) == 2, name
        err = capsys.readouterr().err
        assert str(path) in err and message in err, err
        assert "\x1b" not in err  # a file's strings never reach the terminal raw
