"""`fertrt doctor`: prove the whole TensorRT path on this device in one command.

Reports the environment, then on a tiny fertrt model it makes itself (no download, no torch) builds
an engine on every path the installed TensorRT supports, runs each through the runtime (plain, CUDA
graph, zero-copy), compares with ONNX Runtime on CPU using the tolerances of the `trt` tests, and
times each with the bench harness. Writes doctor.json and doctor.md: one line per check, pass, fail
(with the error) or n/a (with why). Exit code 1 when any applicable check fails.

The same functions (`engine_paths`, `check_engine`) are what the `trt` tests call on GPU hosts.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError

# agreement of top-1 labels with ONNX Runtime FP32 on CPU: the `trt` tests use these too
TOLERANCES = {"fp32": 1.0, "fp16": 0.98, "int8": 0.85}
TINY_CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
TINY_SIZE = 32
N_COMPARE = 64


@dataclass
class Check:
    name: str
    status: str  # "pass" | "fail" | "n/a"
    detail: str = ""
    figures: dict = field(default_factory=dict)


@dataclass
class EnginePath:
    """One way to build an engine: the options and which ONNX variant it starts from."""

    label: str
    source: str  # "fp32" | "fp16" | "int8" (the tiny model's graph variant)
    precision: str  # tolerance key
    options: dict


# ---------------------------------------------------------------- environment
def environment_checks(env: dict) -> list[Check]:
    from fertrt.deps import install_help

    from .compat import INSTALL_HELP

    checks = [
        Check(
            "onnxruntime",
            "pass" if env["onnxruntime"] else "fail",
            env["onnxruntime"] or f"missing (the CPU reference). Install: {install_help('onnxruntime')}",
        )
    ]
    checks.append(
        Check(
            "onnx",
            "pass" if env["onnx"] else "fail",
            env["onnx"] or "missing: pip install onnx (build-engine reads the graph with it)",
        )
    )
    if not env["tensorrt"]:
        checks.append(Check("tensorrt", "fail", f"missing. {INSTALL_HELP}"))
        return checks
    from .compat import capabilities_of, import_tensorrt, require_supported

    try:
        caps = require_supported(capabilities_of(import_tensorrt()))
        checks.append(Check("tensorrt", "pass", f"TensorRT {caps.version}", {"capabilities": caps.to_dict()}))
    except FertrtError as exc:
        checks.append(Check("tensorrt", "fail", str(exc)))
    if env.get("gpu"):
        checks.append(
            Check(
                "cuda",
                "pass",
                f"{env['gpu'].get('name')} (cc {env['gpu'].get('compute_capability')}) via {env['cuda_api']}",
            )
        )
    else:
        checks.append(
            Check(
                "cuda",
                "fail",
                f"no usable CUDA device: {env.get('cuda_api')}; check nvidia-smi and install pycuda or cuda-python",
            )
        )
    return checks


# ---------------------------------------------------------------- the tiny model
def make_tiny_onnx(path, seed: int = 0) -> Path:
    """A 5-node fertrt classifier (Conv-Relu-GlobalAveragePool-Flatten-Gemm, 3x32x32 -> 7) with fertrt metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from fertrt.export.metadata import build_metadata, set_metadata

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 16).astype(np.float32)
    fc = rng.normal(0, 0.5, (7, 16)).astype(np.float32)
    fcb = rng.normal(0, 0.1, 7).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "fertrt_doctor_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, TINY_SIZE, TINY_SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (fc, "fc"), (fcb, "fcb"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    pre = {
        "input_size": [TINY_SIZE, TINY_SIZE],
        "channels": 3,
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
        "color_order": "RGB",
        "layout": "NCHW",
    }
    cfg = {"name": "doctor_tiny", "class_names": TINY_CLASSES, "preprocess": pre}
    set_metadata(model, build_metadata(cfg, checkpoint_sha256="none (made by fertrt doctor)", data_spec="random"))
    onnx.checker.check_model(model)
    from fertrt.fileio import write_bytes_atomic

    return write_bytes_atomic(path, model.SerializeToString())


def tiny_inputs(n: int = N_COMPARE, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, TINY_SIZE, TINY_SIZE)).astype(np.float32)


# The tiny model's graphs ship as package data (engine/data/), made by scripts/make_doctor_graphs.py on the
# training side: doctor on a device needs neither ModelOpt nor torch nor onnx to have them.
TINY_FILES = {
    "fp32": "doctor_tiny.onnx",
    "fp16": "doctor_tiny.fp16.onnx",
    "int8": "doctor_tiny.int8.onnx",
    "calib_cache": "doctor_tiny.calib.cache",
}
TINY_DATA = Path(__file__).resolve().parent / "data"


def make_tiny_variants(out: Path, log=print) -> dict[str, Path]:
    """FP32, FP16 and INT8 (Q/DQ) ONNX of the tiny model, made with fertrt's own quantize code (training side:
    onnx and ModelOpt). Only scripts/make_doctor_graphs.py calls this; doctor uses the shipped copies."""
    from fertrt.export.quantize import Int8Options, quantize_fp16, quantize_int8

    fp32 = make_tiny_onnx(out / TINY_FILES["fp32"])
    calib = out / "calib.npy"
    np.save(calib, tiny_inputs(128, seed=2))
    variants = {"fp32": fp32}
    variants["fp16"] = quantize_fp16(fp32, out / TINY_FILES["fp16"], force=True, log=log)
    opts = Int8Options(
        calib=str(calib),
        calib_size=128,
        cache_dir=out / "calib",
        trt_cache=str(out / TINY_FILES["calib_cache"]),
        trt_version="8.6.1",
    )
    variants["int8"] = quantize_int8(fp32, out / TINY_FILES["int8"], opts, force=True, log=log)
    _make_reproducible(variants["int8"], out / TINY_FILES["calib_cache"])
    return variants


def _make_reproducible(int8_onnx: Path, calib_cache: Path) -> None:
    """Drop what differs between two identical runs: the calibration's wall time in the metadata, and the
    cache's line order (ModelOpt's dict order); the graph and the scales themselves are deterministic.
    Also IR version 8 (all that opset 17 needs): ModelOpt writes IR 10, which ONNX Runtime before 1.17
    (JetPack 5's builds) refuses."""
    import onnx

    from fertrt.export.metadata import get_metadata, set_metadata
    from fertrt.fileio import write_bytes_atomic, write_text_atomic

    model = onnx.load(str(int8_onnx))
    meta = get_metadata(model)
    if isinstance(meta.get("calibration"), dict):
        meta["calibration"]["seconds"] = None
    if model.ir_version > 8 and all(o.version <= 17 for o in model.opset_import if o.domain in ("", "ai.onnx")):
        model.ir_version = 8
    write_bytes_atomic(int8_onnx, set_metadata(model, meta).SerializeToString())
    header, *lines = [line for line in calib_cache.read_text().splitlines() if line.strip()]
    write_text_atomic(calib_cache, "\n".join([header] + sorted(lines)) + "\n")


def tiny_variants(out: Path, log=print) -> dict[str, Path]:
    """The shipped tiny graphs copied into `out` (the engines are built next to them), the calibration
    cache's header rewritten for the installed TensorRT (TensorRT ignores a cache made for another version)."""
    missing = [n for n in TINY_FILES.values() if not (TINY_DATA / n).is_file()]
    if missing:
        raise FertrtError(
            f"{TINY_DATA}: the doctor's test graphs {', '.join(missing)} are missing from this fertrt "
            "install (reinstall fertrt; in a checkout, run scripts/make_doctor_graphs.py)"
        )
    paths = {}
    for key, name in TINY_FILES.items():
        paths[key] = out / name
        shutil.copyfile(TINY_DATA / name, paths[key])
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return {k: v for k, v in paths.items() if k != "calib_cache"}
    from fertrt.export import trt_calib_cache as tcc

    if tcc.installed_trt_version():
        _, scales = tcc.parse_trt_calibration_cache(paths["calib_cache"].read_text())
        ranges = {name: scale * 127.0 for name, scale in scales.items()}
        tcc.write_trt_calibration_cache(ranges, paths["calib_cache"], version=tcc.installed_trt_version(), log=log)
    return {k: v for k, v in paths.items() if k != "calib_cache"}


# ---------------------------------------------------------------- engines
def engine_paths(caps, n_dla: int = 0) -> list[EnginePath]:
    """Every build path this TensorRT supports (feature-detected), FP32/FP16/INT8."""
    paths = [EnginePath("fp32", "fp32", "fp32", {"precision": "fp32"})]
    if caps.strongly_typed:
        paths += [
            EnginePath("fp16 strongly typed (FP16 graph)", "fp16", "fp16", {"precision": "fp16"}),
            EnginePath("int8 strongly typed (Q/DQ graph)", "int8", "int8", {"precision": "int8"}),
        ]
    if caps.fp16_flag:
        paths.append(
            EnginePath(
                "fp16 weakly typed (builder flag)",
                "fp32",
                "fp16",
                {"precision": "fp16", "weakly_typed": caps.strongly_typed},
            )
        )
    if caps.int8_flag:
        paths.append(
            EnginePath(
                "int8 weakly typed (Q/DQ graph + INT8 flag)",
                "int8",
                "int8",
                {"precision": "int8", "weakly_typed": caps.strongly_typed},
            )
        )
    if caps.calibrator and caps.int8_flag:
        paths.append(
            EnginePath(
                "int8 legacy calibrator (fertrt cache)",
                "fp32",
                "int8",
                {"precision": "int8", "legacy_int8": True, "calib_cache": "CALIB_CACHE"},
            )
        )
    if n_dla and caps.fp16_flag:
        paths.append(
            EnginePath(
                "fp16 on DLA 0 (+GPU fallback)",
                "fp32",
                "fp16",
                {
                    "precision": "fp16",
                    "weakly_typed": caps.strongly_typed,
                    "dla_core": 0,
                    "gpu_fallback": True,
                    "batch": (1, 1, 1),
                },
            )
        )  # DLA runs one fixed shape: MIN = OPT = MAX
    return paths


def agreement(reference: np.ndarray, logits: np.ndarray) -> dict:
    return {
        "agreement": float((reference.argmax(1) == logits.argmax(1)).mean()),
        "max_abs_diff": float(np.abs(reference.astype(np.float64) - logits).max()),
        "finite": bool(np.isfinite(logits).all()),
    }


def check_engine(
    engine_path, precision: str, reference: np.ndarray, x: np.ndarray, modes=("plain",), seconds: float = 1.0
) -> list[Check]:
    """Run a built engine in each runtime mode, compare with the reference logits, time batch 1 and 8."""
    from fertrt.benchmarks.harness import latency_stats, time_fn
    from fertrt.runtime.runners import open_runner

    checks = []
    for mode in modes:
        name = f"{Path(engine_path).name} [{mode}]"
        try:
            kwargs = {"cuda_graph": mode == "cuda-graph", "zero_copy": mode == "zero-copy"}
            with open_runner(engine_path, backend="tensorrt", **kwargs) as runner:
                step = min(8, getattr(runner, "max_batch", 8))  # a DLA engine runs batch 1 only
                logits = np.concatenate([runner.infer(x[i : i + step]) for i in range(0, len(x), step)])
                figures = agreement(reference, logits)
                for b in sorted({1, step}):
                    xb = x[:b]
                    figures[f"latency_ms_b{b}"] = latency_stats(
                        time_fn(lambda: runner.infer(xb), warmup=10, seconds=seconds)
                    )
                if mode == "cuda-graph" and not runner.use_graph:
                    checks.append(
                        Check(
                            name, "fail", "CUDA graph capture failed; the runner fell back to plain execution", figures
                        )
                    )
                    continue
            ok = figures["finite"] and figures["agreement"] >= TOLERANCES[precision]
            detail = (
                f"agreement {figures['agreement']:.3f} (needs >= {TOLERANCES[precision]}), max |diff| {figures['max_abs_diff']:.2e}, "
                f"p50 {figures['latency_ms_b1']['p50']:.3f} ms (batch 1), {figures[f'latency_ms_b{step}']['p50']:.3f} ms (batch {step})"
            )
            checks.append(Check(name, "pass" if ok else "fail", detail, figures))
        except Exception as exc:  # noqa: BLE001 - every failure is reported per check, the doctor goes on
            checks.append(Check(name, "fail", _error(exc)))
    return checks


def dla_check(on_dla) -> Check:
    """With GPU fallback a DLA build succeeds even when every layer went to the GPU: pass only if some ran on DLA."""
    if on_dla:
        return Check("DLA", "pass", f"{on_dla} layers on DLA core 0")
    why = "the engine inspector reported no layer details" if on_dla is None else "every layer fell back to the GPU"
    return Check("DLA", "fail", f"no layer ran on DLA ({why})")


def _error(exc) -> str:
    if isinstance(exc, FertrtError):
        return str(exc)
    # the three-argument form: Python 3.8 and 3.9 have no one-argument format_exception
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return f"{exc.__class__.__name__}: {exc}\n" + "".join(lines[-3:])


def engine_checks(out: Path, variants: dict, log=print, seconds: float = 1.0) -> list[Check]:
    """Build and check every engine path; requires TensorRT and a CUDA device."""
    import tensorrt as trt

    from fertrt.runtime.runners import OrtRunner

    from .build import build, dla_core_count
    from .compat import capabilities_of
    from .plan import BuildOptions, dla_unavailable

    caps = capabilities_of(trt)

    n_dla = dla_core_count(trt)
    no_dla = dla_unavailable(caps.version, platform.system(), platform.machine()) if n_dla else None
    gpu = _gpu()
    x = tiny_inputs()
    with OrtRunner(variants["fp32"]) as ort:
        reference = ort.infer(x)
    from fertrt.runtime.trt_backend import cuda_api

    cuda_python = cuda_api().name == "cuda-python"  # the binding in use (cuda-python is preferred when installed)
    modes = ["plain"] + (["cuda-graph"] if cuda_python else []) + (["zero-copy"] if gpu.get("integrated") else [])
    checks = []
    if not cuda_python:
        checks.append(Check("cuda graphs", "n/a", "needs cuda-python (pip install cuda-python); pycuda cannot capture"))
    if not gpu.get("integrated"):
        checks.append(
            Check("zero-copy", "n/a", "a discrete GPU: mapped host memory is only used on integrated GPUs (Jetson)")
        )
    if n_dla == 0 or no_dla:
        checks.append(Check("DLA", "n/a", no_dla or "this device has no DLA cores"))
        n_dla = 0
    if not caps.calibrator:
        checks.append(
            Check(
                "int8 legacy calibrator",
                "n/a",
                f"TensorRT {caps.version} has no implicit INT8 calibrator (removed in 11)",
            )
        )
    for i, path in enumerate(engine_paths(caps, n_dla)):
        opts = dict(path.options)
        if opts.get("calib_cache") == "CALIB_CACHE":
            opts["calib_cache"] = str(out / TINY_FILES["calib_cache"])
        engine = out / f"engine{i}_{path.source}_{path.precision}.engine"
        t0 = time.perf_counter()
        try:
            side = build(
                variants[path.source],
                engine,
                BuildOptions(**{"batch": (1, 8, 32), "timing_cache": str(out / "timing.cache"), **opts}),
                use_cache=False,
                log=lambda *a: None,
            )
        except Exception as exc:  # noqa: BLE001
            checks.append(Check(f"build {path.label}", "fail", _error(exc)))
            continue
        checks.append(Check(f"build {path.label}", "pass", f"{engine.name} in {time.perf_counter() - t0:.1f}s"))
        if opts.get("dla_core") is not None:
            checks.append(dla_check(side.get("dla_layers")))
        checks += check_engine(engine, path.precision, reference, x, modes, seconds=seconds)
    return checks


def _gpu() -> dict:
    from .device import gpu_info

    return gpu_info()


# ---------------------------------------------------------------- the command
def run_doctor(out: Path, log=print, seconds: float = 1.0) -> dict:
    from .device import environment

    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    checks = environment_checks(env)
    variants = None
    tiny = "tiny model: FP32, FP16 and INT8 (Q/DQ) ONNX"
    try:
        variants = tiny_variants(out, log=lambda *a: None)
        checks.append(Check(tiny, "pass", ", ".join(p.name for p in variants.values())))
    except Exception as exc:  # noqa: BLE001
        checks.append(Check(tiny, "fail", _error(exc)))
    if variants and env["onnxruntime"]:
        from fertrt.runtime.runners import OrtRunner

        try:
            x = tiny_inputs()
            with OrtRunner(variants["fp32"]) as ref:
                reference = ref.infer(x)
            for key in ("fp16", "int8"):
                with OrtRunner(variants[key]) as r:
                    fig = agreement(reference, r.infer(x))
                status = "pass" if fig["finite"] and fig["agreement"] >= TOLERANCES[key] else "fail"
                checks.append(
                    Check(
                        f"ONNX Runtime CPU: {key} graph vs fp32",
                        status,
                        f"agreement {fig['agreement']:.3f} (needs >= {TOLERANCES[key]}), max |diff| {fig['max_abs_diff']:.2e}",
                        fig,
                    )
                )
        except Exception as exc:  # noqa: BLE001
            checks.append(Check("ONNX Runtime CPU reference", "fail", _error(exc)))
    trt_ok = any(c.name == "tensorrt" and c.status == "pass" for c in checks) and any(
        c.name == "cuda" and c.status == "pass" for c in checks
    )
    if trt_ok and variants:
        checks += engine_checks(out, variants, log=log, seconds=seconds)
    else:
        why = (
            "TensorRT and a CUDA device are needed (see the tensorrt/cuda lines)"
            if not trt_ok
            else "the tiny model could not be made"
        )
        checks.append(Check("TensorRT engines (build, run, compare, time)", "n/a", why))
    failed = [c for c in checks if c.status == "fail"]
    report = {
        "format": "fertrt-doctor-1",
        "environment": env,
        "checks": [asdict(c) for c in checks],
        "passed": sum(c.status == "pass" for c in checks),
        "failed": len(failed),
        "not_applicable": sum(c.status == "n/a" for c in checks),
    }
    return report


def report_markdown(report: dict) -> str:
    from fertrt.text import safe

    env = report["environment"]
    lines = ["# fertrt doctor", "", "## Environment", ""]
    for k, v in env.items():
        lines.append(f"- {k}: {safe(v if not isinstance(v, (dict, list)) else json.dumps(v))}")
    lines += ["", "## Checks", "", "| check | result | detail |", "|---|---|---|"]
    for c in report["checks"]:
        detail = safe(c["detail"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {safe(c['name'])} | {c['status']} | {detail} |")
    lines += ["", f"{report['passed']} passed, {report['failed']} failed, {report['not_applicable']} not applicable."]
    return "\n".join(lines) + "\n"


def cmd_doctor(args):
    from fertrt.fileio import write_json_atomic, write_text_atomic
    from fertrt.text import safe

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise FertrtError(f"-o {out}: exists and is not a folder")
    if not out.parent.is_dir():
        raise FertrtError(f"-o {out}: the parent folder {out.parent} does not exist")
    if (out / "doctor.json").exists() and not args.force:
        raise FertrtError(f"{out / 'doctor.json'}: exists (pass --force to replace the doctor's report)")
    from fertrt.fileio import check_folder_outputs, make_output_dir

    make_output_dir(out, "folder for the doctor's report")  # a read-only or full place: exit 2 naming it
    check_folder_outputs(
        out,
        (
            "doctor.json",
            "doctor.md",
            "doctor_tiny.onnx",
            "doctor_tiny.fp16.onnx",
            "doctor_tiny.int8.onnx",
            "doctor_tiny.calib.cache",
        ),
        overwrite=args.force,
    )
    if args.seconds <= 0:
        raise FertrtError(f"--seconds {args.seconds}: expected a positive number")
    report = run_doctor(out, seconds=args.seconds)
    write_json_atomic(out / "doctor.json", report)
    write_text_atomic(out / "doctor.md", report_markdown(report))
    for c in report["checks"]:
        print(f"{c['status']:>4}  {safe(c['name'])}: {safe(c['detail']).splitlines()[0] if c['detail'] else ''}")
    print(
        f"{report['passed']} passed, {report['failed']} failed, {report['not_applicable']} not applicable; "
        f"wrote {out / 'doctor.md'} and {out / 'doctor.json'}"
    )
    return 1 if report["failed"] else 0
