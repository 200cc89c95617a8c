"""Outputs: complete or absent, never an input, an existing one only with --force, one writer at a time."""
import errno
import os
import subprocess
import sys
import tempfile

import pytest

from fertrt.errors import FertrtError
from fertrt.fileio import atomic_path, check_not_input, check_output, output_lock, write_json_atomic, write_text_atomic


def test_temp_file_failure_is_a_clean_error(tmp_path, monkeypatch):
    """A read-only or vanished folder fails at mkstemp: a FertrtError naming the output, nothing left behind."""
    target = tmp_path / "out.json"

    def refuse(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(FertrtError, match=r"out.json: could not write \(Read-only file system\)"):
        write_json_atomic(target, {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_full_disk_keeps_the_previous_file(tmp_path):
    target = tmp_path / "results.jsonl"
    target.write_text("previous\n")
    with pytest.raises(FertrtError, match=r"results.jsonl: could not write \(No space left on device\).*untouched"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


def test_missing_folder_and_folder_as_file(tmp_path):
    with pytest.raises(FertrtError, match=r"-o .*nope/x.json: the output folder .*nope does not exist"):
        check_output(tmp_path / "nope" / "x.json", option="-o")
    with pytest.raises(FertrtError, match=r"is a folder; expected a file name"):
        check_output(tmp_path)


def test_existing_output_needs_force(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("keep")
    with pytest.raises(FertrtError, match="file exists .*--force"):
        write_text_atomic(target, "new", overwrite=False)
    assert target.read_text() == "keep"
    write_text_atomic(target, "new", overwrite=True)
    assert target.read_text() == "new"


def test_output_never_equals_an_input_even_with_force(tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"weights")
    (tmp_path / "sub").mkdir()
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    hard = tmp_path / "hard.onnx"
    os.link(model, hard)
    for alias in (model, tmp_path / "sub" / ".." / "model.onnx", link, hard):
        with pytest.raises(FertrtError, match=r"--jsonl .*: is the input .*model.onnx; writing it would destroy the input"):
            check_output(alias, overwrite=True, inputs=("other.onnx", model), option="--jsonl")
        with pytest.raises(FertrtError, match="would destroy the input"):
            write_text_atomic(alias, "oops", overwrite=True, inputs=(model,))
    assert model.read_bytes() == b"weights"
    assert check_not_input(tmp_path / "new.json", model, None) == tmp_path / "new.json"


def test_output_lock_refuses_a_second_writer_in_another_process(tmp_path):
    target = tmp_path / "model_int8.onnx"
    code = ("import sys\nfrom fertrt.fileio import output_lock\nfrom fertrt.errors import FertrtError\n"
            "try:\n    with output_lock(sys.argv[1]):\n        print('got it')\nexcept FertrtError as e:\n    print('refused:', e)\n")
    with output_lock(target) as lock:
        assert lock.exists()
        r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
        assert r.stdout.startswith("refused:") and "another fertrt run is writing this output" in r.stdout, r.stdout + r.stderr
    assert not lock.exists()
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "got it"
    with output_lock(tmp_path) as folder_lock:  # a folder is locked from inside
        assert folder_lock.parent == tmp_path


def test_json_outputs_write_undefined_numbers_as_null(tmp_path):
    import json
    import math

    import numpy as np

    from fertrt.fileio import write_json_atomic

    path = write_json_atomic(tmp_path / "r.json", {"ratio": float("nan"), "per_class": np.array([1.5, np.nan]),
                                                  "inf": np.float32("inf"), "n": np.int64(3), "rows": [(0.25, math.inf)]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"ratio": None, "per_class": [1.5, None], "inf": None, "n": 3, "rows": [[0.25, None]]}
