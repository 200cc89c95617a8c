"""engine/sidecar.py: whether an engine can run on this TensorRT and GPU, from what its sidecar recorded."""

from fertrt.engine.sidecar import compatibility_problems


def test_sidecar_compatibility():
    side = {"tensorrt_version": "10.3.0", "gpu": {"name": "Orin", "compute_capability": "8.7"}, "build_options": {}}
    assert compatibility_problems(side, "10.3.0", {"name": "Orin", "compute_capability": "8.7"}) == []
    assert (
        "not portable between TensorRT versions"
        in compatibility_problems(side, "8.6.2", {"name": "Orin", "compute_capability": "8.7"})[0]
    )
    assert (
        "tuned per GPU model"
        in compatibility_problems(side, "10.3.0", {"name": "RTX 4090", "compute_capability": "8.9"})[0]
    )
    side["build_options"] = {"version_compatible": True, "hardware_compat": "ampere+"}
    assert compatibility_problems(side, "10.8.0", {"name": "RTX 4090", "compute_capability": "8.9"}) == []
    assert (
        "compute capability 7.5"
        in compatibility_problems(side, "10.8.0", {"name": "T4", "compute_capability": "7.5"})[0]
    )


def test_version_compatible_engines_run_on_the_same_or_newer_tensorrt_only():
    """Defect 2 (sidecar half; the engine_host_code_allowed half is in test_trt_api.py)."""
    gpu = {"name": "Orin", "compute_capability": "8.7"}
    side = {"tensorrt_version": "10.3.0", "gpu": gpu, "build_options": {"version_compatible": True}}
    assert compatibility_problems(side, "10.3.0", gpu) == []
    assert compatibility_problems(side, "10.13.0.35", gpu) == []  # newer: fine
    older = compatibility_problems(side, "8.6.2", gpu)
    assert len(older) == 1 and "older 8.6.2" in older[0] and "same or a newer TensorRT" in older[0]
    assert compatibility_problems(side, "10.2.0", gpu)  # 10.2 < 10.3 (compared as numbers, not strings)


def test_version_compatible_pairs_across_majors():
    """Defect 2: the 11.4 support matrix allows 8.x engines on 10.x and 10.x engines on 11.x, nothing else across majors."""
    from fertrt.engine.sidecar import version_compatible_problem

    gpu = {"name": "Orin", "compute_capability": "8.7"}

    def problems(built, here):
        side = {"tensorrt_version": built, "gpu": gpu, "build_options": {"version_compatible": True}}
        return compatibility_problems(side, here, gpu)

    assert (
        problems("8.6.1", "10.3.0") == []
        and problems("10.3.0", "11.4.0.106") == []
        and problems("10.13.0.35", "11.0.0") == []
    )
    assert problems("11.0.0", "11.4.0") == [] and problems("8.6.1", "8.6.2") == []
    eight_on_eleven = problems("8.6.1", "11.4.0.106")
    assert (
        len(eight_on_eleven) == 1
        and "only for 8.x engines on 10.x, 10.x engines on 11.x, not 8.x on 11.x" in eight_on_eleven[0]
    )
    assert "cannot make version-compatible engines (8.6+ can)" in problems("8.5.2", "10.3.0")[0]
    assert "older" in problems("11.1.0", "10.13.0")[0]
    assert version_compatible_problem("10.3.0", "x.y").startswith("cannot compare")
