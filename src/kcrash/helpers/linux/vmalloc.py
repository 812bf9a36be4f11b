"""
kcrash.helpers.linux.vmalloc
============================

The vmalloc/vmap address space (``include/linux/vmalloc.h``, ``mm/vmalloc.c``):
:func:`for_each_vmap_area` yields every busy ``struct vmap_area`` as a :class:`VmapArea` (its
range, its ``struct vm_struct``: flags, size, pages, and the ``caller`` that allocated it), and
:func:`find_vmap_area` finds the one holding an address by bisection over them, sorted once per
program. The busy areas are the ``vmap_area_list`` list before Linux kernel commit d093602919ad
(v6.9), and each ``vmap_nodes[i].busy.head`` list since (probed by symbol, never by version).
:func:`vmalloc_to_pfn`/:func:`vmalloc_to_page` follow the kernel page tables. Lazily freed areas
(``purge_vmap_area_list``, ``vn->lazy``) are not listed: they are not allocated.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.errors import KcrashError, SymbolNotFoundError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.mm import pfn_to_page
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["VmapArea", "VmapAreas", "find_vmap_area", "for_each_vmap_area", "vmalloc_to_page",
           "vmalloc_to_pfn", "vmap_areas"]

_MAX_AREAS = 1 << 20
_MAX_NODES = 4096
_PAGE_SHIFT = 12
_VA_MEMBERS = ("va_start", "va_end", "vm")
_VM_MEMBERS: dict[str, str | tuple[str, ...]] = {
    "addr": "addr", "size": "size", "flags": "flags", "pages": "pages", "nr_pages": "nr_pages",
    "caller": "caller", "phys_addr": "phys_addr"}
# include/linux/vmalloc.h: VM_IOREMAP 0x1, VM_ALLOC 0x2, VM_MAP 0x4, VM_USERMAP 0x8, VM_DMA_COHERENT
# 0x10, VM_UNINITIALIZED 0x20, VM_NO_GUARD 0x40, VM_KASAN 0x80, VM_FLUSH_RESET_PERMS 0x100,
# VM_MAP_PUT_PAGES 0x200, VM_ALLOW_HUGE_VMAP 0x400 (the set moved little; shown as a hint only)
_VM_FLAGS = ((0x1, "ioremap"), (0x2, "vmalloc"), (0x4, "vmap"), (0x8, "user"), (0x10, "dma-coherent"),
             (0x20, "uninitialized"), (0x40, "no-guard"))


@dataclass(frozen=True, slots=True)
class VmapArea:
    """One busy ``struct vmap_area`` and, when it has one, its ``struct vm_struct``.

    :param address: the ``struct vmap_area``'s address
    :param start: ``va_start``
    :param end: ``va_end`` (exclusive)
    :param vm: the ``struct vm_struct *``, 0 for none (vm_map_ram areas, per-CPU chunks being set up)
    :param flags: ``vm->flags`` (``VM_*``, see :attr:`flag_names`)
    :param size: ``vm->size``, the guard page included unless ``VM_NO_GUARD``
    :param nr_pages: ``vm->nr_pages``
    :param pages: ``vm->pages``, the address of the ``struct page *`` array
    :param caller: ``vm->caller``, a return address in the allocating function
    :param phys_addr: ``vm->phys_addr`` (ioremap areas)

    >>> buf = prog.read_u64(prog.symbol_address("kcrash_test_vmalloc_buf"))
    >>> area = find_vmap_area(prog, buf)
    >>> area.flag_names
    ('vmalloc',)
    """

    address: int
    start: int
    end: int
    vm: int
    flags: int = 0
    size: int = 0
    nr_pages: int = 0
    pages: int = 0
    caller: int = 0
    phys_addr: int = 0

    @property
    def flag_names(self) -> tuple[str, ...]:
        """The names of the ``VM_*`` bits set in :attr:`flags`.

        Named as ``/proc/vmallocinfo`` prints them (``VM_ALLOC`` is ``vmalloc``;
        ``include/linux/vmalloc.h``).

        :return: the names, lowest bit first
        """
        return tuple(name for bit, name in _VM_FLAGS if self.flags & bit)


@dataclass(frozen=True, slots=True)
class VmapAreas:
    """Every busy vmap area, sorted by start, and why the walk stopped early.

    :param areas: the areas, ascending by ``start``
    :param starts: each area's ``start``, for bisecting
    :param truncated: why the walk stopped early, None if it did not

    >>> areas = vmap_areas(prog)
    >>> areas.find(prog.read_u64(prog.symbol_address("kcrash_test_vmalloc_buf"))) is not None
    True
    """

    areas: tuple[VmapArea, ...]
    starts: tuple[int, ...]
    truncated: str | None

    def find(self, address: int) -> VmapArea | None:
        """Return the area whose ``[start, end)`` holds ``address``.

        :param address: a kernel virtual address
        :return: the area, or None
        """
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.areas[i].end:
            return self.areas[i]
        return None


_CACHE = "kcrash.helpers.linux.vmalloc.vmap_areas"  # prog.cache key


def _declare(prog: Program) -> None:
    # mm/vmalloc.c globals (no BTF VAR for them): only the types are ours to give.
    for name, spec in (("vmap_area_list", "struct list_head"), ("vmap_nodes", "struct vmap_node *"),
                       ("nr_vmap_nodes", "unsigned int")):
        try:
            prog.variable_type(name)
        except KcrashError:
            prog.declare(name, spec)


def _busy_heads(prog: Program) -> list[Object]:
    # Since Linux kernel commit d093602919ad (v6.9) busy areas are on per-node lists
    # (vmap_nodes[i].busy.head, nr_vmap_nodes of them); before, on vmap_area_list.
    _declare(prog)
    if "vmap_nodes" in prog:
        nodes = prog["vmap_nodes"]
        count = min(int(prog["nr_vmap_nodes"]), _MAX_NODES) if "nr_vmap_nodes" in prog else 1
        return [nodes[i].busy.head.address_of_() for i in range(count)]
    if "vmap_area_list" in prog:
        return [prog["vmap_area_list"].address_of_()]
    raise SymbolNotFoundError("neither vmap_nodes nor vmap_area_list: cannot find the vmap areas")


def _area(prog: Program, va_layout: StructLayout, vm_layout: StructLayout, address: int) -> VmapArea:
    va = va_layout.read(prog, address)
    vm = va.value("vm")
    start, end = va.value("va_start"), va.value("va_end")
    if not vm:
        return VmapArea(address, start, end, 0)
    s = vm_layout.read(prog, vm)
    return VmapArea(address, start, end, vm, s.value("flags"), s.value("size"), s.value("nr_pages"),
                    s.value("pages"), s.value("caller"), s.value("phys_addr"))


def vmap_areas(prog: Program) -> VmapAreas:
    """Return every busy vmap area, sorted by address.

    From ``vmap_area_list`` before v6.9, each ``vmap_nodes[i].busy.head`` since; walked once per
    program.

    A broken list ends the walk, with :attr:`VmapAreas.truncated` saying where.

    :param prog: the program
    :return: the areas
    :raises FaultError: if the list head cannot be read

    >>> len(vmap_areas(prog).areas)
    121
    """
    found: VmapAreas | None = prog.cache.get(_CACHE)
    if found is None:
        found = prog.cache[_CACHE] = _walk(prog)
    return found


def _walk(prog: Program) -> VmapAreas:
    va_layout = StructLayout(prog.type("struct vmap_area"), _VA_MEMBERS)
    vm_layout = StructLayout(prog.type("struct vm_struct"), _VM_MEMBERS)
    areas: list[VmapArea] = []
    truncated = None
    for head in _busy_heads(prog):
        walk = list_for_each_entry("struct vmap_area", head, "list", limit=_MAX_AREAS)
        try:
            areas.extend(_area(prog, va_layout, vm_layout, int(va)) for va in walk)
        except KcrashError as exc:
            walk.truncated = str(exc)
        truncated = truncated or walk.truncated
    areas.sort(key=lambda a: a.start)
    return VmapAreas(tuple(areas), tuple(a.start for a in areas), truncated)


def for_each_vmap_area(prog: Program) -> Iterator[VmapArea]:
    """Iterate over every busy vmap area (``struct vmap_area``), ascending by address.

    :param prog: the program
    :return: an iterator of :class:`VmapArea`

    >>> [hex(va.start) for va in for_each_vmap_area(prog)][:1]
    ['0xffffc90000000000']
    """
    yield from vmap_areas(prog).areas


def find_vmap_area(prog: Program, address: int) -> VmapArea | None:
    """Return the busy vmap area holding ``address``, like the kernel's ``find_vmap_area(addr)``.

    :param prog: the program
    :param address: a kernel virtual address
    :return: the area, or None if no busy area holds ``address``

    >>> find_vmap_area(prog, prog.read_u64(prog.symbol_address("kcrash_test_vmalloc_buf"))).nr_pages
    4
    """
    return vmap_areas(prog).find(address)


def vmalloc_to_pfn(prog: Program, address: int) -> int:
    """Return the page frame number mapped at a vmalloc/vmap address, like ``vmalloc_to_pfn(addr)``.

    Found by a walk of the kernel page tables.

    :param prog: the program
    :param address: a vmalloc or vmap address
    :return: the PFN
    :raises FaultError: if the address is not mapped

    >>> vmalloc_to_pfn(prog, prog.read_u64(prog.symbol_address("kcrash_test_vmalloc_buf")))
    21070
    """
    return prog.memory.translate(address) >> _PAGE_SHIFT


def vmalloc_to_page(prog: Program, address: int) -> Object:
    """Return the page mapped at a vmalloc/vmap address, like the kernel's ``vmalloc_to_page(addr)``.

    :param prog: the program
    :param address: a vmalloc or vmap address
    :return: ``struct page *``
    :raises FaultError: if the address is not mapped

    >>> page = vmalloc_to_page(prog, prog.read_u64(prog.symbol_address("kcrash_test_vmalloc_buf")))
    """
    return pfn_to_page(prog, vmalloc_to_pfn(prog, address))
