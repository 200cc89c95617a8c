"""runtime/preprocess.py: preprocessing equals training's bit for bit, grey/BGR/RGBA inputs, image writing."""

import cv2
import numpy as np
import pytest

from fertrt.errors import FertrtError
from fertrt.runtime.preprocess import PreprocessConfig, preprocess


def test_preprocessing_matches_training_bit_for_bit():
    from fertrt.train.trainer import make_loader
    from fertrt.train.data import load_data

    pre = PreprocessConfig(input_size=(96, 96), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    data = load_data("synth:40", image_size=128)  # drawn at 128, model input 96: the resize matters
    split = data.split("test")
    loader, _ = make_loader(split, pre, 8, train=False)
    x_train, _, idx = next(iter(loader))
    x_runtime = preprocess([split.load(int(i)) for i in idx], pre)
    assert x_train.numpy().dtype == np.float32
    assert np.array_equal(x_train.numpy(), x_runtime)


def test_grey_and_bgr_models():
    img = np.random.default_rng(0).integers(0, 256, (50, 60, 3)).astype(np.uint8)
    grey_cfg = PreprocessConfig(channels=1, mean=(0.5,), std=(0.5,), color_order="GRAY", input_size=(32, 32))
    x = preprocess([img], grey_cfg)
    assert x.shape == (1, 1, 32, 32)
    ref = (
        cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA) / 255.0 - 0.5
    ) / 0.5
    assert np.abs(x[0, 0] - ref).max() < 0.01
    bgr = preprocess([img], PreprocessConfig(input_size=(50, 60), color_order="BGR"))
    rgb = preprocess([img], PreprocessConfig(input_size=(50, 60)))
    assert np.array_equal(bgr[:, ::-1], rgb)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    assert np.array_equal(preprocess([rgba], PreprocessConfig(input_size=(50, 60))), rgb)


def test_save_with_unknown_image_extension_is_a_clear_error(tmp_path):
    from fertrt.runtime.preprocess import write_image

    with pytest.raises(FertrtError, match=r"out.xyz: OpenCV cannot encode an image with this file extension"):
        write_image(tmp_path / "out.xyz", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "ok.png", np.zeros((8, 8, 3), np.uint8))
    assert cv2.imread(str(tmp_path / "ok.png")).shape == (8, 8, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["ok.png"]  # no temp file left behind


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_normalize_table_lookup_is_the_per_pixel_arithmetic(order):
    """normalize looks each uint8 value up in a 256-entry table: every bit must equal the float32 arithmetic done
    per pixel, for odd means and stds, either colour order, float input and a strided (non-contiguous) batch."""
    from fertrt.runtime.preprocess import normalize

    cfg = PreprocessConfig(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), color_order=order)
    wide = np.random.default_rng(3).integers(0, 256, (5, 40, 62, 3)).astype(np.uint8)
    for batch in (wide, wide[:, :, ::2], wide.astype(np.float32)):
        x = batch.astype(np.float32) * np.float32(1.0 / 255.0)
        x = x[..., ::-1] if order == "BGR" else x
        want = ((x - np.float32(cfg.mean)) * (np.float32(1.0) / np.float32(cfg.std))).transpose(0, 3, 1, 2)
        got = normalize(batch, cfg)
        assert got.dtype == np.float32 and got.flags.c_contiguous and np.array_equal(got, want)
