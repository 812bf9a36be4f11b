"""
kcrash.memory.arch.aarch64
==========================

The arm64 kernel's address space, from VMCOREINFO (``arch/arm64/kernel/vmcore_info.c``, before
v6.9 ``crash_core.c``): ``PAGESIZE`` gives the granule; ``NUMBER(VA_BITS)`` the configured
virtual-address size and ``NUMBER(TCR_EL1_T1SZ)`` (since v5.9) the one in use, ``64 - T1SZ`` (a
kernel built for 52 bits falls back to 48 on a CPU without FEAT_LPA2/FEAT_LVA). With 4 or 16 KiB
pages the fallback also drops a level (``pgtable_l5_enabled()``/``pgtable_l4_enabled()`` fold at run
time, v6.9), so the walk uses ``64 - T1SZ``; with 64 KiB pages the level count stays and
``swapper_pg_dir`` is laid out for ``VA_BITS`` (the TTBR1 offset), so the walk uses ``VA_BITS``.

``SYMBOL(swapper_pg_dir)`` is a kernel-image address, whose physical address is ``va -
NUMBER(kimage_voffset)`` (``__pa_symbol``); ``NUMBER(PHYS_OFFSET)`` is the physical start of RAM,
where the linear map (``PAGE_OFFSET = -(1 << VA_BITS)``, the lower half of the kernel range since
v5.4) begins. ``KERNELOFFSET`` is the KASLR displacement of the image; ``NUMBER(MODULES_VADDR)`` and
``NUMBER(MODULES_END)`` bound the module area (Debian's 6.1 and 6.12 state them; without them, the
area below the image is taken).

A dump without VMCOREINFO has no layout here: arm64 CPU notes carry no TTBR1.
"""

from __future__ import annotations

from collections.abc import Sequence

from kcrash.dumps.base import DumpFormat
from kcrash.dumps.cpustate import CpuState
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import FaultError
from kcrash.memory.layout import KernelLayout, ReadPhys
from kcrash.memory.reader import MemoryReader
from kcrash.memory.segments import SegmentMap
from kcrash.memory.translate.arm64 import Arm64PageTables, arm64_levels

__all__ = ["Aarch64Kernel", "page_offset"]

_U32_WFI = 0xD503207F
_U32_WFE = 0xD503205F
#: the most the kernel image spans from ``_stext`` for the image's linear rule (text, data, bss)
_IMAGE_SPAN = 256 << 20
_SZ_2M = 1 << 21


def page_offset(va_bits: int) -> int:
    """``PAGE_OFFSET``, the start of the linear map: ``-(1 << VA_BITS)`` (since v5.4).

    >>> hex(page_offset(48)), hex(page_offset(52))
    ('0xffff000000000000', '0xfff0000000000000')
    """
    return (1 << 64) - (1 << va_bits)


def _number_or_none(info: VmcoreInfo, *names: str) -> int | None:
    for name in names:
        value = info.get_number_or_none(name)
        if value is not None:
            return value
    return None


class Aarch64Kernel:
    """The arm64 :class:`~kcrash.memory.layout.KernelArch`."""

    machine = "aarch64"

    def open_layout(self, segments: SegmentMap, cpus: Sequence[CpuState], info: VmcoreInfo | None,
                    dump: DumpFormat) -> KernelLayout:
        """Return the layout VMCOREINFO gives (see the module doc), else an empty one."""
        none = KernelLayout(None, 0, None, None, "none", machine=self.machine)
        if info is None:
            return none
        page_size = info.page_size or 4096
        page_shift = page_size.bit_length() - 1
        configured = info.get_number_or_none("VA_BITS")
        t1sz = _number_or_none(info, "TCR_EL1_T1SZ", "tcr_el1_t1sz")
        if configured is None and t1sz is None:
            return none
        va_bits = configured if page_shift == 16 or not t1sz else 64 - t1sz
        assert va_bits is not None
        voffset = info.get_number_or_none("kimage_voffset")
        swapper = info.get_symbol_or_none("swapper_pg_dir")
        pgd = None if voffset is None or swapper is None else (swapper - voffset) & ((1 << 64) - 1)
        return KernelLayout(pgd, arm64_levels(va_bits, page_shift), info.kerneloffset,
                            info.get_number_or_none("PHYS_OFFSET"), "vmcoreinfo" if pgd is not None else "none",
                            machine=self.machine, va_bits=va_bits, page_shift=page_shift, image_voffset=voffset)

    def page_tables(self, read_phys: ReadPhys, root: int, layout: KernelLayout, *,
                    kernel: bool = True) -> Arm64PageTables:
        """Return the tables at ``root``: the TTBR1 (kernel) or a TTBR0 (user) half."""
        return Arm64PageTables(read_phys, root, va_bits=layout.va_bits, page_shift=layout.page_shift,
                               kernel=kernel)

    def image_physical_or_none(self, vaddr: int, layout: KernelLayout, info: VmcoreInfo | None) -> int | None:
        """``__pa_symbol()``: ``va - kimage_voffset`` for addresses of the image (from ``_stext``'s
        2 MiB boundary, at most 256 MiB)."""
        stext = info.get_symbol_or_none("_stext") if info is not None else None
        if layout.image_voffset is None or stext is None:
            return None
        start = stext & ~(_SZ_2M - 1)
        if not start <= vaddr < start + _IMAGE_SPAN:
            return None
        return vaddr - layout.image_voffset

    def module_range(self, info: VmcoreInfo | None, layout: KernelLayout) -> tuple[int, int]:
        """VMCOREINFO's ``MODULES_VADDR``..``MODULES_END``; else from the bottom of the kernel half
        (``_PAGE_END(VA_BITS_MIN)``, 48-bit) to the image."""
        if info is not None:
            lo, hi = info.get_number_or_none("MODULES_VADDR"), info.get_number_or_none("MODULES_END")
            if lo is not None and hi is not None:
                return lo, hi
        stext = info.get_symbol_or_none("_stext") if info is not None else None
        start = (1 << 64) - (1 << 47)
        return start, (stext & ~(_SZ_2M - 1)) if stext is not None else start + (2 << 30)

    def image_start(self, info: VmcoreInfo | None, layout: KernelLayout) -> int:
        """``KIMAGE_VADDR``, where the module area ends (``MODULES_END``, v4.6 on): every vmlinux symbol,
        per-CPU ones included, lies in the image."""
        return self.module_range(info, layout)[1]

    def panic_cpu_or_none(self, memory: MemoryReader, cpus: Sequence[CpuState]) -> int | None:
        """After ``panic()`` the other CPUs park in ``cpu_park_loop()`` (``wfe``/``wfi`` forever, from
        the stop IPI): a CPU whose saved pc is at, or just after, a ``wfi`` or ``wfe`` is parked. When
        exactly one CPU is not, it is the one that panicked."""
        running = []
        for cpu in cpus:
            if cpu.prstatus is None:
                return None
            pc = cpu.prstatus.registers["pc"]
            try:
                words = memory.read(pc - 4, 8)
            except FaultError:
                return None
            here = {int.from_bytes(words[i:i + 4], "little") for i in (0, 4)}
            if not here & {_U32_WFI, _U32_WFE}:
                running.append(cpu.cpu)
        return running[0] if len(running) == 1 and len(cpus) > 1 else None
