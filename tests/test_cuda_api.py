"""fertrt's cuda-python calls held to the REAL cuda-python runtime modules of 11.7.1 (cp38, JetPack 5),
12.6.2.post1 (JetPack 6), 13.0.3 (JetPack 7) and 13.4.4: names, parameter counts and return arity.

The wheels come from PyPI once into ~/.cache/fertrt/cuda_api; each is imported under its own interpreter
(pyenv's CPython 3.8.18 for the cp38 wheel). A version skips, with the reason, only when PyPI cannot be
reached or its interpreter is absent. API checks only: no GPU result is produced or claimed.
"""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "cuda_api"))

from cuda_harness import VERSIONS, run_all  # noqa: E402
from cuda_table import DOC, render  # noqa: E402

pytestmark = pytest.mark.trt_api
COLUMNS = [v[0] for v in VERSIONS]


@pytest.fixture(scope="session")
def cuda_results():
    return run_all()


def result_for(results, version):
    r = results[version]
    if "unavailable" in r:
        pytest.skip(r["unavailable"])
    return r


@pytest.mark.parametrize("version", COLUMNS)
def test_every_cuda_python_call_binds_to_the_real_signature(cuda_results, version):
    r = result_for(cuda_results, version)
    assert r["version"] == version, r["version"]
    assert not r["problems"], "\n".join(r["problems"])
    assert {"device_info", "copies", "events", "graph_capture", "activate on another thread", "free"} <= set(r["steps"])
    assert all(v != "-" for v in r["used"].values()), {k: v for k, v in r["used"].items() if v == "-"}


def test_graph_instantiate_signature_differs_and_is_followed(cuda_results):
    """Issue 20: 11.x takes (graph, pLogBuffer, bufferSize), 12.x/13.x (graph, flags); both are called correctly."""
    seen = {v: cuda_results[v]["used"].get("cudaGraphInstantiate()") for v in COLUMNS if "used" in cuda_results[v]}
    if "11.7.1" not in seen:
        pytest.skip("the cp38 wheel (11.7.1) is not available here")
    assert seen["11.7.1"] == "y (3)" and all(seen[v] == "y (2)" for v in seen if v != "11.7.1"), seen


def test_the_check_catches_a_wrong_call(cuda_results, monkeypatch):
    """Without the signature detection (the old cudaGraphInstantiate(graph, 0)), the 11.7.1 check fails."""
    import cuda_harness
    from check_fertrt import check

    from fertrt.runtime import trt_backend

    if "used" not in cuda_results.get("11.7.1", {}):
        pytest.skip("the cp38 wheel (11.7.1) is not available here")
    column, requirements, want, _ = VERSIONS[0]
    facts = cuda_harness.facts_of(column, requirements, want)
    monkeypatch.setattr(trt_backend, "graph_instantiate_args", lambda fn, graph: (graph, 0))
    problems = check(facts)["problems"]
    assert any("cudaGraphInstantiate(graph, pLogBuffer, bufferSize)" in p for p in problems), problems


def test_cuda_api_table_in_docs_is_current(cuda_results):
    if any("used" not in r for r in cuda_results.values()):
        pytest.skip("not every cuda-python version is available here; the table needs all of them")
    text = render(cuda_results)
    if DOC.is_file() and DOC.read_text() == text:
        return
    if os.environ.get("FERTRT_WRITE_API_TABLE") == "1":
        DOC.write_text(text)
        return
    pytest.fail(
        f"{DOC} is out of date: run `python tests/cuda_api/cuda_table.py` (or FERTRT_WRITE_API_TABLE=1 pytest tests/test_cuda_api.py)"
    )
