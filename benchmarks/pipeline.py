"""The face-pipeline suite: detectors side by side on synthetic 640x480 scenes, in one run.

Scenes paste `synth` test faces (90-170 px, random positions, no overlap) on varied backgrounds
(flat, gradient, noise, clutter of shapes, a text-like pattern); every box is known. Measured per
detector (Haar, BlazeFace short/full range, YuNet when a file is given), all on ONNX Runtime CPU:
  - per-stage latency (detect split into its pre/infer/post, crop, FER preprocess/infer/post) and
    end-to-end frames per second on 1-face and 4-face scenes;
  - recall (a pasted face counts as found when a detection is centred on it at a plausible size, see
    `covers`) and false detections per 100 frames, on 1-face, 4-face and face-free scenes;
  - FER accuracy through detect+crop vs the same model on the original face crops;
  - a 30-second synthetic video (25 fps, 2 faces drifting and changing scale): detect every frame vs
    every 3rd frame with the IoU tracker.

    python -m fertrt.benchmarks.pipeline --fer-model model.onnx [--yunet yunet_fertrt.onnx] [-o out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

SCENE_SIZE = (480, 640)  # height, width


def background(rng: np.random.Generator, kind: str, size=SCENE_SIZE) -> np.ndarray:
    h, w = size
    if kind == "flat":
        return np.full((h, w, 3), rng.integers(30, 230, 3), np.uint8)
    if kind == "gradient":
        a, b = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        return np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).astype(np.uint8)
    if kind == "noise":
        base = rng.integers(60, 200, 3)
        return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    img = np.full((h, w, 3), rng.integers(60, 200, 3), np.uint8)
    if kind == "clutter":  # shapes in skin-like and other colours: the hard case for false detections
        for _ in range(25):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            if rng.random() < 0.5:
                cv2.circle(img, c, int(rng.integers(8, 60)), colour, -1)
            else:
                cv2.rectangle(
                    img, c, (c[0] + int(rng.integers(10, 120)), c[1] + int(rng.integers(10, 120))), colour, -1
                )
        return img
    if kind == "text":
        for y in range(20, h, 28):
            cv2.putText(
                img,
                "".join(chr(int(c)) for c in rng.integers(65, 91, 30)),
                (5, y),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.7,
                tuple(int(v) for v in rng.integers(0, 256, 3)),
                2,
            )
        return img
    raise ValueError(kind)


BACKGROUNDS = ("flat", "gradient", "noise", "clutter", "text")


def make_scene(rng, faces: list[np.ndarray], bg_kind: str, sizes=(90, 170), size=SCENE_SIZE):
    """Paste faces (square RGB crops) at random sizes and non-overlapping places -> (scene, boxes x,y,w,h)."""
    scene = background(rng, bg_kind, size).copy()
    h, w = size
    boxes = []
    for face in faces:
        for _ in range(200):
            s = int(rng.integers(sizes[0], sizes[1] + 1))
            x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
            if all(x + s <= bx or bx + bw <= x or y + s <= by or by + bh <= y for bx, by, bw, bh in boxes):
                break
        else:
            continue
        scene[y : y + s, x : x + s] = cv2.resize(
            face, (s, s), interpolation=cv2.INTER_AREA if s < face.shape[0] else cv2.INTER_LINEAR
        )
        boxes.append((x, y, s, s))
    return scene, boxes


def synth_faces(n: int, seed: int = 0, difficulty: str = "easy"):
    from fertrt.train.data.synth import SynthConfig, generate
    from fertrt.train.data.synth_source import DIFFICULTY

    imgs, labels, _ = generate(SynthConfig(size=140, seed=seed, **DIFFICULTY[difficulty]), "test", n)
    return imgs, labels


def covers(det_box, truth_box) -> float:
    """How well a detection fits a pasted synth face: 0 when it misses, else a score for matching.
    A synth crop's box includes background around the face, and detectors box the face itself (about
    half to three quarters of the crop's side), so the rule is: the detection's centre lies in the
    middle half of the crop and its side is 0.35 to 1.2 times the crop's."""
    x, y, w, h = det_box
    bx, by, bw, bh = truth_box
    cx, cy = x + w / 2, y + h / 2
    inside = abs(cx - (bx + bw / 2)) <= bw / 4 and abs(cy - (by + bh / 2)) <= bh / 4
    ratio = max(w, h) / max(bw, bh)
    if not inside or not 0.35 <= ratio <= 1.2:
        return 0.0
    return 1.0 - np.hypot(cx - bx - bw / 2, cy - by - bh / 2) / bw


def match(faces, boxes):
    """Greedy one-to-one matching (see `covers`) -> (matched detection index per box or None, false detections)."""
    pairs = sorted(((covers(f.box, b), i, j) for i, f in enumerate(faces) for j, b in enumerate(boxes)), reverse=True)
    got, used = [None] * len(boxes), set()
    for score, i, j in pairs:
        if score <= 0 or i in used or got[j] is not None:
            continue
        got[j] = i
        used.add(i)
    return got, len(faces) - len(used)


def scenes(n_scenes: int, faces_per_scene: int, seed: int):
    rng = np.random.default_rng(seed)
    imgs, labels = synth_faces(max(n_scenes * faces_per_scene, 1), seed=seed)
    out = []
    for k in range(n_scenes):
        idx = list(range(k * faces_per_scene, (k + 1) * faces_per_scene))
        scene, boxes = make_scene(rng, [imgs[i] for i in idx], BACKGROUNDS[k % len(BACKGROUNDS)])
        out.append((scene, boxes, [int(labels[i]) for i in idx[: len(boxes)]], [imgs[i] for i in idx[: len(boxes)]]))
    return out


def evaluate(detector, predictor, scene_set, margin) -> dict:
    """Recall, false detections, FER accuracy through detect+crop vs on the original crops, timings."""
    from fertrt.runtime.face import crop_face

    shift = getattr(getattr(detector, "cfg", None), "crop_shift", 0.0)
    found = total = false = correct = direct_correct = 0
    stages = {k: [] for k in ("detect", "crop", "preprocess", "infer", "postprocess", "total")}
    sub = {}
    for scene, boxes, labels, originals in scene_set:
        t0 = time.perf_counter()
        faces = detector.detect(scene)
        t1 = time.perf_counter()
        crops = [crop_face(scene, f, margin, shift=shift) for f in faces]
        t2 = time.perf_counter()
        results = predictor.predict(crops) if crops else []
        t3 = time.perf_counter()
        stages["detect"].append((t1 - t0) * 1e3)
        stages["crop"].append((t2 - t1) * 1e3)
        for k in ("preprocess", "infer", "postprocess"):
            stages[k].append(predictor.last_timings.get(k, 0.0) if crops else 0.0)
        stages["total"].append((t3 - t0) * 1e3)
        for k, v in getattr(detector, "last_timings", {}).items():
            sub.setdefault(k, []).append(v)
        got, fp = match(faces, boxes)
        false += fp
        total += len(boxes)
        direct = predictor.predict(originals) if originals else []
        for j, i in enumerate(got):
            if i is not None:
                found += 1
                correct += results[i]["class_id"] == labels[j]
                direct_correct += direct[j]["class_id"] == labels[j]
    med = {k: float(np.median(v)) for k, v in {**stages, **sub}.items() if v}
    return {
        "frames": len(scene_set),
        "faces": total,
        "found": found,
        "recall": found / max(total, 1),
        "false_detections": false,
        "false_per_100_frames": 100 * false / max(len(scene_set), 1),
        "fer_accuracy_detect_crop": correct / max(found, 1),
        "fer_accuracy_original_crops": direct_correct / max(found, 1),
        "median_ms": med,
        "fps_end_to_end": 1e3 / med["total"] if med.get("total") else None,
    }


def timing(detectors: dict, predictor, scene, repeats: int) -> dict:
    """Medians over `repeats` passes of one scene, per stage and end to end (detect + crop + FER), the
    detectors interleaved pass by pass so that a busy machine slows them alike."""
    from fertrt.runtime.face import crop_face

    def one_pass(det):
        cfg = getattr(det, "cfg", None)
        margin, shift = getattr(cfg, "crop_margin", 0.1), getattr(cfg, "crop_shift", 0.0)
        t0 = time.perf_counter()
        faces = det.detect(scene)
        t1 = time.perf_counter()
        crops = [crop_face(scene, f, margin, shift=shift) for f in faces]
        t2 = time.perf_counter()
        if crops:
            predictor.predict(crops)
        t3 = time.perf_counter()
        row = {"detect": t1 - t0, "crop": t2 - t1, "fer": t3 - t2, "total": t3 - t0}
        row = {k: v * 1e3 for k, v in row.items()}
        row.update(getattr(det, "last_timings", {}))
        return row, len(faces)

    rows = {name: {} for name in detectors}
    found = {}
    for i in range(repeats + 3):
        for name, det in detectors.items():
            row, found[name] = one_pass(det)
            if i >= 3:  # the first three are warm-up
                for k, v in row.items():
                    rows[name].setdefault(k, []).append(v)
    out = {}
    for name, r in rows.items():
        med = {k: float(np.median(v)) for k, v in r.items()}
        # on a shared machine the median carries the waits for a core; the 10th percentile is the
        # closest figure to an idle machine's, so both are kept
        med.update({f"{k}_p10": float(np.percentile(v, 10)) for k, v in r.items()})
        med["fps"] = 1e3 / med["total"]
        med["fps_p10"] = 1e3 / med["total_p10"]
        med["faces_found"] = found[name]
        out[name] = med
    return out


def video_run(detector, predictor, tmp: Path, margin, seconds=30, fps=25, every=(1, 3)) -> dict:
    """A synthetic clip: two faces drifting and zooming over a gradient -> per `every`: fps, recall, ids."""
    from fertrt.runtime.pipeline import run

    rng = np.random.default_rng(7)
    imgs, _ = synth_faces(2, seed=3)
    bg = background(rng, "gradient")
    path = tmp / "synthetic_30s.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    truth = []
    for i in range(seconds * fps):
        t = i / (seconds * fps)
        frame = bg.copy()
        boxes = []
        for j, img in enumerate(imgs):
            s = int(120 + 30 * np.sin(2 * np.pi * (t * 2 + j / 2)))
            x = int(100 + j * 280 + 60 * np.sin(2 * np.pi * t * 3 + j))
            y = int(150 + 80 * np.cos(2 * np.pi * t * 2 + j))
            frame[y : y + s, x : x + s] = cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA)
            boxes.append((x, y, s, s))
        truth.append(boxes)
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = {}
    for n in every:
        jsonl = tmp / f"video_every{n}.jsonl"
        summary = run(
            predictor, str(path), detector, jsonl=jsonl, force=True, margin=margin, every=n, log=lambda *a: None
        )
        recs = [json.loads(l) for l in jsonl.read_text().splitlines()]
        from fertrt.runtime.face import Face

        found = sum(
            sum(g is not None for g in match([Face(tuple(f["box"])) for f in r["faces"]], b)[0])
            for r, b in zip(recs, truth)
        )
        ids = {f["track"] for r in recs for f in r["faces"]}
        out[f"every_{n}"] = {
            "frames": summary["frames"],
            "fps": summary["fps"],
            "detector_passes": summary["detector_passes"],
            "mean_ms": summary["timings_ms"],
            "recall": found / (2 * len(truth)),
            "track_ids": len(ids),
        }
    return out


def open_detectors(names, yunet=None):
    from fertrt.runtime.face import HaarDetector, make_detector

    dets = {}
    for name in names:
        if name.endswith((".onnx", ".engine")):  # a detector file, e.g. BlazeFace exported at another input size
            dets[Path(name).stem] = make_detector("blazeface", name)
        else:
            dets[name] = HaarDetector() if name == "haar" else make_detector(name)
    if yunet:
        dets["yunet"] = make_detector("yunet", yunet)
    return dets


def main(argv=None):
    import tempfile

    from fertrt.runtime.predictor import Predictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer-model", required=True, help="a FER .onnx (fertrt export), e.g. fertrt-demo/model.onnx")
    ap.add_argument("--yunet", default=None, help="a YuNet .onnx prepared with `fertrt detector export --model yunet`")
    ap.add_argument(
        "--detectors",
        default="haar,blazeface,blazeface-full",
        help="comma-separated: haar, blazeface, blazeface-full, or detector .onnx files",
    )
    ap.add_argument("--scenes", type=int, default=100, help="scenes per kind (1-face, 4-face, face-free)")
    ap.add_argument("--repeats", type=int, default=100, help="timed passes per latency figure")
    ap.add_argument(
        "--fer-threads", type=int, default=1, help="ONNX Runtime intra-op threads of the FER model (default 1)"
    )
    ap.add_argument("-o", "--out", default="bench-pipeline")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dets = open_detectors(args.detectors.split(","), args.yunet)
    sets = {
        "1 face": scenes(args.scenes, 1, seed=11),
        "4 faces": scenes(args.scenes, 4, seed=12),
        "no face": scenes(args.scenes, 0, seed=13),
    }
    results = {
        "scenes_per_kind": args.scenes,
        "fer_model": args.fer_model,
        "fer_threads": args.fer_threads,
        "detectors": {},
    }
    # both models on one ONNX Runtime intra-op thread (the runtime's default for detectors): stable
    # figures on a shared 2-core machine, and the other core stays free for decoding
    with Predictor.open(args.fer_model, threads=args.fer_threads) as pred, tempfile.TemporaryDirectory() as tmp:
        # latency: one scene of each kind that every detector finds all faces in when it can (the first of the set)
        latency = {k: timing(dets, pred, sets[k][0][0], args.repeats) for k in ("1 face", "4 faces")}
        for name, det in dets.items():
            margin = getattr(getattr(det, "cfg", None), "crop_margin", 0.1)
            r = {
                "margin": margin,
                "quality": {k: evaluate(det, pred, v, margin) for k, v in sets.items()},
                "latency": {k: latency[k][name] for k in latency},
                "video": video_run(det, pred, Path(tmp), margin),
            }
            results["detectors"][name] = r
            print(
                f"{name}: "
                + json.dumps(
                    {
                        k: {"recall": round(v["recall"], 3), "fp100": round(v["false_per_100_frames"], 1)}
                        for k, v in r["quality"].items()
                    }
                ),
                flush=True,
            )
    from fertrt.engine.device import environment

    results["environment"] = environment()
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    table = report(results)
    (out / "report.md").write_text(table)
    print(table)
    return results


def report(results) -> str:
    lines = [
        "Latency: 10th percentile (median) over the timed passes, ms; fps from the end-to-end 10th percentile (median).",
        "",
        "| detector | faces | detect (pre / infer / post) | crop + FER | end to end | fps | found in timed frame | recall "
        "| false det. / 100 frames | FER acc. detect+crop / original crops |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["detectors"].items():
        for kind in ("1 face", "4 faces"):
            lat, q = r["latency"][kind], r["quality"][kind]
            split = " / ".join(
                f"{lat[k + '_p10']:.2f}"
                for k in ("detect_preprocess", "detect_infer", "detect_postprocess")
                if k in lat
            )
            fer, fer_med = lat["crop_p10"] + lat["fer_p10"], lat["crop"] + lat["fer"]
            lines.append(
                f"| {name} | {kind} | {lat['detect_p10']:.2f} ({lat['detect']:.2f})"
                + (f" ({split})" if split else "")
                + f" | {fer:.2f} ({fer_med:.2f}) | {lat['total_p10']:.2f} ({lat['total']:.2f}) "
                f"| {lat['fps_p10']:.0f} ({lat['fps']:.0f}) | {lat['faces_found']} | {q['recall']:.3f} "
                f"| {q['false_per_100_frames']:.1f} | {q['fer_accuracy_detect_crop']:.3f} / {q['fer_accuracy_original_crops']:.3f} |"
            )
        nf = r["quality"]["no face"]
        lines.append(f"| {name} | none | | | | | | | {nf['false_per_100_frames']:.1f} | |")
    lines += [
        "",
        "| detector | video (30 s, 2 faces, 25 fps, decode included) | fps | detector passes | detect ms per frame (mean) "
        "| recall | track ids |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results["detectors"].items():
        for k, v in r["video"].items():
            lines.append(
                f"| {name} | detect {k.replace('_', ' ')} | {v['fps']:.0f} | {v['detector_passes']} | "
                f"{v['mean_ms'].get('detect', 0):.2f} | {v['recall']:.3f} | {v['track_ids']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
