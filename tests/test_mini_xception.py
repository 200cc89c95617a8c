"""mini_xception's model and the Keras -> PyTorch mapping, one test per trap of the port (no download:
random weights in Keras layouts, checked against NumPy definitions of what Keras computes)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fertrt.train.models import count_macs, count_params, create_model
from fertrt.train.models.mini_xception import BN_EPS, tf_same_pool
from fertrt.train.pretrained import conv_oihw, depthwise_oihw, head_permutation

from keras_np import conv, depthwise, maxpool


def test_default_config_is_the_fer2013_input():
    model = create_model("mini_xception")
    pre = model.default_cfg.preprocess
    assert (pre.input_size, pre.channels, pre.mean, pre.std, pre.color_order) == ((64, 64), 1, (0.5,), (0.5,), "GRAY")
    assert model.default_cfg.class_names[:2] == ("neutral", "happiness")
    assert 56000 < count_params(model) < 58000  # the HDF5's 57 k trainable parameters
    assert 9.5e6 < count_macs(model) < 10.5e6
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 7)


def test_non_square_input_is_refused():
    from fertrt.errors import FertrtError

    with pytest.raises((FertrtError, ValueError), match="square"):
        create_model("mini_xception", input_size=(64, 48))


def _nhwc(t):
    return t.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("size", [60, 30, 15, 8, 7])
def test_tf_same_max_pool_pads_the_odd_pixel_bottom_right(size):
    x = np.random.default_rng(size).standard_normal((1, size, size, 3))
    ref = maxpool(x, 3, 2, "same")
    got = _nhwc(tf_same_pool(size)(torch.from_numpy(x.transpose(0, 3, 1, 2))))
    np.testing.assert_allclose(got, ref, atol=1e-12)
    # the plain symmetric padding a naive port uses gives other numbers at even sizes (where TF pads 1 at the end)
    naive = _nhwc(F.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, 2, 1))
    assert naive.shape != ref.shape or (size % 2 == 1) == np.allclose(naive, ref)


def test_conv_kernel_hwio_to_oihw():
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal((1, 9, 9, 4)), rng.standard_normal((3, 3, 4, 5))
    got = _nhwc(F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(conv_oihw(k)), padding=1))
    np.testing.assert_allclose(got, conv(x, k, 1, "same"), atol=1e-10)
    wrong = np.ascontiguousarray(k.transpose(3, 2, 1, 0))  # OIWH: same shape, transposed kernels
    bad = _nhwc(F.conv2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(wrong), padding=1))
    assert np.abs(bad - conv(x, k, 1, "same")).max() > 0.1


def test_separable_is_depthwise_then_pointwise_without_bias():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 8, 6))
    dw, pw = rng.standard_normal((3, 3, 6, 1)), rng.standard_normal((1, 1, 6, 4))
    model = create_model("mini_xception")
    sep = model.stages[1].main[0]  # SeparableConv(16 -> 32): build a 6 -> 4 one the same way
    sep = type(sep)(6, 4).double()
    assert sep[0].bias is None and sep[1].bias is None and sep[0].groups == 6
    with torch.no_grad():
        sep[0].weight.copy_(torch.from_numpy(depthwise_oihw(dw)))
        sep[1].weight.copy_(torch.from_numpy(conv_oihw(pw)))
        got = _nhwc(sep(torch.from_numpy(x.transpose(0, 3, 1, 2))))
    ref = conv(depthwise(x, dw, "same"), pw, 1, "valid")
    np.testing.assert_allclose(got, ref, atol=1e-10)
    wrong = dw.reshape(6, 1, 3, 3)  # reshaping without moving the channel axis first scrambles the taps
    assert np.abs(depthwise_oihw(dw) - wrong).max() > 0.1


def test_batchnorm_epsilon_is_keras_1e_3():
    model = create_model("mini_xception")
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {BN_EPS} == {1e-3}
    bn = torch.nn.BatchNorm2d(2, eps=BN_EPS).double().eval()
    bn.running_var.fill_(2e-3)  # small variances (the HDF5 has some): epsilon decides the scale
    x = torch.ones(1, 2, 1, 1, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(bn(x).flatten().numpy(), 1 / np.sqrt(2e-3 + 1e-3))
        bn.eps = 1e-5  # PyTorch's default: 22 % larger outputs on such a channel
        assert abs(float(bn(x).flatten()[0]) - 1 / np.sqrt(2e-3 + 1e-3)) > 3


def test_head_permutation_is_fer2013_to_canonical():
    # FER2013 ids: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral
    assert head_permutation() == [6, 3, 4, 5, 2, 1, 0]


def test_grey_batches_have_standard_strides_and_train(tmp_path):
    """normalize() used to return a 1-channel batch as a transposed view (channel stride 1), which PyTorch
    also reads as channels-last; torch 2.13's CPU convolution backward segfaulted on it. Run in a subprocess
    so that a crash fails this test instead of killing the test run."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "from fertrt.runtime.preprocess import normalize\n"
        "from fertrt.train.models import create_model\n"
        "m = create_model('mini_xception'); pre = m.default_cfg.preprocess\n"
        "imgs = np.random.default_rng(0).integers(0, 255, (64, 64, 64, 3), dtype=np.uint8)\n"
        "x = torch.from_numpy(normalize(imgs, pre))\n"
        "assert x.stride() == (4096, 4096, 64, 1), x.stride()\n"
        "torch.nn.functional.cross_entropy(m(x), torch.zeros(64, dtype=torch.long)).backward()\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
