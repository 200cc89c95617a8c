"""engine/build.py: the calibration cache's version check here; the `trt` tests build real engines on a GPU host."""

import numpy as np
import pytest

from fertrt.engine.doctor import TOLERANCES
from fertrt.engine.plan import BuildOptions
from fertrt.errors import FertrtError


def test_calibration_cache_header_names_the_reading_tensorrt(tmp_path, monkeypatch):
    """Defect 6: the header tag is the TensorRT that will read the cache; bad --trt-version is a clear error."""
    from fertrt.engine.build import check_calib_cache_version
    from fertrt.export import trt_calib_cache as tcc

    assert [tcc.trt_version_tag(v) for v in ("8.5.2", "8.6.2", "10.3.0", "10.13.0.35", "8.6.1.6", 8601, "100300")] == [
        8502,
        8602,
        100300,
        101300,
        8601,
        8601,
        100300,
    ]
    for bad in ("-1", "garbage", "7.1.3", "", "10.x", "123"):
        with pytest.raises(FertrtError, match="--trt-version"):
            tcc.parse_trt_version(bad)
    # named version wins; else the installed one; else the fallback, said out loud
    path = tmp_path / "m.calib.cache"
    tcc.write_trt_calibration_cache({"input": 127.0}, path, "10.3.0", log=lambda *a: None)
    assert path.read_text().splitlines()[0] == "TRT-100300-EntropyCalibration2"
    monkeypatch.setattr(tcc, "installed_trt_version", lambda: "8.6.2.3")
    tcc.write_trt_calibration_cache({"input": 127.0}, path, None, log=lambda *a: None)
    assert path.read_text().splitlines()[0] == "TRT-8602-EntropyCalibration2"
    monkeypatch.setattr(tcc, "installed_trt_version", lambda: None)
    notes = []
    tcc.write_trt_calibration_cache({"input": 127.0}, path, None, log=notes.append)
    assert path.read_text().splitlines()[0] == "TRT-8601-EntropyCalibration2" and "pass --trt-version" in notes[0]
    # build-engine --legacy-int8 --calib-cache compares the header with the installed TensorRT
    assert check_calib_cache_version(path, "8.6.1", has_data=False) is None
    with pytest.raises(
        FertrtError,
        match=r"TensorRT ignores such a cache and calibrates again, which needs --calib-data.*--trt-version 10.3.0",
    ):
        check_calib_cache_version(path, "10.3.0", has_data=False)
    assert "calibrates again" in check_calib_cache_version(path, "10.3.0", has_data=True)


@pytest.mark.trt
@pytest.mark.parametrize("precision,tol_agree", list(TOLERANCES.items()))  # the tolerances `fertrt doctor` uses
def test_trt_engine_matches_onnxruntime(tiny_onnx, tmp_path, precision, tol_agree):
    from fertrt.engine.build import build
    from fertrt.export.compare import compare_models
    from helpers import TINY_SPEC

    engine = tmp_path / f"m_{precision}.engine"
    opts = BuildOptions(
        precision=precision,
        batch=(1, 8, 32),
        calib_data=TINY_SPEC if precision == "int8" else None,
        timing_cache=str(tmp_path / "timing.cache"),
    )
    side = build(tiny_onnx, engine, opts, use_cache=False, log=lambda *a: None)
    assert side["class_names"][0] == "neutral" and side["profile"]["input"]["max"][0] == 32
    assert (tmp_path / "timing.cache").stat().st_size > 0
    rep = compare_models([tiny_onnx, engine], TINY_SPEC, limit=200)
    assert rep["models"][1]["agreement"] >= tol_agree and rep["models"][1]["finite"]
    # the timing cache is loaded by the next build
    side2 = build(tiny_onnx, tmp_path / "again.engine", opts, use_cache=False, log=lambda *a: None)
    assert side2["timing_cache"]["loaded"] is True


@pytest.mark.trt
def test_trt_legacy_int8_reads_fertrt_calibration_cache(tiny_onnx, tmp_path):
    import tensorrt as trt

    from fertrt.engine.build import build
    from fertrt.export.quantize import Int8Options, quantize_int8
    from helpers import TINY_SPEC

    if not hasattr(trt.BuilderFlag, "INT8"):
        pytest.skip(f"TensorRT {trt.__version__} has no implicit INT8 (removed in 11)")
    quantize_int8(tiny_onnx, tmp_path / "q.onnx", Int8Options(calib=TINY_SPEC, calib_size=64, cache_dir=tmp_path))
    cache = str(tmp_path / "q.onnx.calib.cache")
    side = build(
        tiny_onnx,
        tmp_path / "legacy.engine",
        BuildOptions(precision="int8", legacy_int8=True, calib_cache=cache),
        use_cache=False,
        log=lambda *a: None,
    )
    assert side["precision"]["builder_flags"][0] == "INT8"


@pytest.mark.trt
def test_trt_runner_batch_outside_profile(tiny_onnx, tmp_path):
    from fertrt.engine.build import build
    from fertrt.runtime.runners import open_runner

    engine = tmp_path / "m.engine"
    build(tiny_onnx, engine, BuildOptions(batch=(1, 2, 4)), use_cache=False, log=lambda *a: None)
    with open_runner(engine) as r:
        assert r.infer(np.zeros((4, 3, 112, 112), np.float32)).shape == (4, 7)
        with pytest.raises(FertrtError, match="outside the engine's profile"):
            r.infer(np.zeros((5, 3, 112, 112), np.float32))
