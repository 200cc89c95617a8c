"""The `synth[:N[:LEVEL]]` spec: N training images, N/6 validation and N/3 test images from disjoint identities."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fertrt.errors import FertrtError
from fertrt.labels import BASIC7

from .spec import DataSource, Split
from .synth import SynthConfig, generate

DEFAULT_TRAIN_SIZE = 6000
MAX_TRAIN_SIZE = 1_000_000  # 1.5 M images with val and test: 56 GiB at 112x112; memory is checked too
# `synth:N:LEVEL` presets: easy = no nuisances and strong expressions (quick tests); hard = stronger nuisances.
DIFFICULTY = {
    "default": {},
    "easy": dict(
        min_intensity=0.8,
        rotation_deg=0,
        scale_jitter=0,
        shift_frac=0,
        noise_max=0,
        blur_p=0,
        jpeg_p=0,
        occlusion_p=0,
        sunglasses_p=0,
        mask_p=0,
    ),
    "hard": dict(
        min_intensity=0.35,
        cue_jitter=0.15,
        rotation_deg=12,
        scale_jitter=0.08,
        shift_frac=0.05,
        noise_max=8,
        blur_p=0.3,
        jpeg_p=0.3,
        occlusion_p=0.12,
        sunglasses_p=0.06,
        mask_p=0.06,
    ),
}


def _check_memory(spec: str, n_images: int, size: int) -> None:
    """Refuse a synth set that cannot fit in half the machine's memory before allocating it."""
    need = n_images * size * size * 3
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: the fixed bound above still holds
        return
    if need > total // 2:
        raise FertrtError(
            f"data spec {spec!r}: {n_images:,} images of {size}x{size} need {need / 2**30:.1f} GiB of memory, more than "
            f"half of this machine's {total / 2**30:.1f} GiB; use a smaller N"
        )


def split_sizes(n_train: int) -> dict:
    return {"train": n_train, "val": max(n_train // 6, 16), "test": max(n_train // 3, 16)}


def _chunk(args):
    cfg, split, start, stop = args
    from . import synth

    n = stop - start
    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    boxes = np.empty((n, len(synth.CUE_REGIONS), 4), np.float32)
    for k, i in enumerate(range(start, stop)):
        images[k], labels[k], boxes[k] = synth.make_sample(cfg, split, i)
    return images, labels, boxes


def generate_parallel(cfg: SynthConfig, split: str, n: int, workers: int | None = None):
    """Same output as `synth.generate`, spread over processes for large n."""
    workers = workers or min(os.cpu_count() or 1, 8)
    if n < 800 or workers < 2:
        return generate(cfg, split, n)
    step = -(-n // (workers * 4))
    jobs = [(cfg, split, s, min(s + step, n)) for s in range(0, n, step)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_chunk, jobs))
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def open_synth(spec: str, option: str | None, image_size: int, seed: int, splits, limit=None) -> DataSource:
    count, _, level = (option or "").partition(":")
    try:
        n_train = int(count) if count else DEFAULT_TRAIN_SIZE
    except ValueError:
        raise FertrtError(
            f"data spec {spec!r}: expected synth, synth:N or synth:N:LEVEL with N a number of training images"
        ) from None
    if n_train < 1:
        raise FertrtError(f"data spec {spec!r}: N must be at least 1")
    if n_train > MAX_TRAIN_SIZE:
        raise FertrtError(f"data spec {spec!r}: N must be at most {MAX_TRAIN_SIZE:,} (synth images are held in memory)")
    if level and level not in DIFFICULTY:
        raise FertrtError(f"data spec {spec!r}: unknown difficulty {level!r}; expected one of {', '.join(DIFFICULTY)}")
    cfg = SynthConfig(size=int(image_size), seed=seed, **DIFFICULTY[level or "default"])
    sizes = split_sizes(n_train)
    counts = {name: sizes[name] if limit is None else min(sizes[name], limit) for name in splits}
    _check_memory(spec, sum(counts.values()), int(image_size))
    out = {}
    for name in splits:
        images, labels, boxes = generate_parallel(cfg, name, counts[name])
        out[name] = Split(name, BASIC7, labels, images=images, cue_boxes=boxes)
    return DataSource(spec, "synth", BASIC7, out)
