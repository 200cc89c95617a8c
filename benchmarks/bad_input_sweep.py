"""Bad-input sweep: run `fertrt` on bad inputs and outputs, each in its own process, and classify the result.

    python -m fertrt.benchmarks.bad_input_sweep [-o sweep.json] [--only SUBSTRING] [--workers 2]

Classes: clear (exit 2, a one-line error, no traceback), warned (exit 0 with a warning where a warning is the
right answer), traceback, silent wrong (finished as if nothing were wrong), lost data (a file the command read, or a
device node, was changed), hang (past the time limit), other (any other exit). Fixtures are made in a temp folder:
a 1-epoch LNLAttenNet on easy synth and its ONNX (about 10 s), hand-built ONNX graphs, damaged files, device nodes
(root only) and, where `unshare -rm` is allowed, read-only and full tmpfs places.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

FERTRT = [sys.executable, "-m", "fertrt"]


@dataclass
class Probe:
    id: str
    argv: list
    expect: str = "refuse"  # refuse | warn (exit 0 with a warning, or a refusal) | ok
    keep: tuple = ()  # paths that must be unchanged afterwards
    place: str = ""  # "", "ro" or "full": run inside a private tmpfs at PLACE
    env: dict = field(default_factory=dict)
    timeout: int = 240
    warning: str = ""  # expect="warn": a regular expression the warning must match (case-insensitive)


# ------------------------------------------------------------------ fixtures
def _run(argv, cwd, **kw):
    return subprocess.run(FERTRT + [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, **kw)


def _onnx_with_meta(path, src_model, build_graph, meta_update=None):
    """Write a hand-built graph carrying the fertrt metadata of `src_model` (optionally changed)."""
    import onnx

    from fertrt.export.metadata import set_metadata
    from fertrt.runtime.metadata import read_metadata

    meta = dict(read_metadata(str(src_model)))
    meta.update(meta_update or {})
    model = build_graph(onnx)
    set_metadata(model, meta)
    onnx.save(model, str(path))


def _graph_two_inputs(onnx):
    h = onnx.helper
    x = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    y = h.make_tensor_value_info("input2", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    z = h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, None)
    g = h.make_graph(
        [
            h.make_node("Add", ["input", "input2"], ["s"]),
            h.make_node("GlobalAveragePool", ["s"], ["p"]),
            h.make_node("Flatten", ["p"], ["logits"]),
        ],
        "two_inputs",
        [x, y],
        [z],
    )
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


def _graph_identity(onnx):
    h = onnx.helper
    x = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    y = h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    return h.make_model(
        h.make_graph([h.make_node("Identity", ["input"], ["logits"])], "not_a_classifier", [x], [y]),
        opset_imports=[h.make_opsetid("", 17)],
    )


def _graph_three_logits(onnx):
    import numpy as np

    h = onnx.helper
    x = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, 112, 112])
    y = h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["N", 3])
    w = onnx.numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")
    nodes = [
        h.make_node("GlobalAveragePool", ["input"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"]),
        h.make_node("MatMul", ["f", "w"], ["logits"]),
    ]
    return h.make_model(
        h.make_graph(nodes, "three_logits", [x], [y], initializer=[w]), opset_imports=[h.make_opsetid("", 17)]
    )


def _graph_fake_yunet(onnx):
    from fertrt.runtime.detectors import YUNET_OUTPUTS

    h = onnx.helper
    x = h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, 3, 480, 640])
    outs = [h.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in YUNET_OUTPUTS]
    nodes = [h.make_node("ReduceMean", ["input"], [n], keepdims=1) for n in YUNET_OUTPUTS]
    return h.make_model(h.make_graph(nodes, "fake_yunet", [x], outs), opset_imports=[h.make_opsetid("", 17)])


def _checkpoint_variant(src, dst, change):
    import torch

    ckpt = torch.load(src, weights_only=True, map_location="cpu")
    change(ckpt)
    torch.save(ckpt, dst)


def _nan_weights(ckpt):
    for k, v in ckpt["state_dict"].items():
        if v.is_floating_point():
            v.fill_(float("nan"))


def _bad_preprocess(ckpt):
    ckpt["preprocess"] = {"input_size": "big", "mean": None}
    ckpt["model_config"]["preprocess"] = ckpt["preprocess"]


def make_fixtures(root: Path) -> dict:
    import cv2
    import numpy as np

    f = {"root": root}
    r = _run(["train", "--data", "synth:48:easy", "--epochs", "1", "-o", "run"], root)
    if r.returncode:
        raise SystemExit(f"fixture training failed: {r.stderr[-800:]}")
    _run(["export", "run/best.pt", "-o", "model.onnx", "--no-simplify"], root, check=True)
    f["ckpt"], f["onnx"] = root / "run" / "best.pt", root / "model.onnx"
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    cv2.imwrite(str(root / "face.png"), img)
    cv2.imwrite(str(root / "tiny1x1.png"), img[:1, :1])
    cv2.imwrite(str(root / "tiny2x3.png"), img[:2, :3])
    cv2.imwrite(str(root / "float01.tiff"), img.astype(np.float32) / 255.0)
    for name, build, meta in (
        ("two_inputs.onnx", _graph_two_inputs, None),
        ("identity.onnx", _graph_identity, None),
        ("three_logits.onnx", _graph_three_logits, None),
        ("lying_size.onnx", None, {"input_size": [64, 64]}),
        ("huge_size.onnx", None, {"input_size": [100000, 100000]}),
    ):
        if build is None:  # the real graph, its metadata changed
            import onnx

            from fertrt.export.metadata import set_metadata
            from fertrt.runtime.metadata import read_metadata

            m = onnx.load(str(f["onnx"]))
            meta_all = dict(read_metadata(str(f["onnx"])))
            meta_all.update(meta)
            meta_all["preprocess"] = dict(meta_all["preprocess"], input_size=meta["input_size"])
            set_metadata(m, meta_all)
            onnx.save(m, str(root / name))
        else:
            _onnx_with_meta(root / name, f["onnx"], build, meta)
    import onnx

    onnx.save(_graph_fake_yunet(onnx), str(root / "fake_yunet.onnx"))
    _checkpoint_variant(f["ckpt"], root / "nan.pt", _nan_weights)
    _checkpoint_variant(f["ckpt"], root / "bad_pre.pt", _bad_preprocess)
    (root / "fer_bin").mkdir()
    (root / "fer_bin" / "fer2013.csv").write_bytes(os.urandom(4096))
    for label in ("happy", "sad"):
        (root / "unreadable" / label).mkdir(parents=True)
        for k in range(5):
            (root / "unreadable" / label / f"{k}.png").write_bytes(b"not a png " + os.urandom(50))
    (root / "oneclass" / "happy").mkdir(parents=True)
    for k in range(12):
        cv2.imwrite(str(root / "oneclass" / "happy" / f"{k}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "zero.engine").write_bytes(b"")
    (root / "zero.engine.json").write_text("{}")
    (root / "fake.engine").write_bytes(b"engine bytes")
    (root / "existing.json").write_text("keep")
    (root / "existing.png").write_bytes(b"keep")
    (root / "doctor_out").mkdir()
    (root / "doctor_out" / "doctor.md").write_text("keep")
    (root / "other.calib.cache").write_text("TRT-8600-EntropyCalibration2\nsome_other_tensor: 3c000000\n")
    for name, text in (
        ("bin.json", None),
        ("list.json", "[1, 2]"),
        ("nested.json", "[" * 100000 + "]" * 100000),
        ("string.json", '"results"'),
        ("dup.json", _results([1.0, 1.0])),
        ("inf.json", _results(["Infinity"])),
        ("true.json", _results(["true"])),
        ("good.json", _results([2.0])),
        ("other_rows.json", _results([2.0], model="other.onnx")),
    ):
        p = root / name
        p.write_bytes(os.urandom(256)) if text is None else p.write_text(text)
    if os.geteuid() == 0:
        os.mknod(root / "null_copy", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(root / "full_copy", 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    os.mkfifo(root / "fifo")
    return f


def _results(p50s, model="m.onnx"):
    rows = ",".join(
        '{"model": "%s", "backend": "onnxruntime", "precision": "fp32", "batch": 1, '
        '"latency_ms": {"p50": %s}, "throughput_ips": 100}' % (model, p)
        for p in p50s
    )
    return '{"schema": "fertrt-bench-2", "results": [%s]}' % rows


# ------------------------------------------------------------------ the probes
def probes(f: dict) -> list:
    m, ck, face = "model.onnx", "run/best.pt", "face.png"
    infer = ["infer", m, face, "--no-detect"]
    q8 = ["quantize", m, "--calib-data", "synth:40:easy", "--calib-size", "16"]
    out = [
        # outputs over inputs, device nodes, FIFOs, existing files
        Probe("infer --jsonl MODEL --force", infer + ["--jsonl", m, "--force"], keep=(m,)),
        Probe("infer --summary-json MODEL --force", infer + ["--summary-json", m, "--force"], keep=(m,)),
        Probe("infer --jsonl null-node --force", infer + ["--jsonl", "null_copy", "--force"], keep=("null_copy",)),
        Probe(
            "infer --summary-json full-node --force",
            infer + ["--summary-json", "full_copy", "--force"],
            keep=("full_copy",),
        ),
        Probe("infer --jsonl FIFO --force", infer + ["--jsonl", "fifo", "--force"], keep=("fifo",), timeout=60),
        Probe("infer --save INPUT --force", infer + ["--save", face, "--force"], keep=(face,)),
        Probe(
            "inspect-engine --json ENGINE",
            ["inspect-engine", "fake.engine", "--json", "fake.engine"],
            keep=("fake.engine",),
        ),
        Probe(
            "inspect-engine --json existing",
            ["inspect-engine", "fake.engine", "--json", "existing.json"],
            keep=("existing.json",),
        ),
        Probe(
            "quantize --sensitivity -o existing",
            ["quantize", m, "--sensitivity", "-o", "existing.json"],
            keep=("existing.json",),
        ),
        Probe("quantize -o MODEL --force", ["quantize", m, "--precision", "fp16", "-o", m, "--force"], keep=(m,)),
        Probe("doctor -o DIR holding doctor.md", ["doctor", "-o", "doctor_out"], keep=("doctor_out/doctor.md",)),
        Probe("doctor -o FILE", ["doctor", "-o", "existing.json"], keep=("existing.json",)),
        Probe(
            "data preview -o existing",
            ["data", "preview", "synth:16:easy", "-o", "existing.png"],
            keep=("existing.png",),
        ),
        Probe("build-engine -o existing", ["build-engine", m, "-o", "existing.json"], keep=("existing.json",)),
        Probe("export -o CKPT --force", ["export", ck, "-o", ck, "--force"], keep=(ck,)),
        Probe("compare -o MODEL --force", ["compare", m, "--data", "synth:16:easy", "-o", m, "--force"], keep=(m,)),
        Probe("demo -o FILE", ["demo", "-o", "existing.json"], keep=("existing.json",)),
        Probe("ablation -o FILE", ["-m", "fertrt.benchmarks.ablation", "-o", "existing.json"], keep=("existing.json",)),
        Probe("train -o null-node", ["train", "-o", "null_copy"], keep=("null_copy",)),
        # read-only and full places
        Probe(
            "train into a full disk",
            ["train", "--data", "synth:16:easy", "--epochs", "1", "-o", "PLACE/run"],
            place="full",
        ),
        Probe("quantize into a full disk", ["quantize", m, "--precision", "fp16", "-o", "PLACE/q.onnx"], place="full"),
        Probe("doctor -o read-only folder", ["doctor", "-o", "PLACE/doc"], place="ro"),
        Probe("demo -o read-only folder", ["demo", "-o", "PLACE/demo"], place="ro"),
        Probe("ablation -o read-only folder", ["-m", "fertrt.benchmarks.ablation", "-o", "PLACE/abl"], place="ro"),
        Probe("infer, read-only HOME", ["infer", m, face], place="ro", env={"HOME": "PLACE"}),
        Probe(
            "detector export, read-only HOME",
            ["detector", "export"],
            place="ro",
            env={"HOME": "PLACE", "XDG_CACHE_HOME": "PLACE/.cache"},
        ),
        # data
        Probe("data info synth:100000000", ["data", "info", "synth:100000000"]),
        Probe("data info synth:99999999999999999999", ["data", "info", "synth:99999999999999999999"]),
        Probe("data info binary fer2013.csv", ["data", "info", "fer2013:fer_bin"]),
        Probe(
            "train on unreadable folder", ["train", "--data", "folder:unreadable", "--epochs", "1", "-o", "r_unread"]
        ),
        Probe("train on a one-class folder", ["train", "--data", "folder:oneclass", "--epochs", "1", "-o", "r_one"]),
        # models and metadata
        Probe("compare: metadata lies about input size", ["compare", "lying_size.onnx", "--data", "synth:16:easy"]),
        Probe("infer: metadata lies about input size", ["infer", "lying_size.onnx", face, "--no-detect"]),
        Probe("infer: metadata input size 100000", ["infer", "huge_size.onnx", face, "--no-detect"]),
        Probe(
            "quantize a two-input ONNX",
            ["quantize", "two_inputs.onnx", "--calib-data", "synth:16:easy", "-o", "q2.onnx"],
        ),
        Probe(
            "quantize a non-classifier", ["quantize", "identity.onnx", "--calib-data", "synth:16:easy", "-o", "qi.onnx"]
        ),
        Probe(
            "quantize: 7 names for 3 logits", ["quantize", "three_logits.onnx", "--precision", "fp16", "-o", "q3.onnx"]
        ),
        Probe(
            "quantize --calib-size 20000 on 40 images",
            ["quantize", m, "--calib-data", "synth:40:easy", "--calib-size", "20000", "-o", "qc.onnx"],
            expect="warn",
            warning=r"calib",
        ),
        Probe("quantize --calib-cache of another model", q8 + ["--calib-cache", "other.calib.cache", "-o", "qcc.onnx"]),
        Probe(
            "quantize --keep-fp32 'Bogus,,'",
            ["quantize", m, "--precision", "fp16", "--keep-fp32", "Bogus,,", "-o", "qk.onnx"],
        ),
        Probe("quantize --trt-version 99.0", q8 + ["--trt-version", "99.0", "-o", "qv.onnx"]),
        Probe("eval a checkpoint with NaN weights", ["eval", "nan.pt", "--data", "synth:16:easy", "-o", "ev_nan"]),
        Probe(
            "eval a checkpoint with damaged preprocessing",
            ["eval", "bad_pre.pt", "--data", "synth:16:easy", "-o", "ev_bad"],
        ),
        Probe(
            "train --model-arg grid=0", ["train", "--model-arg", "grid=0", "--data", "synth:16:easy", "-o", "r_grid0"]
        ),
        Probe(
            "train --resume --model-arg grid=2",
            ["train", "--resume", "--model-arg", "grid=2", "--data", "synth:48:easy", "-o", "run"],
        ),
        Probe("export a checkpoint with damaged preprocessing", ["export", "bad_pre.pt", "-o", "bad_pre.onnx"]),
        Probe("infer --regions without region outputs", infer + ["--regions", "--save", "regions.png"]),
        Probe(
            "infer a float TIFF in [0, 1] (read, not black)",
            [
                "-c",
                "import sys; from fertrt.runtime.preprocess import read_image; "
                "img = read_image('float01.tiff'); sys.exit(0 if img is not None and img.mean() > 50 else 3)",
            ],
            expect="ok",
        ),
        Probe(
            "infer a 1x1 crop",
            ["infer", m, "tiny1x1.png", "--no-detect"],
            expect="warn",
            warning=r"1x1|too small|pixels",
        ),
        Probe(
            "infer a 2x3 crop",
            ["infer", m, "tiny2x3.png", "--no-detect"],
            expect="warn",
            warning=r"2x3|3x2|too small|pixels",
        ),
        Probe("infer --detector-model fake YuNet", ["infer", m, face, "--detector-model", "fake_yunet.onnx"]),
        Probe("inspect-engine a 0-byte engine", ["inspect-engine", "zero.engine"]),
        # bench --compare
        *[
            Probe(f"bench --compare {name}", ["bench", "--compare", name, "good.json"])
            for name in (
                "bin.json",
                "list.json",
                "nested.json",
                "string.json",
                "dup.json",
                "inf.json",
                "true.json",
                "other_rows.json",
            )
        ],
        # the ablation suite's options
        Probe("ablation --seed -1", ["-m", "fertrt.benchmarks.ablation", "--seed", "-1"]),
        Probe("ablation --variants ,", ["-m", "fertrt.benchmarks.ablation", "--variants", ","]),
    ]
    if os.geteuid() != 0:
        out = [p for p in out if not any(k in ("null_copy", "full_copy") for k in p.keep)]
    return out


# ------------------------------------------------------------------ running and classifying
def _fingerprint(path: Path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        return ("file", hashlib.sha256(path.read_bytes()).hexdigest())
    return (stat.S_IFMT(st.st_mode), st.st_rdev)


def _command(probe: Probe, root: Path, place: Path):
    argv = [str(a).replace("PLACE", str(place)) for a in probe.argv]
    cmd = ([sys.executable] + argv) if argv[0] in ("-m", "-c") else FERTRT + argv
    env = dict(os.environ, **{k: v.replace("PLACE", str(place)) for k, v in probe.env.items()})
    if not probe.place:
        return cmd, env
    fill = "dd if=/dev/zero of={p}/filler bs=4k 2>/dev/null; " if probe.place == "full" else "mount -o remount,ro {p}; "
    script = f'mount -t tmpfs -o size=256k tmpfs {{p}} && {fill}exec "$@"'.format(p=place)
    return ["unshare", "-rm", "sh", "-c", script, "sh"] + cmd, env


def classify(probe: Probe, rc, err: str, changed: list) -> str:
    if changed:
        return "lost data"
    if rc == "timeout":
        return "hang"
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if rc == 2 and probe.expect in ("refuse", "warn"):
        return "clear"
    if rc == 0 and probe.expect == "warn" and re.search(probe.warning, err, re.I):
        return "warned"
    if rc == 0:
        return "ok" if probe.expect == "ok" else "silent wrong"
    return f"other (exit {rc})"


def run_probe(probe: Probe, root: Path) -> dict:
    place = Path(tempfile.mkdtemp(prefix="place-", dir=root)) if probe.place else root
    cmd, env = _command(probe, root, place)
    keep = {k: _fingerprint(root / k) for k in probe.keep}
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=probe.timeout)
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired as exc:
        rc, err = (
            "timeout",
            (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or ""),
        )
    changed = [k for k, fp in keep.items() if _fingerprint(root / k) != fp]
    last = [line for line in err.strip().splitlines() if line.strip()][-1:] or [""]
    return {
        "id": probe.id,
        "class": classify(probe, rc, err, changed),
        "exit": rc,
        "seconds": round(time.perf_counter() - t0, 1),
        "changed": changed,
        "last_line": last[0][:300],
    }


def expected_class(probe: Probe) -> str:
    return {"refuse": "clear", "warn": "warned", "ok": "ok"}[probe.expect]


def runnable(selected: list) -> list:
    """The probes this machine can run: read-only and full places need a private mount namespace."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        return [p for p in selected if not p.place]
    return selected


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=None, help="write the per-probe results as JSON")
    ap.add_argument("--only", default=None, help="run only probes whose id contains this text")
    ap.add_argument("--workers", type=int, default=2, help="probes run at once (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the fixture folder")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="fertrt-sweep-"))
    try:
        f = make_fixtures(root)
        selected = runnable([p for p in probes(f) if not args.only or args.only in p.id])
        with ThreadPoolExecutor(max(1, args.workers)) as pool:
            results = list(pool.map(lambda p: run_probe(p, root), selected))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    width = max(len(r["id"]) for r in results)
    for r in results:
        print(f"{r['id']:<{width}}  {r['class']:<13} {r['last_line'][:110]}")
    counts = {}
    for r in results:
        counts[r["class"]] = counts.get(r["class"], 0) + 1
    print(f"\n{len(results)} probes: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.output:
        from fertrt.fileio import write_json_atomic

        write_json_atomic(args.output, {"counts": counts, "results": results}, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
