"""
support.synthetic
=================

A small fake x86-64 kernel for tests: a few MiB of physical memory holding 4- or 5-level page tables
that map kernel text (2 MiB pages, KASLR offset and ``phys_base`` as given), the direct map (one
1 GiB page), vmalloc, module and vmemmap pages (4 KiB), plus matching VMCOREINFO, ``NT_PRSTATUS``
and QEMU CPU-state notes. :meth:`SyntheticKernel.write_elf` and :meth:`SyntheticKernel.write_kdump`
write it in the real formats, so every reader and the translation can be tested without a VM.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from kcrash.dumps.write.elf_vmcore import bytes_segment, write_elf_vmcore
from kcrash.dumps.write.kdump_compressed import KdumpLayout, KdumpSpec, write_kdump
from kcrash.dumps.write.notes import build_prstatus, build_qemu_cpu_state, build_vmcoreinfo_note
from support.pagetables import PageTableBuilder, PhysImage

__all__ = ["SyntheticKernel", "make_synthetic_kernel"]

START_KERNEL_MAP = 0xFFFFFFFF80000000
START_KERNEL = 0xFFFFFFFF81000000
PAGE_OFFSET = 0xFFFF888000000000
VMALLOC_START = 0xFFFFC90000000000
MODULES_VADDR = 0xFFFFFFFFC0000000
VMEMMAP_START = 0xFFFFEA0000000000
_TEXT_PHYS = 0x200000
_RAM_PAGES = 1024  # 4 MiB
_MB2 = 1 << 21


@dataclass(slots=True)
class SyntheticKernel:
    """The fake kernel: physical pages, VMCOREINFO text, notes, and the interesting addresses."""

    image: PhysImage
    levels: int
    kaslr_offset: int
    phys_base: int
    pgd: int
    vmcoreinfo: str
    notes_without_vmcoreinfo: bytes
    ram_pages: int
    #: virtual address -> physical address of every mapped 4 KiB page
    mappings: dict[int, int] = field(default_factory=dict)

    @property
    def stext(self) -> int:
        """Return ``_stext`` (kernel text start with the KASLR offset)."""
        return START_KERNEL + self.kaslr_offset

    def notes(self, *, with_vmcoreinfo: bool = True) -> bytes:
        """Return the PT_NOTE bytes (PRSTATUS ×2, QEMU ×2, VMCOREINFO)."""
        tail = build_vmcoreinfo_note(self.vmcoreinfo) if with_vmcoreinfo else b""
        return self.notes_without_vmcoreinfo + tail

    def pages(self) -> dict[int, bytes]:
        """Return every RAM page (pfn → bytes), zero pages included."""
        return {pfn: bytes(self.image.pages.get(pfn, bytes(4096))) for pfn in range(self.ram_pages)}

    def write_elf(self, path: Path, *, qemu_layout: bool = True, with_vmcoreinfo: bool = True) -> None:
        """Write a QEMU-style (paging off) or /proc/vmcore-style ELF dump."""
        ram = b"".join(self.pages().values())
        segs = [bytes_segment(0, ram[:0xA0000]), bytes_segment(0xC0000, ram[0xC0000:])]
        write_elf_vmcore(path, self.notes(with_vmcoreinfo=with_vmcoreinfo), segs, qemu_layout=qemu_layout)

    def write_kdump(self, path: Path, *, with_vmcoreinfo: bool = True, **spec: object) -> KdumpLayout:
        """Write a kdump-compressed dump; ``spec`` overrides :class:`KdumpSpec` fields."""
        pages = {p: d for p, d in self.pages().items() if not 0xA0 <= p < 0xC0}
        options: dict[str, object] = {"pages": pages, "max_mapnr": self.ram_pages, "nr_cpus": 2,
                                      "notes": self.notes(with_vmcoreinfo=False)}
        if with_vmcoreinfo:
            options["vmcoreinfo"] = self.vmcoreinfo
        options.update(spec)
        return write_kdump(path, KdumpSpec(**options))  # type: ignore[arg-type]


def _vmcoreinfo(k: SyntheticKernel) -> str:
    swapper = k.pgd - k.phys_base + START_KERNEL_MAP
    lines = [
        "OSRELEASE=6.1.0-synthetic", "BUILD-ID=00112233445566778899aabbccddeeff00112233", "PAGESIZE=4096",
        "SYMBOL(init_uts_ns)=%x" % (k.stext + 0x1000), "OFFSET(uts_namespace.name)=0",
        f"SYMBOL(swapper_pg_dir)={swapper:x}", f"SYMBOL(_stext)={k.stext:x}",
        f"SYMBOL(mem_section)={PAGE_OFFSET + 0x300000:x}", "LENGTH(mem_section)=4096", "SIZE(page)=64",
        "OFFSET(page.flags)=0", "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129", "NUMBER(NR_FREE_PAGES)=0x0",
        f"NUMBER(phys_base)={k.phys_base}", f"SYMBOL(init_top_pgt)={swapper:x}",
        f"NUMBER(pgtable_l5_enabled)={1 if k.levels == 5 else 0}", f"KERNELOFFSET={k.kaslr_offset:x}",
        "NUMBER(KERNEL_IMAGE_SIZE)=1073741824", "NUMBER(sme_mask)=0", "CONFIG_X86_PAE=y",
        "CRASHTIME=1700000000", "SRCFILE(pud_page)=arch/x86/include/asm/pgtable.h",
    ]
    return "\n".join(lines) + "\n"


def _fill(image: PhysImage, rng: random.Random, ram_pages: int) -> None:
    # Random data in some pages, text-like bytes elsewhere, the rest left zero.
    for pfn in range(0x200, ram_pages):
        if rng.random() < 0.5:
            image.write(pfn * 4096, rng.randbytes(4096))
        elif rng.random() < 0.5:
            image.write(pfn * 4096, bytes(rng.choice(b"abcdefgh \0") for _ in range(4096)))
    image.write(0x1000, b"low memory")


def _map_all(k: SyntheticKernel, tables: PageTableBuilder, rng: random.Random) -> None:
    tables.map(k.stext, _TEXT_PHYS, 2 * _MB2, page_size=_MB2, flags=0x1E1 & ~0x2 | 0x2)
    tables.map(PAGE_OFFSET, 0, 1 << 30, page_size=1 << 30)
    for region, count in ((VMALLOC_START, 16), (MODULES_VADDR + 0x2000, 8), (VMEMMAP_START, 4)):
        for i in range(count):
            phys = rng.randrange(0x200, k.ram_pages) * 4096
            tables.map(region + i * 4096, phys, 4096)
            k.mappings[region + i * 4096] = phys
    for off in range(0, min(2 * _MB2, k.ram_pages * 4096 - _TEXT_PHYS), 4096):
        k.mappings[k.stext + off] = _TEXT_PHYS + off
    for off in range(0, k.ram_pages * 4096, 4096 * 7):
        if not 0xA0000 <= off < 0xC0000:  # the legacy VGA hole is not in the dumps
            k.mappings[PAGE_OFFSET + off] = off


def _cpu_notes(k: SyntheticKernel) -> bytes:
    hlt_rip = k.stext + 0x101
    busy_rip = k.stext + 0x201
    k.image.write(_TEXT_PHYS + 0x100, b"\xf4")  # hlt before CPU 0's rip
    k.image.write(_TEXT_PHYS + 0x200, b"\x90")
    uts = (b"Linux", b"synthetic", b"6.1.0-synthetic", b"#1 SMP", b"x86_64", b"(none)")
    k.image.write(_TEXT_PHYS + 0x1000, b"".join(f.ljust(65, b"\0") for f in uts))
    cr4 = 0x6F0 | (1 << 12 if k.levels == 5 else 0)
    notes = b""
    for cpu, rip in enumerate((hlt_rip, busy_rip)):
        regs = {"rip": rip, "rsp": PAGE_OFFSET + 0x3000 + cpu * 0x100, "rax": cpu, "cs": 0x10, "ss": 0x18}
        notes += build_prstatus(cpu + 1, regs)
    for cpu, rip in enumerate((hlt_rip, busy_rip)):
        regs = {"rip": rip, "rsp": PAGE_OFFSET + 0x3000 + cpu * 0x100, "rax": cpu}
        notes += build_qemu_cpu_state(regs, cr3=k.pgd | (0x1000 if cpu else 0), cr4=cr4,
                                      segment_bases={"gs": PAGE_OFFSET + 0x80000 * (cpu + 1)})
    return notes


def make_synthetic_kernel(*, levels: int = 4, kaslr_offset: int = 0x1E00000, seed: int = 1) -> SyntheticKernel:
    """Build a fake kernel; text lands at physical 2 MiB whatever the KASLR offset."""
    rng = random.Random(seed)
    image = PhysImage()
    _fill(image, rng, _RAM_PAGES)
    tables = PageTableBuilder(image, levels=levels, table_base=0x100000)
    phys_base = _TEXT_PHYS - (START_KERNEL + kaslr_offset - START_KERNEL_MAP)
    k = SyntheticKernel(image, levels, kaslr_offset, phys_base, tables.root, "", b"", _RAM_PAGES)
    _map_all(k, tables, rng)
    k.notes_without_vmcoreinfo = _cpu_notes(k)
    k.vmcoreinfo = _vmcoreinfo(k)
    return k
