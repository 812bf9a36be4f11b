"""
kcrash.memory.reader
====================

:class:`MemoryReader`: ``read(address, size, *, physical=False)`` over a
:class:`~kcrash.memory.segments.SegmentMap`. Virtual addresses are read from virtual segments when
one covers them (``/proc/kcore``, ELF dumps with virtual ``p_vaddr``), else translated page by page
through the translator (page tables) with a bounded translation cache, and read physically.
Physically contiguous pages are read in one call.
"""

from __future__ import annotations

import struct
from typing import Protocol

from kcrash.dumps._cache import LruCache
from kcrash.errors import FaultError
from kcrash.memory.segments import SegmentMap

__all__ = ["MemoryReader", "Translator"]

_PAGE = 4096
_CHUNK = 2 << 20
_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))


class Translator(Protocol):
    """Virtual → physical translation of one address space."""

    def translate(self, vaddr: int) -> tuple[int, int]:
        """Return ``(physical address, page size)`` or raise FaultError."""
        ...


class MemoryReader:
    """Reads physical and virtual memory of one target."""

    def __init__(self, segments: SegmentMap, translator: Translator | None = None, *,
                 tlb_entries: int = 4096) -> None:
        self.segments = segments
        self.translator = translator
        self._tlb: LruCache[int, int] = LruCache(tlb_entries)
        self._huge: LruCache[int, int] = LruCache(tlb_entries)

    def read(self, address: int, size: int, *, physical: bool = False) -> bytes:
        """Read ``size`` bytes at ``address``; raise FaultError (with the failing address) otherwise."""
        if size < 0:
            raise ValueError("negative size")
        if physical:
            return self.segments.read(address, size, physical=True)
        if self.segments.covers(address, physical=False) and \
                self.segments.covers(address + max(size, 1) - 1, physical=False):
            return self.segments.read(address, size, physical=False)
        return self._read_translated(address, size)

    def _read_translated(self, address: int, size: int) -> bytes:
        if not size:
            return b""
        phys, span = self._translate_span(address)
        if size <= span:  # the common case: within one page (or huge-page chunk)
            return self.segments.read(phys, size, physical=True)
        parts: list[bytes] = []
        pos, end = address, address + size
        while pos < end:
            if pos != address:
                phys, span = self._translate_span(pos)
            run = min(end - pos, span)
            # extend the run while the next virtual page (or huge-page chunk) is physically contiguous
            while pos + run < end:
                following = self._span_or_none(pos + run)
                if following is None or following[0] != phys + run:
                    break
                run = min(end - pos, run + following[1])
            parts.append(self.segments.read(phys, run, physical=True))
            pos += run
        return b"".join(parts)

    def _span_or_none(self, vaddr: int) -> tuple[int, int] | None:
        try:
            return self._translate_span(vaddr)
        except FaultError:
            return None

    def translate(self, vaddr: int) -> int:
        """Return the physical address of ``vaddr`` or raise FaultError."""
        return self._translate_span(vaddr)[0]

    def _translate_span(self, vaddr: int) -> tuple[int, int]:
        # (physical address, bytes to the end of the cached unit: the 4 KiB page, or the 2 MiB chunk
        # of a huge page, which is physically contiguous). Huge pages are cached per 2 MiB chunk, so
        # the direct map and kernel text cost one page walk per chunk instead of one per 4 KiB.
        page = vaddr & ~(_PAGE - 1)
        base = self._tlb.get(page)
        if base is not None:
            return base + (vaddr - page), _PAGE - (vaddr - page)
        chunk = vaddr & ~(_CHUNK - 1)
        base = self._huge.get(chunk)
        if base is not None:
            return base + (vaddr - chunk), _CHUNK - (vaddr - chunk)
        if self.translator is None:
            raise FaultError(vaddr, False, "no page tables to translate virtual addresses")
        phys, page_size = self.translator.translate(vaddr)
        if page_size >= _CHUNK:
            self._huge.put(chunk, phys - (vaddr - chunk))
            return phys, _CHUNK - (vaddr - chunk)
        self._tlb.put(page, phys - (vaddr - page))
        return phys, _PAGE - (vaddr - page)

    def read_u8(self, address: int, *, physical: bool = False) -> int:
        """Read one byte."""
        return int(_U8.unpack(self.read(address, 1, physical=physical))[0])

    def read_u16(self, address: int, *, physical: bool = False) -> int:
        """Read a little-endian u16."""
        return int(_U16.unpack(self.read(address, 2, physical=physical))[0])

    def read_u32(self, address: int, *, physical: bool = False) -> int:
        """Read a little-endian u32."""
        return int(_U32.unpack(self.read(address, 4, physical=physical))[0])

    def read_u64(self, address: int, *, physical: bool = False) -> int:
        """Read a little-endian u64."""
        return int(_U64.unpack(self.read(address, 8, physical=physical))[0])
