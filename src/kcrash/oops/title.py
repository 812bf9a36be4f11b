"""
kcrash.oops.title
=================

Title post-processing: the normalisation that makes titles stable (addresses, numbers, line numbers,
executor names → ``ADDR``/``NUM``/``LINE``…), byte-level sanitising, the crash type derived from a title,
and the guilty frame read back from ``… in <frame>``. Pure string functions over the tables in
:mod:`kcrash.oops.patterns`.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from kcrash.oops.lazyre import LazyPattern
from kcrash.oops.patterns import TITLE_REPLACEMENTS, TITLE_TO_TYPE

__all__ = ["frame_from_title", "normalize_title", "sanitize_title", "title_to_type"]

_MAX_TITLE_BYTES: Final = 120
_FRAME_RE: Final = LazyPattern(r".* in ((?:<[a-zA-Z0-9_: ]+>)?[a-zA-Z0-9_:]+)", re.ASCII)


def _as_bytes(text: str) -> bytes:
    # Logs are decoded as latin-1 (one char per byte); other strings are encoded as UTF-8.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def sanitize_title(title: str) -> str:
    """Keep the first 120 bytes, drop control/non-ASCII bytes, collapse spaces and trim."""
    out: list[str] = []
    prev = " "
    for byte in _as_bytes(title)[:_MAX_TITLE_BYTES]:
        ch = " " if byte == 0x09 else chr(byte)
        if byte != 0x09 and (byte < 0x20 or byte >= 0x7F):
            continue
        if ch == " " and prev == " ":
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()


def _replace_all(title: str) -> str:
    for pattern, replacement in TITLE_REPLACEMENTS:
        while True:
            new = pattern.sub(replacement, title)
            if new == title:
                break
            title = new
    return title


@functools.lru_cache(maxsize=1 << 14)
def normalize_title(title: str) -> str:
    """The stable form of a raw title (dynamic parts replaced, then sanitised)."""
    return sanitize_title(_replace_all(title))


def title_to_type(title: str) -> str:
    """The crash type of a normalised title (``""`` when unknown)."""
    for prefixes, crash_type in TITLE_TO_TYPE:
        if title.startswith(prefixes):
            return crash_type
    return ""


def frame_from_title(title: str) -> str:
    """The identifier after the last `` in `` of a title, or ``""``."""
    m = _FRAME_RE.match(title)
    return m.group(1) if m is not None else ""
