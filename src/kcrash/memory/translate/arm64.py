"""
kcrash.memory.translate.arm64
=============================

AArch64 (VMSAv8-64) stage-1 page-table walks as Linux sets them up: 4 KiB, 16 KiB and 64 KiB
granules, 36- to 52-bit virtual addresses, block mappings at the upper levels. A walk reads
physical memory only, through the ``read_phys(address, size)`` it is given.

The geometry follows from the granule (``page_shift``) and the virtual-address size (``va_bits``):
each level resolves ``page_shift - 3`` bits, there are ``ceil((va_bits - page_shift) /
(page_shift - 3))`` levels, and the top table has only as many entries as the bits left over (a
48-bit 4 KiB walk: 4 levels of 512 entries; a 52-bit 4 KiB walk with FEAT_LPA2: 5 levels, the top,
level -1, of 16 entries). A descriptor's bits 1:0 say what it is: ``0b11`` a table (a page at the
last level), ``0b01`` a block (reserved at the last level), bit 0 clear invalid. The output address
is bits 47:page_shift, plus bits 51:48 from descriptor bits 15:12 with 64 KiB pages (FEAT_LPA), or
bits 49:48 in place and 51:50 from descriptor bits 9:8 with 4/16 KiB pages and 52-bit addresses
(FEAT_LPA2; Linux enables 52-bit virtual addresses with these granules only together with 52-bit
physical ones). The contiguous bit is a TLB hint and does not change the translation.

A table root serves one half of the address space: ``kernel=True`` (TTBR1) takes addresses whose
bits 63:va_bits are all ones, else (TTBR0) all zeros.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from kcrash.dumps._cache import LruCache
from kcrash.errors import FaultError
from kcrash.memory.translate.x86_64 import PageTableEntry, PageWalk

__all__ = ["ARM64_FLAG_NAMES", "Arm64PageTables", "arm64_levels"]

#: descriptor bits by name (bits 9:8 are shareability, or output-address bits 51:50 with LPA2)
ARM64_FLAG_NAMES: tuple[tuple[int, str], ...] = (
    (0, "VALID"), (1, "TABLE|PAGE"), (5, "NS"), (6, "USER"), (7, "RDONLY"), (10, "AF"), (11, "NG"),
    (51, "DBM"), (52, "CONT"), (53, "PXN"), (54, "UXN"))
_GRANULES = (12, 14, 16)
_PA_LOW = 0x0000_FFFF_FFFF_FFFF
_U64 = struct.Struct("<Q")
_TABLES_CACHED = 64
# the level names of a walk of n levels, top first (the kernel's folding: 3 levels have no PUD)
_LEVEL_NAMES = {1: ("PTE",), 2: ("PGD", "PTE"), 3: ("PGD", "PMD", "PTE"), 4: ("PGD", "PUD", "PMD", "PTE"),
                5: ("PGD", "P4D", "PUD", "PMD", "PTE")}


def arm64_levels(va_bits: int, page_shift: int) -> int:
    """Return the number of translation levels for ``va_bits``-bit addresses and ``1 << page_shift``
    pages (each level resolves ``page_shift - 3`` bits).

    >>> arm64_levels(48, 12), arm64_levels(39, 12), arm64_levels(52, 12), arm64_levels(52, 16)
    (4, 3, 5, 3)
    """
    per = page_shift - 3
    return (va_bits - page_shift + per - 1) // per


class Arm64PageTables:
    """One address space: the tables rooted at physical ``root``.

    :param va_bits: the translated virtual-address size (``64 - TCR_EL1.T1SZ`` for the kernel half)
    :param page_shift: 12, 14 or 16 (4, 16 or 64 KiB granule)
    :param kernel: the root is a TTBR1 table (upper half) rather than a TTBR0 one
    :param lpa2: descriptors carry output-address bits 51:50 in bits 9:8 (default: 52-bit addresses
        with a 4 or 16 KiB granule)
    """

    def __init__(self, read_phys: Callable[[int, int], bytes], root: int, *, va_bits: int = 48,
                 page_shift: int = 12, kernel: bool = True, lpa2: bool | None = None) -> None:
        if page_shift not in _GRANULES:
            raise ValueError(f"arm64 pages are 4, 16 or 64 KiB, not 2^{page_shift} bytes")
        if not page_shift < va_bits <= 52:
            raise ValueError(f"arm64 virtual addresses of {va_bits} bits")
        self.read_phys = read_phys
        self.root = root
        self.va_bits = va_bits
        self.page_shift = page_shift
        self.kernel = kernel
        self.levels = arm64_levels(va_bits, page_shift)
        per = page_shift - 3
        top = self.levels - 1
        # (shift, entries) per level, top first
        self._geometry = tuple((page_shift + per * (top - i),
                                1 << (va_bits - page_shift - per * top if i == 0 else per))
                               for i in range(self.levels))
        self._names = _LEVEL_NAMES[self.levels]
        if lpa2 is None:
            lpa2 = va_bits == 52 and page_shift != 16
        self.lpa2 = lpa2
        low = _PA_LOW & ~((1 << page_shift) - 1)
        if page_shift == 16:
            self._pa_low, self._hi_mask, self._hi_shift = low, 0xF000, 36
        elif lpa2:
            self._pa_low, self._hi_mask, self._hi_shift = low | 0x0003_0000_0000_0000, 0x300, 42
        else:
            self._pa_low, self._hi_mask, self._hi_shift = low, 0, 0
        self._tables: LruCache[int, tuple[int, ...]] = LruCache(_TABLES_CACHED)

    def canonical(self, vaddr: int) -> bool:
        """Return True if ``vaddr`` lies in this root's half (bits 63:va_bits all ones for TTBR1,
        all zeros for TTBR0)."""
        top = vaddr >> self.va_bits
        return top == ((1 << (64 - self.va_bits)) - 1 if self.kernel else 0)

    def output_address(self, value: int) -> int:
        """Return the output (next-table or page) address of descriptor ``value``, low bits included
        up to the granule."""
        return (value & self._pa_low) | ((value & self._hi_mask) << self._hi_shift)

    def _leaf_or_none(self, value: int, depth: int, vaddr: int) -> tuple[int, int] | None:
        # (physical, size) when the valid descriptor maps memory at this depth; None for a table
        shift = self._geometry[depth][0]
        last = depth == self.levels - 1
        if not last and value & 0b10:
            return None
        size = 1 << shift
        return (self.output_address(value) & ~(size - 1)) | (vaddr & (size - 1)), size

    @staticmethod
    def _descriptor_fault(value: int, last: bool) -> str | None:
        if not value & 1:
            return "not valid"
        if last and not value & 0b10:
            return "reserved descriptor type at the last level"
        return None

    def walk(self, vaddr: int) -> PageWalk:
        """Walk the tables for ``vaddr``; a missing level is reported in ``reason``, not raised."""
        if not self.canonical(vaddr):
            half = "kernel (TTBR1)" if self.kernel else "user (TTBR0)"
            return PageWalk(vaddr, self.root, self.levels, (), None, 0,
                            f"not a {self.va_bits}-bit {half} address")
        entries: list[PageTableEntry] = []
        table = self.root
        for depth, (shift, count) in enumerate(self._geometry):
            name = self._names[depth]
            index = (vaddr >> shift) & (count - 1)
            address = table + 8 * index
            try:
                value = _U64.unpack(self.read_phys(address, 8))[0]
            except FaultError as exc:
                raise FaultError(address, True, f"{name} table not readable: {exc.reason}") from None
            entries.append(PageTableEntry(name, table, index, address, value, ARM64_FLAG_NAMES))
            fault = self._descriptor_fault(value, depth == self.levels - 1)
            if fault is not None:
                return PageWalk(vaddr, self.root, self.levels, tuple(entries), None, 0, f"{name} entry {fault}")
            leaf = self._leaf_or_none(value, depth, vaddr)
            if leaf is not None:
                return PageWalk(vaddr, self.root, self.levels, tuple(entries), *leaf)
            table = self.output_address(value)
        raise AssertionError("unreachable")

    def _table_or_none(self, table: int, count: int) -> tuple[int, ...] | None:
        entries = self._tables.get(table)
        if entries is None:
            try:
                entries = struct.unpack(f"<{count}Q", self.read_phys(table, 8 * count))
            except FaultError:
                return None
            self._tables.put(table, entries)
        return entries

    def _translate_cached_or_none(self, vaddr: int) -> tuple[int, int] | None:
        # through whole cached tables; None sends the caller to walk(), which explains a failure
        if not self.canonical(vaddr):
            return None
        table = self.root
        for depth, (shift, count) in enumerate(self._geometry):
            entries = self._table_or_none(table, count)
            if entries is None:
                return None
            value = entries[(vaddr >> shift) & (count - 1)]
            if self._descriptor_fault(value, depth == self.levels - 1) is not None:
                return None
            leaf = self._leaf_or_none(value, depth, vaddr)
            if leaf is not None:
                return leaf
            table = self.output_address(value)
        return None

    def translate(self, vaddr: int) -> tuple[int, int]:
        """Return ``(physical address, page or block size)`` or raise FaultError."""
        found = self._translate_cached_or_none(vaddr)
        if found is not None:
            return found
        walk = self.walk(vaddr)
        if walk.physical is None:
            raise FaultError(vaddr, False, walk.reason or "not mapped")
        return walk.physical, walk.page_size
