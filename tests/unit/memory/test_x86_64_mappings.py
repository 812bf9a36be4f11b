"""x86-64 MappingWalk: present leaf mappings in address order, merged runs, bounded on damaged tables."""

from __future__ import annotations

import pytest

from kcrash.errors import FaultError
from kcrash.memory.translate.x86_64 import MappedRun, MappingWalk, X86_64PageTables
from support.pagetables import PageTableBuilder, PhysImage


def _tables(levels: int = 4) -> tuple[PhysImage, PageTableBuilder]:
    image = PhysImage()
    tables = PageTableBuilder(image, levels=levels, table_base=0x100000)
    tables.map(0xFFFFFFFF81000000, 0x1000000, 4 << 20, page_size=1 << 21)
    tables.map(0xFFFF888000000000, 0, 1 << 30, page_size=1 << 30)
    for i in range(4):  # 3 contiguous pages, then a jump
        tables.map(0xFFFFC90000000000 + i * 4096, 0x50000 + (i + (i == 3)) * 4096, 4096)
    tables.map(0x400000, 0x70000, 8192)
    return image, tables


@pytest.mark.parametrize("levels", [4, 5])
def test_runs_in_address_order_merged(levels: int) -> None:
    image, tables = _tables(levels)
    walk = MappingWalk(X86_64PageTables(image.read, tables.root, levels=levels))
    assert list(walk) == [
        MappedRun(0x400000, 0x70000, 8192),
        MappedRun(0xFFFF888000000000, 0, 1 << 30),
        MappedRun(0xFFFFC90000000000, 0x50000, 3 * 4096),
        MappedRun(0xFFFFC90000003000, 0x54000, 4096),
        MappedRun(0xFFFFFFFF81000000, 0x1000000, 4 << 20),
    ]
    assert walk.truncated is None and walk.unreadable_tables == 0


def test_range_clips_which_tables_are_read() -> None:
    image, tables = _tables()
    walk = MappingWalk(X86_64PageTables(image.read, tables.root), 0xFFFFC90000001000, 0xFFFFC90000003000)
    assert [(r.vaddr, r.size) for r in walk] == [(0xFFFFC90000001000, 2 * 4096)]
    assert walk.tables_read == 4  # PGD, PUD, PMD, PTE of the vmalloc page only


def test_unreadable_table_page_skips_its_range_only() -> None:
    image, tables = _tables()
    walker = X86_64PageTables(image.read, tables.root)
    pte_table = walker.walk(0xFFFFC90000000000).entries[-1].table

    def read(address: int, size: int) -> bytes:
        if address // 4096 == pte_table // 4096:
            raise FaultError(address, True, "excluded")
        return image.read(address, size)

    walk = MappingWalk(X86_64PageTables(read, tables.root))
    assert [r.vaddr for r in walk] == [0x400000, 0xFFFF888000000000, 0xFFFFFFFF81000000]
    assert walk.unreadable_tables == 1


def test_damaged_tables_are_walked_once_and_stop_at_the_budget() -> None:
    # garbage: 256 table pages whose every entry is present and points at one of them; each page
    # is walked once (not 512^3 times), and the budget stops the walk with a reason
    image = PhysImage()
    for page in range(256):
        entries = [(0x200000 + ((page * 512 + i) % 256) * 4096) | 0x3 for i in range(512)]
        image.write(0x200000 + page * 4096, b"".join(e.to_bytes(8, "little") for e in entries))
    whole = MappingWalk(X86_64PageTables(image.read, 0x200000))
    runs = list(whole)
    assert whole.tables_read == 256 and whole.truncated is None and whole.shared_tables > 0
    assert all(0x200000 <= r.paddr < 0x300000 for r in runs)
    cut = MappingWalk(X86_64PageTables(image.read, 0x200000), max_tables=100)
    list(cut)
    assert cut.tables_read == 100 and cut.truncated is not None
