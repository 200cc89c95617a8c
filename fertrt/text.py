"""Printing strings that come from files (model metadata, sidecars, data-set lists) without letting
them drive the terminal: control and format characters are shown as Python escapes."""

from __future__ import annotations

import unicodedata


def _escape(ch: str) -> str:
    # "Cc" are C0/C1 controls (ESC, BEL, CR...), "Cf" format characters such as the right-to-left override.
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return ch.encode("unicode_escape", "backslashreplace").decode("ascii")
    return ch


def safe(value) -> str:
    """``str(value)`` with every control/format character escaped (``\\x1b``, ``\\u202e``); plain text is unchanged."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(ch) for ch in text)


def safe_list(values) -> str:
    """A list of file-provided names, comma-separated and escaped."""
    return ", ".join(safe(v) for v in values)
