"""
kcrash.memory.translate.x86_64
==============================

x86-64 page-table walks: 4-level (PGD, PUD, PMD, PTE) and 5-level (with P4D) paging, 1 GiB and
2 MiB pages, the SME encryption mask, canonical-address checks and entry flag names. A walk reads
physical memory only, through the ``read_phys(address, size)`` it is given; it knows nothing of
dumps or symbols. :func:`cr3_to_pgd` turns a saved CR3 into the table root.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kcrash.dumps._cache import LruCache
from kcrash.errors import FaultError

__all__ = [
    "START_KERNEL_MAP",
    "MappedRun",
    "MappingWalk",
    "PageTableEntry",
    "PageWalk",
    "X86_64PageTables",
    "cr3_to_pgd",
    "entry_flags",
]

#: ``__START_KERNEL_map``: kernel text is mapped at this + (physical - phys_base)
START_KERNEL_MAP = 0xFFFFFFFF80000000
_PHYS_MASK = 0x000FFFFFFFFFF000
_PRESENT = 1 << 0
_PSE = 1 << 7
_FLAG_NAMES = ((0, "PRESENT"), (1, "RW"), (2, "USER"), (3, "PWT"), (4, "PCD"), (5, "ACCESSED"),
               (6, "DIRTY"), (7, "PSE"), (8, "GLOBAL"), (63, "NX"))
_LEVEL_NAMES = {5: ("PGD", "P4D", "PUD", "PMD", "PTE"), 4: ("PGD", "PUD", "PMD", "PTE")}
_LEVEL_SHIFTS = {5: (48, 39, 30, 21, 12), 4: (39, 30, 21, 12)}
_U64 = struct.Struct("<Q")
_TABLE = struct.Struct("<512Q")
_TABLES_CACHED = 64
#: page-table pages a :class:`MappingWalk` reads at most (a 256 MiB guest's kernel half has ~2,200;
#: each 4 KiB-page table maps 2 MiB, so this covers 512 GiB of vmalloc'd 4 KiB pages; damaged tables
#: pointing at garbage stop here)
MAX_TABLES = 1 << 18
# KPTI keeps the user copy of the PGD in the second page of an 8 KiB pair (PTI_USER_PGTABLE_BIT).
_PTI_USER_BIT = 1 << 12


def entry_flags(value: int, names: tuple[tuple[int, str], ...] = _FLAG_NAMES) -> tuple[str, ...]:
    """Return the names of the set flag bits of a page-table entry (``names``: ``(bit, name)`` pairs,
    x86-64's by default)."""
    return tuple(name for bit, name in names if value >> bit & 1)


def cr3_to_pgd(cr3: int, *, sme_mask: int = 0, kernel: bool = True) -> int:
    """Return the physical PGD address in ``cr3`` (PCID bits dropped; the kernel half of a KPTI pair
    when ``kernel``)."""
    pgd = cr3 & _PHYS_MASK & ~sme_mask
    return pgd & ~_PTI_USER_BIT if kernel else pgd


@dataclass(frozen=True, slots=True)
class PageTableEntry:
    """One level of a walk: ``level`` name, the ``table`` it is in, ``index``, its physical
    ``address`` and ``value``; ``flag_names`` are the architecture's ``(bit, name)`` pairs."""

    level: str
    table: int
    index: int
    address: int
    value: int
    flag_names: tuple[tuple[int, str], ...] = _FLAG_NAMES

    @property
    def present(self) -> bool:
        """Return True if the present bit is set."""
        return bool(self.value & _PRESENT)

    @property
    def flags(self) -> tuple[str, ...]:
        """Return the flag names."""
        return entry_flags(self.value, self.flag_names)


@dataclass(frozen=True, slots=True)
class PageWalk:
    """The result of walking ``vaddr`` from ``root``: the entries read, the physical address (or
    None), the page size, and why the walk stopped when it failed."""

    vaddr: int
    root: int
    levels: int
    entries: tuple[PageTableEntry, ...]
    physical: int | None
    page_size: int
    reason: str | None = None


class X86_64PageTables:
    """One address space: the page tables rooted at physical ``root`` (``levels`` 4 or 5)."""

    def __init__(self, read_phys: Callable[[int, int], bytes], root: int, *, levels: int = 4,
                 sme_mask: int = 0) -> None:
        if levels not in (4, 5):
            raise ValueError(f"x86-64 paging has 4 or 5 levels, not {levels}")
        self.read_phys = read_phys
        self.root = root
        self.levels = levels
        self._mask = _PHYS_MASK & ~sme_mask
        # whole table pages, for translate(): a run of 4 KiB pages shares its PTE page
        self._tables: LruCache[int, tuple[int, ...]] = LruCache(_TABLES_CACHED)

    def canonical(self, vaddr: int) -> bool:
        """Return True if ``vaddr`` is canonical for this paging mode."""
        bits = 57 if self.levels == 5 else 48
        top = vaddr >> (bits - 1)
        return top in (0, (1 << (65 - bits)) - 1)

    def walk(self, vaddr: int) -> PageWalk:
        """Walk the tables for ``vaddr``; a missing level is reported in ``reason``, not raised."""
        entries: list[PageTableEntry] = []
        if not self.canonical(vaddr):
            return PageWalk(vaddr, self.root, self.levels, (), None, 0, "non-canonical address")
        table = self.root
        names, shifts = _LEVEL_NAMES[self.levels], _LEVEL_SHIFTS[self.levels]
        for name, shift in zip(names, shifts, strict=True):
            index = (vaddr >> shift) & 0x1FF
            entry = self._entry(name, table, index)
            entries.append(entry)
            if not entry.present:
                return PageWalk(vaddr, self.root, self.levels, tuple(entries), None, 0,
                                f"{name} entry not present")
            leaf = self._leaf_or_none(entry.value, shift, vaddr)
            if leaf is not None:
                return PageWalk(vaddr, self.root, self.levels, tuple(entries), *leaf)
            table = entry.value & self._mask
        raise AssertionError("unreachable")

    def _translate_cached_or_none(self, vaddr: int) -> tuple[int, int] | None:
        # The walk through cached table pages; None sends the caller to walk(), which re-reads
        # the entries one by one and explains a failure (a missing entry is never trusted from
        # the cache: a live target may have mapped it since).
        if not self.canonical(vaddr):
            return None
        table = self.root
        for shift in _LEVEL_SHIFTS[self.levels]:
            entries = self._table_or_none(table)
            if entries is None:
                return None
            value = entries[(vaddr >> shift) & 0x1FF]
            if not value & _PRESENT:
                return None
            leaf = self._leaf_or_none(value, shift, vaddr)
            if leaf is not None:
                return leaf
            table = value & self._mask
        return None

    def _leaf_or_none(self, value: int, shift: int, vaddr: int) -> tuple[int, int] | None:
        # ``(physical address, page size)`` when the present entry ``value`` at the level of
        # ``shift`` maps a page (a PTE, or a PUD/PMD with PSE: 1 GiB / 2 MiB); None for a table.
        if shift != 12 and not (value & _PSE and shift in (30, 21)):
            return None
        size = 1 << shift
        return (value & self._mask & ~(size - 1)) | (vaddr & (size - 1)), size

    def _table_or_none(self, table: int) -> tuple[int, ...] | None:
        entries = self._tables.get(table)
        if entries is None:
            try:
                entries = _TABLE.unpack(self.read_phys(table, _TABLE.size))
            except FaultError:
                return None
            self._tables.put(table, entries)
        return entries

    def _entry(self, name: str, table: int, index: int) -> PageTableEntry:
        address = table + 8 * index
        try:
            value = _U64.unpack(self.read_phys(address, 8))[0]
        except FaultError as exc:
            raise FaultError(address, True, f"{name} table not readable: {exc.reason}") from None
        return PageTableEntry(name, table, index, address, value)

    def translate(self, vaddr: int) -> tuple[int, int]:
        """Return ``(physical address, page size)`` or raise FaultError."""
        found = self._translate_cached_or_none(vaddr)
        if found is not None:
            return found
        walk = self.walk(vaddr)
        if walk.physical is None:
            raise FaultError(vaddr, False, walk.reason or "not mapped")
        return walk.physical, walk.page_size


@dataclass(frozen=True, slots=True)
class MappedRun:
    """``size`` bytes of virtual memory at ``vaddr`` mapped to physically contiguous memory at
    ``paddr`` (one or more present leaf entries: 4 KiB PTEs, 2 MiB PMDs, 1 GiB PUDs)."""

    vaddr: int
    paddr: int
    size: int


class MappingWalk:
    """Every present leaf mapping of ``tables`` in ``[start, end)``, in virtual address order, as
    :class:`MappedRun` runs (adjacent leaves that are contiguous both virtually and physically are
    merged). Iterate it once; afterwards ``unreadable_tables`` counts table pages the dump lacks
    (their range is skipped) and ``truncated`` says why the walk stopped early (``max_tables``
    table pages read: damaged tables), else None. Whole tables are read, never entry by entry, and
    each table page at most once (a damaged entry pointing back up the tree, or the ESPFIX area's
    shared tables, is not walked again: ``shared_tables`` counts them)."""

    def __init__(self, tables: X86_64PageTables, start: int = 0, end: int = 1 << 64, *,
                 max_tables: int = MAX_TABLES) -> None:
        self.tables = tables
        self.start = start
        self.end = end
        self.max_tables = max_tables
        self.tables_read = 0
        self.unreadable_tables = 0
        self.shared_tables = 0
        self.truncated: str | None = None
        self._seen: set[int] = set()
        self._bits = 57 if tables.levels == 5 else 48

    def __iter__(self) -> Iterator[MappedRun]:
        run: MappedRun | None = None
        for piece in self._walk(self.tables.root, 0, 0):
            if run is not None and piece.vaddr == run.vaddr + run.size and piece.paddr == run.paddr + run.size:
                run = MappedRun(run.vaddr, run.paddr, run.size + piece.size)
                continue
            if run is not None:
                yield run
            run = piece
        if run is not None:
            yield run

    def _sign_extend(self, vaddr: int) -> int:
        return vaddr | ((1 << 64) - (1 << self._bits)) if vaddr >> (self._bits - 1) & 1 else vaddr

    def _read_table(self, table: int) -> np.ndarray | None:
        if table in self._seen:
            self.shared_tables += 1
            return None
        self._seen.add(table)
        if self.tables_read >= self.max_tables:
            self.truncated = f"stopped after {self.max_tables:,} page-table pages (damaged tables?)"
            return None
        self.tables_read += 1
        try:
            return np.frombuffer(self.tables.read_phys(table, 4096), dtype="<u8")
        except FaultError:
            self.unreadable_tables += 1
            return None

    def _walk(self, table: int, depth: int, base: int) -> Iterator[MappedRun]:
        shift = _LEVEL_SHIFTS[self.tables.levels][depth]
        entries = self._read_table(table)
        if entries is None:
            return
        if depth:
            yield from self._entries(entries, 0, 511, depth, shift, base)
            return
        # the top table: entries 0-255 map the user half, 256-511 the sign-extended kernel half
        half = 256 << shift
        yield from self._entries(entries, 0, 255, depth, shift, 0)
        if not self.truncated:
            yield from self._entries(entries, 256, 511, depth, shift, self._sign_extend(half) - half)

    def _entries(self, entries: np.ndarray, lo: int, hi: int, depth: int, shift: int,
                 base: int) -> Iterator[MappedRun]:
        # entries lo..hi of a table whose entry i maps base + (i << shift), clipped to [start, end)
        first = max(lo, (self.start - base) >> shift) if self.start > base else lo
        last = min(hi, (self.end - 1 - base) >> shift)
        if first > last:
            return
        values = entries[first:last + 1]
        present = np.flatnonzero(values & _PRESENT) + first
        if shift == 12:
            yield from self._pte_runs(entries, present, base)
            return
        mask = self.tables._mask
        for i in present.tolist():
            value = int(entries[i])
            vaddr = base + (i << shift)
            if value & _PSE and shift in (30, 21):
                size = 1 << shift
                yield MappedRun(vaddr, value & mask & ~(size - 1), size)
            else:
                yield from self._walk(value & mask, depth + 1, vaddr)
            if self.truncated:
                return

    def _pte_runs(self, entries: np.ndarray, present: np.ndarray, base: int) -> Iterator[MappedRun]:
        # runs of present PTEs whose pages are physically consecutive, found vectorized
        if not present.size:
            return
        phys = entries[present] & np.uint64(self.tables._mask)
        breaks = np.flatnonzero((np.diff(present) != 1) | (np.diff(phys.astype(np.int64)) != 4096)) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [present.size]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            yield MappedRun(base + (int(present[s]) << 12), int(phys[s]), (e - s) << 12)
