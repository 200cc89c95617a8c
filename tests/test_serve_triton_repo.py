"""`fertrt export-triton`: every generated config parses back (tritonclient's model_config_pb2); the python
variant loads in the tritonserver the nvidia-pytriton wheel carries and answers as `fertrt infer` does."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc")
th = pytest.importorskip("tritonclient.http")

from tritonclient.grpc import model_config_pb2  # noqa: E402

from fertrt.errors import FertrtError  # noqa: E402
from fertrt.serve.triton_repo import RepoOptions, check_repository, write_repository  # noqa: E402

NAMES = {"fer", "fer_net", "fer_softmax", "face_detector", "fer_faces"}


def _fake_engine(tmp_path, tiny_onnx):
    """An engine file (not a real plan: TensorRT cannot run here) with the sidecar `fertrt build-engine` writes:
    what export-triton reads for tensorrt_plan is the sidecar, and the config is what is checked."""
    from fertrt.runtime.runners import open_runner

    with open_runner(tiny_onnx) as r:
        names, pre = list(r.class_names), r.preprocess.to_dict()
    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"placeholder plan")
    sidecar = {
        "format": "fertrt-engine-1",
        "tensorrt_version": "10.3.0",
        "gpu": {"name": "Orin"},
        "jetson": None,
        "class_names": names,
        "preprocess": pre,
        "precision": {"requested": "fp16"},
        "build_options": {},
        "profile": {"input": {"min": [1, 3, 112, 112], "opt": [8, 3, 112, 112], "max": [32, 3, 112, 112]}},
    }
    (tmp_path / "model.fp16.engine.json").write_text(json.dumps(sidecar))
    return engine


@pytest.mark.parametrize("platform", ["tensorrt_plan", "onnxruntime_onnx", "python"])
def test_every_generated_config_parses(tmp_path, tiny_onnx, blazeface_onnx, platform):
    model = _fake_engine(tmp_path, tiny_onnx) if platform == "tensorrt_plan" else tiny_onnx
    repo = write_repository(
        model,
        tmp_path / "repo",
        RepoOptions(platform=platform, max_batch=16, instances=2),
        detector=blazeface_onnx,
        log=lambda *a: None,
    )
    configs = check_repository(repo)
    assert set(configs) == NAMES
    fer, net, faces, det = configs["fer"], configs["fer_net"], configs["fer_faces"], configs["face_detector"]
    assert fer.platform == "ensemble"
    assert [s.model_name for s in fer.ensemble_scheduling.step] == ["fer_net", "fer_softmax"]
    assert list(fer.input[0].dims) == [3, 112, 112] and fer.input[0].name == "input"
    assert fer.output[0].name == "probabilities" and list(fer.output[0].dims) == [7]
    assert (repo / "fer" / "labels.txt").read_text().split() == json.loads(fer.parameters["class_names"].string_value)
    assert not any((repo / "fer" / "1").iterdir())  # an ensemble's version folder exists and is empty
    assert (net.platform or net.backend) == platform and net.max_batch_size == 16
    assert net.dynamic_batching.max_queue_delay_microseconds == 2000 and net.instance_group[0].count == 2
    assert faces.backend == "python" and faces.instance_group[0].kind == faces.instance_group[0].KIND_CPU
    assert faces.input[0].data_type == model_config_pb2.TYPE_STRING and list(faces.input[0].dims) == [-1]
    assert [o.name for o in det.output] == ["regressors", "scores"] and det.max_batch_size == 0
    model_file = {"tensorrt_plan": "model.plan"}.get(platform, "model.onnx")
    assert (repo / "fer_net" / "1" / model_file).read_bytes() == model.read_bytes()
    record = json.loads((repo / "fertrt-repository.json").read_text())
    if platform == "tensorrt_plan":
        assert net.parameters["tensorrt_version"].string_value == "10.3.0" == record["tensorrt_version"]
        assert det.platform == "onnxruntime_onnx"  # no detector engine was given
    else:
        assert det.platform == platform or det.backend == platform


def test_export_triton_refuses_bad_arguments(tmp_path, tiny_onnx, blazeface_onnx):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "fertrt", "export-triton", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    # the default platform, tensorrt_plan, needs an engine
    r = run(tiny_onnx, "-o", tmp_path / "r1", "--detector-model", blazeface_onnx)
    assert r.returncode == 2 and "needs a TensorRT engine" in r.stderr
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "notes.txt").write_text("an earlier file")
    r = run(tiny_onnx, "-o", tmp_path / "r2", "--platform", "python", "--detector-model", blazeface_onnx)
    assert r.returncode == 2 and "exists (pass --force" in r.stderr
    assert (tmp_path / "r2" / "notes.txt").read_text() == "an earlier file"
    engine = _fake_engine(tmp_path, tiny_onnx)
    r = run(engine, "-o", tmp_path / "r3", "--max-batch", "64", "--detector-model", blazeface_onnx)
    assert r.returncode == 2 and "profile stops at batch 32" in r.stderr
    assert not (tmp_path / "r3").exists() and not list(tmp_path.glob(".r3*"))
    assert "Traceback" not in r.stderr


def test_force_replaces_an_earlier_repository_but_not_what_its_links_point_to(tmp_path, tiny_onnx, blazeface_onnx):
    outside = tmp_path / "models"
    outside.mkdir()
    (outside / "keep.onnx").write_bytes(b"a model of someone else's")
    repo = write_repository(
        tiny_onnx,
        tmp_path / "repo",
        RepoOptions(platform="onnxruntime_onnx"),
        detector=blazeface_onnx,
        log=lambda *a: None,
    )
    (repo / "fer_net" / "1" / "extra").symlink_to(outside)
    (repo / "fer_net" / "1" / "extra.onnx").symlink_to(outside / "keep.onnx")
    with pytest.raises(FertrtError, match="exists \\(pass --force"):
        write_repository(tiny_onnx, repo, RepoOptions(platform="python"), detector=blazeface_onnx, log=lambda *a: None)
    write_repository(
        tiny_onnx, repo, RepoOptions(platform="python", force=True), detector=blazeface_onnx, log=lambda *a: None
    )
    assert json.loads((repo / "fertrt-repository.json").read_text())["platform"] == "python"
    assert not os.path.lexists(repo / "fer_net" / "1" / "extra")
    assert (outside / "keep.onnx").read_bytes() == b"a model of someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "repo"]  # no temporary folder or lock left
    os.mkfifo(repo / "fer_net" / "pipe")
    with pytest.raises(FertrtError, match="pipe, which is not a plain file or folder"):
        write_repository(tiny_onnx, repo, RepoOptions(platform="python", force=True), detector=blazeface_onnx)
    assert stat.S_ISFIFO(os.lstat(repo / "fer_net" / "pipe").st_mode)


@pytest.fixture(scope="module")
def python_repo_server(tiny_onnx, blazeface_onnx, tmp_path_factory):
    """The --platform python repository on the wheel's tritonserver, as a production Triton would run it."""
    from fertrt.serve.bundled import free_ports, start_tritonserver, stop_process, wait_ready

    work = tmp_path_factory.mktemp("triton_repo")
    repo = write_repository(
        tiny_onnx,
        work / "repo",
        RepoOptions(platform="python", max_batch=8, faces_instances=1),
        detector=blazeface_onnx,
        log=lambda *a: None,
    )
    http, grpc, metrics = free_ports(3)
    log = work / "tritonserver.log"
    proc = start_tritonserver(repo, work, http, grpc, metrics, log_file=log)
    client = th.InferenceServerClient(f"127.0.0.1:{http}")
    try:
        wait_ready(http, proc, timeout=180, models=tuple(NAMES))
        yield client, proc
    except Exception:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        client.close()  # an open keep-alive connection holds Triton's shutdown for its whole exit timeout
        stop_process(proc)


def test_python_variant_loads_and_answers_like_fertrt_infer(python_repo_server, tiny_onnx, blazeface_onnx, tmp_path):
    from fertrt.benchmarks.pipeline import scenes, synth_faces
    from fertrt.runtime.detectors import open_detector
    from fertrt.runtime.pipeline import run
    from fertrt.runtime.predictor import Predictor
    from fertrt.runtime.preprocess import PreprocessConfig, preprocess, write_image

    client, _ = python_repo_server
    imgs, _ = synth_faces(12, seed=3)
    x = preprocess(list(imgs), PreprocessConfig())  # 12 crops: more than max_batch, sent as 8 + 4
    got = np.concatenate([_fer(client, x[:8]), _fer(client, x[8:])])
    files = []
    for k, (scene, _, _, _) in enumerate(scenes(2, 3, seed=7)):
        files.append(tmp_path / f"s{k}.png")
        write_image(files[-1], scene)
    jsonl = tmp_path / "infer.jsonl"
    det = open_detector(blazeface_onnx, threads=1)
    with Predictor.open(tiny_onnx) as pred:
        want = np.array([[r["probabilities"][c] for c in pred.class_names] for r in pred.predict(list(imgs))])
        run(pred, [str(f) for f in files], det, jsonl=str(jsonl), margin=det.cfg.crop_margin, log=lambda *a: None)
    assert (got.argmax(1) == want.argmax(1)).all() and np.abs(got - want).max() <= 1e-4

    inp = th.InferInput("image", [len(files)], "BYTES")
    inp.set_data_from_numpy(np.array([f.read_bytes() for f in files], dtype=np.object_))
    served = [json.loads(d) for d in client.infer("fer_faces", [inp]).as_numpy("faces")]
    local = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sum(len(d["faces"]) for d in served) >= 4
    for a, b in zip(local, served):
        assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
        assert [f["label"] for f in a["faces"]] == [f["label"] for f in b["faces"]]
        for fa, fb in zip(a["faces"], b["faces"]):
            assert max(abs(fa["probabilities"][k] - fb["probabilities"][k]) for k in fa["probabilities"]) <= 1e-4

    bad = th.InferInput("image", [1], "BYTES")
    bad.set_data_from_numpy(np.array([b"GIF89a..."], dtype=np.object_))
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=r"image \[0\] is not a JPEG or PNG"):
        client.infer("fer_faces", [bad])
    assert client.get_model_config("fer")["output"][0]["label_filename"] == "labels.txt"


def _fer(client, x):
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer("fer", [inp]).as_numpy("probabilities")
