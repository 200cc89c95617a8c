"""`fertrt pack`: the deployment folder, its manifest, its output policy, and the device commands that take it
(infer, bench, build-engine up to the TensorRT boundary), refusing a folder whose files do not match."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import run_without_torch
from fertrt.cli import main
from fertrt.errors import FertrtError
from fertrt.export.targets import default_opset, parse_problems
from fertrt.runtime import deploy
from helpers import TINY_SPEC

NAMES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """An untrained LNLAttenNet as a checkpoint and as fertrt's FP32 ONNX."""
    import torch

    from fertrt.export.onnx_export import ExportOptions, export_checkpoint
    from fertrt.train.checkpoint import save_checkpoint
    from fertrt.train.models import create_model

    out = tmp_path_factory.mktemp("packsrc")
    torch.manual_seed(0)
    model = create_model("lnlattennet", num_classes=7).eval()
    cfg = {**model.default_cfg.to_dict(), "class_names": NAMES}
    save_checkpoint(
        out / "m.pt",
        {
            "model_name": "lnlattennet",
            "model_kwargs": {},
            "model_config": cfg,
            "class_names": NAMES,
            "preprocess": cfg["preprocess"],
            "data_spec": TINY_SPEC,
            "state_dict": model.state_dict(),
        },
    )
    export_checkpoint(out / "m.pt", out / "m.onnx", ExportOptions(verify=False), log=lambda *a: None)
    return out / "m.pt", out / "m.onnx"


def _pack_args(model, out, *extra):
    return [
        "pack",
        str(model),
        "-o",
        str(out),
        "--calib-data",
        TINY_SPEC,
        "--calib-size",
        "32",
        "--cache-dir",
        str(Path(out).parent / "calib"),
        *extra,
    ]


@pytest.fixture(scope="module")
def folder(model_files, blazeface_onnx, tmp_path_factory):
    """A folder for JetPack 5.1 (TensorRT 8.5.2) from the ONNX model, made through the command line."""
    out = tmp_path_factory.mktemp("packed") / "jp51"
    assert main(_pack_args(model_files[1], out, "--jetpack", "5.1")) == 0
    return out


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_folder_holds_what_the_manifest_says(folder, model_files):
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {
        "model.fp32.onnx",
        "model.fp16.onnx",
        "model.int8.onnx",
        "model.int8.calib.cache",
        "detector.onnx",
        "labels.txt",
    }
    assert set(manifest["files"]) == expected
    assert {p.name for p in folder.iterdir()} == expected | {"manifest.json"}  # no temp or lock files left
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": _sha(folder / name), "bytes": (folder / name).stat().st_size}, name
    assert manifest["tensorrt"]["version"] == "8.5.2" and manifest["jetpack"] == "5.1"
    assert manifest["tensorrt"]["onnx_parser"]["source_tag"] == "release/8.5-GA"
    assert manifest["model"]["class_names"] == NAMES and manifest["model"]["source_sha256"] == _sha(model_files[1])
    assert (folder / "labels.txt").read_text().split() == NAMES
    assert (folder / "model.int8.calib.cache").read_text().startswith("TRT-8502-EntropyCalibration2\n")
    # every graph is one TensorRT 8.5's ONNX parser takes: opset <= 17 (ModelOpt's INT8 is lowered from 19)
    for name in ("model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx", "detector.onnx"):
        model = onnx.load(str(folder / name))
        assert parse_problems(model, "8.5.2") == [] and default_opset(model) <= 17, name
    int8 = onnx.load(str(folder / "model.int8.onnx"))
    assert sum(n.op_type == "QuantizeLinear" for n in int8.graph.node) > 10


def test_pack_from_a_checkpoint_for_jetpack_61(model_files, blazeface_onnx, tmp_path):
    out = tmp_path / "jp61"
    assert main(_pack_args(model_files[0], out, "--jetpack", "6.1", "--detector", "none")) == 0
    manifest = deploy.open_folder(out)
    assert manifest["tensorrt"]["version"] == "10.3.0" and manifest["detector"] is None
    assert "detector.onnx" not in manifest["files"]
    assert (out / "model.int8.calib.cache").read_text().startswith("TRT-100300-EntropyCalibration2\n")
    int8 = onnx.load(str(out / "model.int8.onnx"))
    # TensorRT 10.3 parses opset 19: the graph is kept as ModelOpt wrote it
    assert default_opset(int8) == 19 and parse_problems(int8, "10.3.0") == []
    assert oct((out).stat().st_mode & 0o777) != oct(0o700)  # an ordinary folder, not mkdtemp's private one


def test_output_policy(model_files, folder, tmp_path, capsys):
    onnx_model = model_files[1]
    out = tmp_path / "dest"
    out.mkdir()
    (out / "old.txt").write_text("keep me unless --force")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.npy").write_bytes(b"someone else's")
    (out / "linked").symlink_to(outside)  # --force removes the link, never what it points to
    assert main(_pack_args(onnx_model, out, "--trt-version", "8.6.2")) == 2
    assert "folder exists (pass --force to replace it)" in capsys.readouterr().err
    assert (out / "old.txt").is_file()
    assert main(_pack_args(onnx_model, out, "--trt-version", "8.6.2", "--detector", "none", "--force")) == 0
    assert not (out / "old.txt").exists() and deploy.open_folder(out)["tensorrt"]["version"] == "8.6.2"
    assert not (out / "linked").exists() and (outside / "data.npy").read_bytes() == b"someone else's"
    (tmp_path / "link_to_out").symlink_to(out)  # -o a link: refused, the folder it names untouched
    assert main(_pack_args(onnx_model, tmp_path / "link_to_out", "--jetpack", "6.0", "--force")) == 2
    assert "link_to_out: is a symbolic link" in capsys.readouterr().err
    assert deploy.open_folder(out)["tensorrt"]["version"] == "8.6.2"
    # an input inside the folder: replacing the folder would delete it, so refused even with --force
    inside = out / "m.onnx"
    shutil.copyfile(onnx_model, inside)
    assert main(_pack_args(inside, out, "--jetpack", "6.0", "--force")) == 2
    assert "holds the input" in capsys.readouterr().err and inside.is_file()
    assert main(_pack_args(onnx_model, onnx_model, "--jetpack", "6.0")) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err
    # --force replaces a folder of plain files only: a FIFO (or device node) in it stays, and the run is refused
    import os
    import stat

    os.mkfifo(out / "pipe")
    assert main(_pack_args(onnx_model, out, "--jetpack", "6.0", "--force")) == 2
    assert "pipe, which is not a plain file or folder" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(out / "pipe").st_mode)
    for bad in (["--jetpack", "4.6"], ["--jetpack", "6.0", "--trt-version", "8.6.2"], []):
        with pytest.raises(SystemExit) as exc:
            main(_pack_args(onnx_model, tmp_path / "x", *bad))
        assert exc.value.code == 2
    assert not (tmp_path / "x").exists()


def _copy(folder, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


@pytest.mark.parametrize("damage", ["byte", "missing", "escape", "manifest"])
def test_a_folder_that_does_not_match_its_manifest_is_refused(folder, tmp_path, capsys, damage):
    dst = _copy(folder, tmp_path)
    img = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(img), np.full((64, 64, 3), 128, np.uint8))
    if damage == "byte":  # same size, one byte changed: only the hash tells
        data = bytearray((dst / "model.int8.onnx").read_bytes())
        data[len(data) // 2] ^= 1
        (dst / "model.int8.onnx").write_bytes(bytes(data))
        want = "model.int8.onnx: its SHA-256 does not match"
    elif damage == "missing":
        (dst / "detector.onnx").unlink()
        want = "detector.onnx: listed in"
    elif damage == "escape":
        manifest = json.loads((dst / "manifest.json").read_text())
        manifest["files"]["../outside.onnx"] = {"sha256": "0" * 64, "bytes": 1}
        (dst / "manifest.json").write_text(json.dumps(manifest))
        want = "'../outside.onnx' is not a relative path inside the folder"
    else:
        (dst / "manifest.json").write_text("{not json")
        want = "manifest.json: not valid JSON"
    for argv in (
        ["infer", str(dst), str(img), "--quiet"],
        ["bench", str(dst), "-o", str(tmp_path / "b")],
        ["build-engine", str(dst)],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert want in err and "Traceback" not in err, (argv, err)


def test_device_commands_take_the_folder_without_torch(folder, tmp_path):
    """infer (the folder's FP32 ONNX and detector), build-engine (up to its no-TensorRT message) and bench, in a
    Python where torch cannot be imported, as on a Jetson; infer and build-engine load nothing of the training side
    (bench reads its accuracy data through fertrt.train.data, the layering task's to move)."""
    import cv2

    dst = _copy(folder, tmp_path)
    img = tmp_path / "face.png"
    cv2.imwrite(str(img), np.full((96, 96, 3), 128, np.uint8))
    code = f"""
import sys
from fertrt.cli import main
rc = main(["infer", {str(dst)!r}, {str(img)!r}, "--summary-json", {str(tmp_path / "s.json")!r}])
assert rc == 0, rc
print("BUILD", main(["build-engine", {str(dst)!r}]))
training = ("fertrt.train", "fertrt.export.pack", "modelopt", "tflite2onnx")
print("TRAINING", sorted(m for m in sys.modules if m.startswith(training)))
rc = main(["bench", {str(dst)!r}, "--batches", "1", "--seconds", "0.1", "--warmup", "1", "--limit", "8",
           "--no-baselines", "-o", {str(tmp_path / "bench")!r}])
assert rc == 0, rc
"""
    r = run_without_torch(code, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"model {dst / 'model.fp32.onnx'}, detector {dst / 'detector.onnx'}" in r.stdout
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 1 and "detector.onnx" in summary["detector"]
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    benched = {Path(row["model"]).name for row in results["results"]}
    assert {"model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx"} <= benched
    assert "BUILD 2" in r.stdout and "matches its manifest" in r.stderr and "TensorRT is not installed" in r.stderr
    assert "TRAINING []" in r.stdout


def test_engines_recorded_in_the_manifest_are_picked_and_checked(folder, tmp_path, monkeypatch):
    """What build-engine DIR records (written here by hand: no TensorRT on this machine) is what infer then picks."""
    dst = _copy(folder, tmp_path)
    (dst / "model.fp16.engine").write_bytes(b"plan bytes")
    (dst / "model.fp16.engine.json").write_text("{}")
    (dst / "timing.cache").write_bytes(b"timing")
    deploy.record_engine(
        dst, "fp16", dst / "model.fp16.engine", dst / "model.fp16.engine.json", {"tensorrt_version": "8.5.2"}
    )
    manifest = deploy.open_folder(dst)
    assert manifest["engines"]["fp16"]["engine"] == "model.fp16.engine" and manifest["timing_cache"] == "timing.cache"
    assert "timing.cache" not in manifest["files"]  # rewritten by every build; TensorRT checks it itself
    monkeypatch.setattr(deploy, "tensorrt_importable", lambda: True)
    assert deploy.pick_model(dst, manifest) == dst / "model.fp16.engine"
    monkeypatch.setattr(deploy, "tensorrt_importable", lambda: False)
    assert deploy.pick_model(dst, manifest) == dst / "model.fp32.onnx"
    assert deploy.pick_model(dst, manifest, backend="onnxruntime") == dst / "model.fp32.onnx"
    assert [p.name for p in deploy.bench_models(dst, manifest)][-1] == "model.fp16.engine"
    (dst / "model.fp16.engine").write_bytes(b"plan bytez")
    with pytest.raises(FertrtError, match="model.fp16.engine: its SHA-256 does not match"):
        deploy.open_folder(dst)


def test_deploy_module_is_python38_and_imports_no_training_side():
    """runtime/deploy.py runs on JetPack 5.1's Python: it must compile under 3.8's grammar and import no onnx/torch."""
    import ast

    src = Path(deploy.__file__).read_text()
    tree = ast.parse(src, feature_version=(3, 8))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"torch", "onnx", "modelopt"}, imported
    assert sys.version_info >= (3, 8)


def test_build_engine_folder_writes_and_records_each_engine(folder, tmp_path, monkeypatch, capsys):
    """build-engine DIR's folder logic with the TensorRT build itself replaced (no TensorRT on this machine): one
    engine per packed precision into the folder, each recorded; a second run needs --force, then rebuilds in place;
    the packed files stay protected inputs (an engine path that is a packed file is refused)."""
    import types

    from fertrt.engine import build as engine_build
    from fertrt.engine.sidecar import sidecar_path
    from fertrt.fileio import write_bytes_atomic, write_json_atomic

    dst = _copy(folder, tmp_path)
    built = []

    def fake_build(src, out, opts, use_cache=True, log=print):
        built.append((Path(src).name, Path(out).name, opts.precision, opts.timing_cache))
        write_bytes_atomic(out, b"engine of " + Path(src).name.encode())
        write_json_atomic(sidecar_path(out), {"tensorrt_version": "8.5.2"})
        write_bytes_atomic(opts.timing_cache, b"timing")
        return {"tensorrt_version": "8.5.2"}

    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.5.2"))
    monkeypatch.setattr(engine_build, "build", fake_build)
    assert main(["build-engine", str(dst)]) == 0, capsys.readouterr().err
    assert main(["build-engine", str(dst)]) == 2  # built already: replaced only with --force
    assert "model.fp32.engine: exists (pass --force" in capsys.readouterr().err
    assert main(["build-engine", str(dst), "--force"]) == 0, capsys.readouterr().err
    cache = str(dst / "timing.cache")
    assert built[:3] == [(f"model.{p}.onnx", f"model.{p}.engine", p, cache) for p in ("fp32", "fp16", "int8")]
    manifest = deploy.open_folder(dst)
    assert sorted(manifest["engines"]) == ["fp16", "fp32", "int8"]
    assert manifest["engines"]["int8"]["source"] == "model.int8.onnx"
    assert main(["build-engine", str(dst), "-o", str(dst / "x.engine")]) == 2
    assert "not with a folder" in capsys.readouterr().err
    # a packed file is never an output of build-engine DIR
    monkeypatch.setattr(deploy, "engine_name", lambda p: "model.int8.onnx")
    monkeypatch.setattr(engine_build, "build", lambda src, out, *a, **k: write_bytes_atomic(out, b"x"))
    assert main(["build-engine", str(dst), "--precision", "int8", "--force"]) == 2
    assert "writing it would destroy the input" in capsys.readouterr().err
    deploy.open_folder(dst)  # still matches its manifest
