"""`fertrt data preview|info`."""

from __future__ import annotations

import numpy as np

from fertrt.runtime.preprocess import write_image

from . import load_data


def preview_grid(split, count=49, tile=112, seed=0) -> np.ndarray:
    """A labelled grid of random samples as one RGB image."""
    import cv2

    from fertrt.runtime.preprocess import resize, to_rgb

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(split), size=min(count, len(split)), replace=False)
    cols = int(np.ceil(np.sqrt(len(idx))))
    rows = int(np.ceil(len(idx) / cols))
    grid = np.full((rows * (tile + 14), cols * tile, 3), 255, np.uint8)
    for k, i in enumerate(idx):
        img = split.load(int(i))
        r, c = divmod(k, cols)
        y, x = r * (tile + 14), c * tile
        if img is not None:
            grid[y : y + tile, x : x + tile] = resize(to_rgb(img), (tile, tile))
        label = split.class_names[int(split.labels[i])] if img is not None else "unreadable"
        cv2.putText(grid, label, (x + 2, y + tile + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def run(args):
    from fertrt.fileio import check_output

    if args.data_cmd == "preview":  # before drawing anything: an existing file only with --force, never a device node
        check_output(args.output, overwrite=getattr(args, "force", False), option="-o")
    if args.data_cmd == "preview":  # synth draws only what the grid shows
        data = load_data(args.spec, image_size=args.size, seed=args.seed, splits=(args.split,), limit=args.count * 2)
    else:
        data = load_data(args.spec, image_size=args.size)
    if args.data_cmd == "info":
        for name, split in data.splits.items():
            print(
                f"{name:<6} {len(split):>7} images  " + "  ".join(f"{k}={v}" for k, v in split.class_counts().items())
            )
            if split.malformed:
                print(f"       {split.malformed} malformed rows skipped")
        return 0
    split = data.split(args.split)
    grid = preview_grid(split, args.count, args.size, args.seed)
    write_image(args.output, grid)
    print(
        f"wrote {args.output}: {min(args.count, len(split))} samples of {args.spec} [{args.split}]"
        + (f", {len(split.skipped)} unreadable" if split.skipped else "")
    )
    return 0
