"""
support.arm64_tables
====================

Builds synthetic AArch64 stage-1 page tables in a :class:`support.pagetables.PhysImage`, written from
the architecture's descriptor format (not from the walker under test): any granule (4/16/64 KiB),
36- to 52-bit virtual addresses, pages and blocks, 52-bit output addresses (FEAT_LPA2's bits 9:8 with
4/16 KiB pages, FEAT_LPA's bits 15:12 with 64 KiB pages).
"""

from __future__ import annotations

import struct

from support.pagetables import PhysImage

__all__ = ["Arm64TableBuilder"]

_U64 = struct.Struct("<Q")
#: a kernel data page's attributes: AF, inner shareable (bits 9:8, unless LPA2), normal memory
_LEAF_ATTRS = 1 << 10 | 0b100


class Arm64TableBuilder:
    """Tables for one root; tables are allocated upward from ``table_base``."""

    def __init__(self, image: PhysImage, *, va_bits: int, page_shift: int = 12, kernel: bool = True,
                 table_base: int = 0x4000_0000, lpa2: bool | None = None) -> None:
        self.image = image
        self.va_bits = va_bits
        self.page_shift = page_shift
        self.kernel = kernel
        self.lpa2 = (va_bits == 52 and page_shift != 16) if lpa2 is None else lpa2
        per = page_shift - 3
        self.levels = -(-(va_bits - page_shift) // per)
        self.shifts = [page_shift + per * (self.levels - 1 - i) for i in range(self.levels)]
        self._next = table_base
        self.root = self._alloc()

    def _alloc(self) -> int:
        addr = self._next
        self._next += 1 << self.page_shift
        self.image.write(addr, bytes(1 << self.page_shift))
        return addr

    def encode(self, address: int) -> int:
        """Return ``address`` (granule-aligned, up to 52 bits) as descriptor output-address bits."""
        if self.page_shift == 16:
            return (address & 0x0000_FFFF_FFFF_0000) | (address >> 48 & 0xF) << 12
        if self.lpa2:
            return (address & 0x0003_FFFF_FFFF_F000) | (address >> 50 & 0x3) << 8
        assert address < 1 << 48
        return address

    def decode(self, value: int) -> int:
        """Return the output address of descriptor ``value`` (the inverse of :meth:`encode`)."""
        if self.page_shift == 16:
            return (value & 0x0000_FFFF_FFFF_0000) | (value >> 12 & 0xF) << 48
        if self.lpa2:
            return (value & 0x0003_FFFF_FFFF_F000) | (value >> 8 & 0x3) << 50
        return value & 0x0000_FFFF_FFFF_F000

    def _index(self, vaddr: int, depth: int) -> int:
        width = self.va_bits - self.shifts[0] if depth == 0 else self.page_shift - 3
        return (vaddr >> self.shifts[depth]) & ((1 << width) - 1)

    def map(self, vaddr: int, paddr: int, *, level_size: int | None = None, attrs: int = _LEAF_ATTRS) -> int:
        """Map one page (``level_size`` None) or one block of ``level_size`` bytes at ``vaddr`` to
        ``paddr``; return the physical address of the leaf descriptor."""
        size = level_size or 1 << self.page_shift
        table = self.root
        for depth, shift in enumerate(self.shifts):
            where = table + 8 * self._index(vaddr, depth)
            if 1 << shift == size:
                kind = 0b11 if depth == self.levels - 1 else 0b01
                if self.lpa2:
                    attrs &= ~0x300
                self.image.write(where, _U64.pack(self.encode(paddr) | attrs | kind))
                return where
            value = _U64.unpack(self.image.read(where, 8))[0]
            if not value & 1:
                value = self.encode(self._alloc()) | 0b11
                self.image.write(where, _U64.pack(value))
            table = self.decode(value)
        raise ValueError(f"no level maps {size:#x} bytes")

    def write_leaf(self, where: int, value: int) -> None:
        """Overwrite a descriptor (to make faults)."""
        self.image.write(where, _U64.pack(value))


#: where Debian's arm64 RAM starts under QEMU ``-M virt`` (``NUMBER(PHYS_OFFSET)``)
PHYS_OFFSET = 0x4000_0000
_WFI = 0xD503207F


class Arm64Kernel:
    """A synthetic arm64 kernel in RAM at :data:`PHYS_OFFSET`: the image (``_stext`` at
    ``kimage_vaddr + 0x10000``) mapped by 2 MiB blocks at ``pa = va - kimage_voffset``,
    ``swapper_pg_dir`` inside it, the linear map's first 2 MiB at ``PAGE_OFFSET``
    by 4 KiB pages, one vmalloc page, and two CPUs: CPU 1 parked after a ``wfi``, CPU 0 not.

    :param va_bits: ``NUMBER(VA_BITS)``
    :param t1sz: ``NUMBER(TCR_EL1_T1SZ)`` (None: not in VMCOREINFO); the tables are built for
        ``64 - t1sz`` bits (or ``va_bits``)
    """

    def __init__(self, *, va_bits: int = 48, t1sz: int | None = 16, kimage_vaddr: int = 0xFFFF_8000_8000_0000,
                 ram_size: int = 48 << 20) -> None:
        self.image = PhysImage()
        self.va_bits = va_bits
        self.t1sz = t1sz
        walk_bits = 64 - t1sz if t1sz else va_bits
        self.kimage_vaddr = kimage_vaddr
        self.kimage_paddr = PHYS_OFFSET + (16 << 20)
        self.kimage_voffset = kimage_vaddr - self.kimage_paddr
        self.stext = kimage_vaddr + 0x10000
        self.ram_size = ram_size
        swapper_pa = self.kimage_paddr + (4 << 20)
        self.tables = Arm64TableBuilder(self.image, va_bits=walk_bits, table_base=swapper_pa)
        self.swapper_pg_dir = swapper_pa + self.kimage_voffset
        for off in range(0, 8 << 20, 1 << 21):
            self.tables.map(kimage_vaddr + off, self.kimage_paddr + off, level_size=1 << 21)
        # the linear map starts at -(1 << VA_BITS), or, when 52 bits fall back to 48, at -(1 << 48)
        self.page_offset = (1 << 64) - (1 << walk_bits)
        for off in range(0, 2 << 20, 4096):
            self.tables.map(self.page_offset + off, PHYS_OFFSET + off)
        self.vmalloc_page = kimage_vaddr + (256 << 20)
        self.tables.map(self.vmalloc_page, PHYS_OFFSET + (40 << 20))
        self.image.write(self.kimage_paddr + 0x10000, b"_stext here")
        self.image.write(PHYS_OFFSET + 0x1000, b"linear map")
        self.image.write(PHYS_OFFSET + (40 << 20), b"vmalloc page")
        # CPU 1 parked: its pc follows a wfi
        self.park_pc = self.stext + 0x104
        self.image.write(self.kimage_paddr + 0x10100, _WFI.to_bytes(4, "little"))
        self.busy_pc = self.stext + 0x204

    def vmcoreinfo(self) -> str:
        """Return the VMCOREINFO text, in the arm64 kernel's spelling."""
        lines = ["OSRELEASE=6.12.0-synthetic-arm64", "PAGESIZE=4096", f"SYMBOL(swapper_pg_dir)={self.swapper_pg_dir:x}",
                 f"SYMBOL(_stext)={self.stext:x}", f"NUMBER(VA_BITS)={self.va_bits}",
                 f"NUMBER(kimage_voffset)={self.kimage_voffset:#x}", f"NUMBER(PHYS_OFFSET)={PHYS_OFFSET:#x}",
                 f"KERNELOFFSET={self.kimage_vaddr - 0xFFFF_8000_8000_0000:x}",
                 "NUMBER(MODULES_VADDR)=0xffff800000000000", "NUMBER(MODULES_END)=0xffff800080000000",
                 "NUMBER(KERNELPACMASK)=0xfff0000000000000"]
        if self.t1sz is not None:
            lines.append(f"NUMBER(TCR_EL1_T1SZ)={self.t1sz:#x}")
        return "\n".join(lines) + "\n"

    def notes(self, *, with_vmcoreinfo: bool = True) -> bytes:
        """Return two aarch64 NT_PRSTATUS notes (CPU 0 busy, CPU 1 parked) and VMCOREINFO."""
        # lazy: the dump writers are only needed by tests that write a whole dump
        from kcrash.dumps.write.notes import build_prstatus, build_vmcoreinfo_note
        notes = build_prstatus(1, {"pc": self.busy_pc, "sp": self.kimage_vaddr + 0x3F00, "x29": 7},
                               machine="aarch64")
        notes += build_prstatus(2, {"pc": self.park_pc, "sp": self.kimage_vaddr + 0x7F00}, machine="aarch64")
        return notes + (build_vmcoreinfo_note(self.vmcoreinfo()) if with_vmcoreinfo else b"")

    def ram(self) -> bytes:
        """Return RAM from :data:`PHYS_OFFSET`."""
        return self.image.read(PHYS_OFFSET, self.ram_size)

    def write_elf(self, path: object) -> None:
        """Write a QEMU-style ELF dump (``e_machine`` 183, one PT_LOAD of RAM)."""
        # lazy: the dump writers are only needed by tests that write a whole dump
        from pathlib import Path

        from kcrash.dumps.write.elf_vmcore import bytes_segment, write_elf_vmcore
        write_elf_vmcore(Path(str(path)), self.notes(), [bytes_segment(PHYS_OFFSET, self.ram())], e_machine=183)

    def write_kdump(self, path: object) -> None:
        """Write a kdump-compressed dump as QEMU 7.2 does for aarch64 (``utsname.machine`` "Unknown")."""
        # lazy: the dump writers are only needed by tests that write a whole dump
        from pathlib import Path

        from kcrash.dumps.write.kdump_compressed import KdumpSpec, write_kdump
        ram = self.ram()
        first = PHYS_OFFSET // 4096
        pages = {first + i: ram[i * 4096:(i + 1) * 4096] for i in range(len(ram) // 4096)}
        write_kdump(Path(str(path)), KdumpSpec(pages=pages, max_mapnr=first + len(ram) // 4096, machine="Unknown",
                                               notes=self.notes(with_vmcoreinfo=False), vmcoreinfo=self.vmcoreinfo(),
                                               nr_cpus=2))
