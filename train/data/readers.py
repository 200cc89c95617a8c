"""Readers for the real FER data sets, each in its genuine on-disk layout.

Labels are mapped to fertrt's canonical order (fertrt.labels). File-backed images load lazily;
an unreadable file yields None, is counted in `Split.skipped` and dropped from its batch.
"""

from __future__ import annotations

import contextlib
import csv
import math
import zlib
from pathlib import Path

import numpy as np

from fertrt.errors import FertrtError
from fertrt.labels import AFFECTNET_IDS, BASIC7, EIGHT, FER2013_IDS, FERPLUS_COLUMNS, RAFDB_IDS, canonical

from fertrt.runtime.preprocess import IMAGE_SUFFIXES, read_image

from fertrt.text import safe

from .spec import DataSource, Split


def _inside(root: Path, name: str, where: str) -> Path:
    """``root / name`` for a path named inside a data-set file; absolute paths and ``..`` would let a
    downloaded list file point fertrt at any file on the machine, so they are refused."""
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts or name.startswith("~"):
        raise FertrtError(
            f"{where}: image path {name!r} leaves the data set's folder; "
            f"expected a path relative to {root} without '..'"
        )
    return root / rel


def _file_split(name, class_names, paths, labels, boxes=None) -> Split:
    paths = [str(p) for p in paths]

    def loader(i):
        img = read_image(paths[i])
        if img is not None and boxes is not None:
            x, y, w, h = boxes[i]
            H, W = img.shape[:2]
            x0, y0 = max(int(x), 0), max(int(y), 0)
            x1, y1 = min(int(x + w), W), min(int(y + h), H)
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                img = img[y0:y1, x0:x1]
        return img

    return Split(name, tuple(class_names), np.asarray(labels, np.int64), loader=loader, sources=paths)


# ---------------------------------------------------------------- FER2013 / FERPlus
_FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}


def _read_fer2013_rows(csv_path: Path):
    """Yield (line number, FER2013 emotion id or None, 48x48 uint8 image, split name); a malformed row is an error."""
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"pixels", "Usage"} <= cols:
            raise FertrtError(
                f"{csv_path}: not a fer2013.csv; expected the columns emotion,pixels,Usage, found {safe(sorted(cols))}"
            )
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise FertrtError(
                    f"{where}: expected {len(reader.fieldnames)} comma-separated fields "
                    f"({safe(','.join(reader.fieldnames))}), found a row of another length"
                )
            try:
                pix = np.array([int(v) for v in row["pixels"].split()], dtype=np.int64)
            except ValueError:
                raise FertrtError(f"{where}: pixels must be 2304 integers 0-255 separated by spaces") from None
            if pix.size != 48 * 48 or pix.min() < 0 or pix.max() > 255:
                raise FertrtError(
                    f"{where}: pixels must be 2304 integers 0-255 (a 48x48 image), found {pix.size} values"
                    + (f" in {pix.min()}..{pix.max()}" if pix.size else "")
                )
            usage = row["Usage"].strip()
            if usage not in _FER2013_USAGE:
                raise FertrtError(f"{where}: Usage {usage!r}; expected one of {', '.join(_FER2013_USAGE)}")
            emotion = (row.get("emotion") or "").strip()
            if emotion and (not emotion.isdigit() or int(emotion) not in FER2013_IDS):
                raise FertrtError(f"{where}: emotion {emotion!r}; expected an integer 0-{max(FER2013_IDS)}")
            yield (
                reader.line_num,
                (int(emotion) if emotion else None),
                pix.astype(np.uint8).reshape(48, 48),
                _FER2013_USAGE[usage],
            )


@contextlib.contextmanager
def _csv_errors(path: Path, expected: str):
    """A binary file, a NUL byte or a giant field in a table file: an error naming the file, not a traceback."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise FertrtError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected {expected}") from None
    except csv.Error as exc:
        raise FertrtError(f"{path}: not a readable CSV file ({safe(exc)}); expected {expected}") from None


def _grey_to_rgb(images):
    return np.repeat(np.stack(images)[..., None], 3, axis=3) if images else np.zeros((0, 48, 48, 3), np.uint8)


def open_fer2013(spec: str, path: Path, option) -> DataSource:
    csv_path = path / "fer2013.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise FertrtError(f"{csv_path}: not found; expected FER2013's fer2013.csv (columns emotion,pixels,Usage)")
    buckets = {s: ([], []) for s in ("train", "val", "test")}
    with _csv_errors(csv_path, "FER2013's fer2013.csv (columns emotion,pixels,Usage)"):
        for line, emotion, img, split in _read_fer2013_rows(csv_path):
            if emotion is None:
                raise FertrtError(
                    f"{csv_path}:{line}: no emotion value; the Kaggle test.csv is unlabelled, use fer2013.csv"
                )
            buckets[split][0].append(img)
            buckets[split][1].append(BASIC7.index(FER2013_IDS[emotion]))
    splits = {}
    for name, (imgs, labels) in buckets.items():
        if imgs:
            splits[name] = Split(name, BASIC7, np.asarray(labels, np.int64), images=_grey_to_rgb(imgs))
    if not splits:
        raise FertrtError(f"{csv_path}: no data rows")
    return DataSource(spec, "fer2013", BASIC7, splits)


def open_ferplus(spec: str, path: Path, option) -> DataSource:
    new_csv = path / "fer2013new.csv" if path.is_dir() else path
    old_csv = new_csv.parent / "fer2013.csv"
    for p, what in (
        (new_csv, "FERPlus's fer2013new.csv (Usage,Image name, 10 vote columns)"),
        (old_csv, "FER2013's fer2013.csv beside fer2013new.csv (FERPlus labels FER2013's pixels)"),
    ):
        if not p.is_file():
            raise FertrtError(f"{p}: not found; expected {what}")
    with open(new_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        votes_cols = [h.strip() for h in header[2:12]]
        if [c.lower() for c in votes_cols] != [c.lower() for c in FERPLUS_COLUMNS]:
            raise FertrtError(
                f"{new_csv}: unexpected header {header}; expected Usage,Image name,{','.join(FERPLUS_COLUMNS)}"
            )
        vote_rows = []
        for row in reader:
            if len(row) < 12:
                raise FertrtError(
                    f"{new_csv}:{reader.line_num}: expected 12 or more fields (Usage,Image name, 10 vote counts), "
                    f"found {len(row)}"
                )
            try:
                votes = [float(v or 0) for v in row[2:12]]
            except ValueError:
                raise FertrtError(
                    f"{new_csv}:{reader.line_num}: vote counts must be numbers, found {safe(row[2:12])}"
                ) from None
            if not all(math.isfinite(v) and v >= 0 for v in votes):
                raise FertrtError(
                    f"{new_csv}:{reader.line_num}: vote counts must be finite and >= 0, found {safe(row[2:12])}"
                )
            vote_rows.append((reader.line_num, row, votes))
    pixel_rows = list(_read_fer2013_rows(old_csv))
    if len(pixel_rows) != len(vote_rows):
        raise FertrtError(
            f"{new_csv}: {len(vote_rows)} rows but {old_csv} has {len(pixel_rows)}; the two files must be row-aligned"
        )
    names = EIGHT
    # column k of the vote table -> canonical index
    col_to_canon = [names.index(canonical(c)) for c in FERPLUS_COLUMNS[:8]]
    buckets = {s: ([], [], []) for s in ("train", "val", "test")}
    for (_, _, img, _), (line, row, votes) in zip(pixel_rows, vote_rows):
        if not row[1].strip():
            continue  # FERPlus removed this image (empty name)
        split = _FER2013_USAGE.get(row[0].strip())
        if split is None:
            raise FertrtError(f"{new_csv}:{line}: Usage {row[0]!r}; expected one of {', '.join(_FER2013_USAGE)}")
        votes = np.array(votes, np.float32)
        if split is None or votes.sum() <= 0 or votes.argmax() >= 8:
            continue  # majority unknown / not-a-face
        soft = np.zeros(8, np.float32)
        soft[col_to_canon] = votes[:8]
        buckets[split][0].append(img)
        buckets[split][1].append(int(soft.argmax()))
        buckets[split][2].append(soft / soft.sum())
    splits = {
        n: Split(n, names, np.asarray(l, np.int64), images=_grey_to_rgb(i), soft_labels=np.stack(s))
        for n, (i, l, s) in buckets.items()
        if i
    }
    if not splits:
        raise FertrtError(f"{new_csv}: no usable rows after dropping unknown/NF majorities")
    return DataSource(spec, "ferplus", names, splits)


# ---------------------------------------------------------------- RAF-DB
def open_rafdb(spec: str, path: Path, option) -> DataSource:
    label_file = path / "EmoLabel" / "list_patition_label.txt"
    if not label_file.is_file():
        raise FertrtError(f"{path}: not a RAF-DB basic folder; expected {label_file} and Image/aligned/*_aligned.jpg")
    use_original = option == "original"
    image_dir = path / "Image" / ("original" if use_original else "aligned")
    if not image_dir.is_dir():
        raise FertrtError(f"{path}: missing {image_dir} (RAF-DB keeps images under Image/aligned and Image/original)")
    buckets = {"train": ([], []), "test": ([], [])}
    for n, line in enumerate(label_file.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) not in RAFDB_IDS:
            raise FertrtError(f"{label_file}:{n}: expected '<name>.jpg <label 1-7>', got {line!r}")
        name, label = parts[0], int(parts[1])
        _inside(image_dir, name, f"{label_file}:{n}")
        split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
        if split is None:
            raise FertrtError(f"{label_file}:{n}: file name {name!r} should start with train_ or test_")
        stem = Path(name).stem
        img_path = image_dir / (name if use_original else f"{stem}_aligned.jpg")
        buckets[split][0].append(img_path)
        buckets[split][1].append(BASIC7.index(RAFDB_IDS[label]))
    splits = {s: _file_split(s, BASIC7, p, l) for s, (p, l) in buckets.items() if p}
    return DataSource(spec, "rafdb", BASIC7, splits)


# ---------------------------------------------------------------- AffectNet
_AFFECTNET_CSVS = {"train": ("training.csv", "train.csv"), "test": ("validation.csv", "val.csv", "valid.csv")}


def open_affectnet(spec: str, path: Path, option) -> DataSource:
    n_classes = 8 if option == "8" else 7
    names = EIGHT[:n_classes]
    csvs = {s: next((path / c for c in cands if (path / c).is_file()), None) for s, cands in _AFFECTNET_CSVS.items()}
    if any(csvs.values()):
        splits = {}
        for split, csv_path in csvs.items():
            if csv_path is not None:
                splits[split] = _affectnet_csv(csv_path, path, split, names)
        return DataSource(spec, "affectnet", names, splits)
    # folder-per-class layout: train/<class>/, val/<class>/ with class ids (0-7) or names
    splits = {}
    for split, folder_names in (
        ("train", ("train", "train_set")),
        ("test", ("val", "valid", "validation", "val_set", "test")),
    ):
        root = next((path / d for d in folder_names if (path / d).is_dir()), None)
        if root is not None:
            splits[split] = _class_folders(root, split, names, id_map=AFFECTNET_IDS, where=str(path))
    if not splits:
        raise FertrtError(
            f"{path}: not an AffectNet folder; expected training.csv/validation.csv "
            "(subDirectory_filePath,face_x,face_y,face_width,face_height,...,expression) or train/<class>/ and val/<class>/ folders"
        )
    return DataSource(spec, "affectnet", names, splits)


def _affectnet_csv(csv_path: Path, root: Path, split: str, names) -> Split:
    image_root = root / "Manually_Annotated_Images" if (root / "Manually_Annotated_Images").is_dir() else root
    paths, labels, boxes = [], [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"subDirectory_filePath", "expression"}
        if not need <= set(reader.fieldnames or []):
            raise FertrtError(
                f"{csv_path}: expected AffectNet columns subDirectory_filePath,face_x,face_y,face_width,face_height,...,expression; found {safe(reader.fieldnames)}"
            )
        for row in reader:
            try:
                expr = int(row["expression"])
            except (ValueError, TypeError):
                raise FertrtError(
                    f"{csv_path}:{reader.line_num}: expression {row['expression']!r}; expected an integer 0-10"
                ) from None
            if expr not in AFFECTNET_IDS or AFFECTNET_IDS[expr] not in names:
                continue  # 8-10 are none/uncertain/no-face; contempt only in 8-class mode
            paths.append(_inside(image_root, row["subDirectory_filePath"] or "", f"{csv_path}:{reader.line_num}"))
            labels.append(names.index(AFFECTNET_IDS[expr]))
            try:
                boxes.append(tuple(float(row[k]) for k in ("face_x", "face_y", "face_width", "face_height")))
            except (KeyError, ValueError, TypeError):
                boxes.append((0.0, 0.0, 1e9, 1e9))
    return _file_split(split, names, paths, labels, boxes=np.asarray(boxes, np.float32).reshape(-1, 4))


# ---------------------------------------------------------------- ImageFolder style
def _class_folders(root: Path, split: str, names, id_map=None, where=None) -> Split:
    paths, labels = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        key = d.name
        if id_map is not None and key.isdigit():
            if int(key) not in id_map:
                continue
            label = id_map[int(key)]
        else:
            try:
                label = canonical(key)
            except FertrtError:
                raise FertrtError(
                    f"{safe(d)}: folder name {key!r} is not an expression label; expected one of {', '.join(names)}"
                ) from None
        if label not in names:
            continue
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(f)
                labels.append(names.index(label))
    if not paths:
        raise FertrtError(
            f"{where or root}: no images found under {root}/<class>/ (expected class-named subfolders of images)"
        )
    return _file_split(split, names, paths, labels)


def open_folder(spec: str, path: Path, option) -> DataSource:
    if not path.is_dir():
        raise FertrtError(f"{path}: expected a folder of class-named subfolders (optionally inside train/ val/ test/)")
    split_dirs = {s: path / s for s in ("train", "val", "test") if (path / s).is_dir()}
    label_dirs = [p.name.lower() for p in path.rglob("*") if p.is_dir()]
    names = EIGHT if "contempt" in label_dirs else BASIC7
    if split_dirs:
        return DataSource(spec, "folder", names, {s: _class_folders(d, s, names) for s, d in split_dirs.items()})
    whole = _class_folders(path, "all", names)
    # Deterministic 80/10/10 split by file-name hash, stable when files are added.
    bucket = np.array([zlib.crc32(Path(s).name.encode()) % 10 for s in whole.sources])
    parts = {
        "train": np.flatnonzero(bucket < 8),
        "val": np.flatnonzero(bucket == 8),
        "test": np.flatnonzero(bucket == 9),
    }
    splits = {}
    for s, idx in parts.items():
        if len(idx):
            sub = whole.subset(idx)
            sub.name = s
            splits[s] = sub
    return DataSource(spec, "folder", names, splits)
