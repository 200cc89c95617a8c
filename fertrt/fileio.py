"""Atomic writes and hashing: an output is either complete or absent, never half written."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import FertrtError


def _same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: equal after resolving links, or one inode (hard link, bind mount)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(output, *inputs, option: str | None = None) -> Path:
    """Refuse an output that is one of the inputs, with or without --force: writing it would destroy the input."""
    output = Path(output)
    for inp in inputs:
        if inp is None:
            continue
        inp = Path(inp)
        if _same_file(output, inp):
            what = f"{option} {output}" if option else str(output)
            raise FertrtError(f"{what}: is the input {inp}; writing it would destroy the input (choose another output path)")
    return output


def check_output(path, *, overwrite: bool = True, inputs=(), option: str | None = None) -> Path:
    """Fail early, before any expensive work, when an output cannot be written where asked."""
    path = Path(path)
    what = f"{option} {path}" if option else str(path)
    check_not_input(path, *inputs, option=option)
    if not path.parent.is_dir():
        raise FertrtError(f"{what}: the output folder {path.parent} does not exist")
    if path.is_dir():
        raise FertrtError(f"{what}: is a folder; expected a file name")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise FertrtError(f"{what}: the output folder {path.parent} is not writable")
    if path.exists() and not overwrite:
        raise FertrtError(f"{what}: file exists (pass --force to overwrite it)")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True, inputs=(), option: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = check_output(path, overwrite=overwrite, inputs=inputs, option=option)
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except OSError as exc:
        raise FertrtError(f"{path}: could not write ({exc.strerror or exc}); the previous file, if any, is untouched") from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def output_lock(path, what: str = "output") -> Iterator[Path]:
    """Hold an advisory lock (flock) on ``path`` so that a second fertrt run writing the same output is
    refused instead of interleaving with this one. The lock file ``.NAME.lock`` sits beside ``path``
    (inside it, for a folder) and is removed on release."""
    path = Path(path)
    lock = path / ".fertrt.lock" if path.is_dir() else path.parent / f".{path.name}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system: no advisory locks
        yield lock
        return
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FertrtError(f"{path}: cannot create the lock file {lock} ({exc.strerror or exc})") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FertrtError(f"{path}: another fertrt run is writing this {what} right now (it holds {lock}); "
                              "wait for it to finish or choose another output") from None
        # The holder before us may have removed the file between our open and our flock: then we
        # locked a deleted inode and must retry on the current file.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes, *, overwrite: bool = True, inputs=()) -> Path:
    with atomic_path(path, overwrite=overwrite, inputs=inputs) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str, *, overwrite: bool = True, inputs=()) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite, inputs=inputs)


def write_json_atomic(path, obj, *, overwrite: bool = True, inputs=()) -> Path:
    """Write `obj` as JSON; NaN and infinities (an undefined ratio, say) become null, since bare NaN is not JSON."""
    text = json.dumps(_finite_or_null(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    return write_text_atomic(path, text + "\n", overwrite=overwrite, inputs=inputs)


def _finite_or_null(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if type(obj).__module__ == "numpy":  # np.float64 is a float (handled above); arrays and other scalars here
        return _finite_or_null(obj.tolist()) if hasattr(obj, "tolist") else obj
    return obj


def _json_default(obj):  # numpy values were turned into Python ones by _finite_or_null
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


def make_output_dir(path, what: str = "folder", option: str = "-o") -> Path:
    """Create an output folder (and its parents) or fail with a message naming the option."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FertrtError(f"{option} {out}: is a file; expected a {what}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FertrtError(f"{option} {out}: cannot create the {what} ({exc.strerror or exc})") from exc
    return out
