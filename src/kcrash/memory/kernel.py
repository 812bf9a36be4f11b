"""
kcrash.memory.kernel
====================

The kernel address space of a dump. :func:`open_kernel_memory` registers the dump's segments, picks
the architecture's :class:`~kcrash.memory.layout.KernelArch` from the dump's machine
(:mod:`kcrash.memory.arch`: x86-64, arm64), which finds the kernel page tables and the KASLR
offset, and returns a :class:`KernelMemory` (a :class:`~kcrash.memory.reader.MemoryReader`) with its
:class:`KernelLayout`. User address spaces are :meth:`KernelMemory.address_space` of a given
page-table root. No symbol or type knowledge beyond what VMCOREINFO states.
"""

from __future__ import annotations

from collections.abc import Sequence

from kcrash.dumps.base import DumpFormat
from kcrash.dumps.cpustate import CpuState, cpu_states
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import FaultError
from kcrash.memory.arch import kernel_arch
from kcrash.memory.arch.x86_64 import START_KERNEL, kernel_image_end
from kcrash.memory.layout import KernelArch, KernelLayout, PageTables
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap

__all__ = ["START_KERNEL", "KernelLayout", "KernelMemory", "find_panic_cpu_or_none", "kernel_image_end",
           "open_kernel_memory"]


class KernelMemory(MemoryReader):
    """A MemoryReader of the kernel address space, plus the dump's CPU states and layout."""

    def __init__(self, segments: SegmentMap, layout: KernelLayout, cpus: list[CpuState],
                 vmcoreinfo: VmcoreInfo | None) -> None:
        self.layout = layout
        self.cpus = cpus
        self.vmcoreinfo = vmcoreinfo
        self.arch: KernelArch = kernel_arch(layout.machine)
        # one bound method, shared by every table this memory makes
        self.read_physical = self._read_physical
        self.page_tables: PageTables | None = None if layout.pgd is None else self.arch.page_tables(
            self.read_physical, layout.pgd, layout)
        translator = None if self.page_tables is None else _KernelTranslator(
            self.page_tables, self.arch, layout, vmcoreinfo)
        super().__init__(segments, translator)

    @property
    def machine(self) -> str:
        """Return the dumped machine, ``"x86_64"`` or ``"aarch64"`` (the dump's ``machine``)."""
        return self.layout.machine

    def _read_physical(self, address: int, size: int) -> bytes:
        return self.segments.read(address, size, physical=True)

    def page_tables_at(self, pgd: int, *, kernel: bool = False) -> PageTables:
        """Return the page tables rooted at physical ``pgd`` (a user space's unless ``kernel``), in
        this kernel's paging format."""
        return self.arch.page_tables(self.read_physical, pgd, self.layout, kernel=kernel)

    def address_space(self, pgd: int) -> MemoryReader:
        """Return a reader of the address space rooted at physical ``pgd`` (for example a task's
        ``mm->pgd`` translated to physical, or a CR3 passed through ``cr3_to_pgd``)."""
        return MemoryReader(self.segments, self.page_tables_at(pgd))

    def module_range(self) -> tuple[int, int]:
        """Return ``[start, end)`` of the kernel's module area."""
        return self.arch.module_range(self.vmcoreinfo, self.layout)

    def image_start(self) -> int:
        """Return where the kernel image's mapping starts without KASLR (see :class:`KernelArch`)."""
        return self.arch.image_start(self.vmcoreinfo, self.layout)


class _KernelTranslator:
    # The page tables; where a page-table page itself is missing from the dump (cut short,
    # filtered), an address of the kernel image still translates by the image's fixed linear map
    # (the arch's __pa_symbol()).

    def __init__(self, tables: PageTables, arch: KernelArch, layout: KernelLayout,
                 info: VmcoreInfo | None) -> None:
        self.tables = tables
        self.arch = arch
        self.layout = layout
        self.info = info

    def translate(self, vaddr: int) -> tuple[int, int]:
        try:
            return self.tables.translate(vaddr)
        except FaultError as exc:
            # a fault at a physical address is a table page that cannot be read; a virtual one is an
            # entry that is not present, which the linear rule must not paper over
            if not exc.physical:
                raise
            physical = self.arch.image_physical_or_none(vaddr, self.layout, self.info)
            if physical is None:
                raise
            return physical, 1 << self.layout.page_shift


def open_kernel_memory(dump: DumpFormat) -> KernelMemory:
    """Return the kernel address space of ``dump`` (virtual reads need page tables; see module doc)."""
    segments = SegmentMap(dump.segments())
    arch = kernel_arch(dump.machine)
    cpus = cpu_states(dump.notes(), machine=arch.machine)
    info = dump.vmcoreinfo_or_none()
    return KernelMemory(segments, arch.open_layout(segments, cpus, info, dump), cpus, info)


def find_panic_cpu_or_none(memory: MemoryReader, cpus: Sequence[CpuState] | None = None) -> int | None:
    """Return the CPU that panicked when the CPU notes tell, else None.

    After ``panic()`` the other CPUs are stopped: x86-64 ones halted (their saved RIP follows an
    ``hlt``), arm64 ones parked on ``wfe``/``wfi``. When exactly one CPU is not stopped, it is the
    one that panicked.

    :param cpus: the CPUs' saved registers (default: a :class:`KernelMemory`'s own ``cpus``)
    """
    if cpus is None:
        cpus = memory.cpus if isinstance(memory, KernelMemory) else []
    machine = memory.machine if isinstance(memory, KernelMemory) else "x86_64"
    return kernel_arch(machine).panic_cpu_or_none(memory, cpus)
