"""Readers on small files written in each data set's genuine format, the spec parser, the synth spec."""

import csv

import cv2
import numpy as np
import pytest

from fertrt.errors import FertrtError
from fertrt.labels import BASIC7, EIGHT, RAFDB_IDS
from fertrt.train.data import load_data
from fertrt.train.data.spec import parse_spec


def _face_pixels(seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, 48 * 48).astype(np.uint8)


def _write_fer2013(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        for emotion, pixels, usage in rows:
            w.writerow(
                [emotion, " ".join(str(int(v)) for v in pixels) if not isinstance(pixels, str) else pixels, usage]
            )


def test_parse_spec():
    assert parse_spec("synth") == ("synth", None, None)
    assert parse_spec("synth:500") == ("synth", None, "500")
    assert parse_spec("affectnet:/data/aff:8") == ("affectnet", "/data/aff", "8")
    assert parse_spec("rafdb:/x/RAF") == ("rafdb", "/x/RAF", None)
    with pytest.raises(FertrtError, match="unknown kind 'imagenet'"):
        parse_spec("imagenet:/x")
    with pytest.raises(FertrtError, match="empty data spec"):
        parse_spec("")
    with pytest.raises(FertrtError, match="needs a path"):
        parse_spec("rafdb")
    with pytest.raises(FertrtError, match="synth:N"):
        load_data("synth:many")


def test_fer2013_reader_maps_labels_and_splits(tmp_path):
    p = tmp_path / "fer2013.csv"
    rows = [
        (0, _face_pixels(0), "Training"),
        (3, _face_pixels(1), "Training"),
        (6, _face_pixels(2), "PublicTest"),
        (5, _face_pixels(3), "PrivateTest"),
    ]
    _write_fer2013(p, rows)
    data = load_data(f"fer2013:{tmp_path}")
    train = data.split("train")
    assert len(train) == 2
    assert [BASIC7[i] for i in train.labels] == ["anger", "happiness"]
    assert BASIC7[data.split("val").labels[0]] == "neutral"
    assert BASIC7[data.split("test").labels[0]] == "surprise"
    img = train.load(1)
    assert img.shape == (48, 48, 3) and np.array_equal(img[..., 0].ravel(), _face_pixels(1))


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ((2, "1 2 3", "Training"), "fer2013.csv:3: pixels must be 2304 integers 0-255 .* found 3 values"),
        ((2, " ".join(["300"] * 2304), "Training"), "fer2013.csv:3: pixels must be 2304 integers 0-255"),
        ((2, "1 x 3", "Training"), "fer2013.csv:3: pixels must be 2304 integers"),
        (("happy", None, "Training"), "fer2013.csv:3: emotion 'happy'; expected an integer 0-6"),
        ((9, None, "Training"), "fer2013.csv:3: emotion '9'"),
        ((1, None, "Holdout"), "fer2013.csv:3: Usage 'Holdout'; expected one of Training, PublicTest, PrivateTest"),
    ],
)
def test_fer2013_malformed_row_is_an_error_with_file_and_line(tmp_path, bad_row, message):
    emotion, pixels, usage = bad_row
    _write_fer2013(
        tmp_path / "fer2013.csv",
        [(0, _face_pixels(0), "Training"), (emotion, _face_pixels(1) if pixels is None else pixels, usage)],
    )
    with pytest.raises(FertrtError, match=message):
        load_data(f"fer2013:{tmp_path}")


def test_fer2013_short_row_is_an_error(tmp_path):
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n0," + " ".join(["1"] * 2304) + "\n")
    with pytest.raises(FertrtError, match=r"fer2013.csv:2: expected 3 comma-separated fields"):
        load_data(f"fer2013:{tmp_path}")


def test_fer2013_wrong_columns(tmp_path):
    p = tmp_path / "fer2013.csv"
    p.write_text("label,image\n1,2\n")
    with pytest.raises(FertrtError, match="fer2013.csv.*emotion,pixels,Usage"):
        load_data(f"fer2013:{p}")


def test_ferplus_majority_and_soft_labels(tmp_path):
    _write_fer2013(
        tmp_path / "fer2013.csv", [(0, _face_pixels(i), u) for i, u in enumerate(["Training"] * 3 + ["PrivateTest"])]
    )
    header = [
        "Usage",
        "Image name",
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
        "unknown",
        "NF",
    ]
    votes = [
        ["Training", "fer0000000.png", 0, 0, 8, 2, 0, 0, 0, 0, 0, 0],  # surprise
        ["Training", "", 10, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # removed image
        ["Training", "fer0000002.png", 0, 0, 0, 0, 0, 0, 0, 1, 0, 9],  # not a face
        ["PrivateTest", "fer0000003.png", 1, 0, 0, 0, 0, 0, 0, 9, 0, 0],  # contempt
    ]
    with open(tmp_path / "fer2013new.csv", "w", newline="") as f:
        csv.writer(f).writerows([header] + votes)
    data = load_data(f"ferplus:{tmp_path}")
    assert data.class_names == EIGHT
    train, test = data.split("train"), data.split("test")
    assert len(train) == 1 and EIGHT[train.labels[0]] == "surprise"
    assert np.isclose(train.soft_labels[0][EIGHT.index("surprise")], 0.8)
    assert np.isclose(train.soft_labels[0][EIGHT.index("sadness")], 0.2)
    assert EIGHT[test.labels[0]] == "contempt"
    assert np.array_equal(train.load(0)[..., 0].ravel(), _face_pixels(0))


@pytest.mark.parametrize(
    "row, message",
    [
        (
            ["Training", "fer0000000.png", "x", 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "fer2013new.csv:2: vote counts must be numbers",
        ),
        (
            ["Training", "fer0000000.png", "inf", 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "fer2013new.csv:2: vote counts must be finite",
        ),
        (["Training", "fer0000000.png", 1, 2], "fer2013new.csv:2: expected 12 or more fields"),
        (["Holdout", "fer0000000.png", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0], "fer2013new.csv:2: Usage 'Holdout'"),
    ],
)
def test_ferplus_malformed_row_is_an_error_with_file_and_line(tmp_path, row, message):
    _write_fer2013(tmp_path / "fer2013.csv", [(0, _face_pixels(0), "Training")])
    header = [
        "Usage",
        "Image name",
        "neutral",
        "happiness",
        "surprise",
        "sadness",
        "anger",
        "disgust",
        "fear",
        "contempt",
        "unknown",
        "NF",
    ]
    with open(tmp_path / "fer2013new.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, row])
    with pytest.raises(FertrtError, match=message):
        load_data(f"ferplus:{tmp_path}")


def _write_jpg(path, seed, size=(100, 100)):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 256, (*size, 3)).astype(np.uint8))


def test_rafdb_reader(tmp_path):
    root = tmp_path / "RAF-DB" / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    entries = [("train_00001.jpg", 4), ("train_00002.jpg", 7), ("test_0001.jpg", 1)]
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(f"{n} {l}\n" for n, l in entries))
    for k, (n, _) in enumerate(entries):
        _write_jpg(root / "Image" / "aligned" / n.replace(".jpg", "_aligned.jpg"), k)
    # a corrupt image is skipped (None) and counted, not a crash
    (root / "Image" / "aligned" / "train_00002_aligned.jpg").write_bytes(b"not a jpeg")
    data = load_data(f"rafdb:{root}")
    train = data.split("train")
    assert [BASIC7[i] for i in train.labels] == [RAFDB_IDS[4], RAFDB_IDS[7]] == ["happiness", "neutral"]
    assert train.load(0).shape == (100, 100, 3)
    assert train.load(1) is None and train.skipped == {1}
    assert BASIC7[data.split("test").labels[0]] == "surprise"
    assert data.split("val") is data.split("test")


@pytest.mark.parametrize("name", ["../../secret.jpg", "/etc/passwd", "train_../../../x.jpg"])
def test_rafdb_list_paths_stay_inside_the_root(tmp_path, name):
    root = tmp_path / "basic"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "original").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text(f"train_00001.jpg 4\n{name} 1\n")
    with pytest.raises(FertrtError, match=r"list_patition_label.txt:2: image path .* leaves the data set's folder"):
        load_data(f"rafdb:{root}:original")


@pytest.mark.parametrize("sub", ["../outside.jpg", "/tmp/outside.jpg", "1/../../outside.jpg"])
def test_affectnet_csv_paths_stay_inside_the_root(tmp_path, sub):
    root = tmp_path / "AffectNet"
    _write_jpg(root / "1" / "a.jpg", 0)
    _write_jpg(tmp_path / "outside.jpg", 1)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    (root / "training.csv").write_text(header + f"1/a.jpg,0,0,100,100,,1,0,0\n{sub},0,0,100,100,,1,0,0\n")
    with pytest.raises(FertrtError, match=r"training.csv:3: image path .* leaves the data set's folder"):
        load_data(f"affectnet:{root}")


def test_affectnet_bad_expression_names_the_line(tmp_path):
    root = tmp_path / "AffectNet"
    _write_jpg(root / "1" / "a.jpg", 0)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    (root / "training.csv").write_text(header + "1/a.jpg,0,0,100,100,,happy,0,0\n")
    with pytest.raises(FertrtError, match=r"training.csv:2: expression 'happy'"):
        load_data(f"affectnet:{root}")


def test_rafdb_wrong_layout(tmp_path):
    with pytest.raises(FertrtError, match="list_patition_label.txt"):
        load_data(f"rafdb:{tmp_path}")


def test_affectnet_csv_layout_with_face_boxes(tmp_path):
    root = tmp_path / "AffectNet"
    img_dir = root / "Manually_Annotated_Images" / "1"
    _write_jpg(img_dir / "a.jpg", 0, (200, 200))
    _write_jpg(img_dir / "b.jpg", 1)
    _write_jpg(img_dir / "c.jpg", 2)
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    (root / "training.csv").write_text(
        header + '1/a.jpg,10,20,120,100,"1;2",1,0.5,0.2\n1/b.jpg,0,0,100,100,"",7,0,0\n1/c.jpg,0,0,100,100,"",9,0,0\n'
    )
    data7 = load_data(f"affectnet:{root}")
    train = data7.split("train")
    assert len(train) == 1 and BASIC7[train.labels[0]] == "happiness"
    assert train.load(0).shape == (100, 120, 3)  # cropped to the face box
    data8 = load_data(f"affectnet:{root}:8")
    assert [EIGHT[i] for i in data8.split("train").labels] == ["happiness", "contempt"]


def test_affectnet_folder_layout(tmp_path):
    for split in ("train", "val"):
        for cls in ("0", "6"):
            _write_jpg(tmp_path / split / cls / "x.png", int(cls))
    data = load_data(f"affectnet:{tmp_path}")
    assert sorted(BASIC7[i] for i in data.split("train").labels) == ["anger", "neutral"]
    assert len(data.split("test")) == 2


def test_folder_reader_case_insensitive_and_split(tmp_path):
    for i in range(30):
        _write_jpg(tmp_path / ("Happy" if i % 2 else "SAD") / f"img{i}.jpg", i, (20, 20))
    data = load_data(f"folder:{tmp_path}")
    total = sum(len(s) for s in data.splits.values())
    assert total == 30 and len(data.split("train")) >= 15
    names = {BASIC7[i] for s in data.splits.values() for i in s.labels}
    assert names == {"happiness", "sadness"}
    (tmp_path / "bored").mkdir()
    _write_jpg(tmp_path / "bored" / "x.jpg", 0)
    with pytest.raises(FertrtError, match="bored.*not an expression label"):
        load_data(f"folder:{tmp_path}")


def test_missing_path_is_named():
    with pytest.raises(FertrtError, match="/no/such/dir does not exist"):
        load_data("rafdb:/no/such/dir")


# ---------------------------------------------------------------- the synth spec (its faces: test_train_synth.py)
def test_synth_spec_sizes():
    data = load_data("synth:60", image_size=64)
    assert (len(data.split("train")), len(data.split("val")), len(data.split("test"))) == (60, 16, 20)
    assert data.split("train").images.shape[1:] == (64, 64, 3)
