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
        with pytest.raises(
            FertrtError, match=r"--jsonl .*: is the input .*model.onnx; writing it would destroy the input"
        ):
            check_output(alias, overwrite=True, inputs=("other.onnx", model), option="--jsonl")
        with pytest.raises(FertrtError, match="would destroy the input"):
            write_text_atomic(alias, "oops", overwrite=True, inputs=(model,))
    assert model.read_bytes() == b"weights"
    assert check_not_input(tmp_path / "new.json", model, None) == tmp_path / "new.json"


def test_output_lock_refuses_a_second_writer_in_another_process(tmp_path):
    target = tmp_path / "model_int8.onnx"
    code = (
        "import sys\nfrom fertrt.fileio import output_lock\nfrom fertrt.errors import FertrtError\n"
        "try:\n    with output_lock(sys.argv[1]):\n        print('got it')\nexcept FertrtError as e:\n    print('refused:', e)\n"
    )
    with output_lock(target) as lock:
        assert lock.exists()
        r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
        assert r.stdout.startswith("refused:") and "another fertrt run is writing this output" in r.stdout, (
            r.stdout + r.stderr
        )
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

    path = write_json_atomic(
        tmp_path / "r.json",
        {
            "ratio": float("nan"),
            "per_class": np.array([1.5, np.nan]),
            "inf": np.float32("inf"),
            "n": np.int64(3),
            "rows": [(0.25, math.inf)],
        },
    )
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"ratio": None, "per_class": [1.5, None], "inf": None, "n": 3, "rows": [[0.25, None]]}


# ---------------------------------------------------------------- one mechanism for every command (issue 23 part 2)
def _dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_device_nodes_and_fifos_are_refused_even_with_force(tmp_path):
    import stat

    null_copy, fifo = tmp_path / "null", tmp_path / "fifo"
    os.mknod(null_copy, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mkfifo(fifo)
    link = tmp_path / "link.jsonl"
    link.symlink_to(null_copy)
    for path, kind in ((null_copy, "a character device"), (fifo, "a FIFO"), (link, "a character device")):
        with pytest.raises(FertrtError, match=f"--jsonl .*: is {kind}, not a regular file"):
            write_text_atomic(path, "x", overwrite=True, option="--jsonl")
    assert stat.S_ISCHR(os.lstat(null_copy).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()


def test_stale_temp_and_lock_files_of_a_dead_run_are_cleaned_live_ones_kept(tmp_path):
    import socket

    from fertrt.fileio import clean_stale

    dead, alive = _dead_pid(), os.getpid()
    stale_tmp = tmp_path / f".model_int8.onnx.{dead}.abcd1234.tmp"
    live_tmp = tmp_path / f".model_int8.onnx.{alive}.efgh5678.tmp"
    stale_lock, live_lock = tmp_path / ".old.onnx.lock", tmp_path / ".busy.onnx.lock"
    stale_lock.write_text(f"{dead} {socket.gethostname()}\n")
    live_lock.write_text(f"{alive} {socket.gethostname()}\n")
    foreign_lock = tmp_path / ".nfs.onnx.lock"  # another host's PID: cannot be checked from here
    foreign_lock.write_text(f"{dead} some-other-host\n")
    for p in (stale_tmp, live_tmp):
        p.write_bytes(b"half")
    user_file = tmp_path / f".notes.{dead}.abcd1234.txt"  # not ours: never touched
    user_file.write_text("mine")
    removed = clean_stale(tmp_path)
    assert sorted(removed) == sorted([stale_tmp, stale_lock])
    assert live_tmp.exists() and live_lock.exists() and foreign_lock.exists() and user_file.exists()


def test_the_next_write_cleans_what_a_killed_writer_left(tmp_path):
    """A writer SIGKILLed mid-write leaves .NAME.PID.XXXX.tmp and .NAME.lock; the next run removes both."""
    target = tmp_path / "model_int8.onnx"
    code = (
        "import os, sys, time\nfrom fertrt.fileio import atomic_path, output_lock\n"
        "with output_lock(sys.argv[1]):\n    with atomic_path(sys.argv[1]) as tmp:\n"
        "        tmp.write_bytes(b'half'); print('ready', flush=True); time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    left = sorted(x.name for x in tmp_path.iterdir())
    assert left == sorted([".model_int8.onnx.lock"] + [n for n in left if n.endswith(".tmp")]) and len(left) == 2
    p.kill()
    p.wait()
    with output_lock(target):  # the dead owner's lock is taken over; its temp file is gone
        assert not [x for x in tmp_path.iterdir() if x.name.endswith(".tmp")]
    write_text_atomic(target, "complete")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["model_int8.onnx"]


def test_private_temp_folders_of_dead_runs_are_removed(tmp_path, monkeypatch):
    from fertrt.fileio import private_tempdir

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / f"fertrt-q-{_dead_pid()}-x1y2"
    live = tmp_path / f"fertrt-q-{os.getpid()}-a1b2"
    other = tmp_path / "fertrt-qq-1-zz"
    for d in (dead, live, other):
        d.mkdir()
        (d / "model.onnx").write_bytes(b"x")
    with private_tempdir("fertrt-q-") as tmp:
        assert tmp.name.startswith(f"fertrt-q-{os.getpid()}-") and tmp.is_dir()
        assert not dead.exists() and live.exists() and other.exists()
    assert not tmp.exists()


def test_a_full_disk_while_writing_the_lock_is_a_clear_error(tmp_path, monkeypatch):
    real_write = os.write

    def full(fd, data):
        if data.endswith(b"\n") and data.split()[0].isdigit():  # the lock's "PID HOST" line
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(
        FertrtError,
        match=r"cannot write the lock file .*\.model.onnx.lock \(No space left on device; the disk is full\)",
    ):
        with output_lock(tmp_path / "model.onnx"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_protected_inputs_cover_files_inside_an_input_folder_and_hard_links(tmp_path):
    from fertrt.fileio import clear_protected_inputs, protect_inputs

    data = tmp_path / "faces" / "happy"
    data.mkdir(parents=True)
    img = data / "0.png"
    img.write_bytes(b"an image")
    hard = tmp_path / "hard.png"
    os.link(img, hard)
    try:
        protect_inputs([tmp_path / "faces", "synth", None])
        for alias in (img, hard):
            with pytest.raises(FertrtError, match="input folder .*faces; writing it would destroy an input"):
                check_output(alias, overwrite=True, option="-o")
        check_output(data / "new.png", overwrite=False)  # a new file beside the inputs is fine
    finally:
        clear_protected_inputs()
    check_output(img, overwrite=True)  # protection is per command run


# ---------------------------------------------------------------- folder outputs replaced whole (pack, export-triton)
def _earlier_output(root):
    """An earlier run's folder: files in subfolders, a link to a file and a link to a folder, both outside it."""
    outside = root / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "data.txt").write_text("not fertrt's")
    (outside / "note.txt").write_text("not fertrt's either")
    out = root / "out"
    (out / "fer" / "1").mkdir(parents=True)
    (out / "fer" / "1" / "model.onnx").write_bytes(b"old model")
    (out / "manifest.json").write_text("{}")
    (out / "fer" / "linked_folder").symlink_to(outside / "keep")
    (out / "linked_note.txt").symlink_to(outside / "note.txt")
    return out, outside


def test_force_replaces_an_earlier_folder_without_following_its_links(tmp_path):
    from fertrt.fileio import replacing_folder

    out, outside = _earlier_output(tmp_path)
    (tmp_path / ".out.new-dead1234").mkdir()  # a killed run's half-built folder: removed by the next run
    (tmp_path / ".out.new-dead1234" / "model.onnx").write_bytes(b"half")
    with replacing_folder(out, force=True, log=lambda *a: None) as new:
        (new / "manifest.json").write_text('{"new": 1}')
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    assert (out / "manifest.json").read_text() == '{"new": 1}'
    assert (outside / "keep" / "data.txt").read_text() == "not fertrt's"  # the links went, never their targets
    assert (outside / "note.txt").read_text() == "not fertrt's either"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside"]  # no temporary folder or lock left


def test_an_earlier_folder_is_replaced_only_with_force_and_never_over_a_node_or_an_input(tmp_path):
    from fertrt.fileio import check_replaceable_folder, replacing_folder

    out, _ = _earlier_output(tmp_path)
    with pytest.raises(FertrtError, match=r"-o .*out: folder exists \(pass --force to replace it\)"):
        check_replaceable_folder(out, force=False)
    with pytest.raises(FertrtError, match=r"holds the input .*model.onnx; replacing the folder would delete it"):
        check_replaceable_folder(out, force=True, inputs=[out / "fer" / "1" / "model.onnx"])
    os.mkfifo(out / "fer" / "1" / "pipe")  # deep inside: found by the walk, which does not enter the linked folder
    with pytest.raises(FertrtError, match=r"holds .*fer/1/pipe, which is not a plain file or folder"):
        with replacing_folder(out, force=True) as new:
            (new / "manifest.json").write_text("never published")
    assert os.path.exists(out / "fer" / "1" / "pipe") and (out / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside"]


def test_the_output_itself_must_be_a_real_folder_or_absent(tmp_path):
    from fertrt.fileio import check_replaceable_folder

    _, outside = _earlier_output(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(outside)
    with pytest.raises(FertrtError, match=r"-o .*link: is a symbolic link \(to .*outside\)"):
        check_replaceable_folder(link, force=True)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(FertrtError, match=r"-o .*fifo: is a FIFO; expected a folder to make"):
        check_replaceable_folder(tmp_path / "fifo", force=True)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FertrtError, match=r"-o .*a_file/out: its parent .*a_file is not a folder"):
        check_replaceable_folder(tmp_path / "a_file" / "out", force=True)
    assert (outside / "keep" / "data.txt").read_text() == "not fertrt's"


def test_a_failed_build_leaves_the_earlier_folder_as_it_was(tmp_path):
    from fertrt.fileio import replacing_folder

    out, _ = _earlier_output(tmp_path)
    with pytest.raises(FertrtError, match="the build failed"):
        with replacing_folder(out, force=True) as new:
            (new / "half.onnx").write_bytes(b"half")
            raise FertrtError("the build failed")
    assert (out / "fer" / "1" / "model.onnx").read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside"]


def test_removal_keeps_a_node_made_after_the_check(tmp_path):
    """remove_output_tree is the last line: a FIFO that appeared after check_replaceable_folder is left, and named."""
    from fertrt.fileio import remove_output_tree

    out, outside = _earlier_output(tmp_path)
    os.mkfifo(out / "fer" / "pipe")
    assert remove_output_tree(out) == [out / "fer" / "pipe"]
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["fer", "fer/pipe"]
    assert (outside / "keep" / "data.txt").read_text() == "not fertrt's"
