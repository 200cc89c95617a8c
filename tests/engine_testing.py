"""What the engine tests share: a stand-in `tensorrt` module per release (the attributes each one documents), the
capabilities fertrt detects on them, graph descriptions, and a CLI runner."""

from types import SimpleNamespace

from fertrt.engine.compat import capabilities_of
from fertrt.engine.plan import GraphInfo


def fake_trt(version):
    """A namespace with the attributes each TensorRT release documents (see engine/compat.py)."""
    major = int(version.split(".")[0])
    minor = int(version.split(".")[1])
    flags = {"GPU_FALLBACK": 1}
    ncf = {}
    cfg = {"set_memory_pool_limit": 1, "create_timing_cache": 1}
    mod = {"__version__": version}
    if major < 11:
        flags.update(FP16=1, INT8=1)
        cfg["int8_calibrator"] = 1
        mod["IInt8EntropyCalibrator2"] = object
    if major < 10:
        ncf["EXPLICIT_BATCH"] = 0
    if major >= 10:
        ncf["STRONGLY_TYPED"] = 5
    if (major, minor) >= (8, 6):
        flags["VERSION_COMPATIBLE"] = 1
        cfg["builder_optimization_level"] = 3
        cfg["hardware_compatibility_level"] = 0
        # the enum came in 8.6, its SAME_COMPUTE_CAPABILITY member only in 10.9 (checked on the real bindings in test_trt_api.py)
        levels = {"NONE": 0, "AMPERE_PLUS": 1, **({"SAME_COMPUTE_CAPABILITY": 2} if (major, minor) >= (10, 9) else {})}
        mod["HardwareCompatibilityLevel"] = SimpleNamespace(**levels)
        mod["Runtime"] = SimpleNamespace(engine_host_code_allowed=1)
    context = (
        {"execute_async_v3": 1, "set_input_shape": 1, "set_tensor_address": 1}
        if (major, minor) >= (8, 5)
        else {"execute_async_v2": 1}
    )
    return SimpleNamespace(
        BuilderFlag=SimpleNamespace(**flags),
        NetworkDefinitionCreationFlag=SimpleNamespace(**ncf),
        IBuilderConfig=SimpleNamespace(**cfg),
        ICudaEngine=SimpleNamespace(create_engine_inspector=1, num_io_tensors=1),
        IExecutionContext=SimpleNamespace(**context),
        **mod,
    )


CAPS = {v: capabilities_of(fake_trt(v)) for v in ("8.5.2", "8.6.1", "10.3.0", "10.9.0", "11.1.0")}
FP32 = GraphInfo("input", ("batch", 3, 112, 112), "fp32", "a" * 64)
FP16 = GraphInfo("input", ("batch", 3, 112, 112), "fp16", "b" * 64)
QDQ = GraphInfo("input", ("batch", 3, 112, 112), "int8", "c" * 64)
JETSON, X86, WOA = ("Linux", "aarch64"), ("Linux", "x86_64"), ("Windows", "ARM64")  # (system, machine) hosts


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of `fertrt ARGV...` run in this process."""
    from fertrt.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own range types exit 2 with a usage line
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
