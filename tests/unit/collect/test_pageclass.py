"""Page classes from struct page + VMCOREINFO on a fake mem_map: both page-type encodings (6.1's
inverted bits, 6.12's top byte), compound and buddy ranges, always-excluded classes, and the
dump-level precedence of makedumpfile."""

from __future__ import annotations

import struct

import pytest

from kcrash.collect.pageclass import PageClass, classify_pages, find_mem_map
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.errors import FaultError, MissingDebugInfoError

MS_ROOTS = 0xFFFF888000100000
MS_TABLE = 0xFFFF888000200000
MEM_MAP = 0xFFFFEA0000000000
NPAGES = 16

COMMON = """OSRELEASE=test
PAGESIZE=4096
SYMBOL(mem_section)={roots:x}
LENGTH(mem_section)=4096
SIZE(mem_section)=32
OFFSET(mem_section.section_mem_map)=0
NUMBER(SECTION_SIZE_BITS)=27
NUMBER(MAX_PHYSMEM_BITS)=46
SIZE(page)=64
OFFSET(page.flags)=0
OFFSET(page._refcount)=52
OFFSET(page.mapping)=24
OFFSET(page.lru)=8
OFFSET(page._mapcount)=48
OFFSET(page.private)=40
OFFSET(page.compound_head)=8
LENGTH(zone.free_area)=11
"""
V61 = COMMON + """OFFSET(page.compound_dtor)=16
OFFSET(page.compound_order)=17
NUMBER(PG_lru)=4
NUMBER(PG_private)=13
NUMBER(PG_swapcache)=10
NUMBER(PG_swapbacked)=19
NUMBER(PG_slab)=9
NUMBER(PG_hwpoison)=23
NUMBER(PG_head_mask)=65536
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129
NUMBER(HUGETLB_PAGE_DTOR)=2
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257
"""
V612 = COMMON + """NUMBER(PG_lru)=5
NUMBER(PG_private)=14
NUMBER(PG_swapcache)=10
NUMBER(PG_swapbacked)=17
NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=-184549376
NUMBER(PG_hwpoison)=20
NUMBER(PG_head_mask)=64
NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-268435456
NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-201326592
NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-251658240
"""


class FakeMemory:
    def __init__(self, pages: list[dict[str, int]]) -> None:
        self.regions = {MS_ROOTS: struct.pack("<Q", MS_TABLE) + bytes(8),
                        MS_TABLE: struct.pack("<Q", MEM_MAP | 0x3) + bytes(24 + 32 * 127),
                        MEM_MAP: b"".join(_page(p) for p in pages)}

    def read(self, address: int, size: int, *, physical: bool = False) -> bytes:
        for base, data in self.regions.items():
            if base <= address and address + size <= base + len(data):
                return data[address - base:address - base + size]
        raise FaultError(address, physical, "not mapped")


def _page(fields: dict[str, int]) -> bytes:
    raw = bytearray(64)
    struct.pack_into("<Q", raw, 0, fields.get("flags", 0))
    struct.pack_into("<Q", raw, 8, fields.get("head", 0))
    struct.pack_into("<Q", raw, 24, fields.get("mapping", 0))
    struct.pack_into("<Q", raw, 40, fields.get("private", 0))
    struct.pack_into("<I", raw, 48, fields.get("mapcount", 0xFFFFFFFF) & 0xFFFFFFFF)
    raw[16] = fields.get("dtor", 0)
    raw[17] = fields.get("order", 0)
    return bytes(raw)


def _bit(n: int) -> int:
    return 1 << n


def _pages_61() -> list[dict[str, int]]:
    p: list[dict[str, int]] = [{} for _ in range(NPAGES)]
    p[1] = {"flags": _bit(4)}                                     # LRU: page cache
    p[2] = {"flags": _bit(4) | _bit(13)}                          # LRU + private
    p[3] = {"mapping": 0xFFFF888001234001}                        # anonymous
    p[4] = {"mapcount": -129, "private": 2}                       # buddy block of order 2: pfns 4-7
    p[5] = {"flags": _bit(4)}                                     # inside the free block
    p[8] = {"flags": 65536}                                       # compound head ...
    p[9] = {"head": (MEM_MAP + 8 * 64) | 1, "dtor": 2, "order": 1}  # ... hugetlb, order 1
    p[10] = {"flags": _bit(23)}                                   # hwpoison
    p[11] = {"mapcount": -257}                                    # offline
    p[12] = {"flags": _bit(9), "mapping": 0xFFFF888001234001}     # slab: not anonymous
    p[13] = {"flags": _bit(10) | _bit(19)}                        # swap cache
    p[14] = {"flags": _bit(10)}                                   # PG_swapcache without swapbacked
    return p


def _classes(text: str, pages: list[dict[str, int]], level: int) -> list[int]:
    info = parse_vmcoreinfo(text.format(roots=MS_ROOTS))
    return [int(c) for c in classify_pages(FakeMemory(pages), info, NPAGES, level)]  # type: ignore[arg-type]


C, CP, U, F, H, OFF = (PageClass.CACHE, PageClass.CACHE_PRIVATE, PageClass.USER, PageClass.FREE,
                     PageClass.HWPOISON, PageClass.OFFLINE)


def test_level_31_on_61_layout() -> None:
    assert _classes(V61, _pages_61(), 31) == [0, C, CP, U, F, F, F, F, U, U, H, OFF, 0, C, 0, 0]


def test_levels_select_classes_and_always_exclude_hwpoison_offline() -> None:
    pages = _pages_61()
    assert _classes(V61, pages, 0) == [0] * 10 + [H, OFF] + [0] * 4
    assert _classes(V61, pages, 2) == [0, C, 0, 0, 0, C, 0, 0, 0, 0, H, OFF, 0, C, 0, 0]
    assert _classes(V61, pages, 4) == [0, C, CP, 0, 0, C, 0, 0, 0, 0, H, OFF, 0, C, 0, 0]
    assert _classes(V61, pages, 8) == [0, 0, 0, U, 0, 0, 0, 0, U, U, H, OFF, 0, 0, 0, 0]
    assert _classes(V61, pages, 16) == [0, 0, 0, 0, F, F, F, F, 0, 0, H, OFF, 0, 0, 0, 0]


def test_top_byte_page_types_of_612() -> None:
    p: list[dict[str, int]] = [{} for _ in range(NPAGES)]
    p[1] = {"mapcount": -268435456, "private": 1}                          # buddy, order 1
    p[4] = {"mapcount": -184549376, "mapping": 0xFFFF888001234001}         # slab: not anon
    p[5] = {"mapping": 0xFFFF888001234001}                                 # anon
    p[6] = {"flags": 64, "mapcount": -201326592}                           # hugetlb head (no order known)
    p[7] = {"head": (MEM_MAP + 6 * 64) | 1}                                # its tail: skipped
    p[8] = {"mapcount": -251658240}                                        # offline
    p[9] = {"flags": _bit(5) | _bit(14)}                                   # private cache
    p[10] = {"mapcount": 0xF0000005 - (1 << 32)}                           # buddy type byte, low bits set
    p[11] = {"mapcount": 3}                                                # mapped 4 times: nothing
    assert _classes(V612, p, 31) == [0, F, F, 0, 0, U, U, 0, OFF, CP, F, 0, 0, 0, 0, 0]


def test_missing_keys_raise_typed_error() -> None:
    with pytest.raises(MissingDebugInfoError, match="VMCOREINFO lacks"):
        classify_pages(FakeMemory([]), parse_vmcoreinfo("OSRELEASE=x\n"), NPAGES, 31)  # type: ignore[arg-type]


def test_find_mem_map_decodes_sections() -> None:
    info = parse_vmcoreinfo(V61.format(roots=MS_ROOTS))
    chunks = find_mem_map(FakeMemory(_pages_61()), info, 70000)  # type: ignore[arg-type]
    assert [(c.start_pfn, c.end_pfn, c.mem_map) for c in chunks] == [(0, 32768, MEM_MAP)]


def test_head_inside_an_earlier_range_is_never_looked_at() -> None:
    # makedumpfile resumes its walk after a head's range: the stale buddy head at 5 (order 2, pfns 5-8) lies
    # inside the block at 4 (order 1) and is skipped, so 6-8 are classified on their own, and the compound
    # head at 8 that the stale range would have swallowed starts its own range (user data, pfns 8-9).
    p: list[dict[str, int]] = [{} for _ in range(NPAGES)]
    p[4] = {"mapcount": -129, "private": 1}
    p[5] = {"mapcount": -129, "private": 2}
    p[6] = {"flags": _bit(4)}                                                       # page cache
    p[8] = {"flags": 65536, "mapping": 0xFFFF888001234001}                          # anonymous compound head
    p[9] = {"head": (MEM_MAP + 8 * 64) | 1, "order": 1, "mapcount": -129}           # its tail
    p[12] = {"mapcount": -129, "private": 0}
    assert _classes(V61, p, 31) == [0, 0, 0, 0, F, F, C, 0, U, U, 0, 0, F, 0, 0, 0]
    assert _classes(V61, p, 2) == [0] * 6 + [C] + [0] * 9


def test_free_block_of_impossible_order_is_left_alone() -> None:
    # order 11 is not below LENGTH(zone.free_area): makedumpfile skips the page (no class at all) when it
    # excludes free pages; otherwise the page goes through the other classes as usual.
    p: list[dict[str, int]] = [{} for _ in range(NPAGES)]
    p[2] = {"mapcount": -129, "private": 11, "flags": _bit(23)}   # also hwpoison
    p[3] = {"mapcount": -129, "private": 10}                      # order 10: valid, pfns 3-1026 (cut at 16)
    assert _classes(V61, p, 31) == [0, 0, 0] + [F] * 13
    assert _classes(V61, p, 15) == [0, 0, H] + [0] * 13
    p[3] = {}
    p[2]["mapping"] = 0xFFFF888001234001
    assert _classes(V61, p, 8) == [0, 0, U] + [0] * 13
    assert _classes(V61, p, 31) == [0, 0, 0] + [0] * 13
