"""Atomic writes and hashing: an output is either complete or absent, never half written."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import FertrtError


def check_output(path, *, overwrite: bool = True) -> Path:
    """Fail early, before any expensive work, when an output cannot be written where asked."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FertrtError(f"{path}: the output folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise FertrtError(f"{path}: file exists (pass --force to overwrite it)")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = check_output(path, overwrite=overwrite)
    parent = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        raise FertrtError(f"{path}: could not write ({exc.strerror or exc}); the previous file, if any, is untouched") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str, *, overwrite: bool = True) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


def write_json_atomic(path, obj, *, overwrite: bool = True) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n", overwrite=overwrite)


def _json_default(obj):
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def require_file(path, what: str) -> Path:
    """Return ``path`` as a Path if it is a readable file, else a FertrtError naming it and ``what``."""
    p = Path(path)
    if not p.exists():
        raise FertrtError(f"{p}: no such file (expected {what})")
    if not p.is_file():
        raise FertrtError(f"{p}: is not a file (expected {what})")
    return p
