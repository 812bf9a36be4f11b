"""
kcrash.helpers.linux.mm
=======================

Pages and the kernel's linear maps (``include/linux/mm.h``, ``include/linux/mmzone.h``,
``include/linux/page-flags.h``, ``include/linux/page-flags-layout.h``,
``arch/x86/include/asm/page_64.h``, ``arch/x86/include/asm/pgtable_64_types.h``) with nothing but
the dump: where the direct map (``PAGE_OFFSET``: ``page_offset_base``) and the ``struct page``
array (``vmemmap``: VMCOREINFO's ``SYMBOL(vmemmap)``, else ``vmemmap_base``) start,
:func:`pfn_to_page`/:func:`page_to_pfn`/:func:`virt_to_page`, :func:`in_direct_map`, which PFNs
have a ``struct page`` (:func:`for_each_valid_page_range`, from ``mem_section``), and one page's
state (:func:`page_info`): flags named by the BTF ``enum pageflags``, the node and zone in the top
bits of ``page->flags``, the page type (slab, buddy, ...: VMCOREINFO's ``PAGE_*_MAPCOUNT_VALUE``),
the compound head (``compound_head``, ``compound_info`` since v7.1), ``mapping`` and ``index``.
x86-64 with ``CONFIG_SPARSEMEM_VMEMMAP`` (every distribution kernel) only: FLATMEM and classic
SPARSEMEM are not handled, and neither are user page tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kcrash.errors import FaultError, KcrashError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.memo import per_program
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = [
    "MmLayout",
    "PageInfo",
    "compound_head",
    "decode_page_flags",
    "for_each_valid_page_range",
    "in_direct_map",
    "mm_layout",
    "page_info",
    "page_to_pfn",
    "pfn_to_page",
    "pfn_to_virt",
    "pfn_valid",
    "virt_to_page",
    "virt_to_pfn",
]

# arch/x86/include/asm/page_64_types.h and pgtable_64_types.h: the 4- and 5-level defaults (no KASLR)
_PAGE_OFFSET = {4: 0xFFFF888000000000, 5: 0xFF11000000000000}
_VMEMMAP = {4: 0xFFFFEA0000000000, 5: 0xFFD4000000000000}
_MAX_PHYSMEM_BITS = {4: 46, 5: 52}
_SECTION_SIZE_BITS = 27
_MAX_ROOTS = 1 << 16
_PAGE_SHIFT = 12
_U64_MASK = (1 << 64) - 1
#: the ``struct page`` members :func:`page_info` reads, with the names they had (newest first)
_PAGE_MEMBERS: dict[str, str | tuple[str, ...]] = {
    "flags": ("flags.f", "flags"), "mapping": "mapping", "index": ("index", "__folio_index"),
    "private": "private", "refcount": "_refcount.counter",
    # Since Linux kernel commit d50569612c29 (v7.1) compound_head is compound_info.
    "compound": ("compound_info", "compound_head"),
    "mapcount": ("_mapcount.counter", "page_type"),
}


@dataclass(frozen=True, slots=True)
class MmLayout:
    """Where this kernel keeps its pages (``struct page`` array and direct map), found once per program.

    :param page_offset: ``PAGE_OFFSET``, the start of the direct map
    :param vmemmap: the address of the ``struct page`` of PFN 0 (``vmemmap``)
    :param sizeof_page: ``sizeof(struct page)``
    :param valid: the PFNs that have a ``struct page``, as sorted ``[start, end)`` ranges
    :param min_low_pfn: ``min_low_pfn``, the direct map's first PFN
    :param max_pfn: ``max_pfn``, the direct map's last PFN
    :param nodes_shift: the bit width of the node number in ``page->flags`` below bit 64 (0: not there)
    :param zones_shift: the bit width of the zone number in ``page->flags`` (0: not there)
    :param page_shift: ``PAGE_SHIFT``

    >>> layout = mm_layout(prog)
    >>> layout.pfn_of_page(layout.vmemmap + 3 * layout.sizeof_page + 8)
    3
    """

    page_offset: int
    vmemmap: int
    sizeof_page: int
    valid: tuple[tuple[int, int], ...]
    min_low_pfn: int
    max_pfn: int
    nodes_shift: int
    zones_shift: int
    page_shift: int = _PAGE_SHIFT

    def pfn_of_page(self, page: int) -> int | None:
        """Return the PFN whose ``struct page`` holds address ``page`` (any byte of it).

        :param page: an address inside the ``struct page`` array
        :return: the PFN, None when ``page`` is not in the ``struct page`` of a valid PFN
        """
        if page < self.vmemmap:
            return None
        pfn = (page - self.vmemmap) // self.sizeof_page
        return pfn if self.pfn_valid(pfn) else None

    def pfn_valid(self, pfn: int) -> bool:
        """Return whether a PFN has a ``struct page``, like the kernel's ``pfn_valid(pfn)``.

        :param pfn: a page frame number
        :return: True if one of :attr:`valid`'s ranges holds ``pfn``
        """
        return any(start <= pfn < end for start, end in self.valid)

    def in_direct_map(self, address: int) -> bool:
        """Return whether ``address`` is in the direct map of RAM (``[min_low_pfn, max_pfn]`` at ``PAGE_OFFSET``).

        :param address: a kernel virtual address
        :return: True inside the direct map
        """
        start = self.page_offset + (self.min_low_pfn << self.page_shift)
        return start <= address < self.page_offset + ((self.max_pfn + 1) << self.page_shift)


@per_program
def mm_layout(prog: Program) -> MmLayout:
    """Return this kernel's :class:`MmLayout`, found once per program.

    From VMCOREINFO's ``SYMBOL(vmemmap)`` or ``vmemmap_base``, ``page_offset_base``, ``mem_section`` and
    ``struct page``.

    :param prog: the program
    :return: the layout

    >>> mm_layout(prog).vmemmap
    18446719884453740544
    """
    return _build_layout(prog)


def _levels(prog: Program) -> int:
    info = prog.vmcoreinfo
    return 5 if info is not None and info.get_number_or_none("pgtable_l5_enabled") else 4


def _u64_or_none(prog: Program, name: str) -> int | None:
    try:
        return prog.read_u64(prog.symbol_address(name))
    except KcrashError:
        return None


def _vmemmap(prog: Program, levels: int, sizeof_page: int) -> int:
    # VMCOREINFO has SYMBOL(vmemmap) since Linux kernel commit 0c6c7d7ad8a6 (v5.12 era); before,
    # the KASLR'd base is the variable vmemmap_base (CONFIG_DYNAMIC_MEMORY_LAYOUT, v4.17). arm64
    # without SYMBOL(vmemmap) states NUMBER(VMEMMAP_START) and NUMBER(PHYS_OFFSET) (memstart_addr):
    # vmemmap = (struct page *)VMEMMAP_START - (memstart_addr >> PAGE_SHIFT) (asm/memory.h).
    info = prog.vmcoreinfo
    found = info.get_symbol_or_none("vmemmap") if info is not None else None
    found = found or _u64_or_none(prog, "vmemmap_base")
    if found is None and info is not None:
        start, phys = info.get_number_or_none("VMEMMAP_START"), info.get_number_or_none("PHYS_OFFSET")
        if start is not None and phys is not None:
            found = (start - (phys >> _PAGE_SHIFT) * sizeof_page) & _U64_MASK
    return found or _VMEMMAP[levels]


def _page_offset(prog: Program, levels: int) -> int:
    # x86-64: the KASLR'd variable page_offset_base (else the fixed default). arm64 states
    # NUMBER(PHYS_OFFSET) (memstart_addr) and NUMBER(VA_BITS) in VMCOREINFO: __va(pa) = pa -
    # PHYS_OFFSET + PAGE_OFFSET with PAGE_OFFSET = -(1 << VA_BITS), the configured size (a 52-bit
    # kernel on a 48-bit CPU lowers memstart_addr instead, arm64_memblock_init()); returned as the
    # address of pfn 0.
    found = _u64_or_none(prog, "page_offset_base")
    if found is not None:
        return found
    info, layout = prog.vmcoreinfo, prog.layout
    phys = info.get_number_or_none("PHYS_OFFSET") if info is not None else None
    va_bits = (info.get_number_or_none("VA_BITS") if info is not None else None) or \
        (layout.va_bits if layout is not None else 0)
    if phys is not None and va_bits:
        return ((1 << 64) - (1 << va_bits) - phys) & _U64_MASK
    return _PAGE_OFFSET[levels]


def _build_layout(prog: Program) -> MmLayout:
    levels = _levels(prog)
    sizeof_page = prog.type("struct page").sizeof()
    max_pfn = _u64_or_none(prog, "max_pfn") or 0
    return MmLayout(
        page_offset=_page_offset(prog, levels),
        vmemmap=_vmemmap(prog, levels, sizeof_page), sizeof_page=sizeof_page,
        valid=_valid_ranges(prog, levels, max_pfn), min_low_pfn=_u64_or_none(prog, "min_low_pfn") or 0,
        max_pfn=max_pfn, nodes_shift=_nodes_shift(prog), zones_shift=_zones_shift(prog))


def _number(prog: Program, name: str, default: int) -> int:
    info = prog.vmcoreinfo
    found = info.get_number_or_none(name) if info is not None else None
    return default if found is None else found


def _mem_section_roots(prog: Program, levels: int, section_size: int) -> tuple[int, int]:
    # (address of the root pointer array, number of roots). With CONFIG_SPARSEMEM_EXTREME,
    # ``struct mem_section **mem_section``; VMCOREINFO's SYMBOL(mem_section) is its value
    # (VMCOREINFO_SYMBOL_ARRAY, kernel/vmcore_info.c) and LENGTH(mem_section) NR_SECTION_ROOTS.
    info = prog.vmcoreinfo
    roots = info.get_symbol_or_none("mem_section") if info is not None else None
    if roots is None:
        roots = prog.read_u64(prog.symbol_address("mem_section"))
    length = info.lengths.get("mem_section") if info is not None else None
    if length is None:
        physmem = _number(prog, "MAX_PHYSMEM_BITS", _MAX_PHYSMEM_BITS[levels])
        sections = 1 << (physmem - _number(prog, "SECTION_SIZE_BITS", _SECTION_SIZE_BITS))
        length = max(1, sections // ((1 << _PAGE_SHIFT) // section_size))
    return roots, min(int(length), _MAX_ROOTS)


def _section_bit(prog: Program, name: str, default: int) -> int:
    # enum { SECTION_MARKED_PRESENT_BIT, SECTION_HAS_MEM_MAP_BIT, ... } since Linux kernel commit
    # ed7802dd48f7 (v5.17); plain #defines of the same bits before.
    try:
        return 1 << int(prog.constant(name))
    except KcrashError:
        return 1 << default


def _valid_ranges(prog: Program, levels: int, max_pfn: int) -> tuple[tuple[int, int], ...]:
    # Sections whose section_mem_map has SECTION_HAS_MEM_MAP (valid_section()), merged into PFN
    # ranges. Validity is per section: hot-added sections' subsection maps are not read.
    try:
        section_size = prog.type("struct mem_section").sizeof()
        roots_at, nr_roots = _mem_section_roots(prog, levels, section_size)
        roots = np.frombuffer(prog.read(roots_at, nr_roots * 8), dtype=np.uint64)
    except KcrashError:
        return ((0, max_pfn),) if max_pfn else ()
    per_root = (1 << _PAGE_SHIFT) // section_size
    pages_per_section = 1 << (_number(prog, "SECTION_SIZE_BITS", _SECTION_SIZE_BITS) - _PAGE_SHIFT)
    has_mem_map = _section_bit(prog, "SECTION_HAS_MEM_MAP_BIT", 1)
    valid: list[int] = []
    for root_nr in np.flatnonzero(roots).tolist():
        try:
            maps = np.frombuffer(prog.read(int(roots[root_nr]), per_root * section_size), dtype=np.uint64)
        except FaultError:
            continue
        present = np.flatnonzero(maps[:: section_size // 8] & np.uint64(has_mem_map))
        valid.extend((root_nr * per_root + present).tolist())
    return _merge(valid, pages_per_section)


def _merge(sections: list[int], pages_per_section: int) -> tuple[tuple[int, int], ...]:
    ranges: list[tuple[int, int]] = []
    for nr in sections:
        start = nr * pages_per_section
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + pages_per_section)
        else:
            ranges.append((start, start + pages_per_section))
    return tuple(ranges)


def _nodes_shift(prog: Program) -> int:
    # NODES_SHIFT = log2(MAX_NUMNODES); VMCOREINFO's LENGTH(node_data) is MAX_NUMNODES, else the
    # length of kmem_cache.node[] is. With SPARSEMEM_VMEMMAP there is no section field above it
    # (include/linux/page-flags-layout.h), so the node is the top NODES_WIDTH bits.
    info = prog.vmcoreinfo
    nodes = info.lengths.get("node_data") if info is not None else None
    if nodes is None:
        try:
            member, _ = prog.type("struct kmem_cache").member("node")
            nodes = member.type.strip_typedefs().length or 1
        except KcrashError:
            nodes = 1
    return max(int(nodes) - 1, 0).bit_length()


def _zones_shift(prog: Program) -> int:
    # ZONES_SHIFT from MAX_NR_ZONES (include/linux/page-flags-layout.h): <= 1 -> 0, <= 2 -> 1,
    # <= 4 -> 2, else 3.
    try:
        zones = int(prog.constant("__MAX_NR_ZONES"))
    except KcrashError:
        return 0
    return 0 if zones <= 1 else 1 if zones <= 2 else 2 if zones <= 4 else 3


def for_each_valid_page_range(prog: Program) -> Iterator[tuple[int, int]]:
    """Iterate over every ``[start_pfn, end_pfn)`` range of PFNs with a ``struct page``, ascending.

    :param prog: the program
    :return: an iterator of ``(start_pfn, end_pfn)`` tuples

    >>> list(for_each_valid_page_range(prog))
    [(0, 65536)]
    """
    yield from mm_layout(prog).valid


def pfn_valid(prog: Program, pfn: int) -> bool:
    """Return whether ``pfn`` has a ``struct page``, like the kernel's ``pfn_valid(pfn)``.

    :param prog: the program
    :param pfn: a page frame number
    :return: True if the PFN is in a valid range (see :func:`for_each_valid_page_range`)

    >>> pfn_valid(prog, 0x1000)
    True
    """
    return mm_layout(prog).pfn_valid(pfn)


def pfn_to_page(prog: Program, pfn: int) -> Object:
    """Return the ``struct page`` of a PFN, like the kernel's ``pfn_to_page(pfn)``: ``vmemmap + pfn``.

    :param prog: the program
    :param pfn: a page frame number
    :return: ``struct page *`` (not checked against :func:`pfn_valid`)

    >>> hex(int(pfn_to_page(prog, 0x1000)))
    '0xffffea0000040000'
    """
    layout = mm_layout(prog)
    return Object(prog, prog.pointer_type("struct page"), layout.vmemmap + pfn * layout.sizeof_page)


def page_to_pfn(page: Object) -> int:
    """Return the PFN of a ``struct page``, like the kernel's ``page_to_pfn(page)``: ``page - vmemmap``.

    :param page: ``struct page *``
    :return: the page frame number

    >>> page_to_pfn(pfn_to_page(prog, 0x1000))
    4096
    """
    layout = mm_layout(page.prog_)
    return (int(page) - layout.vmemmap) // layout.sizeof_page


def pfn_to_virt(prog: Program, pfn: int) -> int:
    """Return the direct-map address of a PFN, like the kernel's ``pfn_to_virt(pfn)``.

    :param prog: the program
    :param pfn: a page frame number
    :return: ``PAGE_OFFSET + (pfn << PAGE_SHIFT)``

    >>> hex(pfn_to_virt(prog, 0x1000))
    '0xffff888001000000'
    """
    layout = mm_layout(prog)
    return layout.page_offset + (pfn << layout.page_shift)


def virt_to_pfn(prog: Program, address: int) -> int:
    """Return the PFN of a direct-map address, like the kernel's ``virt_to_pfn(addr)``.

    That is ``__pa(addr) >> PAGE_SHIFT``.

    :param prog: the program
    :param address: a direct-map address (not checked: see :func:`in_direct_map`)
    :return: the page frame number

    >>> virt_to_pfn(prog, 0xffff888001000000)
    4096
    """
    layout = mm_layout(prog)
    return (address - layout.page_offset) >> layout.page_shift


def virt_to_page(prog: Program, address: int) -> Object:
    """Return the ``struct page`` of a direct-map address, like the kernel's ``virt_to_page(addr)``.

    :param prog: the program
    :param address: a direct-map address (not checked: see :func:`in_direct_map`)
    :return: ``struct page *``

    >>> page_info(prog, virt_to_page(prog, 0xffff888001000000)).flag_names
    ('PG_reserved',)
    """
    return pfn_to_page(prog, virt_to_pfn(prog, address))


def in_direct_map(prog: Program, address: int) -> bool:
    """Return whether ``address`` lies in the direct map of RAM.

    That is ``PAGE_OFFSET`` + ``[min_low_pfn, max_pfn]``, as drgn's helper of that name decides.

    :param prog: the program
    :param address: a kernel virtual address
    :return: True inside the direct map

    >>> in_direct_map(prog, 0xffff888001000000)
    True
    """
    return mm_layout(prog).in_direct_map(address)


# -- one page ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageInfo:
    """The state of one ``struct page`` (``include/linux/mm_types.h``), as :func:`page_info` reads it.

    :param address: the ``struct page``'s address
    :param pfn: its page frame number
    :param flags: ``page->flags``
    :param flag_names: the names of the page flags set (``PG_slab`` style, see :func:`decode_page_flags`)
    :param node: the NUMA node from the flags (None when this kernel keeps it elsewhere)
    :param zone: the zone's name from the flags (``"Normal"``; None when kept elsewhere)
    :param refcount: ``page->_refcount``
    :param mapcount: ``page->_mapcount + 1`` (0 for a typed page)
    :param page_type: ``"slab"``, ``"buddy"``, ``"hugetlb"``, ``"offline"``... or None
    :param mapping: ``page->mapping``
    :param index: ``page->index``
    :param private: ``page->private``
    :param head: the compound head's address (``address`` for a page that is not a tail page)

    >>> info = page_info(prog, pfn_to_page(prog, 0x1000))
    >>> info.page_type, info.refcount
    (None, 1)
    """

    address: int
    pfn: int
    flags: int
    flag_names: tuple[str, ...]
    node: int | None
    zone: str | None
    refcount: int
    mapcount: int
    page_type: str | None
    mapping: int
    index: int
    private: int
    head: int


@dataclass(frozen=True, slots=True)
class _PageDecoder:
    layout: StructLayout
    flag_names: dict[int, str]
    nr_flags: int
    zone_names: dict[int, str]
    page_types: dict[int, str]
    slab_flag: int | None
    compound_mask: bool




def _enum_names(prog: Program, name: str, below: int | None) -> dict[int, str]:
    # value -> the first enumerator of that value (the kernel lists the canonical name first)
    try:
        enum = prog.type(name).strip_typedefs()
    except KcrashError:
        return {}
    out: dict[int, str] = {}
    for e in enum.enumerators or ():
        if (below is None or e.value < below) and not e.name.startswith("__"):
            out.setdefault(e.value, e.name)
    return out


def _page_types(prog: Program) -> dict[int, str]:
    # VMCOREINFO NUMBER(PAGE_<TYPE>_MAPCOUNT_VALUE): the _mapcount (page_type) value of such pages
    info = prog.vmcoreinfo
    if info is None:
        return {}
    return {value & 0xFFFFFFFF: key[len("PAGE_"):-len("_MAPCOUNT_VALUE")].lower()
            for key, value in info.numbers.items() if key.startswith("PAGE_") and key.endswith("_MAPCOUNT_VALUE")}


def _slab_flag(prog: Program) -> int | None:
    # Until Linux kernel commit 46df8e73a4a3 (v6.10) slab pages carry PG_slab; since, a page type.
    try:
        return int(prog.constant("PG_slab"))
    except KcrashError:
        info = prog.vmcoreinfo
        return info.get_number_or_none("PG_slab") if info is not None else None


def _compound_mask(prog: Program) -> bool:
    # Since Linux kernel commit 8c846c879e22 (v7.1) compound_info holds a mask of the head's
    # address when sizeof(struct page) is a power of two and HVO is built in (struct zone has
    # vmemmap_tails); compound_head() then ANDs it with the page address.
    page = prog.type("struct page")
    size = page.sizeof()
    try:
        zone_has = prog.type("struct zone").has_member("vmemmap_tails")
    except KcrashError:
        zone_has = False
    return page.has_member("compound_info") and size & (size - 1) == 0 and zone_has


def _probe(t: Type, paths: tuple[str, ...]) -> str:
    # the first of ``paths`` that ``t`` has (the last one when none: StructLayout says why)
    for path in paths:
        try:
            t.walk_path(path)
        except (KcrashError, TypeError):
            continue
        return path
    return paths[-1]


@per_program
def _decoder(prog: Program) -> _PageDecoder:
    try:
        nr_flags = int(prog.constant("__NR_PAGEFLAGS"))
    except KcrashError:
        nr_flags = 0
    try:
        zones = int(prog.constant("__MAX_NR_ZONES"))
    except KcrashError:
        zones = 0
    page = prog.type("struct page")
    members = {name: _probe(page, (paths,) if isinstance(paths, str) else paths)
               for name, paths in _PAGE_MEMBERS.items()}
    return _PageDecoder(StructLayout(page, members),
                        _enum_names(prog, "enum pageflags", nr_flags), nr_flags,
                        _enum_names(prog, "enum zone_type", zones), _page_types(prog), _slab_flag(prog),
                        _compound_mask(prog))


def decode_page_flags(prog: Program, flags: int) -> tuple[str, ...]:
    """Return the names of the page flags set in ``flags``.

    Those are the low ``__NR_PAGEFLAGS`` bits of ``page->flags``, named by the BTF ``enum pageflags``.

    :param prog: the program
    :param flags: ``page->flags``
    :return: the names (``PG_*``), lowest bit first; ``bitN`` for a bit the enum does not name

    >>> decode_page_flags(prog, 0x200)
    ('PG_workingset',)
    """
    decoder = _decoder(prog)
    names = decoder.flag_names
    return tuple(names.get(bit, f"bit{bit}") for bit in range(decoder.nr_flags) if flags >> bit & 1)


def _node_zone(prog: Program, flags: int) -> tuple[int | None, str | None]:
    layout, decoder = mm_layout(prog), _decoder(prog)
    node = flags >> (64 - layout.nodes_shift) if layout.nodes_shift else None
    zone_shift = 64 - layout.nodes_shift - layout.zones_shift
    zone = (flags >> zone_shift) & ((1 << layout.zones_shift) - 1) if layout.zones_shift else None
    return node, None if zone is None else decoder.zone_names.get(zone, str(zone))


def _page_type(decoder: _PageDecoder, flags: int, mapcount: int) -> str | None:
    found = decoder.page_types.get(mapcount & 0xFFFFFFFF)
    if found is None and decoder.slab_flag is not None and flags >> decoder.slab_flag & 1:
        return "slab"
    return found


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >> 31 else value


def _head(decoder: _PageDecoder, address: int, compound: int) -> int:
    if not compound & 1:
        return address
    return address & compound if decoder.compound_mask else compound - 1


def page_info(prog: Program, page: int | Object) -> PageInfo:
    """Return the state of one ``struct page``, read with one read of its members.

    :param prog: the program
    :param page: ``struct page *`` (or its address)
    :return: the page's state
    :raises FaultError: if the ``struct page`` is not in the dump

    >>> page_info(prog, pfn_to_page(prog, 0x1000)).flag_names
    ('PG_reserved',)
    """
    address = int(page)
    decoder = _decoder(prog)
    members = decoder.layout.read(prog, address)
    flags, mapcount = members.value("flags"), members.value("mapcount")
    node, zone = _node_zone(prog, flags)
    page_type = _page_type(decoder, flags, mapcount)
    layout = mm_layout(prog)
    return PageInfo(
        address=address, pfn=(address - layout.vmemmap) // layout.sizeof_page, flags=flags,
        flag_names=decode_page_flags(prog, flags), node=node, zone=zone, refcount=members.value("refcount"),
        mapcount=0 if page_type is not None else _signed32(mapcount) + 1,
        page_type=page_type, mapping=members.value("mapping"), index=members.value("index"),
        private=members.value("private"), head=_head(decoder, address, members.value("compound")))


def compound_head(page: Object) -> Object:
    """Return the head page of a compound page's tail page, like the kernel's ``compound_head(page)``.

    :param page: ``struct page *``
    :return: ``struct page *``: the head page for a tail page, else ``page`` itself
    :raises FaultError: if the ``struct page`` cannot be read

    >>> head = compound_head(pfn_to_page(prog, 0x1001))
    """
    prog = page.prog_
    decoder = _decoder(prog)
    address = int(page)
    head = _head(decoder, address, decoder.layout.read_value(prog, address, "compound"))
    t = page.type_ if page.type_.strip_typedefs().kind is TypeKind.POINTER else prog.pointer_type("struct page")
    return Object(prog, t, head)
