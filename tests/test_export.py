"""Export with metadata, FP16 and INT8 models on ONNX Runtime, calibration cache, sensitivity."""

import struct

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fertrt.errors import FertrtError
from fertrt.export.compare import compare_models
from fertrt.export.metadata import decode, encode, get_metadata, read_metadata
from fertrt.export.onnx_export import ExportOptions, export_checkpoint
from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8, read_ranges
from fertrt.export.trt_calib_cache import format_trt_calibration_cache, parse_trt_calibration_cache, trt_version_tag
from fertrt.export.sensitivity import run_sensitivity
from helpers import TINY_SPEC


def test_metadata_round_trip():
    meta = {
        "model_name": "lnlattennet",
        "class_names": ["a", "b"],
        "preprocess": {"input_size": [112, 112]},
        "precision": "fp16",
    }
    assert decode(encode(meta)) == meta
    assert all(k.startswith("fertrt.") for k in encode(meta))


def test_export_writes_metadata_and_verifies(tiny_run, tiny_onnx):
    run, _ = tiny_run
    meta = read_metadata(tiny_onnx)
    assert meta["model_name"] == "lnlattennet"
    assert meta["class_names"][0] == "neutral" and len(meta["class_names"]) == 7
    assert meta["input_size"] == [112, 112] and meta["channels"] == "3" and meta["color_order"] == "RGB"
    assert (
        meta["mean"] == [0.5, 0.5, 0.5]
        and meta["data_spec"] == TINY_SPEC
        and len(meta["source_checkpoint_sha256"]) == 64
    )
    model = onnx.load(str(tiny_onnx))
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.opset_import[0].version == 17


def test_export_refusals(tiny_run, tmp_path):
    run, _ = tiny_run
    out = tmp_path / "m.onnx"
    out.write_text("keep me")
    with pytest.raises(FertrtError, match="file exists"):
        export_checkpoint(run / "best.pt", out, ExportOptions(), log=lambda *a: None)
    with pytest.raises(FertrtError, match="does not exist"):
        export_checkpoint(run / "best.pt", tmp_path / "nope" / "m.onnx", ExportOptions(), log=lambda *a: None)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(FertrtError, match="bad.pt: not a readable PyTorch checkpoint"):
        export_checkpoint(bad, tmp_path / "x.onnx", ExportOptions(), log=lambda *a: None)
    # a tolerance nothing can meet: refused, and nothing written
    with pytest.raises(FertrtError, match="beyond tolerance"):
        export_checkpoint(run / "best.pt", tmp_path / "strict.onnx", ExportOptions(atol=1e-15), log=lambda *a: None)
    assert not (tmp_path / "strict.onnx").exists()
    assert out.read_text() == "keep me"


def test_fixed_batch_and_explain_export(tiny_run, tmp_path):
    """Through the command line: `--static-batch N` is export's fixed batch."""
    from fertrt.cli import main

    run, _ = tiny_run
    path = tmp_path / "b4.onnx"
    assert main(["export", str(run / "best.pt"), "-o", str(path), "--static-batch", "4", "--explain"]) == 0
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert [o.name for o in model.graph.output] == ["logits", "region_weights"]


def test_fp16_model(tiny_onnx, tmp_path):
    out = quantize_fp16(tiny_onnx, tmp_path / "fp16.onnx", log=lambda *a: None)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    conv_w = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert len(conv_w) > 10  # weights stored as FP16
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O
    softmax_in = [n for n in model.graph.node if n.op_type == "Softmax"]
    assert softmax_in  # kept in FP32 by default: fed through a Cast to FP32
    assert get_metadata(model)["precision"] == "fp16"
    rep = compare_models([tiny_onnx, out], TINY_SPEC, limit=300, log=lambda *a: None)
    fp16 = rep["models"][1]
    assert fp16["agreement"] >= 0.98 and fp16["max_abs_diff"] < 0.05 and fp16["finite"]


def test_int8_model_and_cache(tiny_onnx, tmp_path):
    messages = []
    opts = Int8Options(calib=TINY_SPEC, calib_size=128, cache_dir=tmp_path / "cache", target="onnxruntime")
    out = quantize_int8(tiny_onnx, tmp_path / "int8.onnx", opts, log=messages.append)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    # symmetric: every zero point is 0; INT8 everywhere
    zps = [numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("zero_point")]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    meta = get_metadata(model)
    assert (
        meta["precision"] == "int8"
        and meta["calibration"]["method"] == "entropy"
        and meta["calibration"]["size"] == 128
    )
    rep = compare_models([tiny_onnx, out], TINY_SPEC, limit=300, log=lambda *a: None)
    assert rep["models"][1]["agreement"] >= 0.85 and rep["models"][1]["finite"]
    assert not any("cache hit" in m for m in messages)
    # same key -> cache hit; a changed key (method) -> recalibration
    messages.clear()
    quantize_int8(tiny_onnx, tmp_path / "int8b.onnx", opts, log=messages.append)
    assert any("cache hit" in m for m in messages)
    messages.clear()
    quantize_int8(
        tiny_onnx, tmp_path / "int8c.onnx", Int8Options(**{**opts.__dict__, "method": "minmax"}), log=messages.append
    )
    assert not any("cache hit" in m for m in messages) and any(
        "calibrated 128 images with minmax" in m for m in messages
    )
    # the TensorRT calibration cache beside it
    text = (tmp_path / "int8.onnx.calib.cache").read_text()
    header, scales = parse_trt_calibration_cache(text)
    assert header == "TRT-8601-EntropyCalibration2"
    cache_file = next((tmp_path / "cache").glob("*.json"))
    ranges = read_ranges(cache_file)
    assert set(scales) == set(ranges) and "input" in scales
    for name, amax in ranges.items():
        assert scales[name] == pytest.approx(amax / 127.0, rel=1e-6)


def test_trt_cache_format():
    text = format_trt_calibration_cache({"input": 127.0, "conv1_out": 2.54}, 100300)
    lines = text.splitlines()
    assert lines[0] == "TRT-100300-EntropyCalibration2"
    assert lines[1] == "input: 3f800000"  # 127/127 = 1.0
    assert struct.unpack(">f", bytes.fromhex(lines[2].split(": ")[1]))[0] == pytest.approx(0.02)
    assert trt_version_tag("8.6.1") == 8601 and trt_version_tag("10.3.0") == 100300 and trt_version_tag("8.5.2") == 8502
    with pytest.raises(FertrtError, match="not a TensorRT calibration cache"):
        parse_trt_calibration_cache("hello")


def test_bad_inputs_to_quantize(tiny_onnx, tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage-not-protobuf")
    with pytest.raises(FertrtError, match="corrupt.onnx: not a valid ONNX model"):
        quantize_fp16(corrupt, tmp_path / "o.onnx")
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 3, 112, 112), np.float32))
    with pytest.raises(FertrtError, match="empty.npy: the calibration set is empty"):
        quantize_int8(
            tiny_onnx, tmp_path / "o.onnx", Int8Options(calib=str(empty), cache_dir=tmp_path, target="onnxruntime")
        )
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 3, 64, 64), np.float32))
    with pytest.raises(
        FertrtError,
        match=r"wrong.npy: calibration array has shape \(4, 3, 64, 64\); the model expects N x 3 x 112 x 112",
    ):
        quantize_int8(
            tiny_onnx, tmp_path / "o.onnx", Int8Options(calib=str(wrong), cache_dir=tmp_path, target="onnxruntime")
        )
    with pytest.raises(FertrtError, match="needs calibration data"):
        quantize_int8(tiny_onnx, tmp_path / "o.onnx", Int8Options(cache_dir=tmp_path, target="onnxruntime"))
    with pytest.raises(FertrtError, match="no node or op type"):
        quantize_int8(
            tiny_onnx,
            tmp_path / "o.onnx",
            Int8Options(calib=TINY_SPEC, calib_size=32, exclude=("nope",), cache_dir=tmp_path, target="onnxruntime"),
        )


def _damage_one_conv(src, dst):
    """Rescale Conv_a -> Relu -> Conv_b so FP32 is unchanged but INT8 of Conv_b is ruined:
    one channel of Conv_a's output shrinks 1000x, Conv_b's weights for it grow 1000x, so Conv_b's
    per-channel weight scales swamp all its other weights."""
    model = onnx.load(str(src))
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type != "Conv":
            continue
        relu = producer.get(node.input[0])
        conv_a = producer.get(relu.input[0]) if relu is not None and relu.op_type == "Relu" else None
        if conv_a is None or conv_a.op_type != "Conv" or len(conv_a.input) < 3 or node.input[1] not in inits:
            continue
        wa, ba = (
            numpy_helper.to_array(inits[conv_a.input[1]]).copy(),
            numpy_helper.to_array(inits[conv_a.input[2]]).copy(),
        )
        wb = numpy_helper.to_array(inits[node.input[1]]).copy()
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        if groups != 1:
            continue
        wa[0] /= 1000.0
        ba[0] /= 1000.0
        wb[:, 0] *= 1000.0
        for name, arr in ((conv_a.input[1], wa), (conv_a.input[2], ba), (node.input[1], wb)):
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
        onnx.save(model, str(dst))
        return node.name
    raise AssertionError("no Conv -> Relu -> Conv chain found")


def test_sensitivity_ranks_a_damaged_layer_first(tiny_onnx, tmp_path):
    damaged = tmp_path / "damaged.onnx"
    layer = _damage_one_conv(tiny_onnx, damaged)
    rep = compare_models([tiny_onnx, damaged], TINY_SPEC, limit=200, log=lambda *a: None)
    assert rep["models"][1]["agreement"] == 1.0  # FP32 function unchanged
    report = run_sensitivity(
        damaged,
        Int8Options(calib_size=128, cache_dir=tmp_path / "c", target="onnxruntime"),
        eval_size=200,
        max_drop=2.0,
        report_path=tmp_path / "sens.json",
        log=lambda *a: None,
    )
    assert report["ranking"][0]["node"] == layer
    assert report["ranking"][0]["mean_abs_diff"] > 3 * report["ranking"][1]["mean_abs_diff"]
    assert (tmp_path / "sens.json").is_file()
    if report["suggested_exclude"] is not None:
        assert layer in report["suggested_exclude"] or not report["suggested_exclude"]


def test_explain_needs_region_weights(tmp_path):
    """The global-path ablation has no region weights: --explain says so instead of failing inside the export,
    and the PyTorch runner returns its logits alone."""
    import torch

    from fertrt.train.checkpoint import save_checkpoint
    from fertrt.train.models import create_model

    model = create_model("lnlattennet", paths="global").eval()
    names = list(model.default_cfg.class_names)
    save_checkpoint(
        tmp_path / "g.pt",
        {
            "model_name": "lnlattennet",
            "model_kwargs": {"paths": "global"},
            "model_config": model.default_cfg.to_dict(),
            "class_names": names,
            "data_spec": TINY_SPEC,
            "state_dict": model.state_dict(),
            "preprocess": model.default_cfg.preprocess.to_dict(),
        },
    )
    from fertrt.runtime.runners import open_runner

    runner = open_runner(tmp_path / "g.pt")
    try:
        out = runner.infer_outputs(np.zeros((2, 3, 112, 112), np.float32))
    finally:
        runner.close()
    assert set(out) == {"logits"} and out["logits"].shape == (2, 7)
    with pytest.raises(FertrtError, match="no region weights"):
        export_checkpoint(tmp_path / "g.pt", tmp_path / "g.onnx", ExportOptions(explain=True), log=lambda *a: None)
    assert not (tmp_path / "g.onnx").exists()
    export_checkpoint(tmp_path / "g.pt", tmp_path / "g.onnx", ExportOptions(), log=lambda *a: None)
    assert [o.name for o in onnx.load(str(tmp_path / "g.onnx")).graph.output] == ["logits"]
    assert torch.is_tensor(model(torch.zeros(1, 3, 112, 112)))
