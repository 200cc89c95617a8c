"""benchmarks/ablation.py: the design-ablation suite, run end to end at toy scale."""
import json

import pytest

from fertrt.benchmarks import ablation


def test_unknown_variant_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--variants", "lnlattennet,nope"])
    assert exc.value.code == 2
    assert "nope" in capsys.readouterr().err


def test_suite_trains_each_variant_and_reuses_finished_runs(tmp_path, torch_threads):
    out = tmp_path / "abl"
    argv = ["--data", "synth:96:easy", "--epochs", "1", "--regime", "epochs",
            "--variants", "lnlattennet,no_feedback,global_only", "-o", str(out),
            "--speed-batch", "8", "--speed-rounds", "1", "--latency-repeats", "5"]
    ablation.main(argv)
    rows = json.loads((out / "results.json").read_text())
    assert [r["variant"] for r in rows] == ["lnlattennet", "no_feedback", "global_only"]
    for r in rows:
        assert r["epochs"] == 1 and r["data"] == "synth:96:easy"
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
        assert r["params"] > 0 and r["macs"] > 0
        assert r["train_img_per_s"] > 0 and r["ort_cpu_b1_ms"] > 0
    by = {r["variant"]: r for r in rows}
    # the ratio is defined only where learned weights are used
    assert by["lnlattennet"]["cue_share_ratio"] > 0
    assert by["no_feedback"]["cue_share_ratio"] is None and by["global_only"]["cue_share_ratio"] is None
    # switching a part off changes the model, not just the label
    assert by["global_only"]["macs"] < by["lnlattennet"]["macs"]
    table = (out / "table.md").read_text()
    assert table.count("| synth:96:easy | 1 epochs |") == 3

    # a second run reuses the finished trainings (their checkpoints are not rewritten)
    best = out / "synth_96_easy" / "1ep" / "lnlattennet" / "best.pt"
    stamp = best.stat().st_mtime_ns
    ablation.main(argv)
    assert best.stat().st_mtime_ns == stamp
    again = json.loads((out / "results.json").read_text())
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_a_folder_made_by_another_design_is_not_reused_under_the_label(tmp_path, capsys):
    """A finished run from before weight smoothing (weight_smoothing 0) must not be reported as today's lnlattennet."""
    folder = tmp_path / "abl" / "synth_96_easy" / "1ep" / "lnlattennet"
    folder.mkdir(parents=True)
    (folder / "ablation_result.json").write_text(json.dumps({"variant": "lnlattennet", "model_kwargs": {"weight_smoothing": 0.0}}))
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--data", "synth:96:easy", "--epochs", "1", "--regime", "epochs", "--variants", "lnlattennet",
                       "-o", str(tmp_path / "abl")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ablation_result.json: made with another design (weight_smoothing=0.0, expected 0.4)" in err and "delete" in err
