"""
kcrash.debuginfo.kallsyms_finder
================================

kallsyms found in the kernel image by its structure, for kernels whose VMCOREINFO lacks the
``SYMBOL(kallsyms_*)`` lines (before Linux 6.0 and distribution kernels without the backport). Only
``SYMBOL(_stext)`` is needed: the image is read from there (at most :data:`IMAGE_SCAN_BYTES`) and

1. ``kallsyms_token_index`` is recognised as 256 ``u16`` offsets starting at 0 whose steps are the
   lengths (plus NUL) of 256 printable tokens lying just before it: ``kallsyms_token_table``;
2. ``kallsyms_relative_base`` is a ``u64`` holding the lowest kernel-text address (at or below
   ``_stext``). ``scripts/kallsyms`` writes it either after ``kallsyms_offsets`` and before
   ``kallsyms_num_syms`` and ``kallsyms_names`` (up to v6.1), or after ``kallsyms_token_index`` and
   ``kallsyms_offsets`` (v6.2 on, commit 404bad70fcf7 moved the names first), with
   ``kallsyms_num_syms`` then found just before ``kallsyms_names`` as the one ``u32`` equal to the
   offsets' count.

Each placement found is only a candidate: :func:`find_kallsyms_candidates` returns them as VMCOREINFO
``SYMBOL()`` lines, and :func:`kcrash.debuginfo.kallsyms.decode_kallsyms` accepts one only when every
name decodes, the addresses are sorted and ``_stext`` decodes to VMCOREINFO's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kcrash.errors import FaultError

if TYPE_CHECKING:
    from kcrash.memory.reader import MemoryReader

__all__ = ["IMAGE_SCAN_BYTES", "find_kallsyms_candidates", "find_token_index"]

#: how much of the image from ``_stext`` is searched (text, rodata; a distribution kernel's kallsyms
#: lies 20–40 MiB in)
IMAGE_SCAN_BYTES = 96 << 20
_CHUNK = 1 << 20
_PAGE = 4096
_TOKENS = 256
_MAX_TOKEN = 64  # a token is a few bytes; its step in the index is its length plus the NUL
_MAX_SYMS = 1 << 24
_BASE_BELOW_STEXT = 32 << 20  # relative_base is _text or the lowest symbol, just below _stext
_NAMES_SEARCH = 64 << 20


def find_kallsyms_candidates(mem: MemoryReader, stext: int, *,
                             scan: int = IMAGE_SCAN_BYTES) -> Iterator[dict[str, int]]:
    """Yield candidate placements of the kallsyms tables (``{"kallsyms_names": address, …}``), most
    likely first; empty when no token index is found in ``[stext, stext + scan)``."""
    image = _read_image(mem, stext, scan)
    found = find_token_index(image)
    if found is None:
        return
    token_table, token_index = stext + found[0], stext + found[1]
    offsets_after = _align(token_index + 2 * _TOKENS, 8)
    words = np.frombuffer(image[: len(image) // 8 * 8], dtype="<u8")
    for slot in np.flatnonzero((words <= np.uint64(stext)) & (words >= np.uint64(stext - _BASE_BELOW_STEXT))):
        base = stext + 8 * int(slot)
        tables = {"kallsyms_token_table": token_table, "kallsyms_token_index": token_index,
                  "kallsyms_relative_base": base}
        yield from _names_first(image, stext, tables, base, offsets_after)
        yield from _offsets_first(image, stext, tables, base)


def find_token_index(image: bytes) -> tuple[int, int] | None:
    """Offsets in ``image`` of ``kallsyms_token_table`` and ``kallsyms_token_index``, or None."""
    values = np.frombuffer(image[: len(image) // 2 * 2], dtype="<u2").astype(np.int32)
    if len(values) <= _TOKENS:
        return None
    steps = np.diff(values)
    good = ((steps >= 2) & (steps <= _MAX_TOKEN)).astype(np.int32)
    run = np.concatenate(([0], np.cumsum(good)))
    window = run[_TOKENS - 1:] - run[:len(run) - _TOKENS + 1]
    starts = np.flatnonzero((values[:len(window)] == 0) & (window == _TOKENS - 1))
    for start in starts.tolist():
        table = _token_table_before(image, 2 * start, values[start:start + _TOKENS])
        if table is not None:
            return table, 2 * start
    return None


def _token_table_before(image: bytes, index_at: int, offsets: npt.NDArray[np.int32]) -> int | None:
    # The token table ends (NUL-terminated, then at most 7 bytes of alignment) right before the index.
    last = int(offsets[-1])
    for pad in range(8):
        end = index_at - pad
        nul = image.rfind(b"\0", 0, end - 1) if end > 1 else -1
        start = nul + 1 - last if nul >= 0 else -1
        if start < 0 or image[end - 1:end] != b"\0":
            continue
        if all(_is_token(image, start + int(o)) for o in offsets.tolist()) and \
                image.find(b"\0", start + last) == end - 1:
            return start
    return None


def _is_token(image: bytes, at: int) -> bool:
    end = image.find(b"\0", at, at + _MAX_TOKEN)
    token = image[at:end]
    return end > at and token.isascii() and token.decode("ascii").isprintable()


def _offsets_first(image: bytes, stext: int, tables: dict[str, int], base: int) -> Iterator[dict[str, int]]:
    # Up to v6.1: kallsyms_offsets, kallsyms_relative_base, kallsyms_num_syms, kallsyms_names.
    num = _u32(image, base + 8 - stext)
    if num is None or not 0 < num < _MAX_SYMS:
        return
    for offsets in (base - 4 * num, (base - 4 * num) & ~7):
        yield {**tables, "kallsyms_offsets": offsets, "kallsyms_num_syms": base + 8, "kallsyms_names": base + 16}


def _names_first(image: bytes, stext: int, tables: dict[str, int], base: int,
                 offsets: int) -> Iterator[dict[str, int]]:
    # v6.2 on: kallsyms_num_syms, kallsyms_names, …, kallsyms_token_index, kallsyms_offsets,
    # kallsyms_relative_base; the offsets' count is the number of symbols.
    if not offsets < base <= offsets + 4 * _MAX_SYMS:
        return
    token_table = tables["kallsyms_token_table"]
    for num in dict.fromkeys(((base - offsets) // 4, (base - offsets - 4) // 4)):
        low = max(0, token_table - _NAMES_SEARCH - stext)
        words = np.frombuffer(image[low // 4 * 4: (token_table - stext) // 4 * 4], dtype="<u4")
        for slot in np.flatnonzero(words == num)[::-1].tolist():
            at = stext + low // 4 * 4 + 4 * slot
            yield {**tables, "kallsyms_offsets": offsets, "kallsyms_num_syms": at, "kallsyms_names": _align(at + 4, 8)}


def _read_image(mem: MemoryReader, stext: int, scan: int) -> bytes:
    # As much of [stext, stext + scan) as reads from the start: a MiB at a time, the last one page
    # by page up to its first unreadable page.
    parts: list[bytes] = []
    for at in range(stext, stext + scan, _CHUNK):
        try:
            parts.append(mem.read(at, _CHUNK))
            continue
        except FaultError:
            pass
        for page in range(at, at + _CHUNK, _PAGE):
            try:
                parts.append(mem.read(page, _PAGE))
            except FaultError:
                break
        break
    return b"".join(parts)


def _u32(image: bytes, at: int) -> int | None:
    return int.from_bytes(image[at:at + 4], "little") if 0 <= at <= len(image) - 4 else None


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to
