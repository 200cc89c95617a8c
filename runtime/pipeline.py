"""The face pipeline behind `fertrt infer`: decode -> detect (every frame, or every Nth frame of a
video with the IoU tracker carrying faces in between) -> crop -> one FER batch per frame -> labels,
JSON lines with per-stage timings, optional annotated images or videos."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertrt.deps import require
from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_output

from .face import Tracker, crop_corners, crop_face
from .options import InferOptions
from .preprocess import IMAGE_SUFFIXES, read_image, to_rgb, write_image

cv2 = require("cv2", "the face pipeline (images, videos, cameras)")

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
STAGES = ("decode", "detect", "crop", "preprocess", "infer", "postprocess", "total")


@dataclass
class Frame:
    source: str
    index: int
    image: np.ndarray | None  # RGB uint8; None when the file could not be decoded
    decode_ms: float
    fps: float | None = None


@dataclass
class Source:
    """One stream of frames: a list of image files, a video file or a camera."""

    kind: str  # images | video | camera
    name: str
    files: list  # image files (images), the video file (video), [] (camera)
    folder: Path | None = None  # a folder its images were listed from: --save is then a folder too


def _is_camera(spec: str) -> bool:
    return spec.isdigit() or spec.startswith("/dev/video") or "!" in spec


def plan_sources(inputs) -> list[Source]:
    """Inputs (files, folders, globs, cameras) -> Sources; all image inputs become one image stream
    (in the order given), each video or camera its own stream."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    images, streams = [], []
    folders = []
    for spec in map(str, inputs):
        p = Path(spec)
        if not p.exists() and not _is_camera(spec) and glob.has_magic(spec):
            matches = sorted(glob.glob(spec))
            if not matches:
                raise FertrtError(f"{spec}: the pattern matches no files")
            paths = [Path(m) for m in matches]
        else:
            paths = [p]
        for q in paths:
            if q.is_dir():
                files = sorted(f for f in q.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise FertrtError(f"{q}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
                images.extend(files)
                folders.append(q)
            elif q.is_file() and q.suffix.lower() in VIDEO_SUFFIXES:
                streams.append(Source("video", str(q), [q]))
            elif q.is_file():
                images.append(q)
            elif _is_camera(str(q)):
                streams.append(Source("camera", str(q), []))
            else:
                raise FertrtError(
                    f"{q}: no such file or folder (expected an image, a folder of images, a glob, "
                    "a video file, a camera index, /dev/videoN or a GStreamer pipeline)"
                )
    out = [Source("images", "images", images, folders[0] if folders else None)] if images else []
    return out + streams


@dataclass
class Outputs:
    """Where annotated results go, decided and checked before any work."""

    save: Path | None
    save_is_folder: bool
    targets: dict  # (source name, image path or None) -> output file

    def target(self, source: Source, image=None) -> Path:
        return self.targets[(source.name, str(image) if image is not None else None)]


def plan_outputs(sources: list[Source], save=None, jsonl=None, summary_json=None, force=False) -> Outputs:
    """Refuse an output that is an input (even with --force) or that exists (unless --force)."""
    input_files = {Path(f).resolve() for s in sources for f in s.files}
    input_dirs = {Path(f).resolve().parent for s in sources if s.kind == "images" for f in s.files}
    named = {}
    for opt, path in (("--jsonl", jsonl), ("--summary-json", summary_json)):
        if path is None:
            continue
        p = Path(path)
        if p.resolve() in input_files or p.resolve() in input_dirs:
            raise FertrtError(f"{opt} {p}: is one of the inputs; write the output elsewhere")
        if p.is_dir():
            raise FertrtError(f"{opt} {p}: is a folder; expected a file")
        if not p.parent.is_dir():
            raise FertrtError(f"{opt} {p}: the output folder {p.parent} does not exist")
        if p.exists() and not force:
            raise FertrtError(f"{opt} {p}: file exists (pass --force to replace it)")
        check_output(p, overwrite=force, option=opt)  # the model, a device node or a FIFO: refused with --force too
        named.setdefault(p.resolve(), []).append(opt)
    if save is None:
        targets = {}
        folder_mode = False
    else:
        save = Path(save)
        n_images = sum(len(s.files) for s in sources if s.kind == "images")
        n_streams = sum(1 for s in sources if s.kind != "images")
        folder_mode = n_streams + n_images > 1 or save.is_dir() or any(s.folder for s in sources)
        if save.resolve() in input_files:
            raise FertrtError(f"--save {save}: is one of the inputs; an output never overwrites an input")
        targets = {}
        for s in sources:
            if s.kind == "images":
                for f in s.files:
                    targets[(s.name, str(f))] = save / Path(f).name if folder_mode else save
            else:
                camera = "camera_" + "".join(c if c.isalnum() else "_" for c in s.name)[:40]
                stem = Path(s.name).stem if s.kind == "video" else camera
                targets[(s.name, None)] = save / f"{stem}.mp4" if folder_mode else save
        if folder_mode:
            if save.resolve() in input_dirs:
                raise FertrtError(
                    f"--save {save}: is a folder the input images are read from; annotated images would "
                    "replace them. Save into another folder"
                )
            if save.exists() and not save.is_dir():
                raise FertrtError(f"--save {save}: several inputs need a folder to save into, and this is a file")
            if not save.parent.is_dir():
                raise FertrtError(f"--save {save}: the output folder {save.parent} does not exist")
        elif not save.parent.is_dir():
            raise FertrtError(f"--save {save}: the output folder {save.parent} does not exist")
        seen = {}
        for key, t in targets.items():
            r = t.resolve()
            if r in input_files:
                raise FertrtError(f"--save {save}: would write {t}, which is one of the inputs")
            if r in seen and folder_mode:
                raise FertrtError(
                    f"--save {save}: inputs {seen[r]} and {key[1] or key[0]} would both be saved as {t}; "
                    "save them in separate runs"
                )
            seen[r] = key[1] or key[0]
            if t.exists() and not force:
                raise FertrtError(f"--save {save}: {t} exists (pass --force to replace it)")
            if t.parent.is_dir():  # a --save folder not made yet holds nothing to check
                check_output(t, overwrite=force, option="--save")
            if r in named:
                raise FertrtError(f"--save {save} and {named[r][0]} name the same file {t}")
    if len(named) < sum(p is not None for p in (jsonl, summary_json)):
        raise FertrtError(f"--jsonl and --summary-json name the same file {jsonl}")
    return Outputs(Path(save) if save else None, folder_mode, targets)


def open_source(source: Source):
    """-> iterator of Frame."""
    if source.kind == "images":
        return _image_frames(source.files)
    if source.kind == "video":
        return _video_frames(cv2.VideoCapture(str(source.files[0])), source.name)
    spec = source.name
    if spec.isdigit() or spec.startswith("/dev/video"):
        return _video_frames(cv2.VideoCapture(int(spec) if spec.isdigit() else spec), spec)
    # a GStreamer pipeline, e.g. nvarguscamerasrc ! ... ! appsink for Jetson CSI cameras
    return _video_frames(cv2.VideoCapture(spec, cv2.CAP_GSTREAMER), spec, gstreamer=True)


def opencv_has_gstreamer() -> bool:
    """Whether this cv2 was built with GStreamer (JetPack's is; the opencv-python(-headless) wheels are not)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return line.split(":", 1)[1].strip().upper().startswith("YES")
    return False


def _image_frames(files):
    for f in files:
        t0 = time.perf_counter()
        img = read_image(f)
        yield Frame(str(f), 0, img, (time.perf_counter() - t0) * 1e3)


def _video_frames(cap, name, gstreamer=False):
    if not cap.isOpened():
        if gstreamer and not opencv_has_gstreamer():
            raise FertrtError(
                f"{name}: cannot open this GStreamer pipeline: the OpenCV in use ({cv2.__version__}, "
                f"{Path(cv2.__file__).parent}) was built without GStreamer, as the "
                "opencv-python(-headless) wheels are. Use JetPack's OpenCV (`sudo apt install "
                "python3-opencv`; in a venv made with --system-site-packages) and uninstall the pip one"
            )
        raise FertrtError(f"{name}: cannot open this video/camera with OpenCV")
    fps = cap.get(cv2.CAP_PROP_FPS) or None
    i = 0
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            yield Frame(name, i, to_rgb(frame, source="BGR"), (time.perf_counter() - t0) * 1e3, fps)
            i += 1
    finally:
        cap.release()


def draw(rgb: np.ndarray, faces_out: list[dict], regions: bool = False) -> np.ndarray:
    """Annotated BGR copy: box, label, confidence bar, optional 4x4 region-weight overlay."""
    img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for f in faces_out:
        x, y, w, h = f["box"]
        if regions and f.get("region_weights") and f.get("crop_corners"):
            img = _draw_regions(img, f["region_weights"], np.asarray(f["crop_corners"], np.float32))
        cv2.rectangle(img, (x, y), (x + w, y + h), (60, 220, 60), 2)
        # model-provided labels: OpenCV's Hershey fonts draw ASCII only
        label = f"{f['label'].encode('ascii', 'replace').decode()} {f['confidence']:.2f}"
        cv2.putText(img, label, (x, max(12, y - 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 220, 60), 1, cv2.LINE_AA)
        bar = int(w * f["confidence"])
        cv2.rectangle(img, (x, max(0, y - 10)), (x + bar, max(0, y - 6)), (60, 220, 60), -1)
    return img


def _draw_regions(bgr: np.ndarray, weights, corners: np.ndarray) -> np.ndarray:
    """The region weights drawn over the face crop the model saw (the same picture as `fertrt eval`'s):
    the frame is warped into the crop, overlaid there, and warped back inside the crop's square."""
    from .regions import region_overlay

    side = max(int(round(float(np.linalg.norm(corners[1] - corners[0])))), 1)
    square = np.array([[0, 0], [side, 0], [side, side]], np.float32)
    to_crop = cv2.getAffineTransform(corners[:3], square)
    crop = cv2.warpAffine(bgr, to_crop, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    painted = region_overlay(crop[..., ::-1], weights, alpha=0.45)[..., ::-1]
    back = cv2.invertAffineTransform(to_crop)
    h, w = bgr.shape[:2]
    warped = cv2.warpAffine(np.ascontiguousarray(painted), back, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((side, side), 255, np.uint8), back, (w, h), flags=cv2.INTER_NEAREST) > 0
    out = bgr.copy()
    out[mask] = warped[mask]
    return out


class _VideoOut:
    """An annotated video written under a temporary name and renamed when complete."""

    def __init__(self, path: Path, fps: float, size):
        self.path = path
        self.tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self.writer.isOpened():
            raise FertrtError(f"--save {path}: OpenCV cannot write a video with this extension (use .mp4 or .avi)")

    def close(self, keep=True):
        self.writer.release()
        if keep and self.tmp.exists():
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


def run(predictor, inputs, detector, options: InferOptions | None = None, *, log=print, **fields) -> dict:
    """Run the pipeline over inputs (paths, globs, cameras) with `options`, or InferOptions made from `fields`
    (save=..., jsonl=..., margin=...); returns a summary (frames, faces, unreadable, mean per-stage timings per
    frame, frames per second)."""
    if options is None:
        options = InferOptions(**fields)
    elif fields:
        raise TypeError(f"run() takes options or their fields, not both ({', '.join(fields)})")
    sources = plan_sources(inputs)
    outputs = plan_outputs(sources, options.save, options.jsonl, options.summary_json, options.force)
    if outputs.save_is_folder:
        outputs.save.mkdir(parents=True, exist_ok=True)
    state = _RunState(predictor, detector, options, outputs, log)
    with contextlib.ExitStack() as stack:
        if options.jsonl:
            state.jsonl = stack.enter_context(open(stack.enter_context(atomic_path(options.jsonl)), "w"))
        try:
            for source in sources:
                if state.frame_limit_reached():
                    break
                _run_source(state, source)
        except KeyboardInterrupt:
            log("interrupted: closing outputs so what was written stays readable")
    return state.finish()


def face_record(face, result: dict, margin: float, align: bool, shift: float) -> dict:
    """One face of a `fertrt infer --jsonl` line (also `fertrt serve`'s fer_faces answer): box, detector
    score, the Predictor's result, where the crop lies when the model exports region weights, the eyes."""
    rec = {"box": [int(v) for v in face.box], "score": round(float(face.score), 4), **result}
    if "region_weights" in result:  # where the model's 4x4 grid lies in the frame
        rec["crop_corners"] = [[round(float(v), 1) for v in pt] for pt in crop_corners(face, margin, align, shift)]
    if face.landmarks is not None:
        rec["eyes"] = [[round(float(v), 1) for v in pt] for pt in np.asarray(face.landmarks)[:2]]
    return rec


class _RunState:
    """What a run carries from frame to frame: the models, options and outputs, and the running totals."""

    def __init__(self, predictor, detector, options: InferOptions, outputs: Outputs, log):
        self.predictor, self.detector, self.options, self.outputs, self.log = predictor, detector, options, outputs, log
        self.jsonl = None  # the open --jsonl file
        self.margin = options.crop_margin(detector)
        self.shift = getattr(getattr(detector, "cfg", None), "crop_shift", 0.0)
        self.summary = {
            "frames": 0,
            "faces": 0,
            "unreadable": [],
            "detector": getattr(detector, "name", type(detector).__name__),
            "every": options.every,
            "detector_passes": 0,
            "timings_ms": {},
        }
        self.totals: dict[str, float] = {}  # stage -> ms summed over frames
        self.t_start = time.perf_counter()

    def frame_limit_reached(self) -> bool:
        return self.options.max_frames is not None and self.summary["frames"] >= self.options.max_frames

    def finish(self) -> dict:
        seconds = time.perf_counter() - self.t_start
        summary = self.summary
        summary["timings_ms"] = {k: v / max(summary["frames"], 1) for k, v in self.totals.items()}
        summary["seconds"] = seconds
        summary["fps"] = summary["frames"] / seconds if seconds > 0 else 0.0
        return summary


def _run_source(state: _RunState, source: Source) -> None:
    """One image list, video or camera through the pipeline; an annotated video is kept when interrupted."""
    live = source.kind in ("video", "camera")
    tracker = Tracker(alpha=state.options.smooth_alpha) if live else None
    video_out = None
    faces = []
    ok = False
    try:
        for frame in open_source(source):
            if state.frame_limit_reached():
                break
            if frame.image is None:
                state.summary["unreadable"].append(frame.source)
                state.log(f"skipped {frame.source}: not a readable image")
                continue
            detected = not live or frame.index % state.options.every == 0
            faces, faces_out, timings = _label_frame(state, frame, faces, detected, tracker)
            _record_frame(state, frame, detected, faces_out, timings)
            video_out = _save_frame(state, source, frame, faces_out, video_out)
            if live and state.summary["frames"] % 30 == 0:
                fps = state.summary["frames"] / (time.perf_counter() - state.t_start)
                state.log(f"frame {state.summary['frames']}: {fps:.1f} fps, {len(faces_out)} faces")
        ok = True
    except KeyboardInterrupt:
        ok = True  # keep what was written: the video stays playable
        raise
    finally:
        if video_out is not None:
            video_out.close(keep=ok)


def _label_frame(state: _RunState, frame: Frame, faces: list, detected: bool, tracker):
    """Detect (or carry the last frame's faces), crop, classify in one batch, smooth over time.
    -> (faces, one record per face, per-stage timings in ms)."""
    t_frame = time.perf_counter()
    t = {"decode": frame.decode_ms, "detect": 0.0}
    if detected:
        t0 = time.perf_counter()
        faces = state.detector.detect(frame.image)
        t["detect"] = (time.perf_counter() - t0) * 1e3
        state.summary["detector_passes"] += 1
    t0 = time.perf_counter()
    crops = [crop_face(frame.image, f, state.margin, state.options.align, state.shift) for f in faces]
    t["crop"] = (time.perf_counter() - t0) * 1e3
    results = state.predictor.predict(crops) if crops else []
    t.update(state.predictor.last_timings if crops else {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0})
    faces_out = _face_records(state, faces, results, tracker)
    t["total"] = t["decode"] + (time.perf_counter() - t_frame) * 1e3
    if detected and getattr(state.detector, "last_timings", None):
        t.update(state.detector.last_timings)
    return faces, faces_out, t


def _face_records(state: _RunState, faces: list, results: list, tracker) -> list[dict]:
    """face_record per face; on a video, the label and probabilities are the tracked face's smoothed ones."""
    names = state.predictor.class_names
    if tracker is None:
        smoothed = [(None, None)] * len(results)
    else:
        smoothed = tracker.update([f.box for f in faces], [[r["probabilities"][c] for c in names] for r in results])
    records = []
    for f, r, (track, probs) in zip(faces, results, smoothed):
        rec = face_record(f, r, state.margin, state.options.align, state.shift)
        if probs is not None:
            k = int(np.argmax(probs))
            rec.update(
                {
                    "track": track,
                    "label": names[k],
                    "class_id": k,
                    "confidence": float(probs[k]),
                    "probabilities": {c: float(v) for c, v in zip(names, probs)},
                }
            )
        records.append(rec)
    return records


def _record_frame(state: _RunState, frame: Frame, detected: bool, faces_out: list, timings: dict) -> None:
    """Count the frame into the summary and write its --jsonl line."""
    state.summary["frames"] += 1
    state.summary["faces"] += len(faces_out)
    for k, v in timings.items():
        state.totals[k] = state.totals.get(k, 0.0) + v
    if state.jsonl is not None:
        record = {
            "source": frame.source,
            "frame": frame.index,
            "detected": detected,
            "faces": faces_out,
            "timings_ms": {k: round(v, 3) for k, v in timings.items()},
        }
        state.jsonl.write(json.dumps(record) + "\n")


def _save_frame(state: _RunState, source: Source, frame: Frame, faces_out: list, video_out):
    """--save: an annotated image per image, or the frame appended to the source's video (opened on its first
    frame, at the source's frame rate). -> the open video, if any."""
    if state.outputs.save is None:
        return video_out
    annotated = draw(frame.image, faces_out, state.options.regions)
    if source.kind == "images":
        write_image(state.outputs.target(source, frame.source), cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB))
        return video_out
    if video_out is None:
        h, w = annotated.shape[:2]
        video_out = _VideoOut(state.outputs.target(source), frame.fps or 25.0, (w, h))
    video_out.writer.write(annotated)
    return video_out
