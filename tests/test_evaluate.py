"""LNLAttenNet's region weights after training, and the pictures that show them."""

import json

import numpy as np

from fertrt.cli import main
from fertrt.runtime.regions import region_overlay, weights_grid
from fertrt.train.evaluate import cue_cells, cue_cells_per_box, cue_region_table, format_ratio, region_analysis


def test_trained_weights_favour_the_cue_regions(tiny_run, tmp_path):
    """A few seeded epochs on easy synth already put more than the uniform share on the cue cells (1.69x here;
    1.69-2.04x over seeds 0-2, which stand in for other machines' float kernels), and the report carries the
    ratio per class and per cue region and the overlay pictures."""
    run, _ = tiny_run
    assert main(["eval", str(run / "best.pt"), "-o", str(tmp_path)]) == 0
    reg = json.loads((tmp_path / "eval_test.json").read_text())["regions"]
    assert reg["cue_share_ratio"] > 1.2, reg["cue_share_ratio"]
    assert len(reg["cue_share_ratio_per_class"]) == 7
    assert np.array(reg["cue_region_ratio_per_class"]).shape == (7, 4)
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
    # no face has a cue cell: the ratio is undefined, not 0.00x
    none = region_analysis(on_cue, labels, 7, np.zeros((2, 4, 4), np.float32), (112, 112))
    assert np.isnan(none["cue_share_ratio"]) and format_ratio(none["cue_share_ratio"]) == "-"


def test_a_cue_straddling_a_grid_corner_counts_in_each_cell_it_shares():
    """A mouth box centred on the corner of four cells covers 9 % of each, but each holds a quarter of it."""
    boxes = np.zeros((1, 4, 4), np.float32)
    boxes[0, :3] = (0, 0, 28, 28)  # brows, eyes, nose: the top-left cell
    boxes[0, 3] = (46, 74, 66, 94)  # mouth: 20 x 20 around the corner (56, 84) of cells 9, 10, 13, 14
    per_box = cue_cells_per_box(boxes, (112, 112), 4)
    assert np.flatnonzero(per_box[0, 3]).tolist() == [9, 10, 13, 14]
    assert np.flatnonzero(cue_cells(boxes, (112, 112), 4)[0]).tolist() == [0, 9, 10, 13, 14]
    small = boxes.copy()
    small[0, 3] = (50, 78, 62, 90)  # a 12 x 12 cue off the corner ...
    small[0, 3, [0, 2]] += 7  # ... mostly in cells 10 and 14: cells 9 and 13 hold under a fifth of it
    assert np.flatnonzero(cue_cells_per_box(small, (112, 112), 4)[0, 3]).tolist() == [10, 14]


def test_cue_region_ratios_per_class_follow_the_weights():
    boxes = np.zeros((4, 4, 4), np.float32)
    boxes[:, 0] = (0, 28, 56, 56)  # brows: cells 4, 5
    boxes[:, 1] = (0, 28, 56, 56)  # eyes: the same cells
    boxes[:, 2] = (56, 56, 84, 84)  # nose: cell 10
    boxes[:, 3] = (28, 84, 84, 112)  # mouth: cells 13, 14
    labels = np.array([1, 1, 6, 6])  # happiness, anger
    w = np.full((4, 16), 0.02)
    w[:2, 13] = w[:2, 14] = (1 - 0.02 * 14) / 2  # happiness: on the mouth
    w[2:, 4] = w[2:, 5] = (1 - 0.02 * 14) / 2  # anger: on the brows
    reg = region_analysis(w, labels, 7, boxes, (112, 112))
    ratios = np.array(reg["cue_region_ratio_per_class"])
    assert reg["cue_region_names"] == ["brows", "eyes", "nose", "mouth"]
    assert np.allclose(ratios[1], [0.32, 0.32, 0.32, 5.76]) and np.allclose(ratios[6], [5.76, 5.76, 0.32, 0.32])
    assert np.isnan(ratios[0]).all()
    no_mouth = boxes.copy()
    no_mouth[:, 3] = 0  # a cue with no cell anywhere: its ratio is undefined, not 0.00x
    ratios = np.array(region_analysis(w, labels, 7, no_mouth, (112, 112))["cue_region_ratio_per_class"])
    assert np.isnan(ratios[1, 3]) and np.allclose(ratios[1, :3], 0.32)
    table = cue_region_table(
        reg, ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger"], markdown=True
    )
    assert (
        table[0] == "| class | brows | eyes | nose | mouth |"
        and table[3] == "| happiness | 0.32x | 0.32x | 0.32x | 5.76x* |"
    )
    assert table[2] == "| neutral | - | - | - | - |"


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
