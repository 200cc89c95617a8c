"""PNG figures (matplotlib, Agg backend), each written atomically."""

from __future__ import annotations

import numpy as np

from fertrt.fileio import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(path, cm: np.ndarray, class_names, title=""):
    plt = _plt()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(class_names)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n({int(cm[i, j])})",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_region_heatmaps(path, weights_per_class: np.ndarray, class_names, grid: int, title=""):
    """Mean region weight per class as grid x grid heatmaps (uniform = 1/regions)."""
    plt = _plt()
    k = len(class_names)
    fig, axes = plt.subplots(1, k, figsize=(2.0 * k, 2.4))
    vmax = float(np.nanmax(weights_per_class)) if np.isfinite(weights_per_class).any() else 1.0
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(weights_per_class[i].reshape(grid, grid), cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(class_names[i], fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"mean region weight per class (uniform = {1 / grid**2:.4f}, max {vmax:.3f})", fontsize=9)
    _save(plt, fig, path)


def plot_region_overlays(path, mean_faces: np.ndarray, weights_per_class: np.ndarray, class_names, title=""):
    """Per class: the mean region weights over that class's mean face, grid laid over the image.

    One colour scale for all classes (0 .. the largest mean weight) so the panels compare; the
    numbers are each cell's weight in units of the uniform weight (1.0 = uniform).
    """
    from fertrt.runtime.regions import region_overlay

    plt = _plt()
    k = len(class_names)
    vmax = float(np.nanmax(weights_per_class)) if np.isfinite(weights_per_class).any() else 1.0
    fig, axes = plt.subplots(1, k, figsize=(2.3 * k, 2.7))
    for i, ax in enumerate(np.atleast_1d(axes)):
        face = _upscale(mean_faces[i])
        if np.isfinite(weights_per_class[i]).all():
            ax.imshow(region_overlay(face, weights_per_class[i], vmax=vmax))
        else:
            ax.imshow(face)
        ax.set_title(class_names[i], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    r = weights_per_class.shape[1]
    fig.suptitle(
        title or f"mean region weight per class over the class's mean face (numbers: x uniform 1/{r})", fontsize=9
    )
    _save(plt, fig, path)


def plot_region_examples(path, images: np.ndarray, weights: np.ndarray, titles, title=""):
    """A few single faces, each with its own region weights (numbers: x uniform)."""
    from fertrt.runtime.regions import region_overlay

    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.8))
    for i, ax in enumerate(np.atleast_1d(axes)):
        ax.imshow(region_overlay(_upscale(images[i]), weights[i]))
        ax.set_title(titles[i], fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or "region weights of single test faces (numbers: x uniform)", fontsize=9)
    _save(plt, fig, path)


def _save(plt, fig, path):
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _upscale(rgb: np.ndarray, min_side: int = 224) -> np.ndarray:
    """Small faces are upscaled so the per-cell numbers stay legible."""
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb
    f = min_side / min(h, w)
    return cv2.resize(rgb, (int(round(w * f)), int(round(h * f))), interpolation=cv2.INTER_LINEAR)
