"""A MobileNetV3-small-like edge baseline, the kind of network people deploy for FER on small devices.

Howard et al., "Searching for MobileNetV3" (ICCV 2019), the "small" variant: inverted residual
blocks (1x1 expand -> depthwise kxk -> optional squeeze-and-excitation -> 1x1 project), hard-swish
in the later stages, a 576-channel last conv and a 1024-unit head.

Our choices (fertrt): the paper's block table for "small" (kernel, expansion, width, SE, activation,
stride) with two changes for 112x112 faces instead of 224x224 ImageNet images: the stem keeps stride
2 but the first block does not downsample, so the last feature map is 4x4 instead of 2x2 (as many
spatial cells as LNLAttenNet's region grid); and a `width` multiplier (default 1.0). Hard-sigmoid /
hard-swish are PyTorch's `Hardsigmoid` / `Hardswish`, which export to ONNX HardSigmoid / HardSwish
(TensorRT runs both natively). No pretrained weights (nothing may be downloaded here).
"""

from __future__ import annotations

from torch import nn

from .registry import register_model

# kernel, expanded channels, out channels, squeeze-excitation, activation ("RE" ReLU, "HS" hard-swish), stride
_SMALL = (
    (3, 16, 16, True, "RE", 1),  # stride 2 in the paper; 1 here for 112x112 inputs
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
)


def _round8(c: float) -> int:
    """Channel counts rounded to a multiple of 8 (tensor-core and DLA friendly), never below 90 %."""
    r = max(8, int(c + 4) // 8 * 8)
    return r + 8 if r < 0.9 * c else r


def _act(kind: str) -> nn.Module:
    return nn.Hardswish(inplace=True) if kind == "HS" else nn.ReLU(inplace=True)


class ConvBN(nn.Sequential):
    def __init__(self, cin, cout, k=1, stride=1, groups=1, act: str | None = "RE"):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(_act(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, chans: int):
        super().__init__()
        mid = _round8(chans / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(chans, mid, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(mid, chans, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, k, exp, cout, se, act, stride):
        super().__init__()
        layers = [] if exp == cin else [ConvBN(cin, exp, 1, act=act)]
        layers.append(ConvBN(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(ConvBN(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Small(nn.Module):
    def __init__(self, num_classes=7, in_chans=3, width=1.0, drop_rate=0.2, input_size=None):
        super().__init__()
        stem = _round8(16 * width)
        blocks, cin = [], stem
        for k, exp, cout, se, act, stride in _SMALL:
            exp, cout = _round8(exp * width), _round8(cout * width)
            blocks.append(InvertedResidual(cin, k, exp, cout, se, act, stride))
            cin = cout
        last = _round8(576 * width)
        self.features = nn.Sequential(ConvBN(in_chans, stem, 3, 2, act="HS"), *blocks, ConvBN(cin, last, 1, act="HS"))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(last, 1024),
            nn.Hardswish(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x, return_aux: bool = False):
        logits = self.head(self.pool(self.features(x)))
        return {"logits": logits} if return_aux else logits

    def joint_loss(self, out: dict, target, criterion):
        loss = criterion(out["logits"], target)
        return loss, {"ce": float(loss.detach())}


@register_model("mobilenetv3_small", input_size=(112, 112), description="MobileNetV3-small-like edge baseline")
def mobilenetv3_small(num_classes=7, in_chans=3, **kwargs):
    return MobileNetV3Small(num_classes=num_classes, in_chans=in_chans, **kwargs)
