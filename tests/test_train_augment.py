"""train/augment.py: the colour jitter's arithmetic, bit for bit, and the random draws' order."""

import dataclasses

import numpy as np

from fertrt.train.augment import AugmentConfig, augment_batch


def _jitter_reference(img, rng, j):
    """The jitter written plainly (numpy's mean over the channel axis): augment_batch's faster form must give
    the same bits, or a seed would no longer give the model it gave before."""
    f = img.astype(np.float32)
    grey = f.mean(axis=2, keepdims=True)
    f = grey + (f - grey) * rng.uniform(1 - j, 1 + j)
    f = (f - f.mean()) * rng.uniform(1 - j, 1 + j) + f.mean()
    f *= rng.uniform(1 - j, 1 + j)
    return np.clip(f, 0, 255).astype(np.uint8)


def test_colour_jitter_equals_the_plain_arithmetic():
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 40, 3)).astype(np.uint8)
    cfg = AugmentConfig(color_jitter=0.4)
    geometry_only = dataclasses.replace(cfg, color_jitter=0)
    for seed, img in enumerate(images):  # one image per batch: the geometry takes the same first draws in both
        warped = augment_batch(img[None], np.random.default_rng(seed), geometry_only)[0]
        got = augment_batch(img[None], np.random.default_rng(seed), cfg)[0]
        rng = np.random.default_rng(seed)
        rng.uniform(size=5), rng.random()  # crop area, ratio, x, y, angle; flip
        assert np.array_equal(got, _jitter_reference(warped, rng, 0.4)), seed


def test_channel_mean_is_numpys_mean_bit_for_bit():
    from fertrt.train.augment import channel_mean

    f = np.random.default_rng(1).random((8, 112, 112, 3)).astype(np.float32) * 255  # 100k sums: any reorder shows
    for img in f:
        assert np.array_equal(channel_mean(img), img.mean(axis=2, keepdims=True))
