"""
kcrash.memory.search
====================

Search memory for a value, like crash's ``search``: aligned 8-, 16-, 32- or 64-bit words equal to
a value (bits set in a mask ignored), or a byte string at any alignment. Three address spaces:
physical memory (:func:`search_physical`: every page the dump stores), and a virtual address
space through its page tables (:func:`search_virtual`: the kernel's, or a task's user half), whose
present leaf mappings are enumerated table by table (:class:`~kcrash.memory.translate.x86_64.
MappingWalk`), so unmapped ranges cost nothing. Memory is read in large physical runs and compared
with numpy; pages the dump lacks (excluded, lost) are skipped and counted. What a task's page
tables are, or which symbol a hit is, is for the layers above.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from kcrash.errors import FaultError
from kcrash.memory.translate.x86_64 import MappingWalk, X86_64PageTables

__all__ = ["X86_64_ESPFIX_AREA", "Pattern", "Search", "SearchHit", "search_physical", "search_virtual"]

#: the x86-64 ESPFIX area (``ESPFIX_BASE_ADDR``, one 512 GiB P4D slot; arch/x86/include/asm/pgtable_64_types.h,
#: arch/x86/kernel/espfix_64.c): its 65,536 PTEs map the same few pages of ministacks over and over,
#: so a kernel-wide search leaves it out (crash's ``search -k`` does not look there either)
X86_64_ESPFIX_AREA = (0xFFFFFF0000000000, 0xFFFFFF8000000000)

_PAGE = 4096
#: bytes read at once (aligned): large enough for numpy to dominate, small enough to stay in cache
_CHUNK = 4 << 20
_DTYPES = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}


@dataclass(frozen=True, slots=True)
class Pattern:
    """What to look for: ``value`` in aligned words of ``width`` bytes (1, 2, 4, 8), ignoring the
    bits set in ``mask`` (crash's ``search -m``); or, when ``string`` is given, those bytes at any
    alignment (crash's ``search -c``)."""

    value: int = 0
    width: int = 8
    mask: int = 0
    string: bytes | None = None

    def __post_init__(self) -> None:
        if self.string is not None:
            if not self.string:
                raise ValueError("an empty search string")
            return
        if self.width not in _DTYPES:
            raise ValueError(f"a word is 1, 2, 4 or 8 bytes, not {self.width}")
        limit = 1 << (8 * self.width)
        if not 0 <= self.value < limit or not 0 <= self.mask < limit:
            raise ValueError(f"{self.value:#x} (mask {self.mask:#x}) does not fit in {8 * self.width} bits")

    @property
    def alignment(self) -> int:
        """Return the alignment of a hit: the word width, or 1 for a string."""
        return 1 if self.string is not None else self.width


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One match: its ``address`` (virtual or physical, as searched) and the ``value`` found there
    (the whole word, mask bits included; for a string, its first byte's address and 0)."""

    address: int
    value: int


class Search:
    """A search in progress: iterate it for :class:`SearchHit` in address order. Afterwards
    ``scanned`` is the number of bytes compared, ``skipped`` the bytes of mapped or listed memory
    the dump lacks (pages counted once each), and ``truncated`` says why the range was not covered
    in full (damaged page tables), else None."""

    def __init__(self, pattern: Pattern, chunks: Callable[[Search], Iterator[tuple[int, bytes]]]) -> None:
        self.pattern = pattern
        self.scanned = 0
        self.skipped = 0
        self.unreadable_tables = 0
        self.truncated: str | None = None
        self._chunks = chunks

    def __iter__(self) -> Iterator[SearchHit]:
        if self.pattern.string is not None:
            return self._strings(self.pattern.string)
        return self._words()

    def _words(self) -> Iterator[SearchHit]:
        p = self.pattern
        dtype = np.dtype(_DTYPES[p.width])
        keep = dtype.type(((1 << (8 * p.width)) - 1) & ~p.mask)
        want = dtype.type(p.value & ~p.mask)
        for address, data in self._chunks(self):
            words = np.frombuffer(data, dtype=dtype, count=len(data) // p.width)
            self.scanned += len(data)
            found = np.flatnonzero((words & keep) == want if p.mask else words == want)
            for i, value in zip(found.tolist(), words[found].tolist(), strict=True):
                yield SearchHit(address + i * p.width, value)

    def _strings(self, needle: bytes) -> Iterator[SearchHit]:
        # A match may straddle two chunks of contiguous memory: the last len-1 bytes of one are
        # searched again with the next (a match cannot lie wholly in them).
        tail, tail_end = b"", -1
        for address, data in self._chunks(self):
            self.scanned += len(data)
            head = tail if tail_end == address else b""
            hay = head + data
            pos = hay.find(needle)
            while pos >= 0:
                yield SearchHit(address - len(head) + pos, 0)
                pos = hay.find(needle, pos + 1)
            tail, tail_end = hay[len(hay) - len(needle) + 1:] if len(needle) > 1 else b"", address + len(data)


def _present(read: Callable[[int, int], bytes], start: int, end: int, search: Search) -> Iterator[tuple[int, bytes]]:
    # [start, end) in aligned chunks, stepping over the pages ``read`` faults on: a fault inside a
    # chunk cuts the chunk there (what precedes it is read again, now whole), a fault at its first
    # page skips that page. Every page costs at most one failed read.
    pos = start
    while pos < end:
        stop = min(end, (pos // _CHUNK + 1) * _CHUNK)
        try:
            data = read(pos, stop - pos)
        except FaultError as exc:
            bad = exc.address if pos < exc.address < stop else pos
            bad = max(pos, bad & ~(_PAGE - 1))
            if bad > pos:
                yield from _present(read, pos, bad, search)
            nxt = min(stop, (bad // _PAGE + 1) * _PAGE)
            search.skipped += nxt - bad
            pos = nxt
            continue
        yield pos, data
        pos = stop


def _clip(lo: int, hi: int, physical: Sequence[tuple[int, int]] | None,
          search: Search) -> Iterator[tuple[int, int]]:
    # [lo, hi) cut to the physical ranges; what falls outside them is counted as skipped
    if physical is None:
        yield lo, hi
        return
    kept = 0
    i = max(bisect.bisect_right(physical, (lo, 1 << 64)) - 1, 0)
    while i < len(physical) and physical[i][0] < hi:
        a, b = max(lo, physical[i][0]), min(hi, physical[i][1])
        if a < b:
            kept += b - a
            yield a, b
        i += 1
    search.skipped += (hi - lo) - kept


def _aligned(start: int, alignment: int) -> int:
    return -(-start // alignment) * alignment


def search_physical(read_phys: Callable[[int, int], bytes], ranges: list[tuple[int, int]], pattern: Pattern,
                    start: int = 0, end: int = 1 << 64) -> Search:
    """Search the physical ``ranges`` (``[start, end)`` pairs, sorted: a dump's physical segments)
    clipped to ``[start, end)``, read through ``read_phys(address, size)``.

    >>> hits = list(search_physical(memory.segments.read_physical, ranges, Pattern(0xFEEDFACE0BADC0DE)))
    """

    def chunks(search: Search) -> Iterator[tuple[int, bytes]]:
        for lo, hi in ranges:
            lo, hi = _aligned(max(lo, start), pattern.alignment), min(hi, end)
            if lo < hi:
                yield from _present(read_phys, lo, hi, search)

    return Search(pattern, chunks)


def search_virtual(tables: X86_64PageTables, pattern: Pattern, start: int = 0, end: int = 1 << 64, *,
                   skip: Sequence[tuple[int, int]] = (), physical: Sequence[tuple[int, int]] | None = None) -> Search:
    """Search the virtual ``[start, end)`` of the address space of ``tables`` (its present leaf
    mappings, in address order; the pages read physically through ``tables.read_phys``), less the
    ``skip`` ranges (e.g. :data:`X86_64_ESPFIX_AREA`). ``physical``: the sorted ``[start, end)``
    ranges physical memory has (a dump's segments); mapped pages outside them are counted as
    skipped without a read (a 1 GiB page over a memory hole costs nothing).

    >>> hits = list(search_virtual(memory.page_tables, Pattern(0xFEEDFACE0BADC0DE), 1 << 63))
    """

    def chunks(search: Search) -> Iterator[tuple[int, bytes]]:
        for lo, hi in _without(start, end, skip):
            yield from _mapped(tables, pattern, lo, hi, search, physical)
            if search.truncated:
                return

    return Search(pattern, chunks)


def _without(start: int, end: int, skip: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    # [start, end) less the skip ranges, in order
    pieces = [(start, end)]
    for s_lo, s_hi in sorted(skip):
        last_lo, last_hi = pieces.pop()
        pieces += [(lo, hi) for lo, hi in ((last_lo, min(last_hi, s_lo)), (max(last_lo, s_hi), last_hi)) if lo < hi]
        if not pieces:
            break
    return pieces


def _mapped(tables: X86_64PageTables, pattern: Pattern, start: int, end: int, search: Search,
            physical: Sequence[tuple[int, int]] | None) -> Iterator[tuple[int, bytes]]:
    walk = MappingWalk(tables, start, end)
    for run in walk:
        lo = _aligned(max(run.vaddr, start), pattern.alignment)
        hi = min(run.vaddr + run.size, end)
        delta = run.vaddr - run.paddr
        for plo, phi in _clip(lo - delta, hi - delta, physical, search):
            for paddr, data in _present(tables.read_phys, plo, phi, search):
                yield paddr + delta, data
    search.truncated = walk.truncated
    search.unreadable_tables += walk.unreadable_tables
