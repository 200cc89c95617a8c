"""Regenerate onnx_trt_ops.json: the ONNX operators and opsets that each TensorRT's ONNX parser takes, read
from onnx-tensorrt's docs/operators.md at that release's tag.

    python export/data/make_onnx_trt_ops.py ONNX_TENSORRT_GIT_DIR [-o export/data/onnx_trt_ops.json]

ONNX_TENSORRT_GIT_DIR is a clone (or bare mirror) of github.com/onnx/onnx-tensorrt. Only `git show TAG:PATH`
is run. A TensorRT whose release tag the clone lacks is mapped to the newest earlier table and says so
(the parser only gains operators from release to release, so the older table is a lower bound).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

DOC = "docs/operators.md"
# table name -> the onnx-tensorrt tag its operators.md is read from
TAGS = {"8.5": "release/8.5-GA", "8.6": "release/8.6-GA", "10.0": "release/10.0-GA", "10.1": "release/10.1-GA"}
# the TensorRT versions fertrt supports -> the table they use (the same name where the tag exists)
VERSIONS = ("8.5", "8.6", "10.0", "10.1", "10.3", "10.13", "11.0")

_ROW = re.compile(r"^\|\s*([A-Za-z][A-Za-z0-9]*)\s*\|\s*(Y|N)\b", re.MULTILINE)
_UP_TO = re.compile(r"TensorRT\s+([0-9.]+)\s+supports operators up to Opset\s+(\d+)", re.IGNORECASE)
_RANGE = re.compile(
    r"TensorRT\s+([0-9.]+)\s+supports operators in the inclusive range of "
    r"opset\s+(\d+)\s+to opset\s+(\d+)",
    re.IGNORECASE,
)


def parse_operators_md(text: str) -> dict:
    """operators.md text -> {doc_version, opset_min, opset_max, operators (supported), unsupported}."""
    m = _RANGE.search(text)
    if m:
        doc_version, lo, hi = m.group(1), int(m.group(2)), int(m.group(3))
    else:
        m = _UP_TO.search(text)
        if not m:
            raise ValueError("no 'TensorRT X supports operators ... opset N' sentence in the document")
        doc_version, lo, hi = m.group(1), None, int(m.group(2))
    rows = _ROW.findall(text)
    if not rows:
        raise ValueError("no operator rows (| Name | Y/N |) in the document")
    return {
        "doc_version": doc_version,
        "opset_min": lo,
        "opset_max": hi,
        "operators": sorted({name for name, ok in rows if ok == "Y"}),
        "unsupported": sorted({name for name, ok in rows if ok == "N"}),
    }


def git_show(git_dir: Path, ref: str) -> str:
    return subprocess.run(["git", "-C", str(git_dir), "show", ref], check=True, capture_output=True, text=True).stdout


def git_commit(git_dir: Path, ref: str) -> str:
    return subprocess.run(
        ["git", "-C", str(git_dir), "rev-list", "-n", "1", ref], check=True, capture_output=True, text=True
    ).stdout.strip()


def _key(version: str) -> tuple:
    return tuple(int(p) for p in version.split("."))


def build_tables(git_dir: Path) -> dict:
    tables = {}
    for name, tag in TAGS.items():
        table = parse_operators_md(git_show(git_dir, f"{tag}:{DOC}"))
        tables[name] = {"source_tag": tag, "source_commit": git_commit(git_dir, tag), **table}
    versions = {}
    for v in VERSIONS:
        table = max((t for t in tables if _key(t) <= _key(v)), key=_key)
        entry = {"table": table, "source_tag": tables[table]["source_tag"]}
        if table != v:
            entry["note"] = (
                f"onnx-tensorrt has no release tag for TensorRT {v} in the clone this table was made from "
                f"(newest: {TAGS[max(TAGS, key=_key)]}); the {table} table is used as a lower bound"
            )
        versions[v] = entry
    return {
        "source": f"github.com/onnx/onnx-tensorrt {DOC} at each release tag",
        "generated_by": "export/data/make_onnx_trt_ops.py",
        "tables": tables,
        "versions": versions,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("git_dir", type=Path, help="a clone of github.com/onnx/onnx-tensorrt")
    p.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("onnx_trt_ops.json"))
    args = p.parse_args(argv)
    data = build_tables(args.git_dir)
    args.output.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.output}: tables {', '.join(data['tables'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
