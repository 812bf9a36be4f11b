"""
support.pagetables
==================

Builds synthetic x86-64 physical memory with page tables (4 or 5 levels; 4 KiB, 2 MiB and 1 GiB
mappings), so tests can write fake kernel dumps whose virtual addresses translate like a real
kernel's: kernel text at ``__START_KERNEL_map`` + KASLR offset, a direct map, vmalloc pages.
"""

from __future__ import annotations

import struct

__all__ = ["PageTableBuilder", "PhysImage"]

_PAGE = 4096
_U64 = struct.Struct("<Q")
#: PRESENT | RW | ACCESSED | DIRTY
DEFAULT_FLAGS = 0x63
_PSE = 0x80
_SHIFTS = {5: (48, 39, 30, 21, 12), 4: (39, 30, 21, 12)}


class PhysImage:
    """Sparse physical memory: ``pages`` maps pfn → 4 KiB page."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def write(self, paddr: int, data: bytes) -> None:
        """Write ``data`` at ``paddr`` (pages are created as needed)."""
        pos = 0
        while pos < len(data):
            pfn, off = divmod(paddr + pos, _PAGE)
            page = self.pages.setdefault(pfn, bytearray(_PAGE))
            n = min(_PAGE - off, len(data) - pos)
            page[off:off + n] = data[pos:pos + n]
            pos += n

    def read(self, paddr: int, size: int) -> bytes:
        """Read ``size`` bytes (absent pages read as zeros)."""
        out = bytearray()
        pos = paddr
        while pos < paddr + size:
            pfn, off = divmod(pos, _PAGE)
            n = min(_PAGE - off, paddr + size - pos)
            out += self.pages.get(pfn, bytes(_PAGE))[off:off + n]
            pos += n
        return bytes(out)

    def frozen_pages(self) -> dict[int, bytes]:
        """Return the pages as immutable bytes."""
        return {pfn: bytes(page) for pfn, page in self.pages.items()}


class PageTableBuilder:
    """Page tables in ``image``, tables allocated upward from ``table_base``."""

    def __init__(self, image: PhysImage, *, levels: int = 4, table_base: int = 0x100000) -> None:
        self.image = image
        self.levels = levels
        self._next = table_base
        self.root = self._alloc()

    def _alloc(self) -> int:
        addr = self._next
        self._next += _PAGE
        self.image.write(addr, bytes(_PAGE))
        return addr

    def _entry_addr(self, table: int, vaddr: int, shift: int) -> int:
        return table + 8 * ((vaddr >> shift) & 0x1FF)

    def map(self, vaddr: int, paddr: int, size: int, *, page_size: int = _PAGE, flags: int = DEFAULT_FLAGS) -> None:
        """Map ``[vaddr, vaddr + size)`` to ``paddr`` with pages of ``page_size`` (4K, 2M or 1G)."""
        for off in range(0, size, page_size):
            self._map_one(vaddr + off, paddr + off, page_size, flags)

    def _map_one(self, vaddr: int, paddr: int, page_size: int, flags: int) -> None:
        table = self.root
        for shift in _SHIFTS[self.levels]:
            where = self._entry_addr(table, vaddr, shift)
            if 1 << shift == page_size:
                leaf = paddr | flags | (_PSE if page_size > _PAGE else 0)
                self.image.write(where, _U64.pack(leaf))
                return
            value = _U64.unpack(self.image.read(where, 8))[0]
            if not value & 1:
                value = self._alloc() | 0x67
                self.image.write(where, _U64.pack(value))
            table = value & 0x000FFFFFFFFFF000
        raise ValueError(f"page size {page_size:#x}")
