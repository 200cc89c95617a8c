"""benchmarks/ablation.py: the design-ablation suite, run end to end at toy scale."""

import json

import pytest

from fertrt.benchmarks import ablation


def test_unknown_variant_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--variants", "lnlattennet,nope"])
    assert exc.value.code == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.parametrize("minutes", ["nan", "inf", "0"])
def test_minutes_must_be_a_finite_positive_number(tmp_path, capsys, minutes):
    with pytest.raises(SystemExit) as exc:
        ablation.main(["--minutes", minutes, "-o", str(tmp_path / "abl")])
    assert exc.value.code == 2 and "--minutes" in capsys.readouterr().err
    assert not (tmp_path / "abl").exists()


def test_suite_trains_each_variant_and_reuses_finished_runs(tmp_path, torch_threads):
    out = tmp_path / "abl"
    argv = [
        "--data",
        "synth:96:easy",
        "--epochs",
        "1",
        "--regime",
        "epochs",
        "--variants",
        "lnlattennet,no_feedback,global_only",
        "-o",
        str(out),
        "--speed-batch",
        "8",
        "--speed-rounds",
        "1",
        "--latency-repeats",
        "5",
    ]
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
    table_before = (out / "table.md").read_text()
    with pytest.raises(SystemExit) as exc:  # the finished suite's results.json and table.md: replaced only with --force
        ablation.main(argv)
    assert exc.value.code == 2 and (out / "table.md").read_text() == table_before
    argv.append("--force")
    ablation.main(argv)
    assert best.stat().st_mtime_ns == stamp
    again = json.loads((out / "results.json").read_text())
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]

    # a run killed after its last epoch but before its result file is evaluated, not trained again
    (best.parent / "ablation_result.json").unlink()
    ablation.main(argv)
    assert best.stat().st_mtime_ns == stamp
    assert (best.parent / "ablation_result.json").is_file()
    third = json.loads((out / "results.json").read_text())
    assert [r["accuracy"] for r in third] == [r["accuracy"] for r in rows] and third[0]["epochs"] == 1


def test_a_folder_made_by_another_design_is_not_reused_under_the_label(tmp_path, capsys):
    """A finished run from before weight smoothing (weight_smoothing 0) must not be reported as today's lnlattennet."""
    folder = tmp_path / "abl" / "synth_96_easy" / "1ep" / "lnlattennet"
    folder.mkdir(parents=True)
    (folder / "ablation_result.json").write_text(
        json.dumps({"variant": "lnlattennet", "model_kwargs": {"weight_smoothing": 0.0}})
    )
    with pytest.raises(SystemExit) as exc:
        ablation.main(
            [
                "--data",
                "synth:96:easy",
                "--epochs",
                "1",
                "--regime",
                "epochs",
                "--variants",
                "lnlattennet",
                "-o",
                str(tmp_path / "abl"),
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert (
        "ablation_result.json: made with another design (weight_smoothing=0.0, expected 0.4)" in err and "delete" in err
    )


@pytest.mark.parametrize(
    "content, message",
    [
        (
            '{"variant": "lnlattennet", "model_kwargs": {"weight_smoothing": 0.4, "feedback": false}}',
            "made with another design (feedback=False, expected 'unset')",
        ),  # an extra override is another design too
        ("{not json", "ablation_result.json: unreadable"),
        ('["a list"]', "expected an ablation result"),
    ],
)
def test_a_stale_or_damaged_result_file_is_a_clear_error(tmp_path, capsys, content, message):
    folder = tmp_path / "abl" / "synth_96_easy" / "1ep" / "lnlattennet"
    folder.mkdir(parents=True)
    (folder / "ablation_result.json").write_text(content)
    with pytest.raises(SystemExit) as exc:
        ablation.main(
            [
                "--data",
                "synth:96:easy",
                "--epochs",
                "1",
                "--regime",
                "epochs",
                "--variants",
                "lnlattennet",
                "-o",
                str(tmp_path / "abl"),
            ]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "delete" in err and "Traceback" not in err
