"""SCAN-CCI: landmark-free spatio-channel attention with complementary context information.

Gera & Balasubramanian, "Landmark guidance independent spatio-channel attention and
complementary context information based facial expression recognition", Pattern Recognition
Letters, 2021. Architecture facts follow the paper and the published description; the code is ours.

  * Trunk: ResNet stem through layer3 (ResNet-50 as published; ResNet-18 for `scan_cci_r18`).
  * SCAN: Conv3x3(C->C, no bias) -> PReLU(C) -> BatchNorm(C) -> Sigmoid gives a CxHxW mask; x * mask.
  * Local branch on the layer2 map (28x28 at 224 input): 25 patches (16 of 6x6 over the top-left
    24x24 block, 4 of 6x4 down the right strip, 4 of 4x6 along the bottom strip, the 4x4 corner),
    each through SCAN then global average pooling, max over the 25 vectors; plus SCAN on the whole
    map then GAP; both concatenated, L2-normalised, a linear layer to the classes.
  * Complementary context on the layer3 map (14x14): efficient channel attention (GAP -> Conv1d
    k=5 -> sigmoid -> scale), 2x2 regions of 7x7, GAP each, one MLP (C->256->ReLU->classes) shared
    by the regions.
  * Loss 0.2 * CE(attention head) + 0.8 * sum CE(region heads); inference = mean of the 5 logit sets.

Our choice: one SCAN module is shared by the 25 patches (patches of equal shape are batched
together, so the graph has four SCAN calls, not 25).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fertrt.errors import FertrtError

from .registry import register_model
from .resnet import BasicBlock, Bottleneck, ResNetTrunk, load_torchvision_state_dict


class SCAN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.prelu = nn.PReLU(c)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return x * torch.sigmoid(self.bn(self.prelu(self.conv(x))))


class ECA(nn.Module):
    def __init__(self, k=5):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
        y = x.mean((2, 3)).unsqueeze(1)  # B x 1 x C
        return x * torch.sigmoid(self.conv(y)).transpose(1, 2).unsqueeze(-1)


# (row, col, height, width) of the 25 patches on a 28x28 map, grouped by shape.
_PATCH_GROUPS = (
    [(6 * i, 6 * j, 6, 6) for i in range(4) for j in range(4)],
    [(6 * i, 24, 6, 4) for i in range(4)],
    [(24, 6 * j, 4, 6) for j in range(4)],
    [(24, 24, 4, 4)],
)


class SCANCCI(nn.Module):
    def __init__(
        self,
        block,
        layers,
        num_classes=7,
        in_chans=3,
        input_size=(224, 224),
        mlp_hidden=256,
        attention_weight=0.2,
        region_weight=0.8,
    ):
        super().__init__()
        h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
        if (h, w) != (224, 224):
            raise FertrtError(
                f"scan_cci: input size {h}x{w} is not supported; the 25-patch layout needs 224x224 (a 28x28 layer2 map)"
            )
        self.trunk = ResNetTrunk(block, layers, in_chans, num_stages=3)
        c2, c3 = self.trunk.stage_channels[1], self.trunk.stage_channels[2]
        self.patch_scan = SCAN(c2)
        self.global_scan = SCAN(c2)
        self.attention_fc = nn.Linear(2 * c2, num_classes)
        self.eca = ECA(5)
        self.region_mlp = nn.Sequential(
            nn.Linear(c3, mlp_hidden), nn.ReLU(inplace=True), nn.Linear(mlp_hidden, num_classes)
        )
        self.attention_weight, self.region_weight = attention_weight, region_weight

    def _heads(self, x):
        _, f2, f3 = self.trunk.forward_features(x)
        b, c = f2.shape[:2]
        pooled = []
        for group in _PATCH_GROUPS:
            patches = torch.cat([f2[:, :, r : r + ph, q : q + pw] for r, q, ph, pw in group], 0)  # (n*B) x C x ph x pw
            pooled.append(self.patch_scan(patches).mean((2, 3)).reshape(len(group), b, c))
        local = torch.cat(pooled, 0).amax(0)  # max over the 25 patch vectors
        whole = self.global_scan(f2).mean((2, 3))
        attention_logits = self.attention_fc(F.normalize(torch.cat([local, whole], 1), dim=1))
        f3 = self.eca(f3)
        hh, ww = f3.shape[2] // 2, f3.shape[3] // 2
        region_logits = [
            self.region_mlp(f3[:, :, i * hh : (i + 1) * hh, j * ww : (j + 1) * ww].mean((2, 3)))
            for i in range(2)
            for j in range(2)
        ]
        return attention_logits, region_logits

    def forward(self, x, return_aux: bool = False):
        attention_logits, region_logits = self._heads(x)
        logits = torch.stack([attention_logits] + region_logits, 0).mean(0)
        if return_aux:
            return {
                "logits": logits,
                "attention_logits": attention_logits,
                "region_logits": torch.stack(region_logits, 1),
            }
        return logits

    def joint_loss(self, out: dict, target, criterion):
        att = criterion(out["attention_logits"], target)
        regions = sum(criterion(out["region_logits"][:, i], target) for i in range(out["region_logits"].shape[1]))
        loss = self.attention_weight * att + self.region_weight * regions
        return loss, {"attention": float(att.detach()), "regions": float(regions.detach())}

    def load_trunk(self, path):
        return load_torchvision_state_dict(self.trunk, path)


@register_model("scan_cci", input_size=(224, 224), description="SCAN-CCI on a ResNet-50 trunk (as published)")
def scan_cci(num_classes=7, in_chans=3, pretrained_path=None, **kwargs):
    model = SCANCCI(Bottleneck, [3, 4, 6], num_classes, in_chans, **kwargs)
    if pretrained_path:
        model.load_trunk(pretrained_path)
    return model


@register_model("scan_cci_r18", input_size=(224, 224), description="SCAN-CCI on a ResNet-18 trunk (edge)")
def scan_cci_r18(num_classes=7, in_chans=3, pretrained_path=None, **kwargs):
    model = SCANCCI(BasicBlock, [2, 2, 2], num_classes, in_chans, **kwargs)
    if pretrained_path:
        model.load_trunk(pretrained_path)
    return model
