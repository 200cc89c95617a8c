"""`fertrt export-deepstream`: the configs against DeepStream's documented keys, the numbers they carry checked by
running them (nvinfer's documented preprocessing + the written graph on ONNX Runtime vs fertrt's own runtime), the
detector model's decoding against fertrt's detector, and the output policy. Small hand-made ONNX classifiers keep
it fast (no training)."""

from __future__ import annotations

import configparser
import importlib.util
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fertrt.cli import main
from fertrt.errors import FertrtError
from fertrt.export import deepstream as ds
from fertrt.export.metadata import set_metadata

NAMES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def tiny_classifier(
    path,
    *,
    channels=3,
    size=(16, 16),
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    order="RGB",
    k=4,
    precision="fp32",
    batch="batch",
    explain=False,
):
    """A strided conv + linear classifier with fertrt metadata (position-sensitive, so a wrong normalisation moves
    its logits)."""
    rng = np.random.default_rng(1)
    h, w = size
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, channels, 4, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (k, 8 * (h // 4) * (w // 4))).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], strides=[4, 4]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, k])]
    if explain:
        nodes.append(helper.make_node("ReduceMean", ["r"], ["region_weights"], axes=[1], keepdims=0))
        outputs.append(helper.make_tensor_value_info("region_weights", TensorProto.FLOAT, [batch, h // 4, w // 4]))
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, h, w])
    graph = helper.make_graph(nodes, "tiny", [image], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    pre = {
        "input_size": [h, w],
        "channels": channels,
        "mean": list(mean),
        "std": list(std),
        "color_order": order,
        "layout": "NCHW",
    }
    set_metadata(
        model,
        {
            "format": "fertrt-onnx-1",
            "model_name": "tiny",
            "class_names": NAMES[:k],
            "preprocess": pre,
            "mean": list(mean),
            "std": list(std),
            "precision": precision,
            "explain_outputs": ["region_weights"] if explain else [],
        },
    )
    onnx.save(model, str(path))
    return path


def export(model, out, *extra):
    return main(["export-deepstream", str(model), "-o", str(out), "--triton-platform", "none", *extra])


def read_nvinfer(path) -> dict:
    parser = configparser.ConfigParser(delimiters=("=",), comment_prefixes=("#",), interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return dict(parser.items("property"))


def config_pipeline_probs(out, crops):
    """What DeepStream computes from the written files alone: nvinfer's documented preprocessing with the values
    parsed from config_infer_secondary_fer.txt, then fer.onnx on ONNX Runtime."""
    import onnxruntime as ort

    props = read_nvinfer(out / "config_infer_secondary_fer.txt")
    scale = float(props["net-scale-factor"])
    offsets = [float(v) for v in props["offsets"].split(";")]
    x = ds.simulate_nvinfer(crops, int(props["model-color-format"]), scale, offsets)
    sess = ort.InferenceSession(str(out / props["onnx-file"]), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == props["output-blob-names"].split(";")
    return sess.run(["probabilities"], {sess.get_inputs()[0].name: x})[0]


def fertrt_probs(model, crops):
    """fertrt's own runtime on the original model: preprocessing from its metadata, ONNX Runtime, softmax."""
    from fertrt.runtime.predictor import Predictor

    with Predictor.open(model) as predictor:
        results = predictor.predict(list(crops))
    return np.array([[r["probabilities"][n] for n in predictor.class_names] for r in results])


def random_crops(n, size, seed=3):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *size, 3), dtype=np.uint8)


# ---------------------------------------------------------------- the numbers, run


@pytest.mark.parametrize(
    "case",
    [
        {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "order": "RGB"},
        {**IMAGENET, "order": "RGB"},
        {**IMAGENET, "order": "BGR"},
        {"channels": 1, "mean": (0.5,), "std": (0.25,), "order": "GRAY"},
    ],
)
def test_config_and_graph_reproduce_fertrt(tmp_path, case):
    model = tiny_classifier(tmp_path / "m.onnx", **case)
    assert export(model, tmp_path / "ds") == 0
    out = tmp_path / "ds"
    crops = random_crops(40, (16, 16))
    got, ref = config_pipeline_probs(out, crops), fertrt_probs(model, crops)
    assert np.abs(got - ref).max() <= 1e-4
    assert (got.argmax(1) == ref.argmax(1)).all()
    props = read_nvinfer(out / "config_infer_secondary_fer.txt")
    assert props["model-color-format"] == {"RGB": "0", "BGR": "1", "GRAY": "2"}[case["order"]]
    assert props["infer-dims"] == f"{case.get('channels', 3)};16;16"
    assert [float(v) for v in props["offsets"].split(";")] == pytest.approx([255 * m for m in case["mean"]])
    folded = len(set(case["std"])) > 1
    first = onnx.load(str(out / "fer.onnx")).graph.node[0]
    assert (first.op_type == "Mul" and first.name == "fertrt_ds_fold_std") == folded
    assert float(props["net-scale-factor"]) == pytest.approx(1 / 255 if folded else 1 / (255 * case["std"][0]))


def test_per_channel_std_needs_the_fold(tmp_path):
    """Without the Mul the config's one scale factor cannot give ImageNet normalisation: the check that guards the
    fold sees it (and so would a test of the figures above)."""
    model = tiny_classifier(tmp_path / "m.onnx", **IMAGENET)
    proto = onnx.load(str(model))
    info = ds.model_info(_meta(proto), model)
    scale, offsets, fold = ds.nvinfer_normalisation(info.mean, info.std)
    assert fold is not None
    unfolded = ds.deepstream_graph(onnx.load(str(model)), None).SerializeToString()
    with pytest.raises(FertrtError, match="differs from fertrt"):
        ds.verify_graph(proto.SerializeToString(), unfolded, info, scale, offsets, 0, 32, 1e-4)
    folded = ds.deepstream_graph(onnx.load(str(model)), fold).SerializeToString()
    assert ds.verify_graph(proto.SerializeToString(), folded, info, scale, offsets, 0, 32, 1e-4)["max_abs_diff"] <= 1e-4


def _meta(proto):
    from fertrt.export.metadata import get_metadata

    return get_metadata(proto)


def test_softmax_output_only_and_metadata(tmp_path):
    model = tiny_classifier(tmp_path / "m.onnx", explain=True, **IMAGENET)
    assert export(model, tmp_path / "ds") == 0
    graph = onnx.load(str(tmp_path / "ds" / "fer.onnx"))
    # region weights would be a second nvinfer attribute
    assert [o.name for o in graph.graph.output] == ["probabilities"]
    assert graph.graph.node[-1].op_type == "Softmax"
    meta = _meta(graph)
    assert meta["preprocess"]["std"] == [1.0, 1.0, 1.0] and meta["explain_outputs"] == []
    assert (tmp_path / "ds" / "labels.txt").read_text() == "neutral;happiness;sadness;surprise\n"


def test_int8_calibration_cache_and_network_mode(tmp_path):
    model = tiny_classifier(tmp_path / "m.onnx", precision="int8")
    (tmp_path / "m.onnx.calib.cache").write_text("TRT-8600-EntropyCalibration2\ninput: 3c010a14\n")
    assert export(model, tmp_path / "ds", "--batch-size", "8") == 0
    props = read_nvinfer(tmp_path / "ds" / "config_infer_secondary_fer.txt")
    assert props["network-mode"] == "1" and props["int8-calib-file"] == "fer.onnx.calib.cache"
    assert props["model-engine-file"] == "fer.onnx_b8_gpu0_int8.engine" and props["batch-size"] == "8"
    assert (tmp_path / "ds" / "fer.onnx.calib.cache").read_bytes() == (tmp_path / "m.onnx.calib.cache").read_bytes()


def test_fixed_batch_graph_limits_batch_size(tmp_path, capsys):
    model = tiny_classifier(tmp_path / "m.onnx", batch=4)
    assert export(model, tmp_path / "ds") == 0
    assert read_nvinfer(tmp_path / "ds" / "config_infer_secondary_fer.txt")["batch-size"] == "4"
    assert export(model, tmp_path / "ds2", "--batch-size", "8") == 2
    assert "at most batch 4" in capsys.readouterr().err


# ---------------------------------------------------------------- the keys, against DeepStream's lists


def test_key_lists_name_their_source():
    for path in (ds.NVINFER_KEYS, ds.NVINFERSERVER_FIELDS, ds.APP_KEYS):
        data = json.loads(path.read_text())
        assert data["deepstream_version"] == "9.1"
        assert any(s.startswith("https://docs.nvidia.com/deepstream/") for s in data["sources"])
        assert any("github.com/NVIDIA/DeepStream/blob/v9.1.0/" in s for s in data["sources"])
    keys = ds.nvinfer_keys()["property"]
    assert keys["network-mode"]["choices"] == [0, 1, 2, 3] and keys["batch-size"]["max"] == 1024
    top = set(ds.nvinferserver_message_class().DESCRIPTOR.fields_by_name)
    assert top == {"infer_config", "input_control", "output_control"}


def test_every_written_nvinfer_key_is_documented_and_in_range(tmp_path):
    model = tiny_classifier(tmp_path / "m.onnx", **IMAGENET)
    assert export(model, tmp_path / "ds") == 0
    text = (tmp_path / "ds" / "config_infer_secondary_fer.txt").read_text()
    assert ds.nvinfer_problems(text) == []
    props = read_nvinfer(tmp_path / "ds" / "config_infer_secondary_fer.txt")
    documented = ds.nvinfer_keys()["property"]
    assert set(props) <= set(documented)
    wanted = {"process-mode": "2", "network-type": "1", "operate-on-gie-id": "1", "gie-unique-id": "2"}
    assert wanted.items() <= props.items()


def test_deepstream_app_config_uses_only_keys_its_parsers_read(tmp_path):
    model = tiny_classifier(tmp_path / "m.onnx")
    assert export(model, tmp_path / "ds") == 0
    text = (tmp_path / "ds" / "deepstream_app_fer.txt").read_text()
    assert ds.app_problems(text) == []
    assert "config-file=config_triton_face_detector.txt" in text
    assert "config-file=config_infer_secondary_fer.txt" in text
    problems = ds.app_problems(text.replace("[osd]", "[osd]\nshow-bboxes=1").replace("[tracker]", "[trackers]"))
    assert problems == [
        "[trackers]: not a group fertrt checks (or deepstream-app reads)",
        "[osd] show-bboxes: not a key deepstream-app reads there",
    ]


@pytest.mark.parametrize(
    "line, problem",
    [
        ("net-scale-factr=0.5", "not a documented nvinfer key"),
        ("is-classifier=1", "legacy key"),
        ("batch-size=0", "expected >= 1"),
        ("batch-size=2000", "expected <= 1024"),
        ("network-mode=7", "expected one of"),
        ("process-mode=two", "expected an integer"),
        ("net-scale-factor=nan", "finite"),
        ("net-scale-factor=0", "expected > 0"),
        ("infer-dims=3;16", "expected 3 values"),
        ("offsets=1;2;3;4;5", "at most 4"),
        ("maintain-aspect-ratio=yes", "true, false"),
    ],
)
def test_nvinfer_checker_refuses_undocumented_keys_and_values(line, problem):
    problems = ds.nvinfer_problems(f"[property]\ngpu-id=0\n{line}\n")
    assert len(problems) == 1 and problem in problems[0]
    assert ds.nvinfer_problems("gpu-id=0\n")[0].startswith("not a key file")


def test_nvinferserver_configs_parse_with_the_documented_fields(tmp_path):
    from google.protobuf import text_format

    model = tiny_classifier(tmp_path / "m.onnx")
    assert export(model, tmp_path / "ds", "--gie-id", "5", "--detector-gie-id", "3") == 0
    cls = ds.nvinferserver_message_class()
    fer = text_format.Parse((tmp_path / "ds" / "config_triton_fer.txt").read_text(), cls())
    assert fer.infer_config.backend.triton.model_name == "fer" and fer.infer_config.unique_id == 5
    assert list(fer.infer_config.backend.outputs)[0].name == "probabilities"
    assert fer.input_control.operate_on_gie_id == 3 and fer.input_control.process_mode == 2  # PROCESS_MODE_CLIP_OBJECTS
    assert fer.infer_config.preprocess.normalize.scale_factor == pytest.approx(1 / 127.5)
    det = text_format.Parse((tmp_path / "ds" / "config_triton_face_detector.txt").read_text(), cls())
    assert det.infer_config.backend.triton.model_name == "face_detector_ssd" and det.infer_config.unique_id == 3
    assert det.infer_config.postprocess.detection.custom_parse_bbox_func == "NvDsInferParseCustomTfSSD"
    assert [o.name for o in det.infer_config.backend.outputs] == list(ds.SSD_OUTPUTS)
    assert det.infer_config.preprocess.maintain_aspect_ratio == 1 and det.infer_config.preprocess.symmetric_padding == 1


@pytest.mark.parametrize(
    "text, problem",
    [
        ("infer_config { unique_idd: 1 }", "unique_idd"),
        ("input_control { process_mode: PROCESS_MODE_SIDEWAYS }", "PROCESS_MODE_SIDEWAYS"),
        ("infer_config { max_batch_size: -1 }", "max_batch_size"),
        ('infer_config { preprocess { normalize { scale_factor: "x" } } }', "scale_factor"),
    ],
)
def test_nvinferserver_checker_refuses_unknown_fields_and_bad_values(text, problem):
    problems = ds.nvinferserver_problems(text)
    assert len(problems) == 1 and problem in problems[0]


# ---------------------------------------------------------------- the detector model for nvinferserver


def _ssd_module():
    spec = importlib.util.spec_from_file_location("deepstream_face_detector_ssd", ds.SSD_MODEL_SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ssd_tensors_are_fertrt_face_crops(blazeface_onnx):
    """face_detector_ssd's decoding (without Triton) on BlazeFace's raw outputs for a synth scene, against fertrt's
    own detector and crop geometry: same faces, boxes within 1 px of the crop centre and side."""
    from fertrt.benchmarks.pipeline import make_scene, synth_faces
    from fertrt.runtime.detectors import blazeface_anchors, letterbox, open_detector
    from fertrt.runtime.face import crop_transform

    imgs, _ = synth_faces(3, seed=2)
    scene = make_scene(np.random.default_rng(2), list(imgs), "gradient", sizes=(100, 140))[0]
    det = open_detector(blazeface_onnx)
    settings = ds.detector_settings(blazeface_onnx)
    canvas, lb = letterbox(scene, tuple(settings["input_size"]))  # what nvinferserver's symmetric padding hands it
    faces = det.detect(canvas)  # the canvas is the network input: letterbox is the identity on it
    assert len(faces) == 3
    from fertrt.runtime.preprocess import PreprocessConfig, normalize

    x = normalize(canvas[None], PreprocessConfig.from_dict(det.cfg.preprocess))
    raw = det.runner.infer_outputs(x)
    anchors = blazeface_anchors(tuple(settings["input_size"]), settings["anchor_layers"])
    num, boxes, scores, classes = _ssd_module().ssd_tensors(raw["regressors"][0], raw["scores"][0], settings, anchors)
    assert int(num[0]) == 3 and boxes.shape == (100, 4) and not classes.any() and not scores[3:].any()
    h, w = settings["input_size"]
    # (centre x, centre y, side) in canvas pixels
    got = sorted(
        (float((b[1] + b[3]) / 2 * w), float((b[0] + b[2]) / 2 * h), float((b[3] - b[1]) * w)) for b in boxes[:3]
    )
    want = []
    for f in faces:
        M, side = crop_transform(f, det.cfg.crop_margin, align=False, shift=det.cfg.crop_shift)
        want.append((side / 2 - M[0, 2], side / 2 - M[1, 2], side))  # the crop centre in canvas pixels, and its side
    for g, e in zip(got, sorted(want)):
        assert abs(g[0] - e[0]) <= 1.5 and abs(g[1] - e[1]) <= 1.5 and abs(g[2] - e[2]) <= 1.5


def test_triton_repository_holds_every_model_the_configs_name(tmp_path, blazeface_onnx):
    from fertrt.serve.triton_repo import check_repository

    model = tiny_classifier(tmp_path / "m.onnx", **IMAGENET)
    args = ["export-deepstream", str(model), "-o", str(tmp_path / "ds"), "--detector-model", str(blazeface_onnx)]
    assert main(args) == 0
    configs = check_repository(tmp_path / "ds" / "triton")
    assert {"fer", "face_detector", "face_detector_ssd"} <= set(configs)
    ssd = configs["face_detector_ssd"]
    assert ssd.backend == "python" and [o.name for o in ssd.output] == list(ds.SSD_OUTPUTS)
    assert json.loads(ssd.parameters["detector"].string_value)["outputs"] == ["regressors", "scores"]
    # per-channel std: Triton's fer_net runs fer_triton.onnx (the same fold, logits kept): one scale factor serves both
    served = (tmp_path / "ds" / "triton" / "fer_net" / "1" / "model.onnx").read_bytes()
    assert served == (tmp_path / "ds" / "fer_triton.onnx").read_bytes()
    fer = configs["fer"]
    assert json.loads(fer.parameters["preprocess"].string_value)["std"] == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------- inputs and the output policy


def test_output_policy(tmp_path, capsys):
    model = tiny_classifier(tmp_path / "m.onnx")
    out = tmp_path / "ds"
    assert export(model, out) == 0
    before = (out / "config_infer_secondary_fer.txt").read_bytes()
    assert export(model, out, "--gie-id", "7") == 2
    err = capsys.readouterr().err
    assert "pass --force" in err and "config_infer_secondary_fer.txt" in err and "Traceback" not in err
    assert (out / "config_infer_secondary_fer.txt").read_bytes() == before  # nothing replaced
    assert export(model, out, "--gie-id", "7", "--force") == 0
    assert "gie-unique-id=7" in (out / "config_infer_secondary_fer.txt").read_text()
    # the model inside the output folder, named like an output: never written over, even with --force
    same = tiny_classifier(out / "fer.onnx")
    assert export(same, out, "--force") == 2
    assert "is the input" in capsys.readouterr().err
    assert not list(out.glob(".*.tmp"))


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "nope.onnx", "no such file"),
        (lambda p: _file(p / "x.txt", b"x"), "expected a .onnx or .engine"),
        (lambda p: p, "without manifest.json"),
        (lambda p: _file(p / "bad.onnx", b"not onnx"), "not a readable ONNX"),
    ],
)
def test_bad_inputs_exit_2_naming_the_file(tmp_path, capsys, setup, message):
    (tmp_path / "in").mkdir()
    given = setup(tmp_path / "in")
    assert export(given, tmp_path / "ds") == 2
    err = capsys.readouterr().err
    assert message in err and str(given) in err and "Traceback" not in err


def test_triton_repo_outside_the_output_refused(tmp_path, capsys):
    model = tiny_classifier(tmp_path / "m.onnx")
    assert export(model, tmp_path / "ds", "--triton-repo", "../elsewhere") == 2
    assert "must stay inside -o" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()


def test_missing_tritonclient_is_said_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tritonclient.grpc.model_config_pb2", None)
    model = tiny_classifier(tmp_path / "m.onnx")
    assert main(["export-deepstream", str(model), "-o", str(tmp_path / "ds")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'fertrt[serve]'" in err and "--triton-platform none" in err
    assert not (tmp_path / "ds").exists()


def test_same_gie_ids_refused(tmp_path, capsys):
    model = tiny_classifier(tmp_path / "m.onnx")
    assert export(model, tmp_path / "ds", "--gie-id", "1", "--detector-gie-id", "1") == 2
    assert "--gie-id 1: must differ from --detector-gie-id 1" in capsys.readouterr().err


def test_label_with_separator_refused(tmp_path, capsys):
    model = tiny_classifier(tmp_path / "m.onnx")
    proto = onnx.load(str(model))
    meta = _meta(proto)
    meta["class_names"] = ["a;b", "c", "d", "e"]
    set_metadata(proto, meta)
    onnx.save(proto, str(model))
    assert export(model, tmp_path / "ds") == 2
    assert "contain ';'" in capsys.readouterr().err


def _fake_engine(tmp_path, outputs, std=(0.5, 0.5, 0.5)):
    engine = tmp_path / "fer.engine"
    engine.write_bytes(b"\x00engine bytes")
    pre = {"input_size": [16, 16], "channels": 3, "mean": [0.5] * 3, "std": list(std), "color_order": "RGB"}
    sidecar = {
        "format": "fertrt-engine-1",
        "tensorrt_version": "10.3.0",
        "gpu": {"name": "Orin"},
        "class_names": NAMES[:4],
        "preprocess": pre,
        "precision": {"requested": "fp16", "graph": "fp32"},
        "build_options": {},
        "io": {"input": {"name": "input", "shape": [-1, 3, 16, 16]}, "outputs": outputs},
        "profile": {"input": {"min": [1, 3, 16, 16], "opt": [4, 3, 16, 16], "max": [8, 3, 16, 16]}},
    }
    (tmp_path / "fer.engine.json").write_text(json.dumps(sidecar))
    return engine


def test_engine_input(tmp_path, capsys):
    assert export(_fake_engine(tmp_path, ["logits"]), tmp_path / "ds") == 2
    assert "needs one 'probabilities' output" in capsys.readouterr().err
    engine = _fake_engine(tmp_path, ["probabilities"])
    assert export(engine, tmp_path / "ds") == 0
    props = read_nvinfer(tmp_path / "ds" / "config_infer_secondary_fer.txt")
    assert "onnx-file" not in props and props["model-engine-file"] == "fer.engine"
    assert props["batch-size"] == "8" and props["network-mode"] == "2"
    assert (tmp_path / "ds" / "fer.engine").read_bytes() == engine.read_bytes()
    assert export(_fake_engine(tmp_path, ["probabilities"], std=(0.2, 0.3, 0.4)), tmp_path / "ds2") == 2
    assert "per-channel std" in capsys.readouterr().err


def test_cli_lists_the_command(capsys):
    with pytest.raises(SystemExit):
        main(["export-deepstream", "--help"])
    assert "--triton-repo" in capsys.readouterr().out


# ---------------------------------------------------------------- the repository, loaded in a real Triton


def test_bundled_triton_serves_what_the_nvinferserver_configs_send(tmp_path, blazeface_onnx):
    """The python variant of the repository in the tritonserver the nvidia-pytriton wheel carries: `fer` fed what
    config_triton_fer.txt's preprocessing makes of face crops answers as fertrt does (<= 1e-4), and
    face_detector_ssd fed a letterboxed frame as config_triton_face_detector.txt prepares it answers what its
    decoding gives in-process. The server runs on loopback with free ports and is stopped by its PID."""
    pytest.importorskip("pytriton")
    th = pytest.importorskip("tritonclient.http")
    from google.protobuf import text_format

    from fertrt.benchmarks.pipeline import make_scene, synth_faces
    from fertrt.runtime.detectors import blazeface_anchors, letterbox, open_detector
    from fertrt.serve.bundled import free_ports, start_tritonserver, stop_process, wait_ready

    model = tiny_classifier(tmp_path / "m.onnx", **IMAGENET)
    out = tmp_path / "ds"
    args = [
        "export-deepstream",
        str(model),
        "-o",
        str(out),
        "--detector-model",
        str(blazeface_onnx),
        "--triton-platform",
        "python",
        "--batch-size",
        "8",
    ]
    assert main(args) == 0
    cls = ds.nvinferserver_message_class()
    fer_cfg = text_format.Parse((out / "config_triton_fer.txt").read_text(), cls()).infer_config.preprocess
    det_cfg = text_format.Parse((out / "config_triton_face_detector.txt").read_text(), cls()).infer_config.preprocess
    crops = random_crops(8, (16, 16))
    fer_in = ds.simulate_nvinfer(crops, 0, fer_cfg.normalize.scale_factor, fer_cfg.normalize.channel_offsets)
    imgs, _ = synth_faces(2, seed=4)
    scene = make_scene(np.random.default_rng(4), list(imgs), "gradient", sizes=(100, 140))[0]
    settings = ds.detector_settings(blazeface_onnx)
    canvas, _ = letterbox(scene, tuple(settings["input_size"]))
    det_in = ds.simulate_nvinfer(canvas[None], 0, det_cfg.normalize.scale_factor, det_cfg.normalize.channel_offsets)

    http, grpc, metrics = free_ports(3)
    log = tmp_path / "triton.log"
    proc = start_tritonserver(out / "triton", tmp_path / "work", http, grpc, metrics, log_file=log)
    client = th.InferenceServerClient(f"127.0.0.1:{http}")
    try:
        wait_ready(http, proc, timeout=240, models=("fer", "face_detector_ssd"))
        got = _infer(th, client, "fer", fer_in, ["probabilities"])["probabilities"]
        ssd = _infer(th, client, "face_detector_ssd", det_in, list(ds.SSD_OUTPUTS))
    except Exception:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        client.close()  # an open keep-alive connection holds Triton's shutdown for its whole exit timeout
        stop_process(proc)
    ref = fertrt_probs(model, crops)
    assert np.abs(got - ref).max() <= 1e-4 and (got.argmax(1) == ref.argmax(1)).all()
    det = open_detector(blazeface_onnx)
    raw = det.runner.infer_outputs(det_in)
    anchors = blazeface_anchors(tuple(settings["input_size"]), settings["anchor_layers"])
    want = _ssd_module().ssd_tensors(raw["regressors"][0], raw["scores"][0], settings, anchors)
    assert int(ssd["num_detections"][0][0]) == int(want[0][0]) == 2
    for name, expected in zip(ds.SSD_OUTPUTS, want):
        assert np.abs(ssd[name][0] - expected).max() <= 1e-5, name


def _infer(th, client, model, x, outputs):
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(np.ascontiguousarray(x, np.float32))
    result = client.infer(model, [inp], outputs=[th.InferRequestedOutput(n) for n in outputs])
    return {n: result.as_numpy(n) for n in outputs}


@pytest.mark.parametrize(
    "option, value",
    [
        ("--batch-size", "0"),
        ("--batch-size", "5000"),
        ("--detector-gie-id", "0"),
        ("--gie-id", "x"),
        ("--face-class-id", "-1"),
        ("--classifier-threshold", "1"),
        ("--classifier-threshold", "nan"),
        ("--gpu-id", "-1"),
    ],
)
def test_numeric_options_are_range_checked(tmp_path, capsys, option, value):
    model = tiny_classifier(tmp_path / "m.onnx")
    with pytest.raises(SystemExit) as exit_:
        main(["export-deepstream", str(model), "-o", str(tmp_path / "ds"), option, value])
    assert exit_.value.code == 2 and option in capsys.readouterr().err and not (tmp_path / "ds").exists()
