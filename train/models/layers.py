"""Small building blocks shared by the model families."""

from __future__ import annotations

from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> ReLU; folds into one fused conv in ONNX/TensorRT."""

    def __init__(self, cin, cout, k=3, stride=1, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
