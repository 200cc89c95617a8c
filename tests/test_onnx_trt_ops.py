"""ONNX-parser support per TensorRT (export/data/onnx_trt_ops.json, from onnx-tensorrt's docs/operators.md at each
release tag), and every graph fertrt writes for a named TensorRT checked against it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fertrt.errors import FertrtError
from fertrt.export.quantize import Int8Options, fit_for_trt, quantize_fp16, quantize_int8
from fertrt.export.targets import default_opset, parse_problems, parser_support, trt_for_jetpack
from helpers import TINY_SPEC

REPO = Path(__file__).resolve().parent.parent
TABLE = REPO / "export" / "data" / "onnx_trt_ops.json"
ONNX_TRT_MIRROR = Path(os.environ.get("ONNX_TENSORRT_GIT", "/work/.mirror/onnx+onnx-tensorrt/repo"))
quiet = dict(log=lambda *a: None)
VERSIONS = ("8.5.2", "8.6.2", "10.3.0", "10.13.3")


def _make_tables():
    sys.path.insert(0, str(REPO / "export" / "data"))
    try:
        import make_onnx_trt_ops
    finally:
        sys.path.pop(0)
    return make_onnx_trt_ops


def test_parser_reads_both_header_forms_and_the_rows():
    mk = _make_tables()
    old = (
        "# Supported ONNX Operators\n\nTensorRT 8.5 supports operators up to Opset 17. More below.\n\n"
        "| Operator | Supported | Types |\n|---|---|---|\n| Abs | Y | FP32 |\n| Bernoulli | N |\n"
        "| NonMaxSuppression | Y [EXPERIMENTAL] | FP32 |\n"
    )
    new = (
        "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20. Latest...\n"
        "| Operator | Supported |\n|---|---|\n| Conv | Y |\n| ConvInteger | N |\n"
    )
    assert mk.parse_operators_md(old) == {
        "doc_version": "8.5",
        "opset_min": None,
        "opset_max": 17,
        "operators": ["Abs", "NonMaxSuppression"],
        "unsupported": ["Bernoulli"],
    }
    got = mk.parse_operators_md(new)
    assert (got["opset_min"], got["opset_max"]) == (9, 20)
    assert (got["operators"], got["unsupported"]) == (["Conv"], ["ConvInteger"])
    with pytest.raises(ValueError):
        mk.parse_operators_md("| Conv | Y |")


def test_committed_table_covers_every_supported_tensorrt():
    data = json.loads(TABLE.read_text())
    for version, tag, top in (
        ("8.5.2", "release/8.5-GA", 17),
        ("8.6.2", "release/8.6-GA", 17),
        ("10.3.0", "release/10.1-GA", 20),
        ("10.13.3", "release/10.1-GA", 20),
        ("11.0.0", "release/10.1-GA", 20),
    ):
        sup = parser_support(version)
        assert sup["source_tag"] == tag and sup["opset_max"] == top, (version, sup["source_tag"], sup["opset_max"])
        assert {"Conv", "QuantizeLinear", "DequantizeLinear", "Resize", "Softmax", "Gemm"} <= sup["operators"]
        assert len(data["tables"][sup["table"]]["source_commit"]) == 40
    # the tables differ where the releases did: LayerNormalization arrived in 8.6, CastLike in 10.0
    assert "LayerNormalization" not in parser_support("8.5.2")["operators"] <= parser_support("8.6.2")["operators"]
    assert "LayerNormalization" in parser_support("8.6.2")["operators"]
    assert "CastLike" in parser_support("10.3.0")["operators"]
    assert "CastLike" not in parser_support("8.6.2")["operators"]
    # versions newer than the newest tag say which older table stands in
    assert "lower bound" in parser_support("10.13.3")["note"] and parser_support("8.6.2")["note"] is None
    with pytest.raises(FertrtError, match="8.5 and newer"):
        parser_support("8.4.3")
    jetpacks = ("5.1", "6.0", "6.1", "6.2", "7")
    assert [trt_for_jetpack(j) for j in jetpacks] == ["8.5.2", "8.6.2", "10.3.0", "10.3.0", "10.13.3"]


@pytest.mark.skipif(
    not (ONNX_TRT_MIRROR / "HEAD").exists() and not (ONNX_TRT_MIRROR / ".git").exists(),
    reason="no clone of onnx/onnx-tensorrt here (set ONNX_TENSORRT_GIT to one)",
)
def test_committed_table_is_what_the_script_makes(tmp_path):
    out = tmp_path / "t.json"
    script = REPO / "export" / "data" / "make_onnx_trt_ops.py"
    subprocess.run(
        [sys.executable, str(script), str(ONNX_TRT_MIRROR), "-o", str(out)], check=True, capture_output=True, text=True
    )
    assert json.loads(out.read_text()) == json.loads(TABLE.read_text())


def _graph(nodes, opset, inits=(), domains=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)), opset_imports=imports)


def test_problems_name_opset_operator_domain_and_zero_point():
    m = _graph(
        [
            helper.make_node("Mod", ["x", "x"], ["m"], fmod=1),
            helper.make_node("Gelu", ["m"], ["g"]),
            helper.make_node("FusedGemm", ["g"], ["y"], domain="com.microsoft"),
        ],
        20,
        domains=["com.microsoft"],
    )
    text = " | ".join(parse_problems(m, "8.5.2"))
    assert "opset 20" in text and "parses opsets 1 to 17" in text and "com.microsoft::FusedGemm" in text
    assert "Gelu" in text and "Mod" in text and "release/8.5-GA" in text
    text = " | ".join(parse_problems(m, "10.3.0"))
    assert "opset 20" not in text and "Mod" not in text and "Gelu" not in text and "FusedGemm" in text
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    for zp, why in ((np.array(3, np.int8), "not 0"), (np.array(0, np.uint8), "not INT8")):
        q = _graph(
            [
                helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q0"),
                helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq0"),
            ],
            13,
            inits=[scale, numpy_helper.from_array(zp, "z")],
        )
        problems = parse_problems(q, "10.3.0")
        assert len(problems) == 2 and all(why in p for p in problems), problems
    ok = _graph([helper.make_node("Relu", ["x"], ["y"])], 17)
    assert parse_problems(ok, "8.5.2") == []


def test_fit_refuses_with_the_reason():
    m = _graph([helper.make_node("Mod", ["x", "x"], ["y"], fmod=1)], 17)
    with pytest.raises(FertrtError, match=r"model\.onnx: not a graph TensorRT 8\.5\.2 can parse: operators .* Mod"):
        fit_for_trt(m, "8.5.2", "model.onnx", **quiet)
    fitted = fit_for_trt(m, "8.6.2", "model.onnx", **quiet)  # 8.6's parser takes Mod: the graph stays as it is,
    assert [n.op_type for n in fitted.graph.node] == ["Mod"] and m.ir_version > 8  # stamped with opset 17's IR 8
    assert fitted.ir_version == 8 and fit_for_trt(fitted, "8.6.2", "model.onnx", **quiet) is fitted


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    """An untrained LNLAttenNet exported by fertrt (what the graph holds does not depend on training)."""
    import torch

    from fertrt.export.onnx_export import ExportOptions, export_checkpoint
    from fertrt.train.checkpoint import save_checkpoint
    from fertrt.train.models import create_model

    out = tmp_path_factory.mktemp("ops")
    torch.manual_seed(0)
    model = create_model("lnlattennet", num_classes=7).eval()
    names = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
    cfg = {**model.default_cfg.to_dict(), "class_names": names}
    save_checkpoint(
        out / "m.pt",
        {
            "model_name": "lnlattennet",
            "model_kwargs": {},
            "model_config": cfg,
            "class_names": names,
            "preprocess": cfg["preprocess"],
            "data_spec": TINY_SPEC,
            "state_dict": model.state_dict(),
        },
    )
    export_checkpoint(out / "m.pt", out / "m.onnx", ExportOptions(verify=False), **quiet)
    return out / "m.onnx"


@pytest.mark.parametrize("version", VERSIONS)
def test_every_graph_fertrt_writes_parses(fp32_onnx, blazeface_onnx, version, tmp_path):
    """FP32, FP16, INT8 of both layouts and the detector, for one TensorRT: only its opsets and operators."""
    cache = fp32_onnx.parent / "calib"
    written = {
        "fp32": fp32_onnx,
        "detector": blazeface_onnx,
        "fp16": quantize_fp16(fp32_onnx, tmp_path / "fp16.onnx", trt_version=version, **quiet),
    }
    for target in ("tensorrt", "onnxruntime"):
        opts = Int8Options(calib=TINY_SPEC, calib_size=32, target=target, trt_version=version, cache_dir=cache)
        written[f"int8-{target}"] = quantize_int8(fp32_onnx, tmp_path / f"int8-{target}.onnx", opts, **quiet)
    for what, path in written.items():
        model = onnx.load(str(path))
        assert parse_problems(model, version) == [], (what, version)
    int8 = onnx.load(str(written["int8-tensorrt"]))
    assert default_opset(int8) == (17 if version.startswith("8.") else 19)


def test_int8_for_tensorrt8_is_lowered_to_opset17_with_fp32_scales_and_same_outputs(fp32_onnx, tmp_path):
    """ModelOpt writes opset 19; for TensorRT 8.x the graph is opset 17 with FP32 scales and the outputs of the
    opset-19 one."""
    cache = fp32_onnx.parent / "calib"
    common = dict(calib=TINY_SPEC, calib_size=32, cache_dir=cache)
    for_86 = quantize_int8(fp32_onnx, tmp_path / "a.onnx", Int8Options(trt_version="8.6.2", **common), **quiet)
    as_19 = quantize_int8(fp32_onnx, tmp_path / "b.onnx", Int8Options(fp32_rest=True, **common), **quiet)
    a, b = onnx.load(str(for_86)), onnx.load(str(as_19))
    assert (default_opset(a), default_opset(b)) == (17, 19)
    # IR 8 (opset 17's): ModelOpt stamps 10, which JetPack 5.1's ONNX Runtime 1.16 refuses (it reads IR 9 at most)
    assert (a.ir_version, b.ir_version) == (8, 10)
    inits = {t.name: t for t in a.graph.initializer}
    scales = [inits[n.input[1]] for n in a.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(s.data_type == TensorProto.FLOAT for s in scales)
    assert parse_problems(b, "8.6.2") and not parse_problems(a, "8.6.2")
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((3, 3, 112, 112)).astype(np.float32)
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (for_86, as_19)]
    outs = [s.run(None, {"input": x})[0] for s in sessions]
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5)
    assert (tmp_path / "a.onnx.calib.cache").read_text().startswith("TRT-8602-EntropyCalibration2")


def test_quantize_cli_lowers_an_opset18_source_for_tensorrt85(fp32_onnx, tmp_path):
    """A model exported at opset 18 (ReduceMean takes its axes as an input there), quantized for TensorRT 8.5 from
    the command line: written at opset 17, which that parser takes, with the same outputs (checked on the way)."""
    from fertrt.export.onnx_export import ExportOptions, export_checkpoint

    src = tmp_path / "o18.onnx"
    export_checkpoint(fp32_onnx.with_suffix(".pt"), src, ExportOptions(opset=18, verify=False), **quiet)
    assert default_opset(onnx.load(str(src))) == 18 and parse_problems(onnx.load(str(src)), "8.5.2")
    out = tmp_path / "q.onnx"
    argv = [
        "quantize",
        str(src),
        "--precision",
        "int8",
        "--target",
        "onnxruntime",
        "--calib-data",
        TINY_SPEC,
        "--calib-size",
        "8",
        "--cache-dir",
        str(tmp_path / "c"),
        "--trt-version",
        "8.5.2",
        "-o",
        str(out),
    ]
    r = subprocess.run([sys.executable, "-m", "fertrt", *argv], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    model = onnx.load(str(out))
    assert default_opset(model) == 17 and parse_problems(model, "8.5.2") == []
    assert "lowering the graph from opset 18" in r.stdout
