"""
kcrash.memory.kernel
====================

The kernel address space of an x86-64 dump. :func:`open_kernel_memory` registers the dump's
segments, finds the kernel page tables and returns a :class:`KernelMemory` (a
:class:`~kcrash.memory.reader.MemoryReader`) with its :class:`KernelLayout`. The page-table root
comes from VMCOREINFO (``SYMBOL(swapper_pg_dir)``/``init_top_pgt`` at ``__START_KERNEL_map`` +
``phys_base``, 5 levels when ``NUMBER(pgtable_l5_enabled)=1``); without VMCOREINFO, from CR3 in
QEMU's CPU notes, and then the KASLR offset and ``phys_base`` are found from the kernel-text mapping
itself. User address spaces are :meth:`KernelMemory.address_space` of a given page-table root.
No symbol or type knowledge beyond what VMCOREINFO states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kcrash.dumps.base import DumpFormat
from kcrash.dumps.cpustate import CpuState, cpu_states
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import FaultError
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap
from kcrash.memory.translate.x86_64 import START_KERNEL_MAP, X86_64PageTables, cr3_to_pgd

__all__ = ["KernelLayout", "KernelMemory", "find_panic_cpu_or_none", "kernel_image_end", "open_kernel_memory"]

#: ``__START_KERNEL``: where kernel text starts without KASLR
START_KERNEL = 0xFFFFFFFF81000000
#: ``KERNEL_IMAGE_SIZE`` with KASLR (``arch/x86/include/asm/page_64_types.h``), when VMCOREINFO lacks it
_KERNEL_IMAGE_SIZE_MAX = 1 << 30
_CR4_LA57 = 1 << 12
_PMD_SIZE = 1 << 21


@dataclass(frozen=True, slots=True)
class KernelLayout:
    """How kernel addresses map: the page-table root (physical), paging levels, KASLR text offset,
    ``phys_base``, and where these facts came from (``"vmcoreinfo"``, ``"cr3"`` or ``"none"``)."""

    pgd: int | None
    levels: int
    kaslr_offset: int | None
    phys_base: int | None
    source: str
    sme_mask: int = 0
    machine: str = "x86_64"


class KernelMemory(MemoryReader):
    """A MemoryReader of the kernel address space, plus the dump's CPU states and layout."""

    def __init__(self, segments: SegmentMap, layout: KernelLayout, cpus: list[CpuState],
                 vmcoreinfo: VmcoreInfo | None) -> None:
        self.layout = layout
        self.cpus = cpus
        self.vmcoreinfo = vmcoreinfo
        self.page_tables = None if layout.pgd is None else X86_64PageTables(
            self._read_physical, layout.pgd, levels=layout.levels, sme_mask=layout.sme_mask)
        translator = None if self.page_tables is None else _KernelTranslator(
            self.page_tables, layout.phys_base, kernel_image_end(vmcoreinfo))
        super().__init__(segments, translator)

    @property
    def machine(self) -> str:
        """Return the dumped machine, ``"x86_64"`` or ``"aarch64"`` (the dump's ``machine``)."""
        return self.layout.machine

    def _read_physical(self, address: int, size: int) -> bytes:
        return self.segments.read(address, size, physical=True)

    def address_space(self, pgd: int) -> MemoryReader:
        """Return a reader of the address space rooted at physical ``pgd`` (for example a task's
        ``mm->pgd`` translated to physical, or a CR3 passed through ``cr3_to_pgd``)."""
        tables = X86_64PageTables(self._read_physical, pgd, levels=self.layout.levels,
                                  sme_mask=self.layout.sme_mask)
        return MemoryReader(self.segments, tables)


def kernel_image_end(vmcoreinfo: VmcoreInfo | None) -> int:
    """The end of the kernel image mapping, ``__START_KERNEL_map + KERNEL_IMAGE_SIZE``, which is where
    the module area (``MODULES_VADDR``) starts; VMCOREINFO has the size since v4.19, else the KASLR 1 GiB."""
    size = vmcoreinfo.get_number_or_none("KERNEL_IMAGE_SIZE") if vmcoreinfo is not None else None
    return START_KERNEL_MAP + (size or _KERNEL_IMAGE_SIZE_MAX)


class _KernelTranslator:
    # The page tables; where a page-table page itself is missing from the dump (cut short,
    # filtered), an address of the kernel image still translates by the image's fixed linear map,
    # as __pa_symbol() computes it (arch/x86/include/asm/page_64.h): va - __START_KERNEL_map + phys_base.

    def __init__(self, tables: X86_64PageTables, phys_base: int | None, image_end: int) -> None:
        self.tables = tables
        self.phys_base = phys_base
        self.image_end = image_end

    def translate(self, vaddr: int) -> tuple[int, int]:
        try:
            return self.tables.translate(vaddr)
        except FaultError as exc:
            # a fault at a physical address is a table page that cannot be read; a virtual one is an
            # entry that is not present, which the linear rule must not paper over
            if not exc.physical or self.phys_base is None or not START_KERNEL_MAP <= vaddr < self.image_end:
                raise
            return vaddr - START_KERNEL_MAP + self.phys_base, 1 << 12


def open_kernel_memory(dump: DumpFormat) -> KernelMemory:
    """Return the kernel address space of ``dump`` (virtual reads need page tables; see module doc)."""
    segments = SegmentMap(dump.segments())
    cpus = cpu_states(dump.notes(), machine=dump.machine)
    info = dump.vmcoreinfo_or_none()
    layout = _layout_from_vmcoreinfo(info, dump) if info is not None else None
    if layout is None:
        layout = _layout_from_cr3(segments, cpus, info)
    return KernelMemory(segments, layout, cpus, info)


def _levels(info: VmcoreInfo | None, cpus: list[CpuState]) -> int:
    if info is not None and info.get_number_or_none("pgtable_l5_enabled") is not None:
        return 5 if info.get_number("pgtable_l5_enabled") else 4
    for cpu in cpus:
        if cpu.qemu is not None and cpu.qemu.cr[4]:
            return 5 if cpu.qemu.cr[4] & _CR4_LA57 else 4
    return 4


def _phys_base(info: VmcoreInfo, dump: DumpFormat) -> int | None:
    value = info.get_number_or_none("phys_base")
    if value is not None:
        return value
    return dump.header.phys_base if isinstance(dump, KdumpCompressed) else None


def _layout_from_vmcoreinfo(info: VmcoreInfo, dump: DumpFormat) -> KernelLayout | None:
    symbol = info.get_symbol_or_none("init_top_pgt") or info.get_symbol_or_none("swapper_pg_dir")
    phys_base = _phys_base(info, dump)
    if symbol is None or phys_base is None:
        return None
    sme_mask = info.get_number_or_none("sme_mask") or 0
    return KernelLayout(symbol - START_KERNEL_MAP + phys_base, _levels(info, []), info.kerneloffset,
                        phys_base, "vmcoreinfo", sme_mask)


def _layout_from_cr3(segments: SegmentMap, cpus: list[CpuState], info: VmcoreInfo | None) -> KernelLayout:
    cr3s = [c.qemu.cr3 for c in cpus if c.qemu is not None and c.qemu.cr3]
    if not cr3s:
        return KernelLayout(None, 4, None, None, "none")
    sme_mask = info.get_number_or_none("sme_mask") or 0 if info is not None else 0
    levels = _levels(info, cpus)
    pgd = cr3_to_pgd(cr3s[0], sme_mask=sme_mask)
    tables = X86_64PageTables(lambda a, n: segments.read(a, n, physical=True), pgd, levels=levels,
                              sme_mask=sme_mask)
    kaslr, phys_base = _find_kernel_text(tables)
    return KernelLayout(pgd, levels, kaslr, phys_base, "cr3", sme_mask)


def _find_kernel_text(tables: X86_64PageTables) -> tuple[int | None, int | None]:
    # The kernel image mapping starts at __START_KERNEL_map; entries below _text are cleared at
    # boot (cleanup_highmap), so the first mapped 2 MiB slot is _text = __START_KERNEL + offset.
    # The image spans at most KERNEL_IMAGE_SIZE (1 GiB): 512 PMD slots.
    for slot in range(512):
        vaddr = START_KERNEL_MAP + slot * _PMD_SIZE
        try:
            walk = tables.walk(vaddr)
        except FaultError:
            return None, None
        if walk.physical is not None:
            return vaddr - START_KERNEL, walk.physical - (vaddr - START_KERNEL_MAP)
        if walk.entries and not walk.entries[-1].present and walk.entries[-1].level in ("PGD", "P4D", "PUD"):
            return None, None
    return None, None


_HLT = 0xF4


def find_panic_cpu_or_none(memory: MemoryReader, cpus: Sequence[CpuState] | None = None) -> int | None:
    """Return the CPU that panicked when the CPU notes tell, else None.

    After ``panic()`` the other CPUs sit halted in ``stop_this_cpu`` (their saved RIP follows an
    ``hlt`` instruction). When exactly one CPU is not halted, it is the one that panicked.

    :param cpus: the CPUs' saved registers (default: a :class:`KernelMemory`'s own ``cpus``)
    """
    if cpus is None:
        cpus = memory.cpus if isinstance(memory, KernelMemory) else []
    running = []
    for cpu in cpus:
        if cpu.prstatus is None:
            return None
        rip = cpu.prstatus.registers["rip"]
        try:
            halted = memory.read(rip - 1, 1)[0] == _HLT
        except FaultError:
            return None
        if not halted:
            running.append(cpu.cpu)
    return running[0] if len(running) == 1 and len(cpus) > 1 else None
