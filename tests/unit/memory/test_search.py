"""memory.search: words (widths, masks, alignment), strings across chunks, physical ranges with
missing pages, and virtual address spaces through page tables (large pages, aliases, skips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kcrash.dumps import open_dump
from kcrash.errors import FaultError
from kcrash.memory import open_kernel_memory
from kcrash.memory.search import Pattern, search_physical, search_virtual
from kcrash.memory.translate.x86_64 import X86_64PageTables
from support.pagetables import PageTableBuilder, PhysImage
from support.synthetic import make_synthetic_kernel

VALUE = 0xFEEDFACE0BADC0DE


def _reader(image: PhysImage, missing: frozenset[int] = frozenset()):  # type: ignore[no-untyped-def]
    # A physical reader that faults on the pfns in ``missing`` at their first byte, as the dumps do.
    def read(address: int, size: int) -> bytes:
        for pfn in range(address // 4096, (address + size - 1) // 4096 + 1):
            if pfn in missing:
                raise FaultError(max(address, pfn * 4096), True, "excluded")
        return image.read(address, size)

    return read


def _planted() -> tuple[PhysImage, list[int]]:
    image = PhysImage()
    where = [0x0, 0x1008, 0x3FF8, 0x400000 - 8, 0x400000, 0x7FF000]
    for at in where:
        image.write(at, VALUE.to_bytes(8, "little"))
    image.write(0x2004, VALUE.to_bytes(8, "little"))  # misaligned for 64-bit words: not a hit
    return image, where


def test_physical_words_aligned_only_across_chunk_boundaries() -> None:
    image, where = _planted()
    found = search_physical(_reader(image), [(0, 0x800000)], Pattern(VALUE))
    assert [h.address for h in found] == where
    assert found.scanned == 0x800000 and found.skipped == 0
    assert {h.value for h in found} == {VALUE}


def test_physical_range_clipping_and_missing_pages_are_skipped_and_counted() -> None:
    image, where = _planted()
    missing = frozenset({0x1, 0x7FF, 0x500})
    found = search_physical(_reader(image, missing), [(0, 0x400000), (0x400000, 0x800000)], Pattern(VALUE),
                            start=0x8, end=0x800000)
    hits = [h.address for h in found]
    assert hits == [a for a in where if a >= 0x8 and a // 4096 not in missing]
    assert found.skipped == 3 * 4096


def test_mask_ignores_the_masked_bits_and_reports_the_whole_word() -> None:
    image = PhysImage()
    for i, low in enumerate((0x11111111, 0x22222222, 0x0BADC0DE)):
        image.write(0x100 + 8 * i, ((0xFEEDFACE << 32) | low).to_bytes(8, "little"))
    image.write(0x200, ((0xFEEDFACF << 32) | 1).to_bytes(8, "little"))
    found = list(search_physical(_reader(image), [(0, 4096)], Pattern(0xFEEDFACE00000000, mask=0xFFFFFFFF)))
    assert [(h.address, h.value >> 32) for h in found] == [(0x100, 0xFEEDFACE), (0x108, 0xFEEDFACE),
                                                          (0x110, 0xFEEDFACE)]
    assert found[2].value == VALUE


@pytest.mark.parametrize("width", [1, 2, 4])
def test_narrow_widths_equal_numpy_reference(width: int) -> None:
    rng = np.random.default_rng(7)
    data = rng.integers(0, 4, size=3 * 4096, dtype=np.uint8).tobytes()
    image = PhysImage()
    image.write(0, data)
    words = np.frombuffer(data, dtype=f"<u{width}")
    expected = (np.flatnonzero(words == 2) * width).tolist()
    assert [h.address for h in search_physical(_reader(image), [(0, len(data))], Pattern(2, width))] == expected


def test_string_found_across_chunks_and_page_boundaries() -> None:
    image = PhysImage()
    needle = b"kcrash_test_do_bug"
    spots = [0x10, 0x3FF8, 0x400000 - 5, 0x401001]
    for at in spots:
        image.write(at, needle)
    found = search_physical(_reader(image), [(0, 0x402000)], Pattern(string=needle))
    assert [h.address for h in found] == spots


def test_pattern_rejects_what_does_not_fit() -> None:
    with pytest.raises(ValueError):
        Pattern(0x1FF, width=1)
    with pytest.raises(ValueError):
        Pattern(string=b"")
    with pytest.raises(ValueError):
        Pattern(1, width=3)


@pytest.mark.parametrize("levels", [4, 5])
def test_virtual_search_through_page_tables(levels: int) -> None:
    image = PhysImage()
    tables = PageTableBuilder(image, levels=levels, table_base=0x10000000)
    tables.map(0xFFFF888000000000, 0, 1 << 30, page_size=1 << 30)      # direct map, a 1 GiB page
    tables.map(0xFFFFFFFF81000000, 0x200000, 1 << 21, page_size=1 << 21)  # text, a 2 MiB page
    tables.map(0xFFFFC90000001000, 0x5000, 4096)                         # vmalloc, 4 KiB pages
    tables.map(0xFFFFC90000002000, 0x9000, 4096)
    tables.map(0x7F0000000000, 0x9000, 4096)                             # a user page (not searched)
    for at in (0x5010, 0x9FF8, 0x200040):
        image.write(at, VALUE.to_bytes(8, "little"))
    walker = X86_64PageTables(_reader(image), tables.root, levels=levels)
    kernel = 1 << 63
    hits = [h.address for h in search_virtual(walker, Pattern(VALUE), kernel)]
    assert hits == [0xFFFF888000005010, 0xFFFF888000009FF8, 0xFFFF888000200040,
                    0xFFFFC90000001010, 0xFFFFC90000002FF8, 0xFFFFFFFF81000040]
    user = [h.address for h in search_virtual(walker, Pattern(VALUE), 0, 1 << 47)]
    assert user == [0x7F0000000FF8]
    skipped = search_virtual(walker, Pattern(VALUE), kernel, skip=[(0xFFFF888000000000, 0xFFFF888040000000)])
    assert [h.address for h in skipped] == [0xFFFFC90000001010, 0xFFFFC90000002FF8, 0xFFFFFFFF81000040]
    inside = search_virtual(walker, Pattern(VALUE), 0xFFFFC90000001014, 0xFFFFC90000003000)
    assert [h.address for h in inside] == [0xFFFFC90000002FF8]


def test_virtual_search_of_a_synthetic_dump_reads_what_the_reader_reads(tmp_path: Path) -> None:
    k = make_synthetic_kernel()
    k.write_kdump(tmp_path / "d", dump_level=1)
    mem = open_kernel_memory(open_dump(tmp_path / "d"))
    assert mem.page_tables is not None
    vaddr = 0xFFFFC90000000000 + 3 * 4096 + 0x18
    word = mem.read_u64(vaddr)
    hits = {h.address for h in search_virtual(mem.page_tables, Pattern(word), 0xFFFFC90000000000,
                                              0xFFFFC90000000000 + (1 << 30))}
    assert vaddr in hits
    assert all(mem.read_u64(a) == word for a in hits)
