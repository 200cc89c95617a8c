"""runtime/pipeline.py: the face pipeline over images and videos: one detector pass and one FER batch per
frame, detect every N frames with tracking in between, JSON lines, annotated videos, outputs never half written."""

import json

import cv2
import numpy as np
import pytest

from fertrt.errors import FertrtError
from fertrt.runtime.face import Face, HaarDetector
from fertrt.runtime.predictor import Predictor
from fertrt.train.data.synth import SynthConfig, generate
from helpers import exit_code, synth_image_files, write_bgr


def test_infer_image_with_no_face_is_empty(tiny_onnx, tmp_path):
    from fertrt.runtime.pipeline import run

    path = write_bgr(tmp_path / "wall.png", np.full((240, 320, 3), 128, np.uint8))
    with Predictor.open(tiny_onnx) as pred:
        summary = run(pred, str(path), HaarDetector(), jsonl=tmp_path / "o.jsonl", log=lambda *a: None)
    assert summary["frames"] == 1 and summary["faces"] == 0
    assert json.loads((tmp_path / "o.jsonl").read_text())["faces"] == []


def test_video_run_writes_playable_file(tiny_onnx, tmp_path):
    from fertrt.runtime.face import WholeImage
    from fertrt.runtime.pipeline import run

    imgs, _, _ = generate(SynthConfig(size=112), "test", 6)
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (112, 112))
    for im in imgs:
        w.write(cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    w.release()
    with Predictor.open(tiny_onnx) as pred:
        summary = run(
            pred, str(video), WholeImage(), save=tmp_path / "out.mp4", jsonl=tmp_path / "v.jsonl", log=lambda *a: None
        )
    assert summary["frames"] == 6
    recs = [json.loads(l) for l in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert all(r["faces"][0]["track"] == 0 for r in recs)  # one face tracked through the clip
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


class _Counting:
    """Wraps a detector or predictor and counts its calls (how often each stage runs per frame)."""

    def __init__(self, inner, method):
        self.inner, self.calls, self.batches = inner, 0, []
        setattr(self, method, self._call)
        self._method = getattr(inner, method)

    def _call(self, arg):
        self.calls += 1
        self.batches.append(len(arg) if isinstance(arg, list) else 1)
        return self._method(arg)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_one_detector_pass_and_one_fer_batch_per_frame(tiny_onnx, tmp_path):
    from fertrt.runtime.face import WholeImage
    from fertrt.runtime.pipeline import run

    files = synth_image_files(tmp_path / "in", 4)
    det = _Counting(WholeImage(), "detect")
    with Predictor.open(tiny_onnx) as pred:
        counted = _Counting(pred, "predict")
        summary = run(counted, [str(f) for f in files], det, log=lambda *a: None)
    assert summary["frames"] == 4 and det.calls == 4 and summary["detector_passes"] == 4
    assert counted.calls == 4 and counted.batches == [1, 1, 1, 1]
    assert {"decode", "detect", "crop", "preprocess", "infer", "postprocess", "total"} <= set(summary["timings_ms"])
    assert summary["fps"] > 0


def test_video_detect_every_n_frames_tracks_in_between(tiny_onnx, tmp_path):
    from fertrt.runtime.pipeline import run

    imgs, _, _ = generate(SynthConfig(size=112), "test", 1)
    video = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(10):
        frame = np.full((120, 160, 3), 90, np.uint8)
        frame[20:80, 20 + 4 * i : 80 + 4 * i] = cv2.resize(imgs[0], (60, 60))
        w.write(frame)
    w.release()

    class Det:
        """Reports the face where the clip drew it (the detector runs on frames 0, 3, 6, 9)."""

        calls = 0

        def detect(self, rgb):
            x = 20 + 4 * 3 * Det.calls
            Det.calls += 1
            return [Face((x, 20, 60, 60))]

    with Predictor.open(tiny_onnx) as pred:
        summary = run(pred, str(video), Det(), jsonl=tmp_path / "e3.jsonl", every=3, log=lambda *a: None)
    recs = [json.loads(l) for l in (tmp_path / "e3.jsonl").read_text().splitlines()]
    assert summary["frames"] == 10 and summary["detector_passes"] == 4 == Det.calls  # frames 0, 3, 6, 9
    assert [r["detected"] for r in recs] == [i % 3 == 0 for i in range(10)]
    assert all(len(r["faces"]) == 1 and r["faces"][0]["track"] == 0 for r in recs)  # one track throughout
    assert all(r["timings_ms"]["detect"] == 0 for r in recs if not r["detected"])
    # between detections the last boxes are carried (and the face re-labelled on every frame)
    assert [r["faces"][0]["box"][0] for r in recs] == [20, 20, 20, 32, 32, 32, 44, 44, 44, 56]
    assert summary["timings_ms"]["detect"] * 10 == pytest.approx(sum(r["timings_ms"]["detect"] for r in recs), abs=0.01)
    from fertrt.cli import main

    assert exit_code(main, ["infer", str(tiny_onnx), str(video), "--every", "0"]) == 2


def test_a_full_disk_leaves_no_truncated_jsonl(tiny_onnx, tmp_path, monkeypatch):
    import builtins
    import errno

    import fertrt.runtime.pipeline as pipeline
    from fertrt.runtime.face import WholeImage

    synth_image_files(tmp_path / "in", 3)
    jsonl = tmp_path / "r.jsonl"

    class FullDisk:
        """A file that takes the first record, then fails like a full disk."""

        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, text):
            self.n += 1
            if self.n > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(pipeline, "open", lambda *a, **k: FullDisk(builtins.open(*a, **k)), raising=False)
    with Predictor.open(tiny_onnx) as pred:
        with pytest.raises(FertrtError, match="No space left on device"):
            pipeline.run(pred, str(tmp_path / "in"), WholeImage(), jsonl=jsonl, log=lambda *a: None)
    assert not jsonl.exists()  # no truncated file at the final path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # and no temp file left behind
