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
from fertrt.engine.plan import BuildOptions, BuildPlan, GraphInfo, make_plan  # noqa: E402
from fertrt.engine.sidecar import build_sidecar, compatibility_problems, read_sidecar  # noqa: E402
from fertrt.errors import FertrtError  # noqa: E402
from fertrt.runtime import trt_backend  # noqa: E402

# every module-level TensorRT name fertrt's code or capability detection touches (class members are
# collected from the stand-ins' journals and added to the table as they are used)
MODULE_NAMES = [
    "Logger",
    "Logger.WARNING",
    "Logger.VERBOSE",
    "Logger.ERROR",
    "Builder",
    "Runtime",
    "OnnxParser",
    "IBuilderConfig",
    "ICudaEngine",
    "IExecutionContext",
    "ITimingCache",
    "IInt8EntropyCalibrator2",
    "IInt8Calibrator",
    "EngineInspector",
    "IEngineInspector",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "BuilderFlag.FP16",
    "BuilderFlag.INT8",
    "BuilderFlag.GPU_FALLBACK",
    "BuilderFlag.VERSION_COMPATIBLE",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
    "MemoryPoolType.WORKSPACE",
    "ProfilingVerbosity.DETAILED",
    "DeviceType.DLA",
    "HardwareCompatibilityLevel",
    "HardwareCompatibilityLevel.NONE",
    "HardwareCompatibilityLevel.AMPERE_PLUS",
    "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY",
    "TensorIOMode.INPUT",
    "LayerInformationFormat.JSON",
    "DataType.FLOAT",
    "Dims",
    "init_libnvinfer_plugins",
    "Logger.min_severity",
    "OnnxParser.parse_from_file",
    "ParserError",
    "ParserError.node",
    "ParserError.node_name",
    "ParserError.node_operator",
    "ParserError.desc",
    "DataType.HALF",
    "DataType.INT8",
    "DataType.INT32",
    "DataType.INT64",
    "DataType.BOOL",
    "DataType.UINT8",
    # capability detection (engine/compat.py) on classes
    "IBuilderConfig.int8_calibrator",
    "IBuilderConfig.builder_optimization_level",
    "IBuilderConfig.hardware_compatibility_level",
    "IBuilderConfig.create_timing_cache",
    "IBuilderConfig.set_memory_pool_limit",
    "IBuilderConfig.set_calibration_profile",
    "ICudaEngine.create_engine_inspector",
    "ICudaEngine.num_io_tensors",
    "IExecutionContext.execute_async_v3",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.set_tensor_address",
    "Runtime.engine_host_code_allowed",
    "ITimingCache.combine",
    "EngineInspector.execution_context",
]

SHAPE = ("batch", 3, 32, 32)
HOST = ("Linux", "aarch64")  # plan as on a Jetson, where DLA exists (dla_unavailable decides per version)
GPU = {"name": "API-check stand-in (no GPU)", "compute_capability": "8.7", "integrated": False}
PREPROCESS = {
    "input_size": [32, 32],
    "channels": 3,
    "mean": [0.5] * 3,
    "std": [0.5] * 3,
    "color_order": "RGB",
    "layout": "NCHW",
}
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

        def nptype(*a):  # TensorRT 8.5's nptype uses np.bool (gone in numpy 1.24): fertrt must not call it
            raise AssertionError("trt.nptype called")

        env.module.nptype = nptype
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

    def write_engine(
        self, env, data, opts: BuildOptions, name="m.engine", plan=None, layers=None, version=None
    ) -> Path:
        """The engine and its sidecar as fertrt's build_sidecar writes it (read back through read_sidecar)."""
        path = self.tmp / name
        path.write_bytes(data)
        meta = {"class_names": CLASSES, "preprocess": PREPROCESS, "precision": "fp32", "model_name": "api-check"}
        side = build_sidecar(
            trt_version=version or real_trt.__version__,
            gpu=env.cuda.device_info(),
            jetson=None,
            onnx_path=self.tmp / "model.onnx",
            onnx_sha256="0" * 64,
            meta=meta,
            plan=plan or BuildPlan(strongly_typed=False),
            opts=opts,
            io={"input": {"name": "input", "shape": list(SHAPE)}, "outputs": ["logits"]},
            build={},
            layers=layers,
        )
        Path(str(path) + ".json").write_text(json.dumps(side))
        read_sidecar(path)  # what the runner will read: must pass fertrt's own sidecar checks
        return path

    def run(self, env, path, batches, cuda_graph, timed=True):
        with trt_backend.TrtRunner(path, cuda_graph=cuda_graph) as runner:
            for n in batches:
                out = runner.infer_outputs(np.zeros((n,) + SHAPE[1:], np.float32))
                if out["logits"].shape != (n, 7):
                    raise AssertionError(f"logits shape {out['logits'].shape} for batch {n}")
            if timed:
                runner.infer_timed(np.zeros((batches[0],) + SHAPE[1:], np.float32))
            kept = runner.use_graph
        leaks = {
            k: env.cuda.allocated[k] - env.cuda.freed[k]
            for k in env.cuda.allocated
            if env.cuda.allocated[k] != env.cuda.freed[k]
        }
        if leaks:
            raise AssertionError(f"CUDA resources not freed by close(): {leaks}")
        return kept

    @staticmethod
    def run_timed_only(path, n):
        with trt_backend.TrtRunner(path) as runner:
            runner.infer_timed(np.zeros((n,) + SHAPE[1:], np.float32))

    @staticmethod
    def plan(opts: BuildOptions, graph_precision: str, caps, dla_cores=0):
        """make_plan as engine.build.build calls it; None when it refuses (with a FertrtError: a clear message)."""
        graph = GraphInfo("input", SHAPE, graph_precision, "0" * 64)
        try:
            plan = make_plan(opts, caps, graph, dla_cores, gpu=GPU, host=HOST)
            if plan.prequantize:  # engine.build.build quantizes first and plans again on the new graph
                plan = make_plan(
                    opts, caps, GraphInfo("input", SHAPE, plan.prequantize, "1" * 64), dla_cores, gpu=GPU, host=HOST
                )
        except FertrtError:
            return None
        return plan

    def drive(self, label, opts: BuildOptions, plan, dla_cores=0):
        """One plan path end to end: build, inspect, run plain and with CUDA graphs."""
        env = self.env(dla_cores=dla_cores)
        messages = []
        try:
            data, facts = self.build(env, opts, plan, messages)
            layers = builder_mod.inspect_layers(data, version_compatible=opts.version_compatible, log=messages.append)
            if layers is not None and any(
                l.get("precision") is None or "N/A" in str(l.get("precision")) for l in layers
            ):
                raise AssertionError(f"layer precisions unknown: {layers[0]}")
            if plan.dla_core is not None and not builder_mod.dla_layer_count(layers):
                raise AssertionError(f"a DLA build with no layer reported on DLA: {layers}")
            path = self.write_engine(env, data, opts, plan=plan, layers=layers)
            mn, op, mx = (
                plan.profile["input"]["min"][0],
                plan.profile["input"]["opt"][0],
                plan.profile["input"]["max"][0],
            )
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
        ("dla0+gpu-fallback+batch1", {"dla_core": 0, "gpu_fallback": True, "batch": (1, 1, 1)}),
        ("dla1+batch4", {"dla_core": 1, "batch": (4, 4, 4)}),
        ("version-compatible", {"version_compatible": True}),
        ("hw-none", {"hardware_compat": "none"}),
        ("hw-ampere+", {"hardware_compat": "ampere+"}),
        ("hw-same-cc", {"hardware_compat": "same-cc"}),
        ("vc+ampere+", {"version_compatible": True, "hardware_compat": "ampere+"}),
        ("batch-1,32,64", {"batch": (1, 32, 64)}),
    ]
    calibs = [
        ("no-calib", {}),
        ("calib-data", {"calib_data": "synth", "calib_size": 64}),
        ("calib-cache", {"calib_cache": "CACHE"}),
        ("calib-data+cache", {"calib_data": "synth", "calib_size": 64, "calib_cache": "CACHE"}),
    ]
    for precision, graph, weak, legacy, (cname, cal), (ename, extra) in itertools.product(
        ("fp32", "fp16", "int8", "best"), ("fp32", "fp16", "int8"), (False, True), (False, True), calibs, extras
    ):
        yield (
            f"{precision}/{graph}-graph/{'weak' if weak else 'strong'}/{'legacy' if legacy else 'qdq'}/{cname}/{ename}",
            dict(precision=precision, weakly_typed=weak, legacy_int8=legacy, **cal, **extra),
            graph,
        )


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
            kw["calib_cache"] = str(
                tmp / ("existing.calib.cache" if not kw.get("calib_data") else "written.calib.cache")
            )
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
        data, _ = builder_mod.build_engine(
            tmp / "model.onnx", make_plan(plain_opts, caps, graph32), log=lambda *a: None, cuda=env.cuda
        )
        driver.run(env, driver.write_engine(env, data, plain_opts), [8], cuda_graph=False)
        assert "set Runtime.engine_host_code_allowed" not in env.journal.names()
        return "engine_host_code_allowed set before deserialize_cuda_engine"

    def calibration_batch():
        if not (caps.calibrator and caps.int8_flag):
            return "no calibrator in this version"
        opts = BuildOptions(
            precision="int8",
            legacy_int8=True,
            batch=(1, 32, 64),
            calib_data="synth",
            calib_size=64,
            calib_cache=str(tmp / "cal.cache"),
        )
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
        _, facts = builder_mod.build_engine(
            tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda
        )  # second merges
        assert facts["timing_cache_loaded"] and "ITimingCache.combine" in env.journal.names()
        assert b"+" in Path(opts.timing_cache).read_bytes()
        results.append("existing timing cache merged (ITimingCache.combine) under a lock")
        for scenario, expect in (
            ({"execute_fails": True}, "execute_async_v3"),
            ({"shape_refused": True}, "input shape"),
        ):
            env = driver.env()
            data, _ = builder_mod.build_engine(
                tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda
            )
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
                    raise AssertionError(
                        f"{scenario} ({'cuda graph' if graph is True else graph or 'plain'}): no error"
                    )
            results.append(f"{expect} False -> {message}")
        return "; ".join(results)

    def cuda_graph_order():
        env = driver.env()
        opts = BuildOptions(batch=(1, 8, 32))
        data, _ = builder_mod.build_engine(
            tmp / "model.onnx", make_plan(opts, caps, graph32), log=lambda *a: None, cuda=env.cuda
        )
        path = driver.write_engine(env, data, opts)
        env.journal.events.clear()
        kept = driver.run(env, path, [8, 8, 4], cuda_graph=True)
        ev = [
            e[0] if e[0] != "enqueue" else ("enqueue-captured" if e[2]["captured"] else "enqueue")
            for e in env.journal.events
            if e[0] in ("enqueue", "sync", "capture_begin", "capture_end", "graph_launch", "graph_free")
        ]
        assert kept and not env.journal.violations, env.journal.violations
        first = ev.index("capture_begin")
        assert ev[first - 2 : first] == ["enqueue", "sync"], ev
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
        data, _ = builder_mod.build_engine(
            tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda
        )
        layers = builder_mod.inspect_layers(data)
        assert layers and all("N/A" not in str(l["precision"]) for l in layers), layers
        if caps.inspector_context:
            assert (
                "set EngineInspector.execution_context" in env.journal.names()
                or "set IEngineInspector.execution_context" in env.journal.names()
            )
        return f"precision {layers[0]['precision']!r} at the OPT shape"

    def too_old():
        import types

        driver.env()
        old = types.ModuleType("tensorrt")
        old.__dict__.update(vars(sys.modules["tensorrt"]))
        old.__version__ = "8.4.3"
        old.IExecutionContext = type(
            "IExecutionContext", (), {"execute_async_v2": None}
        )  # 8.4's context: no tensor API
        sys.modules["tensorrt"] = old
        try:
            require_supported(capabilities_of(old))
        except FertrtError as exc:
            assert "8.5" in str(exc) and "8.4.3" in str(exc)
        else:
            raise AssertionError("require_supported accepted 8.4")
        env = driver.env()
        data, _ = builder_mod.build_engine(
            tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda
        )
        path = driver.write_engine(env, data, BuildOptions())
        sys.modules["tensorrt"] = old
        try:
            trt_backend.TrtRunner(path)
        except FertrtError as exc:
            assert "needs TensorRT 8.5 or newer" in str(exc), exc
            return str(exc)
        raise AssertionError("TrtRunner opened an engine on a TensorRT without the tensor API")

    # ---- issue 24: the second audit's defects and failure paths
    def expect_error(fn, *needles):
        try:
            fn()
        except FertrtError as exc:
            missing = [n for n in needles if n not in str(exc)]
            assert not missing, f"{missing} not in {exc}"
            return str(exc)
        raise AssertionError(f"no FertrtError (expected one naming {needles})")

    def plain_engine(env, opts=None):
        opts = opts or BuildOptions()
        plan = make_plan(opts, caps, graph32)
        data, _ = builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)
        return driver.write_engine(env, data, opts, plan=plan)

    def dla_rules():
        results = []
        fp16 = GraphInfo("input", SHAPE, "fp16", "2" * 64)
        weak_ok = caps.fp16_flag and not caps.strongly_typed
        reason = None
        from fertrt.engine.plan import dla_unavailable

        reason = dla_unavailable(caps.version, *HOST)
        if reason:
            msg = expect_error(
                lambda: make_plan(
                    BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps, fp16, 2, host=HOST
                ),
                "--dla-core 0",
            )
            return f"DLA refused on this version: {msg}"
        expect_error(
            lambda: make_plan(
                BuildOptions(batch=(1, 1, 1), dla_core=0, gpu_fallback=True), caps, graph32, 2, host=HOST
            ),
            "DLA runs FP16 and INT8 only",
        )
        expect_error(
            lambda: make_plan(BuildOptions(precision="fp16", dla_core=0), caps, fp16, 2, host=HOST), "MIN = OPT = MAX"
        )
        results.append("FP32 and dynamic profiles refused")
        expect_error(
            lambda: make_plan(BuildOptions(precision="fp16", batch=(1, 1, 1), dla_core=0), caps, fp16, 0, host=HOST),
            "no DLA",
        )
        opts = BuildOptions(
            precision="fp16",
            batch=(1, 1, 1),
            dla_core=0,
            gpu_fallback=True,
            weakly_typed=not weak_ok and caps.fp16_flag,
        )
        plan = make_plan(opts, caps, fp16, 2, host=HOST)
        env = driver.env(dla_cores=0)  # make_plan was told 2 cores, the device has none: the builder's own check
        expect_error(
            lambda: builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda),
            "no DLA cores",
        )
        results.append("no-DLA-cores branch refused in make_plan and in build_engine")
        for on_dla in (2, 0):
            env = driver.env(dla_cores=2, dla_layers=on_dla)
            data, _ = builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)
            counted = builder_mod.dla_layer_count(builder_mod.inspect_layers(data))
            assert counted == on_dla and not env.journal.violations, (counted, env.journal.violations)
        results.append("layers on DLA counted from the inspector (2, and 0 when all fell back)")
        return "; ".join(results)

    def parser_errors():
        has_name = hasattr(real_trt.ParserError, "node_name")
        env = driver.env(
            parse_errors=[(3, "conv_3", "Conv", "unsupported attribute"), (-1, "", "", "model-level error")]
        )
        msg = expect_error(
            lambda: builder_mod.build_engine(
                tmp / "model.onnx", make_plan(BuildOptions(), caps, graph32), log=lambda *a: None, cuda=env.cuda
            ),
            "ONNX parser failed",
            "node 3",
            "unsupported attribute",
            "model-level error",
        )
        assert ("conv_3" in msg and "Conv" in msg) == has_name, (has_name, msg)
        assert "OnnxParser.parse_from_file" in env.journal.names() and not env.journal.violations, (
            env.journal.violations
        )
        return f"node_name {'reported' if has_name else 'absent in this version'}: {msg!r}"

    def factories_none():
        results = []
        plan = make_plan(BuildOptions(timing_cache=str(tmp / "none.timing")), caps, graph32)
        for factory in (
            "Builder",
            "create_network",
            "create_builder_config",
            "create_optimization_profile",
            "create_timing_cache",
        ):
            env = driver.env(none_from=[factory])
            expect_error(
                lambda: builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda),
                "TensorRT",
            )
            results.append(factory)
        env = driver.env()
        path = plain_engine(env)
        for factory, needle in (
            ("Runtime", "could not create a Runtime"),
            ("create_execution_context", "execution context"),
        ):
            env = driver.env(none_from=[factory])
            expect_error(lambda: trt_backend.TrtRunner(path), needle)
            assert all(env.cuda.allocated[k] == env.cuda.freed[k] for k in env.cuda.allocated), env.cuda.allocated
            results.append(factory)
        env = driver.env(none_from=["create_execution_context"])
        notes = []
        layers = builder_mod.inspect_layers(path.read_bytes(), log=notes.append)
        assert layers and all(l["precision"] is None for l in layers) and any("precisions" in n for n in notes), (
            layers,
            notes,
        )
        env = driver.env(address_refused=True)
        expect_error(lambda: trt_backend.TrtRunner(path), "the address of tensor")
        env = driver.env(profile_invalid=True)
        expect_error(
            lambda: builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda),
            "optimization profile",
        )
        results.append("set_tensor_address False, add_optimization_profile -1")
        if caps.calibration_profile and caps.calibrator:
            cplan = make_plan(
                BuildOptions(precision="int8", legacy_int8=True, batch=(1, 8, 16), calib_data="synth", calib_size=16),
                caps,
                graph32,
            )
            env = driver.env(calib_profile_refused=True)
            expect_error(
                lambda: builder_mod.build_engine(
                    tmp / "model.onnx", cplan, driver.calib_images(16), log=lambda *a: None, cuda=env.cuda
                ),
                "calibration profile",
            )
            assert env.cuda.allocated["device"] == env.cuda.freed["device"], "calibrator buffer leaked"
            results.append("set_calibration_profile False")
        return "None/False handled: " + ", ".join(results)

    def capture_rules():
        env = driver.env()
        opts = BuildOptions(batch=(1, 8, 32))
        plan = make_plan(opts, caps, graph32)
        data, _ = builder_mod.build_engine(tmp / "model.onnx", plan, log=lambda *a: None, cuda=env.cuda)
        path = driver.write_engine(env, data, opts, plan=plan)
        kept = driver.run(env, path, [8, 8, 4, 4, 32, 1, 8], cuda_graph=True)
        assert kept and not env.journal.violations, env.journal.violations
        # the stand-ins flag what the runner must never do inside a capture (so the check above can fail)
        with trt_backend.TrtRunner(path, cuda_graph=True) as runner:
            runner.infer_outputs(np.zeros((8,) + SHAPE[1:], np.float32))
            env.cuda.graph_capture(
                runner.stream,
                lambda: (env.cuda.sync(runner.stream), runner.context.set_input_shape("input", (4,) + SHAPE[1:])),
            )
        flagged = [v for v in env.journal.violations if "inside a CUDA graph capture" in v]
        assert len(flagged) == 2, env.journal.violations
        return (
            "batch changes 8,8,4,4,32,1,8 re-captured cleanly; a sync and a shape change inside a capture are flagged"
        )

    def calibration_too_small():
        if not (caps.calibrator and caps.int8_flag):
            return "no calibrator in this version"
        plan = make_plan(
            BuildOptions(precision="int8", legacy_int8=True, batch=(1, 32, 64), calib_data="synth", calib_size=64),
            caps,
            graph32,
        )
        env = driver.env()
        msg = expect_error(
            lambda: builder_mod.build_engine(
                tmp / "model.onnx", plan, driver.calib_images(20), log=lambda *a: None, cuda=env.cuda
            ),
            "20 images",
            "batch of 32",
        )
        assert "Builder()" not in env.journal.names(), "refused only after TensorRT work began"
        return msg

    def resources():
        env = driver.env()
        path = plain_engine(env, BuildOptions(batch=(1, 8, 32)))
        for graph in (False, True):
            env = driver.env()
            runner = trt_backend.TrtRunner(path, cuda_graph=graph)
            with runner:
                for n in (8, 8, 4):
                    runner.infer_outputs(np.zeros((n,) + SHAPE[1:], np.float32))
                for _ in range(3):
                    runner.infer_timed(np.zeros((8,) + SHAPE[1:], np.float32))
            runner.close()  # a second close is harmless
            assert env.cuda.allocated == env.cuda.freed, (env.cuda.allocated, env.cuda.freed)
            assert env.cuda.allocated["event"] == 4, env.cuda.allocated
            assert not env.journal.violations, env.journal.violations
            expect_error(lambda: runner.infer(np.zeros((1,) + SHAPE[1:], np.float32)), "closed")
        return f"allocated == freed {env.cuda.freed}; 4 events for 3 timed calls; closed runner refuses work"

    def logger_and_plugins():
        env = driver.env()
        path = plain_engine(env)
        builder_mod.inspect_layers(path.read_bytes())
        driver.run(env, path, [8], cuda_graph=False)
        assert env.loggers and all(l is env.loggers[0] for l in env.loggers), (
            f"{len(set(map(id, env.loggers)))} loggers"
        )
        names = env.journal.names()
        assert names.count("init_libnvinfer_plugins") == 1 and not env.journal.violations, (
            names[:5],
            env.journal.violations,
        )
        return f"one Logger for {len(env.loggers)} uses; plugins initialised once, before parse and deserialize"

    def dtype_map():
        from fertrt.runtime.trt_backend import numpy_dtype

        mapped, refused = [], []
        for name in sorted(real_trt.DataType.__members__):
            try:
                mapped.append(f"{name}->{numpy_dtype(getattr(real_trt.DataType, name))}")
            except FertrtError:
                refused.append(name)
        assert {"FLOAT", "HALF", "INT8", "INT32", "BOOL"} <= {m.split("->")[0] for m in mapped}, mapped
        return f"{', '.join(mapped)}; refused: {', '.join(refused) or 'none'}"

    def sidecar_pairs():
        env = driver.env()
        opts = BuildOptions(version_compatible=True)
        results = []
        for built in ("8.6.1", "10.3.0", "11.0.0"):
            path = driver.write_engine(env, b"x", opts, name=f"vc-{built}.engine", version=built)
            problems = compatibility_problems(read_sidecar(path), real_trt.__version__, GPU)
            results.append(f"{built}: {'loads' if not problems else problems[0][:60]}")
        return "; ".join(results)

    def ampere_plus():
        if "AMPERE_PLUS" not in caps.hardware_compat_levels:
            return "no AMPERE_PLUS"
        opts = BuildOptions(hardware_compat="ampere+")
        expect_error(lambda: make_plan(opts, caps, graph32, gpu={"name": "Xavier", "compute_capability": "7.2"}), "8.0")
        env = driver.env()
        builder_mod.build_engine(
            tmp / "model.onnx", make_plan(opts, caps, graph32, gpu=GPU), log=lambda *a: None, cuda=env.cuda
        )
        return "refused on cc 7.2, built on cc 8.7"

    def threads():
        import threading

        env = driver.env()
        path = plain_engine(env, BuildOptions(batch=(1, 8, 32)))
        env = driver.env()
        runners = [
            trt_backend.TrtRunner(path, cuda_graph=graph) for graph in (False, True)
        ]  # as bench --streams opens them
        errors = []

        def work(runner):
            try:
                for n in (8, 8, 4):
                    runner.infer_outputs(np.zeros((n,) + SHAPE[1:], np.float32))
                runner.infer_timed(np.zeros((8,) + SHAPE[1:], np.float32))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(r,)) for r in runners]
        [t.start() for t in workers]
        [t.join() for t in workers]
        for r in runners:
            r.close()
        assert not errors and not env.journal.violations, (errors, env.journal.violations)
        pushes = env.cuda.activations
        # the rule is enforced: an unguarded call from a worker thread is flagged
        bare = threading.Thread(target=lambda: env.cuda.htod_async(None, np.zeros(1, np.float32), None))
        bare.start()
        bare.join()
        assert any("not current" in v for v in env.journal.violations), env.journal.violations
        return f"2 runners used from 2 worker threads: context pushed {pushes} times, no call without it"

    check("issue24_threads", threads)
    check("issue24_dla_rules", dla_rules)
    check("issue24_parser_errors", parser_errors)
    check("issue24_factories_none", factories_none)
    check("issue24_capture_rules", capture_rules)
    check("issue24_calibration_too_small", calibration_too_small)
    check("issue24_resources", resources)
    check("issue24_logger_plugins", logger_and_plugins)
    check("issue24_dtype_map", dtype_map)
    check("issue24_sidecar_pairs", sidecar_pairs)
    check("issue24_ampere_plus", ampere_plus)
    check("defect1_same_cc", same_cc)
    check("defect2_version_compatible_load", version_compatible)
    check("defect3_calibration_opt_batch", calibration_batch)
    check("defect4_return_values", return_values)
    check("defect5_cuda_graph_order", cuda_graph_order)
    check("defect7_inspector_opt_shape", inspector_precisions)
    check("defect8_too_old", too_old)

    names = sorted(set(MODULE_NAMES) | driver.used)
    result = {
        "version": real_trt.__version__,
        "capabilities": caps.to_dict(),
        "plans": len(plans),
        "names": {n: present(real_trt, n) for n in names},
        "used_members": sorted(driver.used),
        "failures": driver.failures,
        "checks": checks,
    }
    Path(out_path).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
