"""benchmarks/training_threads.py: its measurement, its busy processes and its table."""

import torch

from fertrt.benchmarks import training_threads as tt


def test_measure_reports_speed_cpu_time_and_the_openmp_runtime():
    try:
        res = tt.measure(1, 0.2, batch_size=8)
    finally:
        torch.set_num_threads(2)
    assert res["torch_threads"] == 1 and res["steps"] >= 1
    assert res["images_per_second"] > 0 and res["cpu_ms_per_image"] > 0
    assert "omp" in res["openmp"]  # torch's CPU parallel backend here is OpenMP (libgomp on Linux x86 wheels)


def test_busy_processes_are_started_and_killed():
    procs = tt.start_busy(2)
    assert all(p.poll() is None for p in procs)
    tt.stop_busy(procs)
    assert all(p.returncode is not None for p in procs)


def test_table_gives_the_share_of_the_quiet_speed_kept():
    rows = [
        {"setting": "a", "competing": 0, "images_per_second": 200.0, "cpu_ms_per_image": 9.0},
        {"setting": "a", "competing": 2, "images_per_second": 90.0, "cpu_ms_per_image": 9.5},
        {"setting": "b", "competing": 0, "images_per_second": 250.0, "cpu_ms_per_image": 8.0},
        {"setting": "b", "competing": 2, "images_per_second": 25.0, "cpu_ms_per_image": 40.0},
    ]
    table = tt.format_table({"cpu_count": 2, "rows": rows}).splitlines()
    assert table[2] == "| a | 200.0 | 90.0 | 0.45 | 9.0 / 9.5 |"
    assert table[3] == "| b | 250.0 | 25.0 | 0.10 | 8.0 / 40.0 |"
    assert table[-1].endswith("cores / (cores + N): 2: 0.50.")
