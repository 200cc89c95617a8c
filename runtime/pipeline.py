"""The face pipeline behind `fertrt infer`: decode -> detect -> crop -> one batch per frame ->
labels, JSON lines with per-stage timings, optional annotated images or video."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fertrt.errors import FertrtError

from .face import Tracker, crop_face
from .preprocess import IMAGE_SUFFIXES, read_image, to_rgb, write_image

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


@dataclass
class Frame:
    source: str
    index: int
    image: np.ndarray | None  # RGB uint8; None when the file could not be decoded
    decode_ms: float
    fps: float | None = None


def open_source(source: str):
    """-> (kind, iterator of Frame). kind: images | video | camera."""
    p = Path(source)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FertrtError(f"{p}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return "images", _image_frames(files)
    if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
        return "video", _video_frames(cv2.VideoCapture(str(p)), str(p))
    if p.is_file():
        return "images", _image_frames([p])
    if source.isdigit() or source.startswith("/dev/video"):
        cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        return "camera", _video_frames(cap, source)
    if "!" in source:  # a GStreamer pipeline, e.g. nvarguscamerasrc ! ... ! appsink for Jetson CSI cameras
        return "camera", _video_frames(cv2.VideoCapture(source, cv2.CAP_GSTREAMER), source)
    raise FertrtError(f"{source}: no such file or folder (expected an image, a folder of images, a video file, "
                      "a camera index, /dev/videoN or a GStreamer pipeline)")


def _image_frames(files):
    for i, f in enumerate(files):
        t0 = time.perf_counter()
        img = read_image(f)
        yield Frame(str(f), 0, img, (time.perf_counter() - t0) * 1e3)


def _video_frames(cap, name):
    if not cap.isOpened():
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
        if regions and f.get("region_weights"):
            wts = np.asarray(f["region_weights"])
            g = int(round(len(wts) ** 0.5))
            heat = cv2.resize((wts.reshape(g, g) / max(wts.max(), 1e-9) * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            roi = img[y:y + h, x:x + w]
            if roi.shape[:2] == heat.shape:
                img[y:y + h, x:x + w] = cv2.addWeighted(roi, 0.55, cv2.applyColorMap(heat, cv2.COLORMAP_JET), 0.45, 0)
        cv2.rectangle(img, (x, y), (x + w, y + h), (60, 220, 60), 2)
        label = f"{f['label']} {f['confidence']:.2f}"
        cv2.putText(img, label, (x, max(12, y - 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (60, 220, 60), 1, cv2.LINE_AA)
        bar = int(w * f["confidence"])
        cv2.rectangle(img, (x, max(0, y - 10)), (x + bar, max(0, y - 6)), (60, 220, 60), -1)
    return img


def run(predictor, source: str, detector, *, save=None, jsonl=None, margin=0.1, align=True, regions=False,
        smooth_alpha=0.4, max_frames=None, log=print) -> dict:
    """Run the pipeline over a source; returns a summary (frames, faces, unreadable, mean timings)."""
    kind, frames = open_source(source)
    tracker = Tracker(alpha=smooth_alpha) if kind in ("video", "camera") else None
    writer = None
    save_path = Path(save) if save else None
    if save_path and kind == "images" and Path(source).is_dir():
        save_path.mkdir(parents=True, exist_ok=True)
    out_f = open(jsonl, "w") if jsonl else None
    summary = {"frames": 0, "faces": 0, "unreadable": [], "timings_ms": {}}
    totals = {}
    t_start = time.perf_counter()
    try:
        for frame in frames:
            if max_frames is not None and summary["frames"] >= max_frames:
                break
            if frame.image is None:
                summary["unreadable"].append(frame.source)
                log(f"skipped {frame.source}: not a readable image")
                continue
            t = {"decode": frame.decode_ms}
            t0 = time.perf_counter()
            faces = detector.detect(frame.image)
            t["detect"] = (time.perf_counter() - t0) * 1e3
            crops = [crop_face(frame.image, f, margin, align) for f in faces]
            results = predictor.predict(crops) if crops else []
            t.update(predictor.last_timings if crops else {"preprocess": 0.0, "infer": 0.0, "postprocess": 0.0})
            faces_out = []
            smoothed = tracker.update([f.box for f in faces], [[r["probabilities"][c] for c in predictor.class_names] for r in results]) \
                if tracker is not None else [(None, None)] * len(results)
            for f, r, (track, probs) in zip(faces, results, smoothed):
                rec = {"box": [int(v) for v in f.box], "score": round(float(f.score), 4), **r}
                if probs is not None:
                    k = int(np.argmax(probs))
                    rec.update({"track": track, "label": predictor.class_names[k], "class_id": k, "confidence": float(probs[k]),
                                "probabilities": {c: float(v) for c, v in zip(predictor.class_names, probs)}})
                faces_out.append(rec)
            summary["frames"] += 1
            summary["faces"] += len(faces_out)
            for k, v in t.items():
                totals[k] = totals.get(k, 0.0) + v
            record = {"source": frame.source, "frame": frame.index, "faces": faces_out, "timings_ms": {k: round(v, 3) for k, v in t.items()}}
            if out_f:
                out_f.write(json.dumps(record) + "\n")
            if save_path:
                annotated = draw(frame.image, faces_out, regions)
                if kind == "images":
                    target = save_path / Path(frame.source).name if save_path.is_dir() else save_path
                    write_image(target, cv2.cvtColor(annotated, cv2.COLOR_BGR2RGB))
                else:
                    if writer is None:
                        h, w = annotated.shape[:2]
                        writer = cv2.VideoWriter(str(save_path), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 25.0, (w, h))
                    writer.write(annotated)
            if kind != "images" and summary["frames"] % 30 == 0:
                fps = summary["frames"] / (time.perf_counter() - t_start)
                log(f"frame {summary['frames']}: {fps:.1f} fps, {len(faces_out)} faces")
    except KeyboardInterrupt:
        log("interrupted: closing outputs so what was written stays playable")
    finally:
        if writer is not None:
            writer.release()
        if out_f:
            out_f.close()
    n = max(summary["frames"], 1)
    summary["timings_ms"] = {k: v / n for k, v in totals.items()}
    summary["seconds"] = time.perf_counter() - t_start
    return summary
