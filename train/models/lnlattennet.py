"""LNLAttenNet: the local non-local joint network for facial expression recognition.

Shi et al., "Local non-local joint network for facial expression recognition",
Machine Intelligence Research, 2024. No public code exists.

From the paper:
  * a U-Net (encoder, skip connections, decoder) extracts an integrated feature map that mixes
    deep semantics with low-level detail;
  * the face is divided into 16 local regions;
  * local part: an ensemble of local networks, one per region, each with local attention;
  * non-local part: a non-local attention network over the regions that yields a significance
    weight per region (16 weights, softmax, sum 1);
  * the non-local weights are fed back into the local part, and local and non-local features are
    fused for the final decision, trained with a joint loss.

Our choices (fertrt):
  * U-Net widths (16, 24, 48, 96) with stride-2 convolutions, nearest upsampling and a 28x28
    integrated map at the default 112x112 input (so one region is 7x7 on a 4x4 grid); optional
    `region_overlap` (feature pixels on each side) and `grid` size.
  * The 16 local networks are one grouped convolution stack (groups = regions): separate weights
    per region at the cost of one kernel launch; `share_local=True` shares one network instead.
  * Local attention: a 1x1 conv gives one logit per position inside the region; a softmax over
    the region's positions pools the region feature (attention pooling).
  * Non-local part: embedded-Gaussian self-attention (theta/phi/g projections, scaled dot
    product, softmax) over the region tokens plus a learned position embedding; the global
    context is the U-Net bottleneck vector, added to every token before scoring. Region weights
    are a softmax over the 16 scores; the 16x16 affinity is returned for analysis.
  * Feedback and fusion: the 16 local networks each make a decision (one linear head per region),
    and the non-local weights decide how much each counts:
    logits = sum_r w_r * local_logits_r + context_head([sum_r w_r * z_r, global vector]). The
    second term fuses the weight-pooled non-local tokens with the U-Net's global vector, so local,
    non-local and global features all reach the final decision.
  * Weight smoothing (`weight_smoothing`, eps = 0.4): w = (1 - eps) * softmax(scores) + eps / R.
    Every local network keeps at least eps/R = 0.025 of the vote (the paper's figures show region
    weights such as 0.0258 and 0.1374) and the 16 weights still sum to 1; the rest follows the
    non-local scores.
    These smoothed weights are the ones that decide, weight the losses, and are exported/shown.
  * Joint loss = CE(fused) + global_weight * CE(global head) + local_weight * L_local, defaults
    0.5 and 0.5, with L_local = (mean_r CE_r + mean_faces sum_r w_r CE_r) / 2 (`local_loss="both"`):
    every local network keeps learning (the mean), and each face's weights are also pulled directly
    towards the regions whose local network is right about that face (the weighted sum, plain CE).
    `local_loss="mean"` or `"weighted"` keep one of the two.
  * Why the weighted ensemble and the smoothing, and the designs tried with their figures: README.md,
    "LNLAttenNet's region weights".
  * Ablation switches: `fusion="concat"` keeps the first design's fusion (its weights are smoothed too unless
    `weight_smoothing=0`, as the first design's were not); `feedback=False` (uniform weights),
    `weight_smoothing=0` and `paths="local"|"global"` give the ablations measured by
    benchmarks/ablation.py. `paths` removes the other part from the network and its loss (not just
    from the decision): "local" is the weighted ensemble of the local networks with their
    non-local weights (the U-Net bottleneck still feeds the weights), "global" the U-Net encoder
    with the global head on its pooled bottleneck (the decoder only serves the local part, so it
    goes too). Checkpoints record `weight_smoothing`; older ones load with 0 (as trained), except
    paths="local"|"global" checkpoints from before `paths` removed the other part: their weights
    no longer fit and loading them is refused with a clear error (retrain them).
  * The exported graph is `forward(x) -> logits`; `explain(x)` adds region weights, affinity and
    local attention maps. Only static shapes and fixed Python loops: traces cleanly, and every
    op is one TensorRT handles natively (Conv, Resize, MatMul, Softmax, Reduce).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from fertrt.errors import FertrtError

from .layers import ConvBNAct
from .registry import register_model


class UNetFeatures(nn.Module):
    """Encoder 1/2 -> 1/4 -> 1/8 -> 1/16, decoder back to 1/4 with skip connections."""

    def __init__(self, in_chans=3, widths=(16, 24, 48, 96), out_chans=32, decoder=True):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.stem = ConvBNAct(in_chans, w0, 3, 2)
        self.enc1 = nn.Sequential(ConvBNAct(w0, w1, 3, 2), ConvBNAct(w1, w1))
        self.enc2 = nn.Sequential(ConvBNAct(w1, w2, 3, 2), ConvBNAct(w2, w2))
        self.enc3 = nn.Sequential(ConvBNAct(w2, w3, 3, 2), ConvBNAct(w3, w3))
        self.has_decoder = decoder
        if decoder:  # only the local part reads the integrated (decoded) map
            self.dec2 = ConvBNAct(w3 + w2, w2)
            self.dec1 = nn.Sequential(ConvBNAct(w2 + w1, out_chans), ConvBNAct(out_chans, out_chans))
        self.bottleneck_chans = w3

    def forward(self, x):
        s1 = self.enc1(self.stem(x))  # 1/4
        s2 = self.enc2(s1)  # 1/8
        b = self.enc3(s2)  # 1/16
        if not self.has_decoder:
            return None, b
        d2 = self.dec2(torch.cat([F.interpolate(b, scale_factor=2.0, mode="nearest"), s2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), s1], 1))
        return d1, b


class LocalEnsemble(nn.Module):
    """One small CNN with attention pooling per region (grouped convs = separate weights)."""

    def __init__(self, regions, cin, cout, share=False):
        super().__init__()
        self.regions, self.share = regions, share
        g = 1 if share else regions
        n = 1 if share else regions
        self.body = nn.Sequential(ConvBNAct(cin * n, cout * n, 3, groups=g), ConvBNAct(cout * n, cout * n, 3, groups=g))
        self.attn = nn.Conv2d(cout * n, n, 1, groups=g)
        self.cout = cout

    def forward(self, regions_x):
        # regions_x: B x R x C x h x w
        b, r, c, h, w = regions_x.shape
        x = regions_x.reshape(b * r, c, h, w) if self.share else regions_x.reshape(b, r * c, h, w)
        feat = self.body(x)
        attn_logits = self.attn(feat).reshape(b, r, h * w)
        attn = torch.softmax(attn_logits, dim=-1)
        feat = feat.reshape(b, r, self.cout, h * w)
        pooled = (feat * attn.unsqueeze(2)).sum(-1)  # B x R x C
        return pooled, attn.reshape(b, r, h, w)


class NonLocalRegionAttention(nn.Module):
    """Embedded-Gaussian self-attention across regions with global context -> region weights."""

    def __init__(self, regions, dim, global_dim, embed_dim=32):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, regions, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.theta = nn.Linear(dim, embed_dim)
        self.phi = nn.Linear(dim, embed_dim)
        self.g = nn.Linear(dim, embed_dim)
        self.out = nn.Linear(embed_dim, dim)
        self.context = nn.Linear(global_dim, dim)
        self.score = nn.Sequential(nn.Linear(dim, dim // 2), nn.ReLU(inplace=True), nn.Linear(dim // 2, 1))
        self.scale = 1.0 / math.sqrt(embed_dim)

    def forward(self, tokens, global_vec):
        t = tokens + self.pos
        affinity = torch.softmax(torch.matmul(self.theta(t), self.phi(t).transpose(1, 2)) * self.scale, dim=-1)
        z = t + self.out(torch.matmul(affinity, self.g(t)))
        z = z + self.context(global_vec).unsqueeze(1)
        weights = torch.softmax(self.score(z).squeeze(-1), dim=-1)  # B x R, sums to 1
        return z, weights, affinity


FUSIONS = ("ensemble", "concat")
PATHS = ("both", "local", "global")
LOCAL_LOSSES = ("both", "mean", "weighted")


class LNLAttenNet(nn.Module):
    def __init__(
        self,
        num_classes=7,
        in_chans=3,
        input_size=(112, 112),
        grid=4,
        region_overlap=0,
        widths=(16, 24, 48, 96),
        feat_chans=32,
        local_chans=32,
        embed_dim=32,
        share_local=False,
        drop_rate=0.2,
        global_weight=0.5,
        local_weight=0.5,
        fusion="ensemble",
        feedback=True,
        paths="both",
        local_loss="both",
        weight_smoothing=0.4,
    ):
        super().__init__()
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        if h % 16 or w % 16 or (h // 4) % grid or (w // 4) % grid:
            raise FertrtError(
                f"lnlattennet: input size {h}x{w} must be a multiple of 16 whose 1/4 map divides into a {grid}x{grid} grid"
            )
        self.grid, self.regions, self.overlap = grid, grid * grid, int(region_overlap)
        self.cell = (h // 4 // grid, w // 4 // grid)
        if fusion not in FUSIONS:
            raise FertrtError(f"lnlattennet: fusion={fusion!r}; expected one of {', '.join(FUSIONS)}")
        if paths not in PATHS:
            raise FertrtError(f"lnlattennet: paths={paths!r}; expected one of {', '.join(PATHS)}")
        if local_loss not in LOCAL_LOSSES:
            raise FertrtError(f"lnlattennet: local_loss={local_loss!r}; expected one of {', '.join(LOCAL_LOSSES)}")
        if isinstance(weight_smoothing, bool) or not (
            isinstance(weight_smoothing, numbers.Real) and 0 <= weight_smoothing < 1
        ):
            raise FertrtError(f"lnlattennet: weight_smoothing={weight_smoothing!r}; expected a number in [0, 1)")
        if paths != "both" and fusion != "ensemble":
            raise FertrtError(
                f"lnlattennet: paths={paths!r} is an ablation of the ensemble design; it needs fusion='ensemble'"
            )
        self.fusion, self.feedback, self.paths, self.local_loss = fusion, bool(feedback), paths, local_loss
        self.global_weight, self.local_weight = global_weight, local_weight
        self.weight_smoothing = float(weight_smoothing)
        self.unet = UNetFeatures(in_chans, widths, feat_chans, decoder=paths != "global")
        gdim = self.unet.bottleneck_chans
        self.dropout = nn.Dropout(drop_rate)
        # A part switched off by `paths` is not built at all, so the ablations' parameter, MAC and
        # speed figures are those of the smaller network, and its loss term is not trained.
        # (Built in the same order as before the switches existed, so a seed gives the same initial weights.)
        if paths != "global":
            self.local = LocalEnsemble(self.regions, feat_chans, local_chans, share=share_local)
            self.nonlocal_attn = NonLocalRegionAttention(self.regions, local_chans, gdim, embed_dim)
        if paths != "local":
            self.global_head = nn.Linear(gdim, num_classes)
        if paths != "global":
            self.local_head_w = nn.Parameter(torch.empty(self.regions, local_chans, num_classes))
            self.local_head_b = nn.Parameter(torch.zeros(self.regions, num_classes))
            nn.init.trunc_normal_(self.local_head_w, std=0.02)
        if paths == "both" and fusion == "ensemble":
            # Decision from the pooled non-local tokens and the U-Net's global vector (added to the ensemble).
            self.context_head = nn.Linear(local_chans + gdim, num_classes)
        elif paths == "both":
            self.classifier = nn.Linear(self.regions * local_chans + local_chans + gdim, num_classes)

    @property
    def design_kwargs(self) -> dict:
        """Design arguments a checkpoint records even when left at their defaults (see checkpoint_model_kwargs)."""
        return {"weight_smoothing": self.weight_smoothing}

    @property
    def has_region_weights(self) -> bool:
        return self.paths != "global"

    def split_regions(self, feat):
        """B x C x H x W -> B x R x C x h x w (row-major over the grid)."""
        b, c, H, W = feat.shape
        ch, cw = self.cell
        if self.overlap == 0:
            x = feat.reshape(b, c, self.grid, ch, self.grid, cw).permute(0, 2, 4, 1, 3, 5)
            return x.reshape(b, self.regions, c, ch, cw)
        o = self.overlap
        padded = F.pad(feat, (o, o, o, o))
        cells = [
            padded[:, :, i * ch : i * ch + ch + 2 * o, j * cw : j * cw + cw + 2 * o]
            for i in range(self.grid)
            for j in range(self.grid)
        ]
        return torch.stack(cells, 1)

    def _forward_all(self, x):
        feat, bottleneck = self.unet(x)
        global_vec = bottleneck.mean((2, 3))
        if self.paths == "global":  # ablation: the U-Net and its global head alone
            global_logits = self.global_head(global_vec)
            return {"logits": global_logits, "global_logits": global_logits}
        local_feat, local_attn = self.local(self.split_regions(feat))
        z, weights, affinity = self.nonlocal_attn(local_feat, global_vec)
        if not self.feedback:  # ablation: the non-local weights are computed but not used
            weights = torch.full_like(weights, 1.0 / self.regions)
        elif self.weight_smoothing:
            weights = (1 - self.weight_smoothing) * weights + self.weight_smoothing / self.regions
        # Each local network's own decision (one linear head per region).
        local_logits = (local_feat.unsqueeze(-1) * self.local_head_w).sum(2) + self.local_head_b  # B x R x K
        nonlocal_vec = (z * weights.unsqueeze(-1)).sum(1)
        out = {
            "local_logits": local_logits,
            "region_weights": weights,
            "region_affinity": affinity,
            "local_attention": local_attn,
        }
        if self.paths == "both":
            out["global_logits"] = self.global_head(global_vec)
        if self.fusion == "ensemble":
            # Feedback: the weights decide how much each local network's decision counts. Weighting the
            # decisions (not features that a linear layer could rescale back) makes the weights identifiable:
            # moving weight onto a region changes the prediction, so training moves it to regions whose
            # local network is right.
            ensemble = (local_logits * weights.unsqueeze(-1)).sum(1)
            if self.paths == "local":  # ablation: the weighted ensemble alone, no context or global decision
                out["logits"] = ensemble
            else:
                out["logits"] = ensemble + self.context_head(self.dropout(torch.cat([nonlocal_vec, global_vec], 1)))
        else:  # "concat": the first design, kept for the ablation (weights can be undone by the classifier)
            weighted_local = local_feat * (weights * self.regions).unsqueeze(-1)
            fused = torch.cat([weighted_local.flatten(1), nonlocal_vec, global_vec], 1)
            out["logits"] = self.classifier(self.dropout(fused))
        return out

    def forward(self, x, return_aux: bool = False):
        out = self._forward_all(x)
        return out if return_aux else out["logits"]

    @torch.no_grad()
    def explain(self, x):
        return self._forward_all(x)

    def joint_loss(self, out: dict, target, criterion):
        fused = criterion(out["logits"], target)
        parts = {"fused": float(fused.detach())}
        loss = fused
        if self.paths == "both":
            glob = criterion(out["global_logits"], target)
            loss = loss + self.global_weight * glob
            parts["global"] = float(glob.detach())
        if self.paths != "global":
            b, r, k = out["local_logits"].shape
            # Hard (B) or soft (B x K) targets: each sample's target repeated for its R regions.
            tgt = target.repeat_interleave(r, 0)
            local = criterion(out["local_logits"].reshape(b * r, k), tgt)
            if self.local_loss in ("weighted", "both"):
                # Each local network's loss on each face counted by that face's weight for its region: a
                # face's weight is pulled towards the regions whose local network is right about that face
                # (plain CE here; hard B or soft B x K targets).
                per_face_region = F.cross_entropy(
                    out["local_logits"].reshape(b * r, k).float(), tgt, reduction="none"
                ).reshape(b, r)
                weighted = (out["region_weights"] * per_face_region).sum(1).mean()
                local = weighted if self.local_loss == "weighted" else 0.5 * (local + weighted)
            loss = loss + self.local_weight * local
            parts["local"] = float(local.detach())
        return loss, parts


@register_model("lnlattennet", input_size=(112, 112), description="Local non-local joint network (edge size)")
def lnlattennet(num_classes=7, in_chans=3, **kwargs):
    return LNLAttenNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model("lnlattennet_paper", input_size=(112, 112), description="Local non-local joint network (wider)")
def lnlattennet_paper(num_classes=7, in_chans=3, **kwargs):
    defaults = dict(widths=(32, 64, 128, 256), feat_chans=64, local_chans=64, embed_dim=64)
    return LNLAttenNet(num_classes=num_classes, in_chans=in_chans, **{**defaults, **kwargs})
