import io
import re
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fertrt.cli import main
from fertrt.errors import FertrtError
from fertrt.train.models import count_macs, count_params, create_model, list_models

ALL = ["lnlattennet", "lnlattennet_paper", "mobilenetv3_small", "resnet18", "scan_cci", "scan_cci_r18"]


def _input(model, batch=2, seed=0):
    pre = model.default_cfg.preprocess
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, pre.channels, *pre.input_size, generator=g)


def test_registry_lists_three_families():
    assert set(ALL) <= set(list_models())
    with pytest.raises(FertrtError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", ALL)
def test_output_shape_and_determinism(name, torch_threads):
    model = create_model(name, num_classes=7).eval()
    x = _input(model)
    with torch.no_grad():
        a, b = model(x), model(x)
    assert a.shape == (2, 7)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    cfg = model.default_cfg
    assert cfg.class_names[0] == "neutral" and len(cfg.class_names) == 7


def test_eight_classes_and_grey_input():
    model = create_model("lnlattennet", num_classes=8, in_chans=1).eval()
    assert model.default_cfg.preprocess.channels == 1
    assert model.default_cfg.class_names[-1] == "contempt"
    assert model(torch.randn(1, 1, 112, 112)).shape == (1, 8)


def test_lnlattennet_region_weights_sum_to_one():
    model = create_model("lnlattennet").eval()
    out = model.explain(_input(model, batch=3))
    w = out["region_weights"]
    assert w.shape == (3, 16)
    assert torch.allclose(w.sum(1), torch.ones(3), atol=1e-5)
    assert (w > 0).all()
    assert out["region_affinity"].shape == (3, 16, 16)
    assert torch.allclose(out["region_affinity"].sum(-1), torch.ones(3, 16), atol=1e-5)
    assert out["local_attention"].shape == (3, 16, 7, 7)
    assert torch.allclose(out["local_attention"].sum((-1, -2)), torch.ones(3, 16), atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"share_local": True}, {"region_overlap": 1}])
def test_lnlattennet_variants_run(kwargs):
    model = create_model("lnlattennet", **kwargs).eval()
    assert model(_input(model)).shape == (2, 7)


def test_lnlattennet_joint_loss_reaches_every_part():
    torch.manual_seed(0)
    model = create_model("lnlattennet").train()
    x = _input(model, batch=4)
    y = torch.tensor([0, 1, 2, 3])
    out = model(x, return_aux=True)
    loss, parts = model.joint_loss(out, y, F.cross_entropy)
    assert set(parts) == {"fused", "global", "local"}
    loss.backward()
    # the U-Net: its first and last conv
    assert model.unet.stem[0].weight.grad.abs().sum() > 0
    assert model.unet.dec1[-1][0].weight.grad.abs().sum() > 0
    # every one of the 16 local networks (grouped conv: one slice of output channels each)
    g = model.local.body[0][0].weight.grad.reshape(16, -1).abs().sum(1)
    assert (g > 0).all(), g
    g_attn = model.local.attn.weight.grad.reshape(16, -1).abs().sum(1)
    assert (g_attn > 0).all()
    # the non-local network
    for m in (model.nonlocal_attn.theta, model.nonlocal_attn.phi, model.nonlocal_attn.g, model.nonlocal_attn.score[0]):
        assert m.weight.grad.abs().sum() > 0
    assert model.local_head_w.grad.reshape(16, -1).abs().sum(1).min() > 0


def test_lnlattennet_weights_decide_the_ensemble():
    """The region weights reach the decision: d logit_k / d w_r = local network r's logit k plus the
    slope of the context head through the weight-pooled non-local tokens, nothing else."""
    torch.manual_seed(0)
    model = create_model("lnlattennet").eval()
    x = _input(model, batch=2)
    w = torch.full((2, 16), 1 / 16, requires_grad=True)
    z_seen = {}

    def hook(module, inputs, output):
        z, _, affinity = output
        z_seen["z"] = z
        return z, w, affinity

    handle = model.nonlocal_attn.register_forward_hook(hook)
    try:
        out = model(x, return_aux=True)
        out["logits"][:, 3].sum().backward()
    finally:
        handle.remove()
    c = model.local_head_w.shape[1]
    # the smoothed weights (1 - eps) * w + eps / R decide, so each slope is scaled by 1 - eps
    expected = (1 - model.weight_smoothing) * (
        out["local_logits"][:, :, 3] + z_seen["z"] @ model.context_head.weight[3, :c]
    )
    assert model.weight_smoothing == 0.4
    assert torch.allclose(w.grad, expected.detach(), atol=1e-5)
    assert out["local_logits"][:, :, 3].abs().sum() > 0


def test_lnlattennet_weight_smoothing_floors_every_region():
    """Smoothed weights: every local network keeps at least eps/R of the vote, the rest follows the non-local
    scores, and the 16 weights still sum to 1; eps = 0 gives the plain softmax."""
    torch.manual_seed(0)
    sharp = create_model("lnlattennet", weight_smoothing=0.0).eval()
    smooth = create_model("lnlattennet", weight_smoothing=0.4).eval()
    smooth.load_state_dict(sharp.state_dict())
    x = _input(sharp, batch=3)
    w0, w1 = sharp.explain(x)["region_weights"], smooth.explain(x)["region_weights"]
    assert torch.allclose(w1, 0.6 * w0 + 0.4 / 16, atol=1e-6)
    assert (w1 >= 0.4 / 16 - 1e-7).all() and torch.allclose(w1.sum(1), torch.ones(3), atol=1e-5)
    assert sharp.design_kwargs == {"weight_smoothing": 0.0} and smooth.design_kwargs == {"weight_smoothing": 0.4}
    assert create_model("lnlattennet", weight_smoothing=np.float32(0.25)).design_kwargs == {"weight_smoothing": 0.25}
    for bad in (1.0, -0.1, True, "0.4", float("nan")):
        with pytest.raises(FertrtError, match="weight_smoothing"):
            create_model("lnlattennet", weight_smoothing=bad)
    with pytest.raises(FertrtError, match="local_loss"):
        create_model("lnlattennet", local_loss="sum")


def test_lnlattennet_without_feedback_has_uniform_weights():
    model = create_model("lnlattennet", feedback=False).eval()
    out = model.explain(_input(model, batch=2))
    assert torch.allclose(out["region_weights"], torch.full((2, 16), 1 / 16))
    with pytest.raises(FertrtError, match="fusion="):
        create_model("lnlattennet", fusion="sum")


@pytest.mark.parametrize("paths", ["local", "global"])
def test_lnlattennet_ablation_paths(paths):
    """An ablation removes the other part from the network and from the loss, not only from the decision."""
    torch.manual_seed(0)
    full = create_model("lnlattennet")
    model = create_model("lnlattennet", paths=paths).eval()
    x = _input(model)
    out = model(x, return_aux=True)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    if paths == "global":
        assert torch.equal(out["logits"], out["global_logits"])
        assert "region_weights" not in out and not model.has_region_weights
        assert names == {"unet", "global_head"}
    else:
        ens = (out["local_logits"] * out["region_weights"].unsqueeze(-1)).sum(1)
        assert torch.allclose(out["logits"], ens, atol=1e-6)
        assert "global_logits" not in out and "global_head" not in names and "context_head" not in names
    assert count_params(model) < count_params(full)
    model.train()
    loss, parts = model.joint_loss(model(x, return_aux=True), torch.tensor([0, 1]), torch.nn.functional.cross_entropy)
    loss.backward()
    assert set(parts) == ({"fused"} if paths == "global" else {"fused", "local"})
    assert all(p.grad is not None for p in model.parameters())  # every part left is trained
    with pytest.raises(FertrtError, match="fusion='ensemble'"):
        create_model("lnlattennet", paths=paths, fusion="concat")


def test_lnlattennet_size_class():
    """Edge size class of the issue: <= 2 GMACs and <= 10 M parameters, for both widths."""
    for name in ("lnlattennet", "lnlattennet_paper"):
        model = create_model(name)
        assert count_params(model) <= 10_000_000
        assert count_macs(model) <= 2_000_000_000


def test_scan_cci_joint_loss_weights():
    model = create_model("scan_cci_r18").train()
    out = model(_input(model), return_aux=True)
    y = torch.tensor([1, 2])
    loss, parts = model.joint_loss(out, y, F.cross_entropy)
    expected = 0.2 * F.cross_entropy(out["attention_logits"], y) + 0.8 * sum(
        F.cross_entropy(out["region_logits"][:, i], y) for i in range(4)
    )
    assert torch.allclose(loss, expected)
    mean = torch.stack([out["attention_logits"]] + [out["region_logits"][:, i] for i in range(4)]).mean(0)
    assert torch.allclose(out["logits"], mean)
    loss.backward()
    assert model.patch_scan.conv.weight.grad.abs().sum() > 0
    assert model.eca.conv.weight.grad.abs().sum() > 0


def test_scan_cci_rejects_other_input_sizes():
    with pytest.raises(FertrtError, match="224x224"):
        create_model("scan_cci_r18", input_size=112)


def test_trunk_loads_torchvision_format_state_dict(tmp_path):
    # resnet18's parameter names are torchvision's; its state dict is a torchvision-format file.
    src = create_model("resnet18")
    path = tmp_path / "resnet18-tv.pth"
    torch.save(src.state_dict(), path)
    model = create_model("scan_cci_r18", pretrained_path=str(path))
    assert torch.equal(model.trunk.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(FertrtError, match="bad.pth"):
        create_model("scan_cci_r18", pretrained_path=str(bad))


def _hook_macs(model, x):
    """Direct count: Conv2d and Linear MACs from their output shapes."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            total += out.numel() // out.shape[0] * m.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total


def test_fertrt_models_table_matches_direct_counts():
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["models"]) == 0
    rows = {}
    for line in buf.getvalue().splitlines()[1:]:
        m = re.match(r"(\S+)\s+(\d+x\d+x\d+)\s+([\d,]+)\s+([\d,]+)", line)
        rows[m.group(1)] = (int(m.group(3).replace(",", "")), int(m.group(4).replace(",", "")))
    assert set(ALL) <= set(rows)
    for name in ALL:
        model = create_model(name).eval()
        assert rows[name][0] == count_params(model) == sum(p.numel() for p in model.parameters())
        assert rows[name][1] == count_macs(model)
    # resnet18 has only convs and one linear layer: the FLOP counter equals the hook count
    r18 = create_model("resnet18").eval()
    assert rows["resnet18"][1] == _hook_macs(r18, torch.zeros(1, 3, 112, 112))
    # LNLAttenNet: convs and linears plus the attention matmuls, never fewer than the conv/linear count
    lnl = create_model("lnlattennet").eval()
    assert rows["lnlattennet"][1] >= _hook_macs(lnl, torch.zeros(1, 3, 112, 112))
    assert rows["lnlattennet"][0] < 10_000_000 and rows["lnlattennet"][1] < 2_000_000_000
