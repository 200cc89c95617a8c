"""train/checkpoint.py: checkpoints of older fertrt versions load as trained; other files are refused."""

import pytest
import torch

from fertrt.errors import FertrtError
from fertrt.train.checkpoint import load_model


def test_a_file_that_is_no_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(FertrtError, match="bad.pt: not a fertrt checkpoint"):
        load_model(bad)


@pytest.mark.parametrize("old_kwargs", [{"fusion": "concat", "weight_smoothing": 0.0}, {"weight_smoothing": 0.0}])
def test_checkpoints_from_before_a_design_default_changed_load_as_trained(tmp_path, old_kwargs):
    """An LNLAttenNet checkpoint written before `fusion` or `weight_smoothing` existed holds no such argument:
    it must be rebuilt as it was trained (concatenation, unsmoothed weights), not with today's defaults."""
    from fertrt.train.checkpoint import save_checkpoint
    from fertrt.train.models import create_model

    torch.manual_seed(0)
    model = create_model("lnlattennet", **old_kwargs).eval()
    save_checkpoint(
        tmp_path / "old.pt",
        {
            "model_name": "lnlattennet",
            "model_kwargs": {},
            "model_config": model.default_cfg.to_dict(),
            "class_names": list(model.default_cfg.class_names),
            "data_spec": "synth",
            "state_dict": model.state_dict(),
        },
    )
    loaded, _ = load_model(tmp_path / "old.pt")
    assert loaded.fusion == old_kwargs.get("fusion", "ensemble") and loaded.weight_smoothing == 0.0
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
