"""Data specs and the split container every command uses.

A spec is `KIND[:PATH][:OPTION]`: `synth[:N[:easy|hard]]`, `fer2013:PATH`, `ferplus:PATH`, `rafdb:PATH[:original]`,
`affectnet:PATH[:7|:8]`, `folder:PATH`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fertrt.errors import FertrtError

KINDS = ("synth", "fer2013", "ferplus", "rafdb", "affectnet", "folder")
SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split: labels plus either an in-memory image array or a lazy per-index loader."""

    name: str
    class_names: tuple[str, ...]
    labels: np.ndarray
    images: np.ndarray | None = None  # N x H x W x 3 uint8 RGB
    loader: Callable[[int], np.ndarray | None] | None = None  # for file-backed sets; None = unreadable
    soft_labels: np.ndarray | None = None  # N x K vote distributions (FERPlus)
    cue_boxes: np.ndarray | None = None  # N x 4 x 4 (synth)
    sources: list[str] | None = None  # file name per sample, for messages
    skipped: set = field(default_factory=set)  # indices found unreadable
    malformed: int = 0  # rows of a table file that could not be parsed

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> np.ndarray | None:
        if self.images is not None:
            return self.images[i]
        img = self.loader(i)
        if img is None:
            self.skipped.add(int(i))
        return img

    def subset(self, indices) -> "Split":
        idx = np.asarray(indices, dtype=np.int64)

        def pick(a):
            return None if a is None else a[idx]

        loader = None if self.loader is None else (lambda i, _l=self.loader, _idx=idx: _l(int(_idx[i])))
        return Split(
            self.name,
            self.class_names,
            self.labels[idx],
            pick(self.images),
            loader,
            pick(self.soft_labels),
            pick(self.cue_boxes),
            None if self.sources is None else [self.sources[i] for i in idx],
        )

    def class_counts(self) -> dict:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {n: int(c) for n, c in zip(self.class_names, counts)}


@dataclass
class DataSource:
    spec: str
    kind: str
    class_names: tuple[str, ...]
    splits: dict[str, Split]

    def split(self, name: str) -> Split:
        if name in self.splits:
            return self.splits[name]
        if name == "val" and "test" in self.splits:
            # Sets without a validation split (RAF-DB, AffectNet) are scored on test when asked for val;
            # said out loud, since selecting anything on these numbers is selecting on the test set.
            # (`fertrt train` never comes here: it holds out part of train instead.)
            print(
                f"note: data {self.spec!r} has no val split; using its test split where val was asked for",
                file=sys.stderr,
            )
            return self.splits["test"]
        raise FertrtError(f"data {self.spec!r}: no {name!r} split (has {', '.join(self.splits)})")


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    if not spec or not spec.strip():
        raise FertrtError("empty data spec; expected e.g. synth, synth:2000, rafdb:/data/RAF-DB")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise FertrtError(f"data spec {spec!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "synth":
        return kind, None, rest or None
    if not rest:
        raise FertrtError(f"data spec {spec!r}: {kind} needs a path, e.g. {kind}:/data/{kind}")
    option = None
    head, sep, tail = rest.rpartition(":")
    if sep and tail in ("7", "8", "original", "aligned") and not os.path.exists(rest):
        rest, option = head, tail
    return kind, rest, option


def load_data(spec: str, image_size: int = 112, seed: int = 0, splits=SPLITS, limit: int | None = None) -> DataSource:
    """Open a data spec. `image_size` is the size synth images are drawn at (real sets keep theirs).

    `limit` caps the samples drawn per split for synth (the first `limit`, same as without it);
    file-backed sets are lazy anyway."""
    kind, path, option = parse_spec(spec)
    if kind == "synth":
        from .synth_source import open_synth

        return open_synth(spec, option, image_size, seed, splits, limit)
    from . import readers

    if not Path(path).exists():
        raise FertrtError(f"data spec {spec!r}: {path} does not exist")
    try:
        source = getattr(readers, f"open_{kind}")(spec, Path(path), option)
    except UnicodeDecodeError as exc:  # a binary file where a table of labels was expected
        raise FertrtError(f"data spec {spec!r}: a file under {path} is not UTF-8 text (byte {exc.start})") from None
    except PermissionError as exc:
        raise FertrtError(f"data spec {spec!r}: {exc.filename or path} cannot be read (permission denied)") from None
    for split in source.splits.values():
        _require_readable(spec, split)
    return source


def _require_readable(spec: str, split: Split, probe: int = 16) -> None:
    """A file-backed split whose first images are all unreadable (not images, no permission) is refused here,
    not met as an empty batch deep inside training; a few unreadable files among readable ones are skipped."""
    if split.loader is None or len(split) == 0:
        return
    n = min(probe, len(split))
    if all(split.loader(i) is None for i in range(n)):
        first = split.sources[0] if split.sources else "?"
        raise FertrtError(
            f"data spec {spec!r}: none of the first {n} images of the {split.name} split can be read "
            f"(e.g. {first}); expected image files fertrt can decode (JPEG, PNG, ...)"
        )
