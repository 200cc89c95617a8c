"""fertrt's TensorRT code held to the REAL Python API of every supported TensorRT (8.6.1, 10.0.1 ... 10.11, 10.13, 11.0, 11.4).

The bindings wheels from PyPI are imported on this CPU machine against stub libraries (tests/trt_api/
nvinfer_stub.c, compiled with gcc); Builder, Runtime and OnnxParser are replaced by strict stand-ins
(tests/trt_api/standins.py) that refuse any attribute, property write or keyword the real class does
not have. Every make_plan combination goes through build_engine, inspect_layers and the TensorRT runner.
API checks only: nothing here builds, runs or times an engine (the `trt` tests and `fertrt doctor` do).
Wheels and stubs are cached in ~/.cache/fertrt/trt_api; the tests skip only when PyPI cannot be reached.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "trt_api"))

from harness import VERSIONS, run_all  # noqa: E402
from table import DOC, render  # noqa: E402

pytestmark = pytest.mark.trt_api
VERSION_IDS = [v[1] for v in VERSIONS]


@pytest.fixture(scope="session")
def api_results():
    return run_all()


def result_for(api_results, version):
    r = api_results[version]
    if "unavailable" in r:
        pytest.skip(r["unavailable"])
    assert "crashed" not in r, r.get("crashed")
    return r


def major_minor(version):
    return tuple(int(p) for p in version.split(".")[:2])


@pytest.mark.parametrize("version", VERSION_IDS)
def test_every_plan_path_uses_only_the_real_api(api_results, version):
    r = result_for(api_results, version)
    assert r["version"].startswith(version.rsplit(".", 1)[0] if version.count(".") > 2 else version)
    # the matrix reaches many distinct plans (11.x has only the strongly typed path, so fewer)
    assert r["plans"] >= (15 if major_minor(version) >= (11, 0) else 70), r["plans"]
    assert not r["failures"], "\n".join(r["failures"][:20])


@pytest.mark.parametrize("version", VERSION_IDS)
def test_capability_detection_on_real_bindings(api_results, version):
    caps = result_for(api_results, version)["capabilities"]
    v = major_minor(version)
    assert caps["tensor_api"] and caps["memory_pool"] and caps["timing_cache"] and caps["inspector"]
    assert caps["strongly_typed"] == (v >= (10, 0))
    assert caps["explicit_batch_flag"] == (v < (10, 0))
    assert caps["fp16_flag"] == caps["int8_flag"] == caps["calibrator"] == (v < (11, 0))
    assert (
        caps["builder_opt_level"]
        and caps["version_compatible"]
        and caps["hardware_compat"]
        and caps["host_code_allowed"]
    )
    assert ("SAME_COMPUTE_CAPABILITY" in caps["hardware_compat_levels"]) == (v >= (10, 9))
    assert "AMPERE_PLUS" in caps["hardware_compat_levels"]


DEFECT_CHECKS = {
    "defect1_same_cc": "--hardware-compat same-cc: refused clearly before 10.9, built from 10.9",
    "defect2_version_compatible_load": "engine_host_code_allowed set before deserializing a version-compatible engine",
    "defect3_calibration_opt_batch": "legacy INT8 calibrates at the OPT batch, no read past the buffer",
    "defect4_return_values": "boolean returns checked; timing cache refused/None/merged",
    "defect5_cuda_graph_order": "uncaptured enqueue + sync before capture; old graph freed; fallback on capture failure",
    "defect7_inspector_opt_shape": "per-layer precisions read with a context at the OPT shape",
    "defect8_too_old": "TensorRT < 8.5 gets one message naming the minimum",
    # issue 24 (second audit)
    "issue24_threads": "runners used from worker threads (bench --streams) make the CUDA context current first",
    "issue24_dla_rules": "DLA: FP32 and dynamic profiles refused, no-DLA-cores branch, layers on DLA counted; absent versions refused",
    "issue24_parser_errors": "parser failure reported per node, with node_name where the version has it (not on 8.6)",
    "issue24_factories_none": "Builder/Runtime/network/config/profile/timing cache/context None, set_tensor_address False, "
    "add_optimization_profile -1, set_calibration_profile False: each a clear error",
    "issue24_capture_rules": "no sync or shape change inside a CUDA graph capture (and the stand-ins catch both)",
    "issue24_calibration_too_small": "too few calibration images for the OPT batch refused before TensorRT work",
    "issue24_resources": "close() frees every allocation, events reused, runners are context managers",
    "issue24_logger_plugins": "one TensorRT logger; init_libnvinfer_plugins once, before parse and deserialize",
    "issue24_dtype_map": "fertrt's own DataType -> numpy map over the real enum (trt.nptype never called)",
    "issue24_sidecar_pairs": "version-compatible pairs judged on sidecars written by build_sidecar",
    "issue24_ampere_plus": "--hardware-compat ampere+ refused on a build GPU below compute capability 8.0",
}


@pytest.mark.parametrize("check", list(DEFECT_CHECKS))
@pytest.mark.parametrize("version", VERSION_IDS)
def test_defect_fixed(api_results, version, check):
    r = result_for(api_results, version)["checks"][check]
    assert r["ok"], f"{DEFECT_CHECKS[check]}: {r['detail']}"


def test_same_cc_is_detected_per_member_not_per_enum(api_results):
    """Defect 1 exactly: 8.6-10.8 have HardwareCompatibilityLevel but not its SAME_COMPUTE_CAPABILITY member."""
    seen = {}
    for version in VERSION_IDS:
        r = api_results[version]
        if "names" in r:
            seen[version] = (
                r["names"]["HardwareCompatibilityLevel"],
                r["names"]["HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"],
            )
    if not seen:
        pytest.skip("no bindings available")
    assert any(enum and not member for enum, member in seen.values()), seen
    for version, (enum, member) in seen.items():
        detail = api_results[version]["checks"]["defect1_same_cc"]["detail"]
        assert detail.startswith("built") == member, (version, detail)


def test_api_table_in_docs_is_current(api_results):
    if any("names" not in r for r in api_results.values()):
        pytest.skip("not every version's bindings are available here; the table needs all of them")
    text = render(api_results)
    if DOC.is_file() and DOC.read_text() == text:
        return
    import os

    if os.environ.get("FERTRT_WRITE_API_TABLE") == "1":
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
        return
    pytest.fail(
        f"{DOC} is out of date: run `python tests/trt_api/table.py` (or FERTRT_WRITE_API_TABLE=1 pytest -m trt_api)"
    )
