"""TensorRT's text INT8 calibration cache (what IInt8EntropyCalibrator2.read_calibration_cache returns).

Format: a header `TRT-<version tag>-EntropyCalibration2`, then one `tensor: <hex of the big-endian
float32 scale>` line per tensor, scale = amax / 127. The tag is the reading TensorRT's version number
(major*1000 + minor*100 + patch up to 9.x, major*10000 + minor*100 + patch from 10.0, as in NvInferVersion.h).
TensorRT ignores a cache whose tag is not its own and calibrates again (which needs images), so the
header must name the TensorRT that will read the cache: `--trt-version`, else the installed one.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from fertrt.errors import FertrtError
from fertrt.fileio import write_text_atomic

# without TensorRT here and without --trt-version: the newest 8.x, the version most legacy-INT8 users run (JetPack 6.0)
FALLBACK_TRT_VERSION = "8.6.1"


def parse_trt_version(text: str | int) -> tuple[int, int, int]:
    """'8.6.1', '10.3.0', '10.3', tag 8601 or 100300 -> (major, minor, patch); FertrtError on anything else."""
    s = str(text).strip()
    m = re.fullmatch(r"(\d{1,2})\.(\d{1,2})(?:\.(\d{1,2}))?(?:\.\d+)*", s)
    if m:
        major, minor, patch = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    elif re.fullmatch(r"\d{4}", s) and 8 <= int(s) // 1000 <= 9:
        major, minor, patch = int(s) // 1000, int(s) % 1000 // 100, int(s) % 100
    elif re.fullmatch(r"\d{6}", s) and int(s) // 10000 >= 10:
        major, minor, patch = int(s) // 10000, int(s) % 10000 // 100, int(s) % 100
    else:
        raise FertrtError(
            f"--trt-version {s!r}: expected a TensorRT version like 8.6.1 or 10.3.0 (or its cache tag, 8601 or 100300)"
        )
    if not 8 <= major <= 11:  # 99.0 would write a header no TensorRT reads
        raise FertrtError(f"--trt-version {s!r}: fertrt supports TensorRT 8.5 to 11.x")
    return major, minor, patch


def trt_version_tag(version: str | int) -> int:
    """'8.6.1' -> 8601, '10.3.0' -> 100300 (how TensorRT writes its version into cache headers)."""
    major, minor, patch = parse_trt_version(version)
    return major * 1000 + minor * 100 + patch if major < 10 else major * 10000 + minor * 100 + patch


def installed_trt_version() -> str | None:
    """The installed TensorRT's version, or None (only reads __version__; needs no GPU)."""
    try:
        import tensorrt
    except ImportError:
        return None
    return str(getattr(tensorrt, "__version__", "")) or None


def resolve_trt_version(requested: str | int | None, log=print) -> str:
    """The TensorRT version the cache is written for: the one named, else the installed one, else the fallback (said so)."""
    if requested is not None and str(requested).strip() != "":
        parse_trt_version(requested)
        return str(requested)
    here = installed_trt_version()
    if here:
        return here
    log(
        f"note: no TensorRT here and no --trt-version: the TensorRT calibration cache is written for TensorRT {FALLBACK_TRT_VERSION}; "
        "TensorRT ignores a cache made for another version, so pass --trt-version with your device's version "
        "(JetPack 5.1: 8.5.2, JetPack 6.0: 8.6.2, JetPack 6.1/6.2: 10.3.0)"
    )
    return FALLBACK_TRT_VERSION


def format_trt_calibration_cache(ranges: dict[str, float], version_tag: int) -> str:
    """The cache text for {tensor: amax}.

    The `trt` tests read it back through IInt8EntropyCalibrator2.read_calibration_cache on a GPU host;
    here it is checked against its own parser and the documented layout only."""
    lines = [f"TRT-{int(version_tag)}-EntropyCalibration2"]
    for name, amax in ranges.items():
        scale = max(float(amax), 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return "\n".join(lines) + "\n"


def write_trt_calibration_cache(ranges, path, version=None, log=print) -> Path:
    """Write the cache for TensorRT `version` (a version or tag; None: the installed TensorRT's)."""
    tag = trt_version_tag(resolve_trt_version(version, log=log))
    return write_text_atomic(path, format_trt_calibration_cache(ranges, tag))


def parse_trt_calibration_cache(text: str) -> tuple[str, dict[str, float]]:
    """-> (header, {tensor: scale}). Raises FertrtError on a malformed cache."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not re.fullmatch(r"TRT-\d+-\w+", lines[0].strip()):
        raise FertrtError("not a TensorRT calibration cache (expected a first line like TRT-8601-EntropyCalibration2)")
    scales = {}
    for line in lines[1:]:
        name, sep, hexval = line.rpartition(": ")
        if not sep or not re.fullmatch(r"[0-9a-fA-F]{8}", hexval.strip()):
            raise FertrtError(f"malformed calibration cache line {line[:80]!r} (expected 'tensor: 8 hex digits')")
        scales[name] = struct.unpack(">f", bytes.fromhex(hexval.strip()))[0]
    return lines[0].strip(), scales
