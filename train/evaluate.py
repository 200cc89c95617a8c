"""Evaluation of a trained model, including LNLAttenNet's region analysis on `synth` cue boxes."""

from __future__ import annotations

import numpy as np

from fertrt.metrics import summarize
from fertrt.text import safe

from .data.synth import CUE_REGIONS  # the cue boxes `synth` records per face, in this order


def cue_cells_per_box(
    cue_boxes: np.ndarray, input_size, grid: int, min_cover: float = 0.3, min_hold: float = 0.2
) -> np.ndarray:
    """N x B x 4 boxes (pixels x0, y0, x1, y1) -> N x B x grid*grid bool: the cells of each box.

    A cell belongs to a box when the box covers at least `min_cover` of the cell or the cell holds at
    least `min_hold` of the box's area. The second rule matters for small cues: a mouth or nose that
    straddles a corner of the grid covers under 30 % of each of its four cells (with the first rule
    alone the mouth had a cell in 18 % of synth's faces and the nose in 6 %), yet each cell holds a
    quarter of it."""
    h, w = input_size
    ch, cw = h / grid, w / grid
    x0, y0, x1, y1 = (cue_boxes[..., i, None] for i in range(4))  # N x B x 1
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    cx0, cx1, cy0, cy1 = cols * cw, (cols + 1) * cw, rows * ch, (rows + 1) * ch  # grid*grid
    inter = np.clip(np.minimum(x1, cx1) - np.maximum(x0, cx0), 0, None) * np.clip(
        np.minimum(y1, cy1) - np.maximum(y0, cy0), 0, None
    )  # N x B x grid*grid
    box_area = np.maximum((x1 - x0) * (y1 - y0), 1e-9)
    return (inter >= min_cover * ch * cw) | (inter >= min_hold * box_area)


def cue_cells(cue_boxes: np.ndarray, input_size, grid: int) -> np.ndarray:
    """N x B x 4 cue boxes (pixels) -> N x grid*grid bool: the cells that belong to any cue (cue_cells_per_box)."""
    return cue_cells_per_box(cue_boxes, input_size, grid).any(1)


def _ratio(share, uniform):
    share, uniform = np.asarray(share, np.float64), np.asarray(uniform, np.float64)
    return np.where(uniform > 0, share / np.where(uniform > 0, uniform, 1.0), np.nan)


def region_analysis(
    weights: np.ndarray, labels: np.ndarray, num_classes: int, cue_boxes=None, input_size=None, grid=4
) -> dict:
    """Mean region weight per class; with cue boxes, the share of weight on the cue cells vs uniform,
    overall, per class and per class and cue region (brows, eyes, nose, mouth)."""
    r = weights.shape[1]
    per_class = np.full((num_classes, r), np.nan)
    for k in range(num_classes):
        if (labels == k).any():
            per_class[k] = weights[labels == k].mean(0)
    result = {"mean_weight_per_class": per_class.tolist(), "uniform_weight": 1.0 / r}
    if cue_boxes is not None:
        per_box = cue_cells_per_box(cue_boxes, input_size, grid)
        cells = per_box.any(1)
        share = (weights * cells).sum(1)
        uniform_share = cells.sum(1) / r
        n_cells = np.maximum(cells.sum(1), 1)
        result.update(
            {
                "cue_weight_share": float(share.mean()),
                "cue_uniform_share": float(uniform_share.mean()),
                "cue_share_ratio": float(_ratio(share.mean(), uniform_share.mean())),  # NaN: no face has a cue cell
                "mean_weight_per_cue_region": float((share / n_cells).mean()),
                "mean_weight_per_other_region": float(((1 - share) / np.maximum(r - cells.sum(1), 1)).mean()),
                "cue_regions_per_face": float(cells.sum(1).mean()),
            }
        )
        per_class_ratio = np.full(num_classes, np.nan)
        # class x cue region: the weight on that cue's cells over the uniform share of those cells
        per_region_ratio = np.full((num_classes, per_box.shape[1]), np.nan)
        region_share = (weights[:, None, :] * per_box).sum(2)  # N x B
        region_uniform = per_box.sum(2) / r
        for k in range(num_classes):
            m = labels == k
            if m.any():  # undefined (NaN) where the class's faces have no cell for a cue
                per_class_ratio[k] = _ratio(share[m].mean(), uniform_share[m].mean())
                per_region_ratio[k] = _ratio(region_share[m].mean(0), region_uniform[m].mean(0))
        result["cue_share_ratio_per_class"] = per_class_ratio.tolist()
        result["cue_region_names"] = list(CUE_REGIONS[: per_box.shape[1]])
        result["cue_region_ratio_per_class"] = per_region_ratio.tolist()
    return result


def format_ratio(v) -> str:
    """A ratio over the uniform share as '1.23x'; '-' where it is undefined (NaN)."""
    return "-" if v is None or v != v else f"{v:.2f}x"


def cue_region_table(reg: dict, class_names, markdown: bool = False) -> list[str]:
    """Lines of the class x cue-region table of `region_analysis` (ratios over the uniform share; the
    class's highest ratio marked with *), as plain text or a markdown table."""
    names = reg.get("cue_region_names") or []
    rows = reg.get("cue_region_ratio_per_class") or []
    if not names or not rows or len(rows) != len(class_names):
        return []
    cells = []
    for row in rows:
        finite = [v for v in row if v == v]
        top = max(finite) if finite else None
        cells.append([format_ratio(v) + ("*" if v == top else " ") for v in row])
    if markdown:
        lines = ["| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        return lines + [f"| {safe(c)} | " + " | ".join(v.strip() for v in r) + " |" for c, r in zip(class_names, cells)]
    width = max(len(safe(c)) for c in class_names)
    lines = [" " * (width + 2) + "".join(f"{n:>9}" for n in names)]
    return lines + [f"  {safe(c):<{width}}" + "".join(f"{v:>9}" for v in r) for c, r in zip(class_names, cells)]


def class_mean_faces(
    split, indices: np.ndarray, labels: np.ndarray, num_classes: int, size, per_class: int = 64
) -> np.ndarray:
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


def example_faces(
    split, indices: np.ndarray, labels: np.ndarray, num_classes: int, size
) -> tuple[np.ndarray, list[int]]:
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
        result["regions"] = region_analysis(
            pred["region_weights"], labels, len(split.class_names), boxes, pre.input_size, getattr(model, "grid", 4)
        )
    return result
