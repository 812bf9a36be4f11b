"""kcrash.memory.reader.MemoryReader: physical reads, virtual reads from virtual segments when they
cover the range, else page-by-page translation with a bounded TLB (one walk per 4 KiB page, one per
2 MiB chunk of a huge page), physically contiguous runs read in one call, faults at the failing
virtual address, little-endian integer reads."""

from __future__ import annotations

import pytest

from kcrash.errors import FaultError
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap

PAGE = 4096
PHYS = bytes((i * 7) & 0xFF for i in range(64 * PAGE))  # 64 physical pages with a pattern


class _Tables:
    """A translator from a page map (virtual page -> physical page) and one 2 MiB huge page."""

    def __init__(self, pages: dict[int, int], huge: tuple[int, int] | None = None) -> None:
        self.pages = pages
        self.huge = huge
        self.walks: list[int] = []

    def translate(self, vaddr: int) -> tuple[int, int]:
        self.walks.append(vaddr)
        if self.huge is not None and self.huge[0] <= vaddr < self.huge[0] + (2 << 20):
            return self.huge[1] + vaddr - self.huge[0], 2 << 20
        page = vaddr & ~(PAGE - 1)
        if page not in self.pages:
            raise FaultError(vaddr, False, "not mapped")
        return self.pages[page] + vaddr - page, PAGE


def _physical(calls: list[tuple[int, int]] | None = None, size: int = len(PHYS)) -> SegmentMap:
    def read(address: int, n: int) -> bytes:
        if calls is not None:
            calls.append((address, n))
        return PHYS[address:address + n]
    m = SegmentMap()
    m.add_segment(0, size, read, physical=True)
    return m


V = 0xFFFFC90000000000


def test_physical_read_and_integers() -> None:
    r = MemoryReader(_physical())
    assert r.read(0x1234, 16, physical=True) == PHYS[0x1234:0x1244]
    assert r.read_u8(3, physical=True) == PHYS[3]
    assert r.read_u16(0x10, physical=True) == int.from_bytes(PHYS[0x10:0x12], "little")
    assert r.read_u32(0x10, physical=True) == int.from_bytes(PHYS[0x10:0x14], "little")
    assert r.read_u64(0x10, physical=True) == int.from_bytes(PHYS[0x10:0x18], "little")
    with pytest.raises(ValueError, match="negative"):
        r.read(0, -1, physical=True)


def test_no_translator_faults_on_virtual_reads() -> None:
    r = MemoryReader(_physical())
    with pytest.raises(FaultError, match="no page tables") as info:
        r.read(V, 8)
    assert info.value.address == V


def test_translated_read_crosses_pages_and_merges_contiguous_runs() -> None:
    calls: list[tuple[int, int]] = []
    # V -> pfn 10, V+1 page -> pfn 11 (contiguous), V+2 pages -> pfn 3 (not)
    tables = _Tables({V: 10 * PAGE, V + PAGE: 11 * PAGE, V + 2 * PAGE: 3 * PAGE})
    r = MemoryReader(_physical(calls), tables)
    data = r.read(V + 0x800, 2 * PAGE)
    assert data == PHYS[10 * PAGE + 0x800:12 * PAGE] + PHYS[3 * PAGE:3 * PAGE + 0x800]
    assert calls == [(10 * PAGE + 0x800, PAGE + 0x800), (3 * PAGE, 0x800)]  # two reads, not three
    assert r.translate(V + PAGE + 5) == 11 * PAGE + 5


def test_tlb_caches_walks() -> None:
    tables = _Tables({V: 10 * PAGE}, huge=(V + (2 << 20), 0))
    r = MemoryReader(_physical(size=4 << 20), tables)
    for off in range(0, PAGE, 512):
        r.read_u64(V + off)
    assert len(tables.walks) == 1  # one 4 KiB page, one walk
    for off in range(0, 2 << 20, 64 * PAGE):
        r.translate(V + (2 << 20) + off)
    assert len(tables.walks) == 2  # the whole 2 MiB chunk of the huge page, one walk


def test_fault_names_the_unmapped_page() -> None:
    tables = _Tables({V: 10 * PAGE})
    r = MemoryReader(_physical(), tables)
    with pytest.raises(FaultError) as info:
        r.read(V + PAGE - 4, 8)
    assert info.value.address == V + PAGE
    assert r.read(V, 0) == b""


def test_virtual_segments_are_read_directly() -> None:
    segments = _physical()
    segments.add_segment(V, PAGE, lambda a, n: b"K" * n, physical=False)  # like /proc/kcore
    tables = _Tables({V: 10 * PAGE, V + PAGE: 11 * PAGE})
    r = MemoryReader(segments, tables)
    assert r.read(V + 8, 8) == b"K" * 8 and tables.walks == []
    # a read running past the virtual segment is translated instead
    assert r.read(V + PAGE - 4, 8) == PHYS[10 * PAGE + PAGE - 4:11 * PAGE + 4]
    assert tables.walks
