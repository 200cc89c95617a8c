"""LNLAttenNet's region weights after training, and the pictures that show them."""
import json

import numpy as np

from fertrt.cli import main
from fertrt.runtime.regions import region_overlay, weights_grid
from fertrt.train.evaluate import cue_cells, region_analysis


def test_trained_weights_favour_the_cue_regions(tiny_run, tmp_path):
    """A few seeded epochs on easy synth already put more than the uniform share on the cue cells,
    and the report carries the ratio per class and the overlay pictures."""
    run, _ = tiny_run
    assert main(["eval", str(run / "best.pt"), "-o", str(tmp_path)]) == 0
    reg = json.loads((tmp_path / "eval_test.json").read_text())["regions"]
    assert reg["cue_share_ratio"] > 1.2, reg["cue_share_ratio"]
    assert len(reg["cue_share_ratio_per_class"]) == 7
    for name in ("region_overlay", "region_examples"):
        assert (tmp_path / f"eval_test_{name}.png").stat().st_size > 5000


def test_cue_share_ratio_on_known_weights():
    # one face whose cue box covers exactly the top-left cell of a 4x4 grid on a 112x112 image
    boxes = np.zeros((2, 4, 4), np.float32)
    boxes[:, :, :] = (0, 0, 28, 28)
    cells = cue_cells(boxes, (112, 112), 4)
    assert cells[0].tolist() == [True] + [False] * 15
    uniform = np.full((2, 16), 1 / 16)
    on_cue = np.full((2, 16), 0.5 / 15)
    on_cue[:, 0] = 0.5
    labels = np.array([1, 2])
    assert abs(region_analysis(uniform, labels, 7, boxes, (112, 112))["cue_share_ratio"] - 1.0) < 1e-9
    res = region_analysis(on_cue, labels, 7, boxes, (112, 112))
    assert abs(res["cue_share_ratio"] - 8.0) < 1e-9  # 0.5 of the weight on 1/16 of the cells
    assert abs(res["cue_share_ratio_per_class"][1] - 8.0) < 1e-9 and np.isnan(res["cue_share_ratio_per_class"][0])


def test_region_overlay_paints_the_heaviest_cell_brightest():
    face = np.full((112, 112, 3), 128, np.uint8)
    w = np.full(16, 0.02)
    w[9] = 1 - 0.02 * 15  # row 2, column 1
    out = region_overlay(face, w, numbers=False, grid_lines=False)
    assert out.shape == face.shape and out.dtype == np.uint8
    brightness = out.astype(float).sum(-1)
    cell_means = brightness.reshape(4, 28, 4, 28).mean((1, 3))
    assert np.unravel_index(cell_means.argmax(), (4, 4)) == (2, 1)
    assert weights_grid(w).shape == (4, 4)
