"""
kcrash.oops.signature
=====================

Crash signatures (bucket ids). A signature is a short hash of the normalised title, which already
hides timestamps, addresses, PIDs, CPU numbers, line numbers and offsets. When the title names no
function (``kernel panic: …``, corrupted reports), the first few meaningful call-trace functions are
added, without offsets, modules or compiler suffixes (``.isra.0``, ``.cold``), so KASLR and rebuilds do
not change it. The same bug in a serial console log and in a vmcore's dmesg gets the same signature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from kcrash.oops.model import TraceFrame
from kcrash.oops.patterns import GLOBAL_SKIP
from kcrash.oops.title import frame_from_title

__all__ = ["SIGNATURE_VERSION", "crash_signature", "sha256_hex", "signature_components"]

SIGNATURE_VERSION: Final = "kc1"
_MAX_FRAMES: Final = 3


def _key_functions(frames: Sequence[TraceFrame]) -> list[str]:
    names: list[str] = []
    for frame in frames:
        name = frame.function.split(".", 1)[0]
        if not frame.reliable or frame.inline or not name or GLOBAL_SKIP.found_in(name) or name in names:
            continue
        names.append(name)
        if len(names) == _MAX_FRAMES:
            break
    return names


def signature_components(title: str, frames: Sequence[TraceFrame]) -> list[str]:
    """What the signature hashes: the title, plus key functions when the title names none."""
    if frame_from_title(title):
        return [title]
    return [title, *_key_functions(frames)]


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` in hex (:func:`hashlib.sha256`)."""
    return hashlib.sha256(data).hexdigest()


def crash_signature(title: str, frames: Sequence[TraceFrame]) -> str:
    """``kc1-`` and 16 hex digits identifying the bug behind a normalised ``title``."""
    text = "\n".join(signature_components(title, frames))
    return f"{SIGNATURE_VERSION}-{sha256_hex(text.encode('utf-8', 'surrogateescape'))[:16]}"
