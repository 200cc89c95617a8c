"""Data sets for fertrt. numpy + OpenCV only (no torch), so the runtime side (bench, calibration)
can read the same specs on a Jetson without torch."""

from .spec import DataSource, Split, load_data  # noqa: F401
