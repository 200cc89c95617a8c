"""In-house ResNet (He et al. 2016), parameter names compatible with torchvision state dicts.

Used as the `resnet18` baseline and as the trunk of SCAN-CCI. No weights are downloaded:
`load_torchvision_state_dict` loads a file the user supplies.
"""

from __future__ import annotations

import torch
from torch import nn

from fertrt.errors import FertrtError

from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3 (torchvision v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetTrunk(nn.Module):
    """Stem + the first `num_stages` residual stages; `forward_features` returns every stage's map."""

    def __init__(self, block, layers, in_chans=3, num_stages=4):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        self.stage_channels = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512)[:num_stages], layers[:num_stages])):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, planes, stride=2 if (i > 0 and j == 0) else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_channels.append(cin)
        self.num_stages = num_stages
        self.out_channels = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        feats = []
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
            feats.append(x)
        return feats


class ResNetClassifier(ResNetTrunk):
    def __init__(self, block, layers, num_classes=7, in_chans=3, drop_rate=0.0):
        super().__init__(block, layers, in_chans, num_stages=4)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.out_channels, num_classes)

    def forward(self, x, return_aux: bool = False):
        feat = self.forward_features(x)[-1]
        logits = self.fc(self.dropout(torch.flatten(self.avgpool(feat), 1)))
        return {"logits": logits} if return_aux else logits

    def joint_loss(self, out: dict, target, criterion):
        loss = criterion(out["logits"], target)
        return loss, {"ce": float(loss.detach())}


def load_torchvision_state_dict(module: nn.Module, path, strict_trunk: bool = True) -> list[str]:
    """Load a torchvision-format ResNet checkpoint (e.g. resnet50-*.pth) into `module`.

    Keys absent from `module` (later stages, the ImageNet `fc`) are ignored; a trunk key that is
    missing or of the wrong shape is an error naming the file. Returns the keys that were loaded.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is the user's file
        raise FertrtError(f"{path}: not a loadable PyTorch state dict ({exc.__class__.__name__}: {exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = module.state_dict()
    loaded, problems = [], []
    for key, value in state.items():
        if key in own:
            if own[key].shape != value.shape:
                problems.append(f"{key}: shape {tuple(value.shape)} != expected {tuple(own[key].shape)}")
            else:
                own[key] = value
                loaded.append(key)
    trunk_keys = [k for k in own if k.startswith(("conv1", "bn1", "layer"))]
    missing = [k for k in trunk_keys if k not in loaded and not k.endswith("num_batches_tracked")]
    if problems or (strict_trunk and missing):
        detail = "; ".join(problems[:5] + [f"missing {k}" for k in missing[:5]])
        raise FertrtError(f"{path}: not a torchvision-format ResNet state dict for this trunk ({detail})")
    module.load_state_dict(own)
    return loaded


@register_model(
    "resnet18",
    input_size=(112, 112),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    description="Plain ResNet-18 baseline",
)
def resnet18(num_classes=7, in_chans=3, drop_rate=0.0, input_size=None, pretrained_path=None):
    model = ResNetClassifier(BasicBlock, [2, 2, 2, 2], num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained_path:
        load_torchvision_state_dict(model, pretrained_path)
    return model
