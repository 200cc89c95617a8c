"""Every option of every `fertrt` command that names an output obeys the same rules, proven on real files:

- never an input of the same command (with --force too, through a symbolic or a hard link);
- never an existing file without --force (for a folder output: each file it writes);
- never a device node or a FIFO, --force or not (and the node is still a node afterwards);
- a missing, read-only or full place is exit 2 naming it, never a traceback.

The output options are found in the parsers themselves (tests below fail when a new one is not in
fertrt.fileio.OUTPUT_OPTIONS or has no case here), so commands added later are held to the rules too.
Runs are in-process through fertrt.cli.main (a traceback fails the test); read-only and full places are real
tmpfs mounts in a private mount namespace (`unshare -rm`), skipped where that is not allowed.
"""

import argparse
import contextlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fertrt import cli
from fertrt.fileio import OUTPUT_OPTIONS

# ------------------------------------------------------------------ finding the output options in the parsers
OUTPUT_WORDS = re.compile(
    r"\b(write|writes|written|save|saved|output|report|folder for|folder to|repository|cache)\b", re.I
)
OUTPUT_DESTS = {"output", "out", "save", "json", "jsonl", "summary_json"}
# Options the heuristic flags that only read (key -> dest -> why): each must stay true when the parsers change.
NOT_OUTPUTS = {
    "quantize": {
        "calib_cache": "reads activation scales from a TensorRT cache",
        "calib_data": "calibration data",
        "eval_data": "a data spec",
        "keep_fp32": "op types",
        "exclude": "node names",
    },
    "build-engine": {"calib_data": "calibration data spec"},
    "detector export": {"wheel": "a local wheel to read", "source": "the YuNet ONNX to read"},
    "pack": {"calib_data": "calibration data", "detector_model": "a detector to copy", "model": "the model to pack"},
    "export-triton": {"detector_model": "a detector to copy", "model": "the model to copy"},
    "export-deepstream": {"detector_model": "a detector to copy", "model": "the model to copy"},
    "serve": {"detector_model": "a detector to load", "model": "the model to serve"},
    "pretrained": {"wheel": "a local wheel to read"},
    "compare": {"models": "model files to read"},
    "infer": {"detector_model": "a detector to load", "input": "images, videos, folders to read"},
    "bench": {"compare": "two results.json to read", "models": "model files to read"},
    "eval": {"checkpoint": "the checkpoint to read"},
    "export": {"checkpoint": "the checkpoint to read"},
    "inspect-engine": {"engine": "the engine to read"},
    "demo": {"data": "a data spec"},
}


def _commands():
    """{'data preview': parser, 'train': parser, ...} built exactly as `fertrt` builds them."""
    found = {}
    for name, (_, help_text, add_args) in cli._COMMANDS.items():
        p = argparse.ArgumentParser(prog=name)
        add_args(p)
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if subs:
            for sub_name, sub in subs[0].choices.items():
                found[f"{name} {sub_name}"] = sub
        else:
            found[name] = p
    return found


def _takes_value(action) -> bool:
    """An option whose value can be a path: not a flag, not a choice, not a number or version type."""
    return (
        action.nargs != 0
        and not action.choices
        and action.type in (None, str, Path)
        and not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    )


def _looks_like_output(action) -> bool:
    text = " ".join(str(x) for x in (action.dest, action.metavar or "", action.help or ""))
    return _takes_value(action) and (action.dest in OUTPUT_DESTS or bool(OUTPUT_WORDS.search(text)))


def test_every_output_option_is_in_the_table():
    missing = []
    for key, parser in _commands().items():
        for action in parser._actions:
            if not _looks_like_output(action):
                continue
            if action.dest not in OUTPUT_OPTIONS.get(key, {}) and action.dest not in NOT_OUTPUTS.get(key, {}):
                missing.append(f"{key} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, (
        "options that look like outputs, in neither fertrt.fileio.OUTPUT_OPTIONS nor this test's "
        f"NOT_OUTPUTS: {missing}"
    )


def test_every_table_entry_names_a_real_option_and_has_a_case():
    commands = _commands()
    for key, outputs in OUTPUT_OPTIONS.items():
        assert key in commands, f"OUTPUT_OPTIONS names {key!r}, which is not a command"
        dests = {a.dest for a in commands[key]._actions}
        for dest in outputs:
            assert dest in dests, f"OUTPUT_OPTIONS[{key!r}] names {dest!r}, not an option of that command"
            assert f"{key} {dest}" in CASES, f"no case in tests/test_output_policy.py for {key} {dest}"


def test_the_heuristic_finds_a_new_output_option():
    """The enumeration is not vacuous: a command added with an output option is caught."""
    p = argparse.ArgumentParser()
    p.add_argument("-o", "--output", help="the report to write")
    p.add_argument("--threshold", type=float)
    assert [a.dest for a in p._actions if _looks_like_output(a)] == ["output"]


# ------------------------------------------------------------------ one cheap run per output option
@dataclass
class Case:
    argv: object  # (fixtures dict, output path) -> argv
    kind: str = "file"  # or "folder"
    input: str = None  # fixtures key of a file the command reads (rule: never written)
    writes: tuple = ()  # folder outputs: the files a run writes there
    force: bool = True  # the command has --force
    full_run: bool = False  # a whole run is cheap here: proven in a full and a read-only place too
    skip: dict = None  # rule -> why it is not proven here
    xfail: dict = None  # rule -> the known failure, naming the owner (kept visible, not hidden)


SYNTH = "synth:16:easy"
CASES = {
    "data preview output": Case(
        lambda f, o: ["data", "preview", f"folder:{f['faces']}", "--count", "2", "--size", "32", "-o", o],
        input="face_image",
        full_run=True,
    ),
    "train out": Case(
        lambda f, o: ["train", "--data", f"folder:{f['faces']}", "--epochs", "1", "-o", o],
        kind="folder",
        input="face_image",
        writes=("last.pt", "best.pt", "metrics.jsonl"),
        full_run=True,
    ),
    "eval out": Case(
        lambda f, o: ["eval", f["ckpt"], "--data", SYNTH, "-o", o],
        kind="folder",
        input="ckpt",
        writes=("eval_test.json", "eval_test_confusion.png"),
        full_run=True,
    ),
    "export output": Case(
        lambda f, o: ["export", f["ckpt"], "-o", o, "--no-verify", "--no-simplify"], input="ckpt", full_run=True
    ),
    "quantize output": Case(
        lambda f, o: ["quantize", f["onnx"], "--precision", "fp16", "-o", o], input="onnx", full_run=True
    ),
    "quantize trt_cache": Case(
        lambda f, o: [
            "quantize",
            f["onnx"],
            "--calib-data",
            SYNTH,
            "--calib-size",
            "8",
            "-o",
            str(Path(o).parent / "q_int8.onnx"),
            "--trt-cache",
            o,
        ],
        input="onnx",
    ),
    "quantize cache_dir": Case(None, skip={"all": "a calibration range cache: rewritten by design, no --force"}),
    "compare output": Case(
        lambda f, o: ["compare", f["onnx"], "--data", SYNTH, "--limit", "8", "-o", o], input="onnx", full_run=True
    ),
    "build-engine output": Case(lambda f, o: ["build-engine", f["onnx"], "-o", o], input="onnx"),
    "build-engine timing_cache": Case(None, skip={"all": "a TensorRT timing cache: read and rewritten by design"}),
    "build-engine calib_cache": Case(None, skip={"all": "a TensorRT calibration cache: read and rewritten by design"}),
    "inspect-engine json": Case(lambda f, o: ["inspect-engine", f["engine"], "--json", o], input="engine"),
    "doctor output": Case(
        lambda f, o: ["doctor", "-o", o, "--seconds", "0.05"],
        kind="folder",
        writes=("doctor.json", "doctor.md", "doctor_tiny.onnx"),
        full_run=True,
    ),
    "infer save": Case(
        lambda f, o: ["infer", f["onnx"], f["face_image"], "--no-detect", "--save", o],
        input="face_image",
        full_run=True,
    ),
    "infer jsonl": Case(
        lambda f, o: ["infer", f["onnx"], f["face_image"], "--no-detect", "--jsonl", o], input="onnx", full_run=True
    ),
    "infer summary_json": Case(
        lambda f, o: ["infer", f["onnx"], f["face_image"], "--no-detect", "--summary-json", o],
        input="onnx",
        full_run=True,
    ),
    "detector export output": Case(
        lambda f, o: ["detector", "export", "--model", "yunet", "--source", f["not_onnx"], "-o", o], input="not_onnx"
    ),
    "bench out": Case(
        lambda f, o: [
            "bench",
            f["onnx"],
            "--batches",
            "1",
            "--seconds",
            "0.05",
            "--warmup",
            "0",
            "--no-baselines",
            "--data",
            SYNTH,
            "--limit",
            "8",
            "-o",
            o,
        ],
        kind="folder",
        input="onnx",
        writes=("results.json", "report.md"),
    ),
    "demo out": Case(
        lambda f, o: ["demo", "-o", o, "--epochs", "1"],
        kind="folder",
        force=False,
        writes=("model.onnx",),  # reused when present: a FIFO there would block the run on reading it
        skip={
            "existing": "the demo reuses its own folder by design (task E: folder reuse)",
            "input": "reads no file named on the command line",
        },
    ),
    "pretrained output": Case(
        lambda f, o: ["pretrained", "mini_xception_fer2013", "--wheel", f["not_onnx"], "-o", o], input="not_onnx"
    ),
    "pack output": Case(
        lambda f, o: [
            "pack",
            f["onnx"],
            "-o",
            o,
            "--trt-version",
            "10.3.0",
            "--detector",
            "none",
            "--calib-data",
            SYNTH,
            "--calib-size",
            "8",
        ],
        kind="folder",
        input="onnx",
        writes=("manifest.json",),  # for the device rule: a node where the earlier run wrote a file
        skip={"existing": "pack replaces its whole folder, only with --force (its own tests)"},
    ),
    "pack cache_dir": Case(None, skip={"all": "a calibration range cache: rewritten by design, no --force"}),
    "serve token_file": Case(None, skip={"all": "starts a server; its token file is checked by the serve tests"}),
    "export-triton output": Case(
        lambda f, o: ["export-triton", f["onnx"], "-o", o, "--platform", "onnxruntime_onnx"],
        kind="folder",
        input="onnx",
        writes=("fertrt-repository.json",),
        skip={"existing": "replaces its whole repository, only with --force (its own tests)"},
    ),
    "export-deepstream output": Case(
        lambda f, o: ["export-deepstream", f["onnx"], "-o", o, "--triton-platform", "none"],
        kind="folder",
        input="onnx",
        writes=("fer.onnx",),
    ),
    "export-deepstream triton_repo": Case(None, skip={"all": "a folder under -o, held by -o's rules"}),
}
IDS = sorted(k for k, c in CASES.items() if c.argv is not None)


def _params(rule):
    return [
        pytest.param(k, marks=pytest.mark.xfail(reason=CASES[k].xfail[rule], strict=False))
        if rule in (CASES[k].xfail or {})
        else k
        for k in IDS
    ]


def run_cli(argv, timeout=120):
    """(exit status, stderr) of `fertrt ARGV` in this process; an exception other than exit is a test failure,
    and a run that blocks (opening a FIFO) fails after `timeout` seconds instead of hanging the suite."""

    def alarm(*_):
        raise TimeoutError(f"fertrt {' '.join(argv)} blocked for {timeout} s")

    err = io.StringIO()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = cli.main([str(a) for a in argv])
            except SystemExit as exc:
                rc = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def files(tmp_path_factory, torch_threads):
    """A 1-epoch checkpoint and its ONNX (a few seconds), a folder data set of face images, a fake engine."""
    import cv2
    import numpy as np

    from fertrt.export.onnx_export import ExportOptions, export_checkpoint
    from fertrt.train.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("policy")
    train(
        TrainConfig(model="lnlattennet", data="synth:48:easy", out=str(root / "run"), epochs=1, batch_size=16),
        log=lambda *a: None,
    )
    export_checkpoint(root / "run" / "best.pt", root / "model.onnx", ExportOptions(force=True), log=lambda *a: None)
    rng = np.random.default_rng(0)
    for label in ("happy", "sad"):
        (root / "faces" / label).mkdir(parents=True)
        for k in range(3):
            cv2.imwrite(str(root / "faces" / label / f"{k}.png"), rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    (root / "model.engine").write_bytes(b"not really an engine, but the file a user named")
    (root / "not.onnx").write_bytes(b"stand-in input")
    return {
        "root": root,
        "ckpt": root / "run" / "best.pt",
        "onnx": root / "model.onnx",
        "faces": root / "faces",
        "face_image": root / "faces" / "happy" / "0.png",
        "engine": root / "model.engine",
        "not_onnx": root / "not.onnx",
    }


def _case(key, rule):
    case = CASES[key]
    why = (case.skip or {}).get(rule) or (case.skip or {}).get("all")
    if why:
        pytest.skip(why)
    return case


def _argv(case, files, out, force):
    argv = case.argv(files, str(out))
    return argv + (["--force"] if force and case.force else [])


def _snapshot(path: Path):
    st = os.lstat(path)
    return (stat.S_IFMT(st.st_mode), path.read_bytes() if stat.S_ISREG(st.st_mode) else st.st_rdev)


def _refused(rc, err, *words):
    assert rc == 2, f"exit {rc}, expected 2; stderr: {err[-600:]}"
    assert "Traceback" not in err and any(w in err for w in words), err[-600:]


@pytest.mark.parametrize("key", _params("input"))
def test_never_an_input_even_with_force_or_through_links(key, files, tmp_path):
    case = _case(key, "input")
    if not case.input:
        pytest.skip("the command reads no file named on its command line")
    source = Path(files[case.input])
    before = _snapshot(source)
    link, hard = tmp_path / f"link{source.suffix}", tmp_path / f"hard{source.suffix}"
    link.symlink_to(source)
    os.link(source, hard)
    for alias in (source, link, hard):
        rc, err = run_cli(_argv(case, files, alias, force=True))
        _refused(rc, err, str(alias), alias.name)
        assert _snapshot(source) == before, f"{alias} (the input {source}) was changed"


@pytest.mark.parametrize("key", _params("existing"))
def test_never_an_existing_file_without_force(key, files, tmp_path):
    case = _case(key, "existing")
    if not case.force:
        pytest.fail(f"{key}: the command has no --force")
    if case.kind == "file":
        targets, out = [tmp_path / "out.bin"], tmp_path / "out.bin"
    else:
        assert case.writes, f"{key}: a folder case must list the files it writes"
        out = tmp_path / "out"
        out.mkdir()
        targets = [out / name for name in case.writes]
    for target in targets:
        for t in targets:
            if t.exists():
                t.unlink()
        target.write_bytes(b"keep: an earlier result")
        rc, err = run_cli(_argv(case, files, out, force=False))
        _refused(rc, err, "--force")
        assert target.read_bytes() == b"keep: an earlier result", f"{target} replaced without --force"


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
@pytest.mark.parametrize("key", _params("device"))
def test_never_a_device_node_or_fifo_even_with_force(key, files, tmp_path):
    case = _case(key, "device")
    for kind in ("chr", "fifo"):
        holder = tmp_path / kind
        holder.mkdir()
        if case.kind == "file":
            node = out = holder / "out.bin"
        else:
            out = holder / "out"
            out.mkdir()
            node = out / (case.writes[0] if case.writes else "results.json")
        if kind == "chr":
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
        else:
            os.mkfifo(node)
        rc, err = run_cli(_argv(case, files, out, force=True), timeout=60)
        if (
            case.kind == "folder" and not case.writes
        ):  # nothing known to be written there: the folder must still be safe
            assert rc in (0, 2) and "Traceback" not in err
        else:
            _refused(rc, err, str(node), node.name)
        assert stat.S_ISCHR(os.lstat(node).st_mode) if kind == "chr" else stat.S_ISFIFO(os.lstat(node).st_mode)
    if case.kind == "folder":  # the folder option itself naming a device node
        node = tmp_path / "node"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        rc, err = run_cli(_argv(case, files, node, force=True), timeout=60)
        _refused(rc, err, str(node))
        assert stat.S_ISCHR(os.lstat(node).st_mode)


@pytest.mark.parametrize("key", _params("missing"))
def test_a_missing_place_is_a_clear_error(key, files, tmp_path):
    case = _case(key, "missing")
    if case.kind == "file":
        out = tmp_path / "no_such_folder" / "out.bin"
    else:  # a folder is made with its parents; a parent that is a file is the missing place
        (tmp_path / "a_file").write_text("x")
        out = tmp_path / "a_file" / "out"
    rc, err = run_cli(_argv(case, files, out, force=case.force))
    _refused(rc, err, str(out.parent), str(out))
    assert not (tmp_path / "no_such_folder").exists()


# ------------------------------------------------------------------ read-only and full places (real tmpfs mounts)
PLACE_SCRIPT = r"""
import contextlib, io, json, os, subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[4])
from test_output_policy import CASES, run_cli
files = {k: Path(v) for k, v in json.loads(sys.argv[3]).items()}
place, mode = Path(sys.argv[1]), sys.argv[2]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(place)], check=True)
if mode == "full":
    fd = os.open(place / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # ENOSPC: the place is full
        pass
    os.close(fd)
else:
    subprocess.run(["mount", "-o", "remount,ro", str(place)], check=True)
results = {}
for key in sys.argv[5].split(","):
    case = CASES[key]
    out = place / ("out" if case.kind == "folder" else "out.bin")
    argv = case.argv(files, str(out)) + (["--force"] if case.force else [])
    try:
        rc, err = run_cli(argv)
    except Exception as exc:  # a traceback in this child: report it
        rc, err = "exception", repr(exc)
    results[key] = [rc, err[-400:]]
print("RESULTS" + json.dumps(results))
"""


def _unshare_ok():
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_ok(), reason="no private mount namespace here (unshare -rm)")
@pytest.mark.parametrize("mode", ["read-only", "full"])
def test_read_only_and_full_places_are_clear_errors(mode, files, tmp_path):
    keys = [k for k in IDS if CASES[k].full_run]
    place = tmp_path / "place"
    place.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent)] + sys.path))
    r = subprocess.run(
        [
            "unshare",
            "-rm",
            sys.executable,
            "-c",
            PLACE_SCRIPT,
            str(place),
            mode,
            json.dumps({k: str(v) for k, v in files.items()}),
            str(Path(__file__).parent),
            ",".join(keys),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert "RESULTS" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    results = json.loads(r.stdout.split("RESULTS", 1)[1])
    bad = {
        k: v
        for k, v in results.items()
        if v[0] != 2
        or "Traceback" in v[1]
        or str(place) not in v[1]
        or not re.search(r"full|No space|not writable|Read-only|read-only", v[1])
    }
    assert not bad, json.dumps(bad, indent=1)
    assert sorted(results) == sorted(keys)
