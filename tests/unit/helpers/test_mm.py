"""mm helpers on a synthetic kernel: the layout from page_offset_base/vmemmap_base and VMCOREINFO,
valid PFN ranges from mem_section (holes where a section has no mem_map), PFN/page/virtual
conversions, the direct map's extent, page flags named by enum pageflags (first name of an alias),
node and zone from the top of page->flags, page types from VMCOREINFO, the compound head, and the
fallbacks when VMCOREINFO is absent."""

from __future__ import annotations

from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.helpers.linux.mm import (
    _page_offset,
    _vmemmap,
    compound_head,
    decode_page_flags,
    for_each_valid_page_range,
    in_direct_map,
    mm_layout,
    page_info,
    page_to_pfn,
    pfn_to_page,
    pfn_to_virt,
    pfn_valid,
    virt_to_page,
    virt_to_pfn,
)
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap
from kcrash.types.program import Program
from support.mm_kernel import PAGE, PAGE_OFFSET, PG, VMEMMAP, Kernel


def test_layout_and_valid_ranges() -> None:
    prog = Kernel().prog
    layout = mm_layout(prog)
    assert (layout.page_offset, layout.vmemmap, layout.sizeof_page) == (PAGE_OFFSET, VMEMMAP, 64)
    assert (layout.min_low_pfn, layout.max_pfn, layout.nodes_shift, layout.zones_shift) == (1, 15, 6, 2)
    assert list(for_each_valid_page_range(prog)) == [(0, 16), (24, 32)]
    assert [pfn_valid(prog, pfn) for pfn in (0, 15, 16, 23, 24, 31, 32)] == [True, True, False, False, True, True,
                                                                              False]
    assert mm_layout(prog) is layout  # once per program


def test_conversions() -> None:
    prog = Kernel().prog
    page = pfn_to_page(prog, 5)
    assert int(page) == VMEMMAP + 5 * 64 and page_to_pfn(page) == 5
    assert pfn_to_virt(prog, 5) == PAGE_OFFSET + 5 * PAGE
    assert virt_to_pfn(prog, PAGE_OFFSET + 5 * PAGE + 123) == 5
    assert int(virt_to_page(prog, PAGE_OFFSET + 5 * PAGE + 123)) == VMEMMAP + 5 * 64
    # [min_low_pfn, max_pfn] at PAGE_OFFSET
    assert not in_direct_map(prog, PAGE_OFFSET + PAGE - 1)
    assert in_direct_map(prog, PAGE_OFFSET + PAGE) and in_direct_map(prog, PAGE_OFFSET + 16 * PAGE - 1)
    assert not in_direct_map(prog, PAGE_OFFSET + 16 * PAGE)
    assert mm_layout(prog).pfn_of_page(VMEMMAP + 5 * 64 + 63) == 5
    assert mm_layout(prog).pfn_of_page(VMEMMAP + 20 * 64) is None


def test_page_flags_names() -> None:
    prog = Kernel().prog
    flags = 1 << PG["PG_locked"] | 1 << PG["PG_checked"] | 1 << PG["PG_reserved"] | 1 << 21
    # PG_owner_priv_1 and PG_checked share bit 8: the first enumerator names it; bit 21 has no name
    assert decode_page_flags(prog, flags) == ("PG_locked", "PG_owner_priv_1", "PG_reserved", "bit21")
    assert decode_page_flags(prog, 1 << 40) == ()  # above __NR_PAGEFLAGS: node/zone bits


def test_page_info() -> None:
    k = Kernel()
    node, zone = 3, 2
    flags = node << 58 | zone << 56 | 1 << PG["PG_reserved"]
    k.page(4, flags=flags, refcount=2, mapcount=0, mapping=0xFFFF888000001001, index=7)
    info = page_info(k.prog, pfn_to_page(k.prog, 4))
    assert (info.pfn, info.flags, info.flag_names, info.node, info.zone) == (4, flags, ("PG_reserved",), 3,
                                                                            "ZONE_NORMAL")
    assert (info.refcount, info.mapcount, info.page_type, info.mapping, info.index) == \
        (2, 1, None, 0xFFFF888000001001, 7)
    assert info.head == info.address


def test_page_types_and_compound_head() -> None:
    k = Kernel()
    k.page(6, mapcount=0xF0000000 - (1 << 32))  # PAGE_BUDDY_MAPCOUNT_VALUE from VMCOREINFO
    k.page(7, flags=1 << PG["PG_slab"])  # PG_slab (before v6.10)
    head = k.page(8, flags=1 << PG["PG_head"])
    tail = k.page(9, compound_head=head + 1)
    assert page_info(k.prog, VMEMMAP + 6 * 64).page_type == "buddy"
    assert page_info(k.prog, VMEMMAP + 7 * 64).page_type == "slab"
    assert page_info(k.prog, tail).head == head
    assert int(compound_head(pfn_to_page(k.prog, 9))) == head
    assert int(compound_head(pfn_to_page(k.prog, 8))) == head


def test_without_vmcoreinfo_the_x86_64_defaults_and_the_variables() -> None:
    k = Kernel()
    k.prog.vmcoreinfo = None
    layout = mm_layout(k.prog)
    assert (layout.page_offset, layout.vmemmap) == (PAGE_OFFSET, VMEMMAP)  # from the variables
    # no SYMBOL(mem_section): the kallsyms symbol is absent too, so every PFN up to max_pfn is valid
    assert layout.valid == ((0, 15),)


def test_exports_and_docstring() -> None:
    import inspect

    from kcrash.helpers.linux import mm as module

    public = {n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None)
              == module.__name__ and (inspect.isfunction(v) or inspect.isclass(v))}
    assert public <= set(module.__all__)
    assert module.__doc__ is not None and "include/linux/" in module.__doc__


def test_arm64_linear_map_and_vmemmap_from_vmcoreinfo() -> None:
    # arm64 has no page_offset_base/vmemmap_base: VMCOREINFO's PHYS_OFFSET, VA_BITS and VMEMMAP_START
    # (Debian 6.1 arm64's values) give __va() and vmemmap; pfn 0's address is PAGE_OFFSET - PHYS_OFFSET

    info = parse_vmcoreinfo("NUMBER(VA_BITS)=48\nNUMBER(PHYS_OFFSET)=0x40000000\n"
                            "NUMBER(VMEMMAP_START)=0xfffffc0000000000\n")
    prog = Program(MemoryReader(SegmentMap()), vmcoreinfo=info)
    page_offset = _page_offset(prog, 4)
    assert (page_offset + 0x40000000) % (1 << 64) == 0xFFFF000000000000  # __va(PHYS_OFFSET) = PAGE_OFFSET
    assert _vmemmap(prog, 4, 64) == 0xFFFFFC0000000000 - (0x40000000 >> 12) * 64
