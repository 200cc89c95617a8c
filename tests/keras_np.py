"""An independent NumPy evaluation of a Keras model_config graph (NHWC, float64), for the mini-XCEPTION port tests."""

import numpy as np


def _pad_same(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad(x, k, s, value):
    (t, b), (l, r) = _pad_same(x.shape[1], k, s), _pad_same(x.shape[2], k, s)
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _windows(x, k, s):
    n, h, w, c = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    # n, oh, ow, k*k, c: every tap of every window
    return np.stack([x[:, i : i + s * oh : s, j : j + s * ow : s, :] for i in range(k) for j in range(k)], axis=3)


def conv(x, kernel, stride, padding):
    k = kernel.shape[0]
    if padding == "same":
        x = _pad(x, k, stride, 0.0)
    win = _windows(x, k, stride)
    return np.einsum("nhwpc,pco->nhwo", win, kernel.reshape(k * k, kernel.shape[2], kernel.shape[3]))


def depthwise(x, kernel, padding):
    k = kernel.shape[0]
    if padding == "same":
        x = _pad(x, k, 1, 0.0)
    win = _windows(x, k, 1)
    return np.einsum("nhwpc,pc->nhwc", win, kernel.reshape(k * k, kernel.shape[2]))


def maxpool(x, k, s, padding):
    if padding == "same":
        x = _pad(x, k, s, -np.inf)
    return _windows(x, k, s).max(axis=3)


def run_keras_graph(layers, weights, x_nhwc):
    """The Keras model_config graph in NumPy float64, NHWC as Keras computes it."""
    vals = {}
    for layer in layers:
        cls, cfg, name = layer["class_name"], layer["config"], layer["name"]
        ins = [vals[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x_nhwc]
        w = {k: v.astype(np.float64) for k, v in weights.get(name, {}).items()}
        x = ins[0]
        if cls == "InputLayer":
            y = x
        elif cls == "Conv2D":
            y = conv(x, w["kernel"], cfg["strides"][0], cfg["padding"])
            y = y + w["bias"] if cfg["use_bias"] else y
        elif cls == "SeparableConv2D":
            y = conv(depthwise(x, w["depthwise_kernel"], cfg["padding"]), w["pointwise_kernel"], 1, "valid")
        elif cls == "BatchNormalization":
            y = (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + cfg["epsilon"]) * w["gamma"] + w["beta"]
        elif cls == "Activation":
            if cfg["activation"] == "relu":
                y = np.maximum(x, 0)
            else:
                e = np.exp(x - x.max(axis=-1, keepdims=True))
                y = e / e.sum(axis=-1, keepdims=True)
        elif cls == "MaxPooling2D":
            y = maxpool(x, cfg["pool_size"][0], cfg["strides"][0], cfg["padding"])
        elif cls == "Add":
            y = ins[0] + ins[1]
        elif cls == "GlobalAveragePooling2D":
            y = x.mean(axis=(1, 2))
        else:
            raise AssertionError(f"layer type {cls} not in the NumPy reference")
        vals[name] = y
    return vals[layers[-1]["name"]]
