"""
kcrash.memory.layout
====================

What the memory layer knows of a kernel's address space, whatever the architecture: the
:class:`KernelLayout` facts (page-table root, paging geometry, KASLR offset, where the facts came
from), the :class:`PageTables` interface every architecture's walker offers, and the
:class:`KernelArch` interface of the per-architecture objects in :mod:`kcrash.memory.arch` that find
those facts in a dump and know the kernel's fixed address ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from kcrash.dumps.base import DumpFormat
    from kcrash.dumps.cpustate import CpuState
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.memory.reader import MemoryReader
    from kcrash.memory.segments import SegmentMap
    from kcrash.memory.translate.x86_64 import PageWalk

__all__ = ["KernelArch", "KernelLayout", "PageTables", "ReadPhys"]

#: ``read_phys(address, size) -> bytes`` of physical memory
ReadPhys = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class KernelLayout:
    """How kernel addresses map: the page-table root (physical), paging levels, KASLR text offset,
    ``phys_base``, and where these facts came from (``"vmcoreinfo"``, ``"cr3"`` or ``"none"``).

    ``machine`` is the architecture; ``va_bits`` the translated virtual-address size and
    ``page_shift`` the granule (arm64; x86-64 has 48 or 57 and 12); ``image_voffset`` is how far the
    kernel image's virtual addresses lie above their physical ones (x86-64: ``__START_KERNEL_map -
    phys_base``, arm64: ``kimage_voffset``), None when unknown. On arm64 ``phys_base`` is
    ``PHYS_OFFSET``, the physical start of RAM that the linear map begins with.
    """

    pgd: int | None
    levels: int
    kaslr_offset: int | None
    phys_base: int | None
    source: str
    sme_mask: int = 0
    machine: str = "x86_64"
    va_bits: int = 0
    page_shift: int = 12
    image_voffset: int | None = None


class PageTables(Protocol):
    """One address space's page tables (:class:`~kcrash.memory.translate.x86_64.X86_64PageTables`,
    :class:`~kcrash.memory.translate.arm64.Arm64PageTables`)."""

    read_phys: ReadPhys
    root: int
    levels: int

    def canonical(self, vaddr: int) -> bool:
        """Return True if the tables can map ``vaddr`` at all."""
        ...

    def walk(self, vaddr: int) -> PageWalk:
        """Walk the tables for ``vaddr``; a missing level is reported in ``reason``, not raised."""
        ...

    def translate(self, vaddr: int) -> tuple[int, int]:
        """Return ``(physical address, page size)`` or raise FaultError."""
        ...


class KernelArch(Protocol):
    """One architecture's knowledge of a kernel's address space (:func:`kcrash.memory.arch.kernel_arch`)."""

    machine: str

    def open_layout(self, segments: SegmentMap, cpus: Sequence[CpuState], info: VmcoreInfo | None,
                    dump: DumpFormat) -> KernelLayout:
        """Return the layout the dump's VMCOREINFO (or CPU state) gives."""
        ...

    def page_tables(self, read_phys: ReadPhys, root: int, layout: KernelLayout, *,
                    kernel: bool = True) -> PageTables:
        """Return the tables at physical ``root`` (``kernel``: the kernel's own, else a user space's)."""
        ...

    def image_physical_or_none(self, vaddr: int, layout: KernelLayout, info: VmcoreInfo | None) -> int | None:
        """Return the physical address of a kernel-image address by the image's fixed linear rule
        (for when a page-table page is missing from the dump), else None."""
        ...

    def module_range(self, info: VmcoreInfo | None, layout: KernelLayout) -> tuple[int, int]:
        """Return ``[start, end)`` of the module area."""
        ...

    def image_start(self, info: VmcoreInfo | None, layout: KernelLayout) -> int:
        """Return the lowest address of the kernel image's mapping without KASLR: the vmlinux's
        symbols at or above it are moved by ``KERNELOFFSET``."""
        ...

    def panic_cpu_or_none(self, memory: MemoryReader, cpus: Sequence[CpuState]) -> int | None:
        """Return the CPU that panicked when the CPUs' saved registers tell, else None."""
        ...
