"""Make `fertrt doctor`'s tiny test graphs, shipped as package data in engine/data/ (the training side
makes them once; a device needs neither ModelOpt nor torch). Run from the repository root:

    .venv/bin/python scripts/make_doctor_graphs.py            # rewrite engine/data/
    .venv/bin/python scripts/make_doctor_graphs.py --check    # exit 1 when engine/data/ differs

Deterministic: fixed seeds, fixed file names, and the generation runs in a fixed working folder name
so that no temporary path leaks into the graphs' metadata (tests/test_device_envs.py regenerates them
and compares bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "engine" / "data"


def generate(dest: Path) -> list:
    """Write the FP32, FP16 and INT8 (Q/DQ) graphs and the calibration cache into dest; -> their paths."""
    from fertrt.engine.doctor import TINY_FILES, make_tiny_variants

    with tempfile.TemporaryDirectory(prefix="fertrt-doctor-graphs-") as tmp:
        work = Path(tmp) / "doctor_graphs"  # the same relative layout on every run
        work.mkdir()
        cwd = os.getcwd()
        os.chdir(work)
        try:
            make_tiny_variants(Path("."), log=lambda *a: None)
        finally:
            os.chdir(cwd)
        dest.mkdir(parents=True, exist_ok=True)
        for name in TINY_FILES.values():
            shutil.copyfile(work / name, dest / name)
    return [dest / n for n in TINY_FILES.values()]


def digests(paths) -> dict:
    return {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check", action="store_true", help="regenerate into a temporary folder and compare with engine/data/"
    )
    args = ap.parse_args(argv)
    if not args.check:
        for name, digest in digests(generate(DATA)).items():
            print(f"{digest}  engine/data/{name}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = digests(generate(Path(tmp)))
    shipped = {n: hashlib.sha256((DATA / n).read_bytes()).hexdigest() if (DATA / n).is_file() else None for n in fresh}
    differ = [n for n in fresh if fresh[n] != shipped[n]]
    for n in differ:
        print(f"engine/data/{n}: differs from a fresh generation (run scripts/make_doctor_graphs.py)", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
