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
from collections.abc import Callable
from dataclasses import dataclass

from kcrash.dumps._cache import LruCache
from kcrash.errors import FaultError

__all__ = [
    "START_KERNEL_MAP",
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
# KPTI keeps the user copy of the PGD in the second page of an 8 KiB pair (PTI_USER_PGTABLE_BIT).
_PTI_USER_BIT = 1 << 12


def entry_flags(value: int) -> tuple[str, ...]:
    """Return the names of the set flag bits of a page-table entry."""
    return tuple(name for bit, name in _FLAG_NAMES if value >> bit & 1)


def cr3_to_pgd(cr3: int, *, sme_mask: int = 0, kernel: bool = True) -> int:
    """Return the physical PGD address in ``cr3`` (PCID bits dropped; the kernel half of a KPTI pair
    when ``kernel``)."""
    pgd = cr3 & _PHYS_MASK & ~sme_mask
    return pgd & ~_PTI_USER_BIT if kernel else pgd


@dataclass(frozen=True, slots=True)
class PageTableEntry:
    """One level of a walk: ``level`` name, the ``table`` it is in, ``index``, its physical
    ``address`` and ``value``."""

    level: str
    table: int
    index: int
    address: int
    value: int

    @property
    def present(self) -> bool:
        """Return True if the present bit is set."""
        return bool(self.value & _PRESENT)

    @property
    def flags(self) -> tuple[str, ...]:
        """Return the flag names."""
        return entry_flags(self.value)


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
