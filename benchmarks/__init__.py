"""Benchmark harness (`fertrt bench`), the demo (`fertrt demo`) and the reproducible suites."""
