"""`fertrt infer --regions`: the weights land on the part of the frame the model's grid covered."""

import numpy as np

from fertrt.runtime.face import Face, crop_corners, crop_face
from fertrt.runtime.pipeline import draw


def _face_out(face, weights, margin=0.0):
    return {
        "box": list(face.box),
        "label": "happiness",
        "confidence": 0.9,
        "region_weights": list(weights),
        "crop_corners": crop_corners(face, margin, align=True).tolist(),
    }


def test_crop_corners_match_the_crop():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    face = Face(box=(100, 60, 80, 80), score=1.0, landmarks=np.array([[120.0, 90.0], [160.0, 100.0]]))
    corners = crop_corners(face, 0.2, align=True)
    crop = crop_face(frame, face, 0.2, align=True)
    side = crop.shape[0]
    assert abs(np.linalg.norm(corners[1] - corners[0]) - side) < 1.0  # a square of the crop's side
    # the crop's centre pixel is the frame pixel at the centre of the corners
    cx, cy = corners.mean(0)
    assert (
        np.abs(crop[side // 2, side // 2].astype(int) - frame[int(round(cy)), int(round(cx))].astype(int)).max() <= 60
    )


def test_region_overlay_marks_the_weighted_cell_in_the_frame():
    frame = np.full((200, 200, 3), 100, np.uint8)
    face = Face(box=(40, 40, 120, 120), score=1.0, landmarks=None)
    w = np.full(16, 0.01)
    w[3] = 1 - 0.01 * 15  # top-right cell of the 4x4 grid
    bgr = draw(frame, [_face_out(face, w)], regions=True).astype(float).sum(-1)
    cells = bgr[40:160, 40:160].reshape(4, 30, 4, 30).mean((1, 3))
    assert np.unravel_index(cells.argmax(), (4, 4)) == (0, 3)
    outside = bgr[:30, :30]
    assert np.all(outside == 300)  # nothing painted outside the crop
    plain = draw(frame, [_face_out(face, w)], regions=False).astype(float).sum(-1)
    assert np.all(plain[60:140, 60:140] == 300)  # without --regions the face is left as it is
