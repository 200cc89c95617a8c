"""LNLAttenNet's region weights drawn over a face: the grid laid over the image, as the paper's figures do.

One drawing function for every place that shows region weights (`fertrt eval`, the demo report,
`fertrt infer --regions`), numpy + OpenCV only so the runtime keeps working without torch.
"""

from __future__ import annotations

import numpy as np


def weights_grid(weights, grid: int | None = None) -> np.ndarray:
    """A flat vector of R region weights (row-major) -> grid x grid array; R must be a square."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    g = grid or int(round(len(w) ** 0.5))
    if g * g != len(w):
        raise ValueError(f"{len(w)} region weights do not form a square grid")
    return w.reshape(g, g)


def region_overlay(
    rgb: np.ndarray,
    weights,
    *,
    vmax: float | None = None,
    alpha: float = 0.5,
    grid_lines: bool = True,
    numbers: bool = True,
) -> np.ndarray:
    """RGB uint8 face -> RGB uint8 copy with the region weights as a heat overlay, grid lines and the
    weight of each cell in units of the uniform weight (1.0 = uniform, 2.2 = 2.2x uniform).

    Colour scale: 0 .. vmax (default: this face's largest weight), so cells are comparable within
    one picture; pass a shared vmax to compare several pictures.
    """
    import cv2

    w = weights_grid(weights)
    g = w.shape[0]
    h, wd = rgb.shape[:2]
    top = float(vmax if vmax is not None else max(w.max(), 1e-12))
    heat8 = np.clip(w / top * 255.0, 0, 255).astype(np.uint8)
    heat = cv2.resize(heat8, (wd, h), interpolation=cv2.INTER_NEAREST)
    colour = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    out = cv2.addWeighted(np.ascontiguousarray(rgb[..., :3]), 1.0 - alpha, colour, alpha, 0)
    ys = np.linspace(0, h, g + 1).round().astype(int)
    xs = np.linspace(0, wd, g + 1).round().astype(int)
    if grid_lines:
        for y in ys[1:-1]:
            cv2.line(out, (0, int(y)), (wd - 1, int(y)), (255, 255, 255), 1)
        for x in xs[1:-1]:
            cv2.line(out, (int(x), 0), (int(x), h - 1), (255, 255, 255), 1)
    cell = min(h, wd) / g
    if numbers and cell >= 24:
        uniform = 1.0 / (g * g)
        scale = max(0.3, cell / 90.0)
        for i in range(g):
            for j in range(g):
                text = f"{w[i, j] / uniform:.1f}"
                org = (int(xs[j] + cell * 0.12), int(ys[i] + cell * 0.62))
                cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
