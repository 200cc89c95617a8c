"""A table of bad invocations through the real CLI, in subprocesses: each must exit 2 with a one-line
error that names the option or file at fault, never a traceback. All rows run once, in parallel, in a
session fixture; each row is then its own test (rows failing in another helper's area are xfail)."""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
XFAIL = {}  # row id -> reason naming the owner area; filled below where a row is known to fail in someone else's code


def _files(root: Path) -> dict:
    """Small bad inputs; nothing here needs a trained model."""
    (root / "run_with_ckpt").mkdir()
    (root / "run_with_ckpt" / "last.pt").write_bytes(b"a previous run")
    (root / "empty_run").mkdir()
    (root / "a_file.txt").write_text("not a folder\n")
    (root / "garbage.pt").write_bytes(os.urandom(256))
    (root / "garbage.onnx").write_bytes(os.urandom(256))
    (root / "model.onnx").write_bytes(b"stand-in: the refusal comes before the file is read")
    fer = root / "fer"
    fer.mkdir()
    (fer / "fer2013.csv").write_text(
        "emotion,pixels,Usage\n0," + " ".join(["7"] * 2304) + ",Training\n3,1 2 3,Training\n"
    )
    raf = root / "raf"
    (raf / "EmoLabel").mkdir(parents=True)
    (raf / "Image" / "aligned").mkdir(parents=True)
    (raf / "EmoLabel" / "list_patition_label.txt").write_text("train_00001.jpg 4\n../../../etc/passwd 1\n")
    (root / "bad_results.json").write_text('{"schema": "fertrt-bench-2", "results": [{"model": "m"}]}')
    (root / "photos").mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(root / "photos" / "face.png"), np.full((64, 64, 3), 128, np.uint8))
    return {"root": root}


def _rows(t: Path):
    """(id, argv, text the error must contain). `t` is the folder of the files above."""
    model, pt = t / "model.onnx", t / "garbage.pt"
    return [
        # numeric options: every one range-checked by argparse, exit 2, the option named
        ("train --epochs 0", ["train", "--epochs", "0"], "--epochs"),
        ("train --lr inf", ["train", "--lr", "inf"], "--lr"),
        ("train --lr nan", ["train", "--lr", "nan"], "--lr"),
        ("train --batch-size 0", ["train", "--batch-size", "0"], "--batch-size"),
        ("train --batch-size 100000", ["train", "--batch-size", "100000"], "--batch-size"),
        ("train --workers -1", ["train", "--workers", "-1"], "--workers"),
        ("train --minutes 0", ["train", "--minutes", "0"], "--minutes"),
        ("train --label-smoothing 1", ["train", "--label-smoothing", "1"], "--label-smoothing"),
        ("train --warmup-epochs -1", ["train", "--warmup-epochs", "-1"], "--warmup-epochs"),
        ("train --clip-grad -1", ["train", "--clip-grad", "-1"], "--clip-grad"),
        ("train --weight-decay x", ["train", "--weight-decay", "x"], "--weight-decay"),
        ("train --seed -1", ["train", "--seed", "-1"], "--seed"),
        ("train --seed 2**32", ["train", "--seed", "4294967296"], "--seed"),  # numpy seeds take 32 bits
        ("train --threads 0", ["train", "--threads", "0"], "--threads"),
        ("train --optimizer adam", ["train", "--optimizer", "adam"], "--optimizer"),
        ("serve --http-port 0", ["serve", str(model), "--http-port", "0"], "--http-port"),
        ("serve --grpc-port 70000", ["serve", str(model), "--grpc-port", "70000"], "--grpc-port"),
        ("serve --metrics-port x", ["serve", str(model), "--metrics-port", "x"], "--metrics-port"),
        ("serve --max-batch 0", ["serve", str(model), "--max-batch", "0"], "--max-batch"),
        ("serve --max-queue-delay-us -1", ["serve", str(model), "--max-queue-delay-us", "-1"], "--max-queue-delay-us"),
        ("serve --instances 0", ["serve", str(model), "--instances", "0"], "--instances"),
        ("serve --max-images 0", ["serve", str(model), "--max-images", "0"], "--max-images"),
        (
            "export-triton --max-batch 100000",
            ["export-triton", str(model), "-o", str(t / "repo"), "--max-batch", "100000"],
            "--max-batch",
        ),
        (
            "export-triton --instances 65",
            ["export-triton", str(model), "-o", str(t / "repo"), "--instances", "65"],
            "--instances",
        ),
        (
            "export-triton --max-queue-delay-us 1e9",
            ["export-triton", str(model), "-o", str(t / "repo"), "--max-queue-delay-us", "1e9"],
            "--max-queue-delay-us",
        ),
        (
            "export-triton --faces-instances 0",
            ["export-triton", str(model), "-o", str(t / "repo"), "--faces-instances", "0"],
            "--faces-instances",
        ),
        (
            "export-deepstream --detector-gie-id 0",
            ["export-deepstream", str(model), "-o", str(t / "ds"), "--detector-gie-id", "0"],
            "--detector-gie-id",
        ),
        (
            "export-deepstream --gie-id x",
            ["export-deepstream", str(model), "-o", str(t / "ds"), "--gie-id", "x"],
            "--gie-id",
        ),
        (
            "export-deepstream --face-class-id -1",
            ["export-deepstream", str(model), "-o", str(t / "ds"), "--face-class-id", "-1"],
            "--face-class-id",
        ),
        (
            "export-deepstream --classifier-threshold 1",
            ["export-deepstream", str(model), "-o", str(t / "ds"), "--classifier-threshold", "1"],
            "--classifier-threshold",
        ),
        (
            "export-deepstream --gpu-id -1",
            ["export-deepstream", str(model), "-o", str(t / "ds"), "--gpu-id", "-1"],
            "--gpu-id",
        ),
        ("eval --batch-size 0", ["eval", str(pt), "--batch-size", "0"], "--batch-size"),
        ("export --opset 0", ["export", str(pt), "-o", str(t / "x.onnx"), "--opset", "0"], "--opset"),
        (
            "export --static-batch 0",
            ["export", str(pt), "-o", str(t / "x.onnx"), "--static-batch", "0"],
            "--static-batch",
        ),
        (
            "export --verify-samples 0",
            ["export", str(pt), "-o", str(t / "x.onnx"), "--verify-samples", "0"],
            "--verify-samples",
        ),
        ("export --atol -1", ["export", str(pt), "-o", str(t / "x.onnx"), "--atol", "-1"], "--atol"),
        ("data preview --count 0", ["data", "preview", "synth", "--count", "0"], "--count"),
        ("data preview --size 0", ["data", "preview", "synth", "--size", "0"], "--size"),
        ("data info --size 0", ["data", "info", "synth", "--size", "0"], "--size"),
        (
            "quantize --percentile 200",
            ["quantize", str(model), "-o", str(t / "q.onnx"), "--percentile", "200"],
            "--percentile",
        ),
        (
            "quantize --calib-size 100000",
            ["quantize", str(model), "-o", str(t / "q.onnx"), "--calib-size", "100000"],
            "--calib-size",
        ),
        (
            "quantize --calib-size 0",
            ["quantize", str(model), "-o", str(t / "q.onnx"), "--calib-size", "0"],
            "--calib-size",
        ),
        ("quantize --eval-size 0", ["quantize", str(model), "--sensitivity", "--eval-size", "0"], "--eval-size"),
        ("quantize --max-drop -1", ["quantize", str(model), "--sensitivity", "--max-drop", "-1"], "--max-drop"),
        ("compare --limit 0", ["compare", str(model), "--limit", "0"], "--limit"),
        ("compare --batch-size 0", ["compare", str(model), "--batch-size", "0"], "--batch-size"),
        ("bench --batches 0", ["bench", str(model), "--batches", "0"], "--batches"),
        ("bench --batches 100000", ["bench", str(model), "--batches", "100000"], "--batches"),
        ("bench --batches 1,,8", ["bench", str(model), "--batches", "1,,8"], "--batches"),
        ("bench --seconds 0", ["bench", str(model), "--seconds", "0"], "--seconds"),
        ("bench --warmup -1", ["bench", str(model), "--warmup", "-1"], "--warmup"),
        ("bench --threads 0", ["bench", str(model), "--threads", "0"], "--threads"),
        ("bench --streams 0", ["bench", str(model), "--streams", "0"], "--streams"),
        ("bench --limit 0", ["bench", str(model), "--limit", "0"], "--limit"),
        ("demo --epochs 0", ["demo", "--epochs", "0"], "--epochs"),
        ("demo --min-accuracy 2", ["demo", "--min-accuracy", "2"], "--min-accuracy"),
        ("demo --batches 0", ["demo", "--batches", "0"], "--batches"),
        ("demo --calib-size 100000", ["demo", "--calib-size", "100000"], "--calib-size"),
        ("demo --bench-seconds 0", ["demo", "--bench-seconds", "0"], "--bench-seconds"),
        ("doctor --seconds -1", ["doctor", "--seconds", "-1"], "--seconds"),
        ("infer --smooth 2", ["infer", str(model), str(t), "--smooth", "2"], "--smooth"),
        ("infer --margin -1", ["infer", str(model), str(t), "--margin", "-1"], "--margin"),
        ("infer --max-frames 0", ["infer", str(model), str(t), "--max-frames", "0"], "--max-frames"),
        ("infer --every 0", ["infer", str(model), str(t), "--every", "0"], "--every"),
        (
            "build-engine --builder-opt-level 9",
            ["build-engine", str(model), "-o", str(t / "m.engine"), "--builder-opt-level", "9"],
            "--builder-opt-level",
        ),
        (
            "build-engine --workspace 0",
            ["build-engine", str(model), "-o", str(t / "m.engine"), "--workspace", "0"],
            "--workspace",
        ),
        (
            "build-engine --dla-core -1",
            ["build-engine", str(model), "-o", str(t / "m.engine"), "--dla-core", "-1"],
            "--dla-core",
        ),
        (
            "build-engine --batch-profile 8,1,2",
            ["build-engine", str(model), "-o", str(t / "m.engine"), "--batch-profile", "8,1,2"],
            "--batch-profile '8,1,2'",
        ),
        # the retired --batch (a fixed size, a profile or a list, by command): an error naming the command's own flag,
        # never an abbreviation argparse resolves to --batch-size, --batch-profile or --batches
        (
            "export --batch",
            ["export", str(pt), "-o", str(t / "x.onnx"), "--batch", "4"],
            "for export use --static-batch N",
        ),
        (
            "build-engine --batch",
            ["build-engine", str(model), "-o", str(t / "m.engine"), "--batch", "1,8,32"],
            "for build-engine use --batch-profile MIN,OPT,MAX",
        ),
        (
            "build-engine --batch=1",
            ["build-engine", str(model), "-o", str(t / "m.engine"), "--batch=1"],
            "for build-engine use --batch-profile",
        ),
        ("bench --batch", ["bench", str(model), "--batch", "1,8"], "for bench use --batches 1,8,32"),
        ("demo --batch", ["demo", "--batch", "1"], "for demo use --batches 1,8,32"),
        ("train --batch", ["train", "--batch", "64"], "for train use --batch-size N"),
        ("eval --batch", ["eval", str(pt), "--batch", "64"], "for eval use --batch-size N"),
        ("compare --batch", ["compare", str(model), "--batch", "64"], "for compare use --batch-size N"),
        (
            "export-deepstream --batch",
            ["export-deepstream", str(model), "-o", str(t / "ds"), "--batch", "8"],
            "for export-deepstream use --batch-size N",
        ),
        ("build-engine --batch, no value", ["build-engine", str(model), "--batch"], "use --batch-profile"),
        # bad files and folders: the file named
        ("train -o a file", ["train", "--data", "synth:60", "-o", str(t / "a_file.txt")], "a_file.txt"),
        (
            "train -o a folder with a run",
            ["train", "--data", "synth:60", "-o", str(t / "run_with_ckpt")],
            "run_with_ckpt",
        ),
        (
            "train --resume, nothing there",
            ["train", "--data", "synth:60", "-o", str(t / "empty_run"), "--resume"],
            "last.pt",
        ),
        (
            "train --model-arg unknown",
            ["train", "--data", "synth:60", "-o", str(t / "new_run"), "--model-arg", "no_such_arg=1"],
            "--model-arg",
        ),
        (
            "train --model-arg not KEY=VALUE",
            ["train", "--data", "synth:60", "-o", str(t / "new_run2"), "--model-arg", "=3"],
            "--model-arg",
        ),
        (
            "train --device cuda:x",
            ["train", "--data", "synth:60", "-o", str(t / "new_run3"), "--device", "gpu0"],
            "--device",
        ),
        ("eval a missing checkpoint", ["eval", str(t / "missing.pt")], "missing.pt"),
        ("eval a garbage checkpoint", ["eval", str(pt)], "garbage.pt"),
        ("eval -o a file", ["eval", str(pt), "-o", str(t / "a_file.txt")], "garbage.pt"),
        ("export -o the checkpoint itself", ["export", str(pt), "-o", str(pt), "--force"], "garbage.pt"),
        ("export into a missing folder", ["export", str(pt), "-o", str(t / "nope" / "x.onnx")], "nope"),
        ("data info: malformed FER2013 row", ["data", "info", f"fer2013:{t / 'fer'}"], "fer2013.csv:3"),
        (
            "data info: RAF-DB path leaving the root",
            ["data", "info", f"rafdb:{t / 'raf'}"],
            "list_patition_label.txt:2",
        ),
        ("data info: bad synth size", ["data", "info", "synth:many"], "synth:many"),
        ("data info: missing folder", ["data", "info", f"folder:{t / 'missing'}"], "missing"),
        ("compare -o the model itself", ["compare", str(model), "-o", str(model)], "model.onnx"),
        ("compare a garbage onnx", ["compare", str(t / "garbage.onnx")], "garbage.onnx"),
        (
            "bench --compare damaged results",
            ["bench", "--compare", str(t / "bad_results.json"), str(t / "bad_results.json")],
            "bad_results.json",
        ),
        ("bench -o a file", ["bench", str(model), "-o", str(t / "a_file.txt")], "a_file.txt"),
        ("bench a garbage onnx", ["bench", str(t / "garbage.onnx"), "-o", str(t / "bench_out")], "garbage.onnx"),
        ("infer a garbage onnx", ["infer", str(t / "garbage.onnx"), str(t / "photos")], "garbage.onnx"),
        ("quantize a garbage onnx", ["quantize", str(t / "garbage.onnx"), "-o", str(t / "q.onnx")], "garbage.onnx"),
        ("quantize -o the input", ["quantize", str(model), "-o", str(model), "--force"], "model.onnx"),
        ("inspect-engine a missing engine", ["inspect-engine", str(t / "missing.engine")], "missing.engine"),
        ("build-engine -o the input", ["build-engine", str(model), "-o", str(model)], "model.onnx"),
    ]


@pytest.fixture(scope="session")
def table(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_table")
    _files(root)
    rows = _rows(root)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}

    def run(row):
        _, argv, _ = row
        try:
            return subprocess.run(
                [sys.executable, "-m", "fertrt", *argv],
                capture_output=True,
                text=True,
                timeout=240,
                cwd=root,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, rows))
    return {row[0]: (row, res) for row, res in zip(rows, results)}


def _ids():
    return [r[0] for r in _rows(Path("/x"))]


@pytest.mark.parametrize(
    "row_id",
    [pytest.param(i, marks=pytest.mark.xfail(reason=XFAIL[i], strict=False)) if i in XFAIL else i for i in _ids()],
)
def test_bad_invocation_is_a_clear_error(table, row_id):
    (_, argv, must_name), proc = table[row_id]
    assert not isinstance(proc, subprocess.TimeoutExpired), f"{row_id}: no answer within {proc.timeout}s"
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, f"{row_id}: traceback\n{out[-3000:]}"
    assert proc.returncode == 2, f"{row_id}: exit {proc.returncode}, expected 2\n{out[-2000:]}"
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert errors, f"{row_id}: no 'error:' line\n{proc.stderr[-2000:]}"
    assert must_name in errors[-1], f"{row_id}: the error does not name {must_name!r}: {errors[-1]}"


def test_the_table_covers_every_numeric_option():
    """Every option declared with a numeric type in fertrt/cli.py appears in a row above."""
    import argparse

    from fertrt import cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    covered = " ".join(" ".join(r[1]) for r in _rows(Path("/x")))
    missing = []
    for name, (_, _, add_args) in cli._COMMANDS.items():
        p = sub.add_parser(name)
        add_args(p)
        parsers = [p] + [
            a for act in p._actions if isinstance(act, argparse._SubParsersAction) for a in act.choices.values()
        ]
        for q in parsers:
            for act in q._actions:
                if act.type in (int, float):
                    missing.append(f"{name} {act.option_strings}: type={act.type.__name__} is not range-checked")
                elif (
                    act.type is not None
                    and act.option_strings
                    and act.type.__name__.startswith(("integer", "number", "batch"))
                    and not any(o in covered for o in act.option_strings)
                ):
                    missing.append(f"{name} {act.option_strings[-1]} has no row")
    assert not missing, "\n".join(missing)


def test_each_batch_flag_parses_to_its_one_meaning(capsys):
    """The split spellings reach the handlers with their values; the retired --batch sets nothing (no `batch`
    attribute a handler could read by mistake) and stops the parse with exit 2."""
    import argparse

    from fertrt import cli

    def parse(name, *argv):
        parser = argparse.ArgumentParser(prog=f"fertrt {name}")
        cli._COMMANDS[name][2](parser)
        return vars(parser.parse_args(list(argv)))

    assert parse("export", "m.pt", "-o", "m.onnx", "--static-batch", "4")["static_batch"] == 4
    assert parse("build-engine", "m.onnx", "--batch-profile", "1,4,16")["batch_profile"] == "1,4,16"
    assert parse("bench", "m.onnx", "--batches", "1,8")["batches"] == (1, 8)
    assert parse("demo", "--batches", "2,16")["batches"] == (2, 16)
    assert parse("eval", "m.pt", "--batch-size", "16")["batch_size"] == 16
    assert "batch" not in parse("bench", "m.onnx") and parse("bench", "m.onnx")["batches"] == (1, 8, 32)
    with pytest.raises(SystemExit) as exc:
        parse("bench", "m.onnx", "--batch", "1,8")
    assert exc.value.code == 2 and "for bench use --batches" in capsys.readouterr().err


# ---------------------------------------------------------------- the bad-input sweep's probes (issue 23 part 2)
# Each probe of benchmarks/bad_input_sweep.py (outputs over inputs and device nodes, read-only and full places,
# damaged data, lying metadata, ...) is a test here: it must end in the class the probe expects, a clear exit 2
# (or a warning where one is the answer), never a traceback, a silently wrong result or a changed input.
def _sweep_ids():
    from fertrt.benchmarks.bad_input_sweep import probes

    return [p.id for p in probes({})]


@pytest.fixture(scope="session")
def sweep(tmp_path_factory):
    from fertrt.benchmarks import bad_input_sweep as sweep_tool

    root = tmp_path_factory.mktemp("sweep")
    sweep_tool.make_fixtures(root)
    selected = sweep_tool.runnable(sweep_tool.probes({}))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: sweep_tool.run_probe(p, root), selected))
    return {p.id: (p, r) for p, r in zip(selected, results)}


@pytest.mark.parametrize("probe_id", _sweep_ids())
def test_bad_input_sweep_probe(sweep, probe_id):
    from fertrt.benchmarks.bad_input_sweep import expected_class

    if probe_id not in sweep:
        pytest.skip("needs a private mount namespace (unshare -rm) for a read-only or full place")
    probe, result = sweep[probe_id]
    assert result["class"] == expected_class(probe), f"{probe_id}: {result}"
