"""Evaluation of a trained model, including LNLAttenNet's region analysis on `synth` cue boxes."""
from __future__ import annotations

import numpy as np

from fertrt.metrics import summarize


def cue_cells(cue_boxes: np.ndarray, input_size, grid: int, min_cover: float = 0.3) -> np.ndarray:
    """N x 4 x 4 cue boxes (pixels) -> N x grid*grid bool: the cells a cue box covers >= min_cover of."""
    h, w = input_size
    ch, cw = h / grid, w / grid
    n = len(cue_boxes)
    out = np.zeros((n, grid * grid), bool)
    for i in range(grid):
        for j in range(grid):
            y0, y1, x0, x1 = i * ch, (i + 1) * ch, j * cw, (j + 1) * cw
            # Cells are small and boxes few: rasterise the union per cell on a coarse sub-grid.
            ys = np.linspace(y0, y1, 8, endpoint=False) + ch / 16
            xs = np.linspace(x0, x1, 8, endpoint=False) + cw / 16
            py, px = np.meshgrid(ys, xs, indexing="ij")
            py, px = py.ravel(), px.ravel()
            b = cue_boxes[:, :, None, :]  # N x 4 x 1 x 4
            inside = ((px >= b[..., 0]) & (px < b[..., 2]) & (py >= b[..., 1]) & (py < b[..., 3])).any(1)  # N x 64
            out[:, i * grid + j] = inside.mean(1) >= min_cover
    return out


def region_analysis(weights: np.ndarray, labels: np.ndarray, num_classes: int, cue_boxes=None, input_size=None, grid=4) -> dict:
    """Mean region weight per class; with cue boxes, the share of weight on the cue cells vs uniform."""
    r = weights.shape[1]
    per_class = np.full((num_classes, r), np.nan)
    for k in range(num_classes):
        if (labels == k).any():
            per_class[k] = weights[labels == k].mean(0)
    result = {"mean_weight_per_class": per_class.tolist(), "uniform_weight": 1.0 / r}
    if cue_boxes is not None:
        cells = cue_cells(cue_boxes, input_size, grid)
        share = (weights * cells).sum(1)
        uniform_share = cells.sum(1) / r
        n_cells = np.maximum(cells.sum(1), 1)
        result.update({
            "cue_weight_share": float(share.mean()),
            "cue_uniform_share": float(uniform_share.mean()),
            "cue_share_ratio": float(share.mean() / max(uniform_share.mean(), 1e-9)),
            "mean_weight_per_cue_region": float((share / n_cells).mean()),
            "mean_weight_per_other_region": float((((1 - share) / np.maximum(r - cells.sum(1), 1))).mean()),
            "cue_regions_per_face": float(cells.sum(1).mean()),
        })
        per_class_ratio = {}
        for k in range(num_classes):
            m = labels == k
            if m.any():
                per_class_ratio[k] = float(share[m].mean() / max(uniform_share[m].mean(), 1e-9))
        result["cue_share_ratio_per_class"] = [per_class_ratio.get(k, float("nan")) for k in range(num_classes)]
    return result


def class_mean_faces(split, indices: np.ndarray, labels: np.ndarray, num_classes: int, size, per_class: int = 64) -> np.ndarray:
    """K x H x W x 3 uint8: the mean of up to `per_class` evaluated faces of each class, at the model's input size."""
    from fertrt.runtime.preprocess import resize, to_rgb

    h, w = size
    out = np.zeros((num_classes, h, w, 3), np.uint8)
    for k in range(num_classes):
        acc, n = np.zeros((h, w, 3), np.float64), 0
        for i in indices[labels == k][:per_class]:
            img = split.load(int(i))
            if img is not None:
                acc += resize(to_rgb(img), (h, w))
                n += 1
        if n:
            out[k] = np.clip(acc / n, 0, 255).astype(np.uint8)
    return out


def example_faces(split, indices: np.ndarray, labels: np.ndarray, num_classes: int, size) -> tuple[np.ndarray, list[int]]:
    """One evaluated face per class (the first of each), at the model's input size, and their positions in `indices`."""
    from fertrt.runtime.preprocess import resize, to_rgb

    faces, rows = [], []
    for k in range(num_classes):
        for row in np.flatnonzero(labels == k)[:4]:
            img = split.load(int(indices[row]))
            if img is not None:
                faces.append(resize(to_rgb(img), tuple(size)))
                rows.append(int(row))
                break
    return (np.stack(faces) if faces else np.zeros((0, *size, 3), np.uint8)), rows


def evaluate(model, split, pre, batch_size=128, device="cpu") -> dict:
    from .trainer import predict

    has_regions = hasattr(model, "explain")
    pred = predict(model, split, pre, batch_size=batch_size, device=device, aux=has_regions)
    idx = pred["indices"]
    labels = split.labels[idx]
    y_pred = pred["logits"].argmax(1)
    result = summarize(labels, y_pred, split.class_names)
    result["skipped_images"] = pred["dropped"]
    result["class_names"] = list(split.class_names)
    result["logits"] = pred["logits"]
    result["indices"] = idx
    if "region_weights" in pred:
        result["region_weights"] = pred["region_weights"]
        boxes = split.cue_boxes[idx] if split.cue_boxes is not None else None
        result["regions"] = region_analysis(pred["region_weights"], labels, len(split.class_names), boxes,
                                            pre.input_size, getattr(model, "grid", 4))
    return result
