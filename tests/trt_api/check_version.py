"""Drive fertrt's TensorRT code over the REAL Python bindings of one TensorRT version (API checks only).

Run by tests/test_trt_api.py in a subprocess whose LD_LIBRARY_PATH holds the stub libraries and whose
sys.path holds the unpacked bindings wheel:  python check_version.py OUT.json
Writes {"version", "capabilities", "names": {name: present}, "plans": n, "failures": [...], "checks": {...}}.
Nothing here builds, runs or times an engine: the stand-ins (standins.py) only answer API calls.
"""
from __future__ import annotations

import itertools
import json
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import standins  # noqa: E402
from standins import Env, Scenario  # noqa: E402

import tensorrt_bindings as real_trt  # noqa: E402  (found through sys.path / LD_LIBRARY_PATH set by the test)

from fertrt.engine import builder as builder_mod  # noqa: E402
from fertrt.engine.compat import capabilities_of, require_supported  # noqa: E402
from fertrt.engine.plan import BuildOptions, GraphInfo, make_plan  # noqa: E402
from fertrt.errors import FertrtError  # noqa: E402
from fertrt.runtime import trt_backend  # noqa: E402

# every module-level TensorRT name fertrt's code or capability detection touches (class members are
# collected from the stand-ins' journals and added to the table as they are used)
MODULE_NAMES = [
    "Logger", "Logger.WARNING", "Logger.VERBOSE", "Logger.ERROR", "Builder", "Runtime", "OnnxParser", "IBuilderConfig", "ICudaEngine",
    "IExecutionContext", "ITimingCache", "IInt8EntropyCalibrator2", "IInt8Calibrator", "EngineInspector", "IEngineInspector",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.GPU_FALLBACK", "BuilderFlag.VERSION_COMPATIBLE",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "MemoryPoolType.WORKSPACE", "ProfilingVerbosity.DETAILED", "DeviceType.DLA",
    "HardwareCompatibilityLevel", "HardwareCompatibilityLevel.NONE", "HardwareCompatibilityLevel.AMPERE_PLUS",
    "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY", "TensorIOMode.INPUT", "LayerInformationFormat.JSON", "DataType.FLOAT",
    "nptype", "Dims",
    # capability detection (engine/compat.py) on classes
    "IBuilderConfig.int8_calibrator", "IBuilderConfig.builder_optimization_level", "IBuilderConfig.hardware_compatibility_level",
    "IBuilderConfig.create_timing_cache", "IBuilderConfig.set_memory_pool_limit", "IBuilderConfig.set_calibration_profile",
    "ICudaEngine.create_engine_inspector", "ICudaEngine.num_io_tensors", "IExecutionContext.execute_async_v3",
    "IExecutionContext.set_input_shape", "IExecutionContext.set_tensor_address", "Runtime.engine_host_code_allowed",
    "ITimingCache.combine", "EngineInspector.execution_context",
]

SHAPE = ("batch", 3, 32, 32)
PREPROCESS = {"input_size": [32, 32], "channels": 3, "mean": [0.5] * 3, "std": [0.5] * 3, "color_order": "RGB", "layout": "NCHW"}
CLASSES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


def present(module, dotted: str) -> bool:
    obj = module
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


class Driver:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.used: set[str] = set()
        self.failures: list[str] = []
        self.images = {}

    def env(self, **scenario):
        env = Env(real_trt, Scenario(**scenario), integrated=scenario.get("integrated", False))
        sys.modules["tensorrt"] = env.module
        trt_backend._CUDA = env.cuda
        return env

    def calib_images(self, n):
        if n not in self.images:
            self.images[n] = np.zeros((n,) + SHAPE[1:], np.float32)
        return self.images[n]

    def build(self, env, opts: BuildOptions, plan, messages):
        cal = self.calib_images(plan.calibrator["size"]) if plan.calibrator and plan.calibrator.get("data") else None
        data, facts = builder_mod.build_engine(self.tmp / "model.onnx", plan, cal, log=messages.append, cuda=env.cuda)
        return data, facts

    def write_engine(self, env, data, opts: BuildOptions, name="m.engine") -> Path:
        path = self.tmp / name
        path.write_bytes(data)
        side = {"format": "fertrt-engine-1", "tensorrt_version": real_trt.__version__, "gpu": env.cuda.device_info(), "jetson": None,
                "class_names": CLASSES, "preprocess": PREPROCESS, "precision": {"requested": opts.precision}, "profile": None,
                "build_options": {"version_compatible": opts.version_compatible, "hardware_compat": opts.hardware_compat},
                "layers": None, "io": {}, "explain_outputs": []}
        Path(str(path) + ".json").write_text(json.dumps(side))
        return path

    def run(self, env, path, batches, cuda_graph, timed=True):
        with trt_backend.TrtRunner(path, cuda_graph=cuda_graph) as runner:
            for n in batches:
                out = runner.infer_outputs(np.zeros((n,) + SHAPE[1:], np.float32))
                if out["logits"].shape != (n, 7):
                    raise AssertionError(f"logits shape {out['logits'].shape} for batch {n}")
            if timed:
                runner.infer_timed(np.zeros((batches[0],) + SHAPE[1:], np.float32))
            return runner.use_graph

    @staticmethod
    def run_timed_only(path, n):
        with trt_backend.TrtRunner(path) as runner:
            runner.infer_timed(np.zeros((n,) + SHAPE[1:], np.float32))

    @staticmethod
    def plan(opts: BuildOptions, graph_precision: str, caps, dla_cores=0):
        """make_plan as commands.build calls it; None when it refuses (with a FertrtError: a clear message)."""
        graph = GraphInfo("input", SHAPE, graph_precision, "0" * 64)
        try:
            plan = make_plan(opts, caps, graph, dla_cores)
            if plan.prequantize:  # commands.build quantizes first and plans again on the new graph
                plan = make_plan(opts, caps, GraphInfo("input", SHAPE, plan.prequantize, "1" * 64), dla_cores)
        except FertrtError:
            return None
        return plan

    def drive(self, label, opts: BuildOptions, plan, dla_cores=0):
        """One plan path end to end: build, inspect, run plain and with CUDA graphs."""
        env = self.env(dla_cores=dla_cores)
        messages = []
        try:
            data, facts = self.build(env, opts, plan, messages)
            layers = builder_mod.inspect_layers(data, version_compatible=opts.version_compatible)
            if layers is not None and any("N/A" in str(l.get("precision")) for l in layers):
                raise AssertionError(f"layer precisions unknown: {layers[0]}")
            path = self.write_engine(env, data, opts)
            mn, op, mx = plan.profile["input"]["min"][0], plan.profile["input"]["opt"][0], plan.profile["input"]["max"][0]
            self.run(env, path, [op, mx, op], cuda_graph=False)
            kept = self.run(env, path, [op, op, mx, mn, op], cuda_graph=True)
            if not kept:
                raise AssertionError("the CUDA graph runner fell back to plain execution")
        except FertrtError as exc:
            self.failures.append(f"{label}: FertrtError after make_plan accepted the plan: {exc}")
        except Exception as exc:  # noqa: BLE001 - every other exception is an API mismatch or a defect
            self.failures.append(f"{label}: {exc.__class__.__name__}: {exc}\n{traceback.format_exc(limit=4)}")
        for v in env.journal.violations:
            self.failures.append(f"{label}: {v}")
        self.used |= env.journal.used


def plan_matrix(caps):
    """Every make_plan combination: precision x graph x weak/strong x legacy INT8 x calibration x options."""
    extras = [
        ("plain", {}),
        ("workspace+opt-level+timing-cache", {"workspace_mib": 256, "builder_opt_level": 5, "timing_cache": "TC"}),
        ("dla0+gpu-fallback", {"dla_core": 0, "gpu_fallback": True}),
        ("dla1", {"dla_core": 1}),
        ("version-compatible", {"version_compatible": True}),
        ("hw-none", {"hardware_compat": "none"}),
        ("hw-ampere+", {"hardware_compat": "ampere+"}),
        ("hw-same-cc", {"hardware_compat": "same-cc"}),
        ("vc+ampere+", {"version_compatible": True, "hardware_compat": "ampere+"}),
        ("batch-1,32,64", {"batch": (1, 32, 64)}),
    ]
    calibs = [("no-calib", {}), ("calib-data", {"calib_data": "synth", "calib_size": 64}), ("calib-cache", {"calib_cache": "CACHE"}),
              ("calib-data+cache", {"calib_data": "synth", "calib_size": 64, "calib_cache": "CACHE"})]
    for precision, graph, weak, legacy, (cname, cal), (ename, extra) in itertools.product(
            ("fp32", "fp16", "int8", "best"), ("fp32", "fp16", "int8"), (False, True), (False, True), calibs, extras):
        yield f"{precision}/{graph}-graph/{'weak' if weak else 'strong'}/{'legacy' if legacy else 'qdq'}/{cname}/{ename}", \
            dict(precision=precision, weakly_typed=weak, legacy_int8=legacy, **cal, **extra), graph


def main(out_path):
    tmp = Path(tempfile.mkdtemp(prefix="fertrt-trt-api-"))
    (tmp / "model.onnx").write_bytes(b"API check: the stand-in parser never reads this")
    driver = Driver(tmp)
    caps = capabilities_of(real_trt)
    checks = {}
    plans = {}
    for label, kw, graph in plan_matrix(caps):
        if kw.get("timing_cache"):
            kw["timing_cache"] = str(tmp / "shared.timing")  # later builds merge into it
        if kw.get("calib_cache"):
            kw["calib_cache"] = str(tmp / ("existing.calib.cache" if not kw.get("calib_data") else "written.calib.cache"))
            Path(tmp / "written.calib.cache").unlink(missing_ok=True)
        opts = BuildOptions(**kw)
        if opts.calib_cache and not opts.calib_data:  # validate() requires an existing cache without --calib-data
            from fertrt.export.trt_calib_cache import write_trt_calibration_cache

            write_trt_calibration_cache({"input": 1.0}, opts.calib_cache, real_trt.__version__, log=lambda *a: None)
        dla = 2 if opts.dla_core is not None else 0
        try:
            plan = driver.plan(opts, graph, caps, dla)
        except Exception as exc:  # noqa: BLE001 - make_plan may only refuse with a FertrtError
            driver.failures.append(f"{label}: make_plan raised {exc.__class__.__name__}: {exc}")
            continue
        if plan is None:
            continue
        key = json.dumps({k: v for k, v in plan.to_dict().items() if k != "notes"}, sort_keys=True)
        if key not in plans:  # the same plan drives the same calls: each distinct one once
            plans[key] = label
            driver.drive(label, opts, plan, dla)

    # ---- named checks, one per defect (see tests/test_trt_api.py)
    def check(name, fn):
        try:
            checks[name] = {"ok": True, "detail": fn()}
        except Exception as exc:  # noqa: BLE001
            checks[name] = {"ok": False, "detail": f"{exc.__class__.__name__}: {exc}"}

    graph32 = GraphInfo("input", SHAPE, "fp32", "0" * 64)

    def same_cc():
        try:
            plan = make_plan(BuildOptions(hardware_compat="same-cc"), caps, graph32)
        except FertrtError as exc:
            assert "SAME_COMPUTE_CAPABILITY" in str(exc) and "10.9" in str(exc), exc
            assert not hasattr(real_trt.HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY")
            return f"refused: {exc}"
        env = driver.env()
        builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)
        return "built with HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"

    def version_compatible():
        if not caps.version_compatible:
            return "no BuilderFlag.VERSION_COMPATIBLE"
        opts = BuildOptions(version_compatible=True)
        plan = make_plan(opts, caps, graph32)
        env = driver.env()
        data, _ = builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)
        path = driver.write_engine(env, data, opts)
        driver.run(env, path, [8], cuda_graph=False)
        events = env.journal.names()
        assert "set Runtime.engine_host_code_allowed" in events, events
        assert events.index("set Runtime.engine_host_code_allowed") < events.index("Runtime.deserialize_cuda_engine")
        assert not env.journal.violations, env.journal.violations
        # a plain engine keeps host code off
        env = driver.env()
        plain_opts = BuildOptions()
        data, _ = builder_mod.build_engine(tmp / "model.onnx", make_plan(plain_opts, caps, graph32), log=lambda *a: None, cuda=env.cuda)
        driver.run(env, driver.write_engine(env, data, plain_opts), [8], cuda_graph=False)
        assert "set Runtime.engine_host_code_allowed" not in env.journal.names()
        return "engine_host_code_allowed set before deserialize_cuda_engine"

    def calibration_batch():
        if not (caps.calibrator and caps.int8_flag):
            return "no calibrator in this version"
        opts = BuildOptions(precision="int8", legacy_int8=True, batch=(1, 32, 64), calib_data="synth", calib_size=64,
                            calib_cache=str(tmp / "cal.cache"))
        plan = make_plan(opts, caps, graph32)
        assert plan.calibrator["batch"] == 32, plan.calibrator
        env = driver.env()
        builder_mod.build_engine(tmp / "model.onnx", plan, driver.calib_images(64), log=lambda *a: None, cuda=env.cuda)
        assert not env.journal.violations, env.journal.violations
        batches = [e for e in env.journal.events if e[0] == "calibrator.batches"][0][1][0]
        assert batches == 2, batches
        if caps.calibration_profile:
            assert "IBuilderConfig.set_calibration_profile" in env.journal.names()
        return f"calibrator batch 32 (OPT), {batches} batches of 64 images, set_calibration_profile={caps.calibration_profile}"

    def return_values():
        results = []
        opts = BuildOptions(timing_cache=str(tmp / "shared.timing"))
        plan = make_plan(opts, caps, graph32)
        Path(opts.timing_cache).write_bytes(standins.API_CHECK_MARK + b"from another device")
        env = driver.env(refuse_timing_cache=True)
        messages = []
        _, facts = builder_mod.build_engine(tmp / "model.onnx", plan, log=messages.append, cuda=env.cuda)
        assert facts["timing_cache_loaded"] is False and any("refused it" in m for m in messages), (facts, messages)
        assert Path(opts.timing_cache).read_bytes().endswith(b"from another device"), "a refused cache was overwritten"
        results.append("refused timing cache reported, not recorded as loaded, file kept")
        env = driver.env(no_timing_cache=True)
        messages = []
        Path(opts.timing_cache).unlink()
        builder_mod.build_engine(tmp / "model.onnx", plan, log=messages.append, cuda=env.cuda)
        assert any("no timing cache" in m for m in messages), messages
        results.append("get_timing_cache() None handled")
        env = driver.env()
        builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)  # first build writes
        env = driver.env()
        _, facts = builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)  # second merges
        assert facts["timing_cache_loaded"] and "ITimingCache.combine" in env.journal.names()
        assert b"+" in Path(opts.timing_cache).read_bytes()
        results.append("existing timing cache merged (ITimingCache.combine) under a lock")
        for scenario, expect in (({"execute_fails": True}, "execute_async_v3"), ({"shape_refused": True}, "input shape")):
            env = driver.env()
            data, _ = builder_mod.build_engine(tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda)
            path = driver.write_engine(env, data, BuildOptions())
            for graph in (False, True, "timed"):  # plain, CUDA graph and the timed path each check the return
                env = driver.env(**scenario)
                try:
                    if graph == "timed":
                        driver.run_timed_only(path, 8)
                    else:
                        driver.run(env, path, [8], cuda_graph=graph, timed=False)
                except FertrtError as exc:
                    assert expect in str(exc), exc
                    message = str(exc)
                else:
                    raise AssertionError(f"{scenario} ({'cuda graph' if graph is True else graph or 'plain'}): no error")
            results.append(f"{expect} False -> {message}")
        return "; ".join(results)

    def cuda_graph_order():
        env = driver.env()
        opts = BuildOptions(batch=(1, 8, 32))
        data, _ = builder_mod.build_engine(tmp / "model.onnx", make_plan(opts, caps, graph32), log=lambda *a: None, cuda=env.cuda)
        path = driver.write_engine(env, data, opts)
        env.journal.events.clear()
        kept = driver.run(env, path, [8, 8, 4], cuda_graph=True)
        ev = [e[0] if e[0] != "enqueue" else ("enqueue-captured" if e[2]["captured"] else "enqueue") for e in env.journal.events
              if e[0] in ("enqueue", "sync", "capture_begin", "capture_end", "graph_launch", "graph_free")]
        assert kept and not env.journal.violations, env.journal.violations
        first = ev.index("capture_begin")
        assert ev[first - 2:first] == ["enqueue", "sync"], ev
        assert ev[first + 1] == "enqueue-captured" and ev[first + 2] == "capture_end", ev
        assert "graph_launch" in ev and ev.count("graph_free") == 2 and ev.count("capture_begin") == 2, ev
        # a capture that fails falls back to plain execution with a message
        env = driver.env()

        def broken_capture(s, fn):
            raise FertrtError("capture not supported here")

        env.cuda.graph_capture = broken_capture
        kept = driver.run(env, path, [8, 8], cuda_graph=True)
        assert not kept
        return " -> ".join(ev)

    def inspector_precisions():
        env = driver.env()
        data, _ = builder_mod.build_engine(tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda)
        layers = builder_mod.inspect_layers(data)
        assert layers and all("N/A" not in str(l["precision"]) for l in layers), layers
        if caps.inspector_context:
            assert "set EngineInspector.execution_context" in env.journal.names() or \
                "set IEngineInspector.execution_context" in env.journal.names()
        return f"precision {layers[0]['precision']!r} at the OPT shape"

    def too_old():
        import types

        driver.env()
        old = types.ModuleType("tensorrt")
        old.__dict__.update(vars(sys.modules["tensorrt"]))
        old.__version__ = "8.4.3"
        old.IExecutionContext = type("IExecutionContext", (), {"execute_async_v2": None})  # 8.4's context: no tensor API
        sys.modules["tensorrt"] = old
        try:
            require_supported(capabilities_of(old))
        except FertrtError as exc:
            assert "8.5" in str(exc) and "8.4.3" in str(exc)
        else:
            raise AssertionError("require_supported accepted 8.4")
        env = driver.env()
        data, _ = builder_mod.build_engine(tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda)
        path = driver.write_engine(env, data, BuildOptions())
        sys.modules["tensorrt"] = old
        try:
            trt_backend.TrtRunner(path)
        except FertrtError as exc:
            assert "needs TensorRT 8.5 or newer" in str(exc), exc
            return str(exc)
        raise AssertionError("TrtRunner opened an engine on a TensorRT without the tensor API")

    check("defect1_same_cc", same_cc)
    check("defect2_version_compatible_load", version_compatible)
    check("defect3_calibration_opt_batch", calibration_batch)
    check("defect4_return_values", return_values)
    check("defect5_cuda_graph_order", cuda_graph_order)
    check("defect7_inspector_opt_shape", inspector_precisions)
    check("defect8_too_old", too_old)

    names = sorted(set(MODULE_NAMES) | driver.used)
    result = {"version": real_trt.__version__, "capabilities": caps.to_dict(), "plans": len(plans),
              "names": {n: present(real_trt, n) for n in names}, "used_members": sorted(driver.used),
              "failures": driver.failures, "checks": checks}
    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
