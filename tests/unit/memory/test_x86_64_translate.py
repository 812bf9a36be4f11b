"""x86-64 page-table walks and the kernel address space of synthetic dumps (VMCOREINFO and CR3 paths)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.dumps import open_dump
from kcrash.errors import FaultError
from kcrash.memory import open_kernel_memory
from kcrash.memory.kernel import find_panic_cpu_or_none
from kcrash.memory.translate.x86_64 import X86_64PageTables, cr3_to_pgd
from support.pagetables import PageTableBuilder, PhysImage
from support.synthetic import make_synthetic_kernel


@pytest.mark.parametrize("levels", [4, 5])
def test_walk_page_sizes(levels: int) -> None:
    image = PhysImage()
    tables = PageTableBuilder(image, levels=levels)
    tables.map(0xFFFF888000000000, 0, 1 << 30, page_size=1 << 30)
    tables.map(0xFFFFFFFF81000000, 0x200000, 1 << 21, page_size=1 << 21)
    tables.map(0x7F0000001000, 0x5000, 4096)
    walker = X86_64PageTables(image.read, tables.root, levels=levels)
    assert walker.translate(0xFFFF888000123456) == (0x123456, 1 << 30)
    assert walker.translate(0xFFFFFFFF81012345) == (0x212345, 1 << 21)
    walk = walker.walk(0x7F0000001ABC)
    assert walk.physical == 0x5ABC and len(walk.entries) == levels
    assert walk.entries[-1].flags[:2] == ("PRESENT", "RW")
    assert walker.walk(0x7F0000003000).reason == "PTE entry not present"
    assert walker.walk(0x0000800000000000).reason == "non-canonical address" or levels == 5
    with pytest.raises(FaultError):
        walker.translate(0xFFFFC90000000000)


def test_cr3_to_pgd() -> None:
    assert cr3_to_pgd(0x8000000002A44801 | 0x1000) == 0x2A44000
    assert cr3_to_pgd(0x2A45000, kernel=False) == 0x2A45000


@pytest.mark.parametrize("levels", [4, 5])
@pytest.mark.parametrize("with_vmcoreinfo", [True, False])
@pytest.mark.parametrize("fmt", ["elf", "kdump"])
def test_kernel_memory(tmp_path: Path, levels: int, with_vmcoreinfo: bool, fmt: str) -> None:
    k = make_synthetic_kernel(levels=levels, kaslr_offset=0x3C00000)
    path = tmp_path / "d"
    if fmt == "elf":
        k.write_elf(path, with_vmcoreinfo=with_vmcoreinfo)
    else:
        k.write_kdump(path, with_vmcoreinfo=with_vmcoreinfo, codec="snappy")
    mem = open_kernel_memory(open_dump(path))
    assert mem.layout.source == ("vmcoreinfo" if with_vmcoreinfo else "cr3")
    assert (mem.layout.kaslr_offset, mem.layout.phys_base, mem.layout.levels) == (k.kaslr_offset, k.phys_base,
                                                                                    levels)
    for vaddr, paddr in k.mappings.items():
        assert mem.translate(vaddr + 0x123) == paddr + 0x123
        assert mem.read(vaddr, 64) == k.image.read(paddr, 64)
    assert mem.read(k.stext + 0x1000, 5) == b"Linux"
    assert find_panic_cpu_or_none(mem) == 1
    user = mem.address_space(k.pgd)
    assert user.translate(k.stext) == 0x200000


def test_reads_cross_pages_and_fault_addresses(tmp_path: Path) -> None:
    k = make_synthetic_kernel()
    k.write_kdump(tmp_path / "d")
    mem = open_kernel_memory(open_dump(tmp_path / "d"))
    start = 0xFFFFC90000000000
    expect = b"".join(k.image.read(k.mappings[start + i * 4096], 4096) for i in range(16))
    assert mem.read(start + 100, 16 * 4096 - 200) == expect[100:-100]
    with pytest.raises(FaultError) as exc:
        mem.read(start + 16 * 4096 - 8, 16)
    assert exc.value.address == start + 16 * 4096 and not exc.value.physical
    assert mem.read_u32(k.stext + 0x1000) == int.from_bytes(b"Linu", "little")


@pytest.mark.parametrize("levels", [4, 5])
def test_cached_table_pages_agree_with_the_walk_and_never_cache_a_missing_entry(levels: int) -> None:
    image = PhysImage()
    tables = PageTableBuilder(image, levels=levels)
    tables.map(0xFFFFC90000000000, 0x40000, 16 * 4096)
    walker = X86_64PageTables(image.read, tables.root, levels=levels)
    for i in range(16):
        vaddr = 0xFFFFC90000000000 + i * 4096 + 0x18
        assert walker.translate(vaddr) == (walker.walk(vaddr).physical, 4096) == (0x40018 + i * 4096, 4096)
    with pytest.raises(FaultError):
        walker.translate(0xFFFFC90000010000)  # the next page: not mapped yet, its PTE page is cached
    tables.map(0xFFFFC90000010000, 0x90000, 4096)  # a live target maps it later
    assert walker.translate(0xFFFFC90000010010) == (0x90010, 4096)


def test_kernel_image_reads_survive_a_missing_page_table_page(tmp_path: Path) -> None:
    # The PGD page is filtered out of the dump: kernel-image addresses still translate by the image's
    # linear map (__pa_symbol), other addresses fault; an entry that is not present is never papered over.
    k = make_synthetic_kernel()
    pages = {p: d for p, d in k.pages().items() if not 0xA0 <= p < 0xC0}
    pgd_pfn = k.pgd // 4096
    del pages[pgd_pfn]
    k.write_kdump(tmp_path / "d", pages=pages, excluded=frozenset({pgd_pfn}))
    mem = open_kernel_memory(open_dump(tmp_path / "d"))
    assert mem.read(k.stext + 0x1000, 5) == b"Linux"
    assert mem.translate(k.stext + 0x1234) == k.mappings[k.stext + 0x1000] + 0x234
    with pytest.raises(FaultError) as exc:
        mem.read(0xFFFFC90000000000, 8)
    assert exc.value.physical and "PGD table not readable" in exc.value.reason


def test_unmapped_kernel_image_address_is_not_read_through_the_linear_map(tmp_path: Path) -> None:
    k = make_synthetic_kernel()
    k.write_kdump(tmp_path / "d")
    mem = open_kernel_memory(open_dump(tmp_path / "d"))
    unmapped = k.stext + 0x10000000  # inside the image's 1 GiB window, not mapped by the tables
    assert unmapped - (unmapped & 0xFFF) not in k.mappings
    with pytest.raises(FaultError) as exc:
        mem.read(unmapped, 8)
    assert not exc.value.physical
