"""Every registered model exports (legacy exporter, opset 17, dynamic batch) and ORT matches PyTorch."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from fertrt.export.onnx_export import export_module
from fertrt.train.models import create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_export_parity_on_onnxruntime(name, tmp_path, torch_threads):
    torch.manual_seed(0)
    model = create_model(name).eval()
    pre = model.default_cfg.preprocess
    x = torch.randn(3, pre.channels, *pre.input_size)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        export_module(model),
        (torch.zeros(1, pre.channels, *pre.input_size),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]  # batch 3 through a graph traced at batch 1
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (3, 7)
    assert np.abs(got - ref).max() < 1e-4
