"""`synth`: the procedural synthetic facial expression data set (the embedded default).

Faces are drawn with OpenCV from per-identity parameters (face shape, tone, hair, feature spacing
and size, glasses). An expression is a vector of action-unit-like cues with random intensity:

    cue            AU analogue            negative ... positive
    brow_raise     AU1+2 / AU4            lowered ... raised
    brow_inner     AU1 / AU4 (inner end)  inner lowered, drawn together ... inner raised
    eye_open       AU5 / AU7              squint ... widened
    nose_wrinkle   AU9 (+AU10)            none ... wrinkled, upper lip raised
    lip_corner     AU12 / AU15            depressed ... pulled up
    lip_stretch    AU20                   none ... stretched sideways
    mouth_open     AU25-27                closed ... jaw dropped

Class prototypes share cues the way real expressions do (fear and surprise both raise the brows
and open the mouth; anger and disgust both lower the brows), so the cue combination matters.
Nuisances: rotation, scale and shift (imperfect alignment), lighting gradients, noise, blur,
JPEG artefacts, occluders (patches, sunglasses, a mask), optional label noise. Train, val and test
draw from disjoint identity pools. Every sample records where its cues are (brow, eye, nose,
mouth boxes in output pixels) so region-attention can be checked against ground truth.

Deterministic: sample i of a split depends only on (seed, split, i). numpy + OpenCV only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fertrt.labels import BASIC7

CUES = ("brow_raise", "brow_inner", "eye_open", "nose_wrinkle", "lip_corner", "lip_stretch", "mouth_open")
CUE_REGIONS = ("brows", "eyes", "nose", "mouth")

# Rows follow fertrt.labels.BASIC7: neutral, happiness, sadness, surprise, fear, disgust, anger.
PROTOTYPES = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, -0.4, 0.0, 1.0, 0.3, 0.35],
        [-0.2, 0.9, -0.3, 0.0, -0.8, 0.0, 0.0],
        [1.0, 0.2, 0.9, 0.0, 0.0, -0.2, 0.9],
        [0.7, 0.8, 0.9, 0.0, -0.2, 0.9, 0.4],
        [-0.5, -0.2, -0.5, 1.0, -0.5, 0.2, 0.1],
        [-1.0, -0.9, 0.2, 0.15, -0.3, 0.0, 0.0],
    ],
    dtype=np.float32,
)

_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
_SKIN = np.array(
    [[255, 224, 196], [241, 194, 150], [224, 172, 125], [198, 134, 90], [141, 85, 50], [92, 58, 38]], np.float32
)
_HAIR = np.array(
    [[20, 15, 10], [70, 45, 25], [140, 95, 50], [200, 170, 110], [120, 120, 120], [160, 50, 30]], np.float32
)


@dataclass(frozen=True)
class SynthConfig:
    size: int = 112
    seed: int = 0
    identities_per_split: int = 300
    min_intensity: float = 0.6
    cue_jitter: float = 0.1
    rotation_deg: float = 8.0
    scale_jitter: float = 0.06
    shift_frac: float = 0.04
    noise_max: float = 4.0
    blur_p: float = 0.2
    jpeg_p: float = 0.2
    occlusion_p: float = 0.06
    sunglasses_p: float = 0.04
    mask_p: float = 0.04
    label_noise: float = 0.0


def _identity(seed: int, split: str, k: int) -> dict:
    r = np.random.default_rng([seed, _SPLIT_CODES[split], 7919, k])
    return {
        "face_w": r.uniform(33, 40),
        "face_h": r.uniform(42, 50),
        "skin": _SKIN[r.integers(len(_SKIN))] * r.uniform(0.92, 1.05),
        "hair": _HAIR[r.integers(len(_HAIR))],
        "hair_style": int(r.integers(3)),
        "eye_sep": r.uniform(12.0, 15.5),
        "eye_y": r.uniform(-0.22, -0.12),
        "eye_w": r.uniform(5.5, 7.5),
        "brow_len": r.uniform(9, 12),
        "brow_thick": r.uniform(2.0, 3.0),
        "nose_len": r.uniform(9, 13),
        "mouth_w": r.uniform(13, 18),
        "mouth_y": r.uniform(0.42, 0.52),
        "glasses": bool(r.random() < 0.12),
        "bg": r.uniform(40, 230, 3),
    }


def _bezier(p0, p1, p2, n=12):
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * np.asarray(p0) + 2 * (1 - t) * t * np.asarray(p1) + t**2 * np.asarray(p2)


SH = 4  # fixed-point bits for sub-pixel drawing: shapes are placed at 1/16-pixel precision
_ONE = float(1 << SH)
_AA = cv2.LINE_AA


def _P(x, y):
    """A point of the canonical frame in OpenCV's fixed-point coordinates."""
    return (int(round(x * _ONE)), int(round(y * _ONE)))


def _pts(a):
    """A polyline of the canonical frame in OpenCV's fixed-point coordinates."""
    return (np.asarray(a) * _ONE).round().astype(np.int32).reshape(-1, 1, 2)


@dataclass(frozen=True)
class _Head:
    """Where one face sits in the 112-unit canonical frame, and its colours (shared by every part drawn)."""

    cx: float
    cy: float
    fw: float  # half width and half height of the face ellipse
    fh: float
    ey: float  # eye line
    ew: float  # eye half width
    eh: float  # eye half height (eye_open)
    skin: tuple
    hair: tuple
    dark: tuple  # outlines and shadows: a darker skin tone


def _draw_face(ident: dict, cues: np.ndarray, r: np.random.Generator, sunglasses: bool, mask: bool, S: int = 112):
    """Draw one upright face in the 112-unit canonical frame at sub-pixel precision -> (image, cue boxes).
    The parts are drawn in this order, which decides what covers what and the order of the draws from r."""
    brow_raise, brow_inner, eye_open, nose_wrinkle, lip_corner, lip_stretch, mouth_open = [float(v) for v in cues]
    mouth_open = max(0.0, mouth_open)
    lip_stretch = max(0.0, lip_stretch)
    nose_wrinkle = max(0.0, nose_wrinkle)
    img = np.empty((S, S, 3), np.uint8)
    img[:] = ident["bg"].astype(np.uint8)
    cx, cy = 56.0, 60.0
    fh = ident["face_h"]
    skin = tuple(float(v) for v in np.clip(ident["skin"], 0, 255))
    head = _Head(
        cx=cx,
        cy=cy,
        fw=ident["face_w"],
        fh=fh,
        ey=cy + fh * ident["eye_y"],
        ew=ident["eye_w"],
        eh=2.8 * (1.0 + 0.65 * np.clip(eye_open, -1.2, 1.3)),
        skin=skin,
        hair=tuple(float(v) for v in ident["hair"]),
        dark=tuple(float(v) * 0.35 for v in skin),
    )
    _draw_head_shape(img, ident, head)
    boxes = {"eyes": _draw_eyes(img, ident, head, r)}
    boxes["brows"] = _draw_brows(img, ident, head, brow_raise, brow_inner)
    boxes["nose"] = _draw_nose(img, ident, head, nose_wrinkle)
    boxes["mouth"], my = _draw_mouth(img, ident, head, lip_corner, lip_stretch, mouth_open, nose_wrinkle)
    _draw_accessories(img, ident, head, my, sunglasses, mask, r)
    return img, boxes


def _draw_head_shape(img, ident: dict, h: _Head) -> None:
    """Hair behind the head, ears, the face, and the hair over the forehead (by hair style)."""
    cv2.ellipse(img, _P(h.cx, h.cy - h.fh * 0.25), _P(h.fw + 4, h.fh * 0.85), 0, 180, 360, h.hair, -1, _AA, SH)
    if ident["hair_style"] == 2:
        cv2.ellipse(img, _P(h.cx, h.cy), _P(h.fw + 5, h.fh + 2), 0, 0, 360, h.hair, -1, _AA, SH)
    for s in (-1, 1):
        cv2.ellipse(img, _P(h.cx + s * h.fw, h.cy - h.fh * 0.05), _P(4.5, 8), 0, 0, 360, h.skin, -1, _AA, SH)
    cv2.ellipse(img, _P(h.cx, h.cy), _P(h.fw, h.fh), 0, 0, 360, h.skin, -1, _AA, SH)
    if ident["hair_style"] != 1:
        cv2.ellipse(img, _P(h.cx, h.cy - h.fh * 0.62), _P(h.fw * 0.95, h.fh * 0.42), 0, 180, 360, h.hair, -1, _AA, SH)


def _draw_eyes(img, ident: dict, h: _Head, r: np.random.Generator) -> tuple:
    """Eye whites opened by eye_open, irises at a random gaze (one draw from r per eye), outlines -> eyes box."""
    open_h = max(h.eh, 0.6)
    for s in (-1, 1):
        ex = h.cx + s * ident["eye_sep"]
        cv2.ellipse(img, _P(ex, h.ey), _P(h.ew, open_h), 0, 0, 360, (250, 250, 250), -1, _AA, SH)
        cv2.circle(img, _P(ex + r.uniform(-0.8, 0.8), h.ey), int(min(2.6, open_h) * _ONE), (40, 30, 25), -1, _AA, SH)
        cv2.ellipse(img, _P(ex, h.ey), _P(h.ew, open_h), 0, 0, 360, h.dark, 1, _AA, SH)
    return (h.cx - ident["eye_sep"] - h.ew - 1, h.ey - h.eh - 2, h.cx + ident["eye_sep"] + h.ew + 1, h.ey + h.eh + 2)


def _draw_brows(img, ident: dict, h: _Head, brow_raise: float, brow_inner: float) -> tuple:
    """Brows: height from brow_raise; inner end moved by brow_inner (up = sad/fear, down+inward = anger) -> box."""
    by = h.ey - 7.5 - 5.0 * brow_raise
    bl, bt = ident["brow_len"], ident["brow_thick"]
    thickness = max(1, int(round(bt * _ONE))) >> SH or 1
    bys = []
    for s in (-1, 1):
        inner_x = h.cx + s * (ident["eye_sep"] - bl * 0.45 + min(brow_inner, 0) * 2.0)
        outer_x = h.cx + s * (ident["eye_sep"] + bl * 0.55)
        inner_y = by - 3.5 * brow_inner
        outer_y = by + 0.8 * brow_inner
        mid = ((inner_x + outer_x) / 2, min(inner_y, outer_y) - 1.2)
        cv2.polylines(
            img, [_pts(_bezier((inner_x, inner_y), mid, (outer_x, outer_y)))], False, h.hair, thickness, _AA, SH
        )
        bys += [inner_y, outer_y]
    return (h.cx - ident["eye_sep"] - bl * 0.6 - 1, min(bys) - 3, h.cx + ident["eye_sep"] + bl * 0.6 + 1, max(bys) + 3)


def _draw_nose(img, ident: dict, h: _Head, nose_wrinkle: float) -> tuple:
    """Bridge line, nostrils, and with nose_wrinkle wrinkles and deeper nasolabial folds -> nose box."""
    cx, ey, dark = h.cx, h.ey, h.dark
    ny0, ny1 = ey + 2, ey + 2 + ident["nose_len"]
    cv2.polylines(img, [_pts([(cx - 1, ny0), (cx - 2.5, ny1), (cx + 2.5, ny1 + 1)])], False, dark, 1, _AA, SH)
    for s in (-1, 1):
        cv2.ellipse(img, _P(cx + s * 3.2, ny1 + 0.5), _P(1.6, 1.0), 0, 0, 360, dark, -1, _AA, SH)
    if nose_wrinkle > 0.15:
        n_lines = 1 + int(nose_wrinkle * 3)
        for k in range(n_lines):
            yy = ey + 1 + k * 2.2
            cv2.line(img, _P(cx - 4, yy), _P(cx + 4, yy - 0.5), dark, 1, _AA, SH)
        for s in (-1, 1):  # nasolabial deepening
            cv2.line(img, _P(cx + s * 5, ny1 - 1), _P(cx + s * 7.5, ny1 + 4 + 2 * nose_wrinkle), dark, 1, _AA, SH)
    return (cx - 8, ey - 1, cx + 8, ny1 + 4)


def _draw_mouth(
    img, ident: dict, h: _Head, lip_corner: float, lip_stretch: float, mouth_open: float, nose_wrinkle: float
):
    """Corners move with lip_corner, width with lip_stretch, the lower lip drops with mouth_open (teeth in an
    open smile) -> (mouth box, the mouth line's height)."""
    cx = h.cx
    my = h.cy + h.fh * ident["mouth_y"]
    mw = ident["mouth_w"] * (1.0 + 0.35 * lip_stretch) * (1.0 - 0.12 * mouth_open) / 2
    corner_y = my - 5.0 * lip_corner
    upper_mid = my - 1.0 - 2.5 * nose_wrinkle + 1.2 * min(lip_corner, 0)
    lower_mid = my + 1.0 + 11.0 * mouth_open + 2.0 * max(lip_corner, 0) * (mouth_open > 0.15)
    left, right = (cx - mw, corner_y), (cx + mw, corner_y)
    upper = _bezier(left, (cx, upper_mid - (corner_y - my) * 0.5), right)
    lower = _bezier(right, (cx, lower_mid + (my - corner_y) * 0.3 + (lower_mid - my)), left)
    lip = (170.0, 70.0, 70.0)
    if mouth_open > 0.15:
        cv2.fillPoly(img, [_pts(np.vstack([upper, lower]))], (60, 20, 25), _AA, SH)
        if lip_corner > 0.4:  # teeth of a smile
            teeth = _bezier((cx - mw * 0.7, corner_y + 0.5), (cx, upper_mid + 2.0), (cx + mw * 0.7, corner_y + 0.5))
            cv2.polylines(img, [_pts(teeth)], False, (245, 245, 240), 2, _AA, SH)
        cv2.polylines(img, [_pts(upper), _pts(lower)], False, lip, 2, _AA, SH)
    else:
        cv2.polylines(img, [_pts(upper)], False, lip, 2, _AA, SH)
        closed = _bezier(left, (cx, my + 2.5 + (my - corner_y) * 0.4), right)
        cv2.polylines(img, [_pts(closed)], False, lip, 1, _AA, SH)
    box = (cx - mw - 2, min(corner_y, upper_mid) - 3, cx + mw + 2, max(lower_mid + (lower_mid - my), my + 3) + 3)
    return box, my


def _draw_accessories(
    img, ident: dict, h: _Head, my: float, sunglasses: bool, mask: bool, r: np.random.Generator
) -> None:
    """Glasses (unless sunglasses), sunglasses, and a mask of a random colour (from r) over the mouth."""
    cx, ey, ew, sep = h.cx, h.ey, h.ew, ident["eye_sep"]
    if ident["glasses"] and not sunglasses:
        for s in (-1, 1):
            cv2.circle(img, _P(cx + s * sep, ey), int((ew + 2.5) * _ONE), (30, 30, 30), 1, _AA, SH)
        cv2.line(img, _P(cx - sep + ew + 2.5, ey), _P(cx + sep - ew - 2.5, ey), (30, 30, 30), 1, _AA, SH)
    if sunglasses:
        for s in (-1, 1):
            cv2.ellipse(img, _P(cx + s * sep, ey + 0.5), _P(ew + 3, 5.5), 0, 0, 360, (15, 15, 20), -1, _AA, SH)
        cv2.line(img, _P(cx - 4, ey), _P(cx + 4, ey), (15, 15, 20), 2, _AA, SH)
    if mask:
        mask_col = tuple(float(v) for v in r.uniform(150, 250, 3))
        cv2.ellipse(img, _P(cx, my - 2), _P(h.fw * 0.95, h.fh * 0.42), 0, 0, 360, mask_col, -1, _AA, SH)


def _lighting(img: np.ndarray, r: np.random.Generator) -> np.ndarray:
    S = img.shape[0]
    ang = r.uniform(0, 2 * np.pi)
    ramp = np.cos(ang) * np.linspace(-1, 1, S)[None, :] + np.sin(ang) * np.linspace(-1, 1, S)[:, None]
    gain = r.uniform(0.75, 1.15) + r.uniform(0.0, 0.25) * ramp
    return np.clip(img.astype(np.float32) * gain[..., None], 0, 255)


def make_sample(cfg: SynthConfig, split: str, index: int):
    """Return (image uint8 SxSx3 RGB, label, cue boxes 4x4 as x0,y0,x1,y1 in output pixels)."""
    r = np.random.default_rng([cfg.seed, _SPLIT_CODES[split], index])
    label = int(r.integers(len(BASIC7)))
    ident = _identity(cfg.seed, split, int(r.integers(cfg.identities_per_split)))
    intensity = r.uniform(cfg.min_intensity, 1.0)
    cues = PROTOTYPES[label] * intensity + r.normal(0, cfg.cue_jitter, len(CUES))
    if label == 1:
        cues[6] = r.uniform(0.0, 0.8) * intensity  # smiles with and without teeth
    if label == 6 and r.random() < 0.35:
        cues[6] = r.uniform(0.3, 0.6)  # shouting anger
    sunglasses = r.random() < cfg.sunglasses_p
    mask = (not sunglasses) and r.random() < cfg.mask_p
    face, boxes = _draw_face(ident, cues, r, sunglasses, mask)
    # imperfect alignment: rotate/scale/shift about the face centre, then resize to the output size
    S = cfg.size
    scale = S / 112.0 * (1.0 + r.uniform(-cfg.scale_jitter, cfg.scale_jitter))
    M = cv2.getRotationMatrix2D((56.0, 60.0), r.uniform(-cfg.rotation_deg, cfg.rotation_deg), scale)
    centre = np.array([56.0, 60.0])
    target = np.array([S / 2.0, S / 2.0 + 4.0 * S / 112.0]) + r.uniform(-1, 1, 2) * cfg.shift_frac * S
    M[:, 2] += target - centre  # the rotation keeps the face centre fixed; move it to the target
    border = tuple(float(v) for v in ident["bg"])
    img = cv2.warpAffine(face, M, (S, S), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    cue_boxes = np.zeros((len(CUE_REGIONS), 4), np.float32)
    for k, name in enumerate(CUE_REGIONS):
        x0, y0, x1, y1 = boxes[name]
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ M.T
        cue_boxes[k] = (corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max())
    imgf = _lighting(img, r)
    if r.random() < cfg.occlusion_p:
        ow, oh = (r.uniform(0.15, 0.35, 2) * S).astype(int)
        ox, oy = r.integers(0, S - ow), r.integers(0, S - oh)
        imgf[oy : oy + oh, ox : ox + ow] = r.uniform(0, 255, 3)
    sigma = r.uniform(0, cfg.noise_max)
    if sigma > 0.5:
        imgf += r.normal(0, sigma, imgf.shape).astype(np.float32)
    img = np.clip(imgf, 0, 255).astype(np.uint8)
    if r.random() < cfg.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), r.uniform(0.4, 0.9) * S / 112.0)
    if r.random() < cfg.jpeg_p:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(r.integers(35, 90))])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if cfg.label_noise > 0 and r.random() < cfg.label_noise:
        label = int(r.integers(len(BASIC7)))
    return img, label, cue_boxes


def generate(cfg: SynthConfig, split: str, n: int):
    """n samples of a split: images N x S x S x 3 uint8 RGB, labels N int64, cue boxes N x 4 x 4."""
    images = np.empty((n, cfg.size, cfg.size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    boxes = np.empty((n, len(CUE_REGIONS), 4), np.float32)
    for i in range(n):
        images[i], labels[i], boxes[i] = make_sample(cfg, split, i)
    return images, labels, boxes
