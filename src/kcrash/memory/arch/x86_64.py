"""
kcrash.memory.arch.x86_64
=========================

The x86-64 kernel's address space. The page-table root comes from VMCOREINFO
(``SYMBOL(swapper_pg_dir)``/``init_top_pgt`` at ``__START_KERNEL_map`` + ``phys_base``, 5 levels when
``NUMBER(pgtable_l5_enabled)=1``); without VMCOREINFO, from CR3 in QEMU's CPU notes, and then the
KASLR offset and ``phys_base`` are found from the kernel-text mapping itself. The kernel image is
mapped linearly at ``__START_KERNEL_map``; the module area follows it. After ``panic()`` the other
CPUs sit halted (``hlt``).
"""

from __future__ import annotations

from collections.abc import Sequence

from kcrash.dumps.base import DumpFormat
from kcrash.dumps.cpustate import CpuState
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import FaultError
from kcrash.memory.layout import KernelLayout, ReadPhys
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap
from kcrash.memory.translate.x86_64 import START_KERNEL_MAP, X86_64PageTables, cr3_to_pgd

__all__ = ["MODULES_END", "START_KERNEL", "X86_64Kernel", "kernel_image_end"]

#: ``__START_KERNEL``: where kernel text starts without KASLR
START_KERNEL = 0xFFFFFFFF81000000
#: ``MODULES_END`` (``arch/x86/include/asm/pgtable_64_types.h``): the fixmap area follows
MODULES_END = 0xFFFFFFFFFF000000
#: ``KERNEL_IMAGE_SIZE`` with KASLR (``arch/x86/include/asm/page_64_types.h``), when VMCOREINFO lacks it
_KERNEL_IMAGE_SIZE_MAX = 1 << 30
_CR4_LA57 = 1 << 12
_PMD_SIZE = 1 << 21
_HLT = 0xF4


def kernel_image_end(vmcoreinfo: VmcoreInfo | None) -> int:
    """The end of the kernel image mapping, ``__START_KERNEL_map + KERNEL_IMAGE_SIZE``, which is where
    the module area (``MODULES_VADDR``) starts; VMCOREINFO has the size since v4.19, else the KASLR 1 GiB."""
    size = vmcoreinfo.get_number_or_none("KERNEL_IMAGE_SIZE") if vmcoreinfo is not None else None
    return START_KERNEL_MAP + (size or _KERNEL_IMAGE_SIZE_MAX)


class X86_64Kernel:
    """The x86-64 :class:`~kcrash.memory.layout.KernelArch`."""

    machine = "x86_64"

    def open_layout(self, segments: SegmentMap, cpus: Sequence[CpuState], info: VmcoreInfo | None,
                    dump: DumpFormat) -> KernelLayout:
        """Return the layout from VMCOREINFO, else from a CPU note's CR3."""
        layout = _layout_from_vmcoreinfo(info, dump) if info is not None else None
        return layout if layout is not None else _layout_from_cr3(segments, cpus, info)

    def page_tables(self, read_phys: ReadPhys, root: int, layout: KernelLayout, *,
                    kernel: bool = True) -> X86_64PageTables:
        """Return 4- or 5-level tables at ``root`` (one format for kernel and user roots)."""
        return X86_64PageTables(read_phys, root, levels=layout.levels, sme_mask=layout.sme_mask)

    def image_physical_or_none(self, vaddr: int, layout: KernelLayout, info: VmcoreInfo | None) -> int | None:
        """``__pa_symbol()`` (arch/x86/include/asm/page_64.h): ``va - __START_KERNEL_map + phys_base``."""
        if layout.phys_base is None or not START_KERNEL_MAP <= vaddr < kernel_image_end(info):
            return None
        return vaddr - START_KERNEL_MAP + layout.phys_base

    def module_range(self, info: VmcoreInfo | None, layout: KernelLayout) -> tuple[int, int]:
        """From the image's end to the fixmap."""
        return kernel_image_end(info), MODULES_END

    def image_start(self, info: VmcoreInfo | None, layout: KernelLayout) -> int:
        """``__START_KERNEL_map`` (per-CPU symbols below it are zero-based offsets, never moved)."""
        return START_KERNEL_MAP

    def panic_cpu_or_none(self, memory: MemoryReader, cpus: Sequence[CpuState]) -> int | None:
        """After ``panic()`` the other CPUs sit halted in ``stop_this_cpu`` (their saved RIP follows an
        ``hlt``); when exactly one CPU is not halted, it is the one that panicked."""
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


def _levels(info: VmcoreInfo | None, cpus: Sequence[CpuState]) -> int:
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
    levels = _levels(info, [])
    return KernelLayout(symbol - START_KERNEL_MAP + phys_base, levels, info.kerneloffset,
                        phys_base, "vmcoreinfo", sme_mask, va_bits=57 if levels == 5 else 48,
                        image_voffset=START_KERNEL_MAP - phys_base)


def _layout_from_cr3(segments: SegmentMap, cpus: Sequence[CpuState], info: VmcoreInfo | None) -> KernelLayout:
    cr3s = [c.qemu.cr3 for c in cpus if c.qemu is not None and c.qemu.cr3]
    if not cr3s:
        return KernelLayout(None, 4, None, None, "none")
    sme_mask = info.get_number_or_none("sme_mask") or 0 if info is not None else 0
    levels = _levels(info, cpus)
    pgd = cr3_to_pgd(cr3s[0], sme_mask=sme_mask)
    tables = X86_64PageTables(lambda a, n: segments.read(a, n, physical=True), pgd, levels=levels,
                              sme_mask=sme_mask)
    kaslr, phys_base = _find_kernel_text(tables)
    return KernelLayout(pgd, levels, kaslr, phys_base, "cr3", sme_mask, va_bits=57 if levels == 5 else 48,
                        image_voffset=None if phys_base is None else START_KERNEL_MAP - phys_base)


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
