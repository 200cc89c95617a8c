"""train/data/synth.py: the procedural faces: deterministic, disjoint splits, cues and accessories where documented."""

import numpy as np

from fertrt.labels import BASIC7
from fertrt.train.data.synth import PROTOTYPES, SynthConfig, _draw_face, _identity, generate, make_sample


def test_synth_is_deterministic_and_disjoint():
    cfg = SynthConfig(size=64)
    a = make_sample(cfg, "train", 5)
    b = make_sample(cfg, "train", 5)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])
    c = make_sample(cfg, "test", 5)
    assert not np.array_equal(a[0], c[0])
    imgs, labels, boxes = generate(SynthConfig(size=112), "train", 140)
    assert imgs.shape == (140, 112, 112, 3) and imgs.dtype == np.uint8
    counts = np.bincount(labels, minlength=7)
    assert counts.min() >= 8  # every class present
    assert boxes.shape == (140, 4, 4)
    # cue boxes lie inside the image and are well formed
    assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()
    assert boxes.min() > -10 and boxes.max() < 122


def test_synth_classes_share_cues_as_documented():
    cues = dict(zip(BASIC7, PROTOTYPES))
    # fear and surprise both raise the brows and open the mouth; anger and disgust both lower the brows
    assert cues["fear"][0] > 0.5 and cues["surprise"][0] > 0.5
    assert cues["fear"][6] > 0 and cues["surprise"][6] > 0
    assert cues["anger"][0] < 0 and cues["disgust"][0] < 0


def test_synth_expression_changes_the_mouth_region():
    # same identity and nuisances, only the label differs -> the mouth box pixels differ most
    cfg = SynthConfig(
        size=112,
        rotation_deg=0,
        scale_jitter=0,
        shift_frac=0,
        noise_max=0,
        blur_p=0,
        jpeg_p=0,
        occlusion_p=0,
        sunglasses_p=0,
        mask_p=0,
    )
    imgs, labels, boxes = generate(cfg, "train", 60)
    happy = imgs[labels == 1].astype(np.float32).mean(0)
    neutral = imgs[labels == 0].astype(np.float32).mean(0)
    assert np.abs(happy - neutral).mean() > 0.5


def _pixels(img, box):
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return img[max(y0, 0) : y1, max(x0, 0) : x1].astype(np.float32)


def test_sunglasses_cover_the_eyes_and_a_mask_the_mouth_nothing_else():
    """The same face drawn plain, with sunglasses and with a mask (the same generator state each time): each
    accessory changes its own cue region and leaves the other one alone."""
    for k in range(3):
        ident, cues = _identity(0, "train", k), PROTOTYPES[BASIC7.index("happiness")].copy()
        plain, boxes = _draw_face(ident, cues, np.random.default_rng(k), sunglasses=False, mask=False)
        shades, shade_boxes = _draw_face(ident, cues, np.random.default_rng(k), sunglasses=True, mask=False)
        masked, _ = _draw_face(ident, cues, np.random.default_rng(k), sunglasses=False, mask=True)
        assert shade_boxes == boxes  # accessories move no cue
        eyes, mouth = boxes["eyes"], boxes["mouth"]
        assert _pixels(shades, eyes).mean() < 0.6 * _pixels(plain, eyes).mean()  # dark lenses
        assert np.array_equal(_pixels(shades, mouth), _pixels(plain, mouth))
        assert (_pixels(masked, mouth) != _pixels(plain, mouth)).any(axis=2).all()  # the mask hides the whole mouth box
        assert np.array_equal(_pixels(masked, eyes), _pixels(plain, eyes))
