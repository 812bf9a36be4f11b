"""memory.arch.aarch64: the arm64 kernel layout from VMCOREINFO (VA_BITS vs TCR_EL1_T1SZ, kimage_voffset,
PHYS_OFFSET), reads through the image, the linear map and vmalloc, the panic CPU (parked on wfi), the
module area; on synthetic ELF and kdump-compressed (QEMU's "Unknown" machine) dumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.dumps import open_dump
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.errors import FaultError, UnsupportedDumpFormat
from kcrash.memory.arch import kernel_arch
from kcrash.memory.arch.aarch64 import Aarch64Kernel, page_offset
from kcrash.memory.kernel import find_panic_cpu_or_none, open_kernel_memory
from kcrash.memory.layout import KernelLayout
from kcrash.memory.translate.arm64 import Arm64PageTables
from support.arm64_tables import PHYS_OFFSET, Arm64Kernel


@pytest.mark.parametrize("fmt", ["elf", "kdump"])
@pytest.mark.parametrize(("va_bits", "t1sz", "levels"), [(48, 16, 4), (52, 12, 5), (52, 16, 4), (39, 25, 3),
                                                          (48, None, 4)])
def test_layout_and_reads(tmp_path: Path, fmt: str, va_bits: int, t1sz: int | None, levels: int) -> None:
    k = Arm64Kernel(va_bits=va_bits, t1sz=t1sz, kimage_vaddr=0xFFFF_FFC0_1020_0000 if va_bits == 39
                    else 0xFFFF_8000_8120_0000)
    path = tmp_path / "vmcore"
    k.write_elf(path) if fmt == "elf" else k.write_kdump(path)
    dump = open_dump(path)
    assert dump.machine == "aarch64"
    mem = open_kernel_memory(dump)
    layout = mem.layout
    assert (mem.machine, layout.machine, layout.source, layout.levels) == ("aarch64", "aarch64", "vmcoreinfo", levels)
    assert layout.va_bits == (64 - t1sz if t1sz else va_bits)
    assert layout.pgd == k.swapper_pg_dir - k.kimage_voffset
    assert (layout.phys_base, layout.image_voffset) == (PHYS_OFFSET, k.kimage_voffset)
    assert layout.kaslr_offset == k.kimage_vaddr - 0xFFFF_8000_8000_0000
    assert isinstance(mem.page_tables, Arm64PageTables)
    assert mem.read(k.stext, 11) == b"_stext here"
    assert mem.read(page_offset(layout.va_bits) + 0x1000, 10) == b"linear map"
    assert mem.read(k.vmalloc_page, 12) == b"vmalloc page"
    assert mem.translate(k.stext) == k.stext - k.kimage_voffset
    with pytest.raises(FaultError):
        mem.read(k.vmalloc_page + 4096, 8)
    assert [c.prstatus.registers["pc"] for c in mem.cpus if c.prstatus] == [k.busy_pc, k.park_pc]
    assert find_panic_cpu_or_none(mem) == 0
    assert mem.module_range() == (0xFFFF_8000_0000_0000, 0xFFFF_8000_8000_0000)


def test_user_tables_are_ttbr0() -> None:
    k = Arm64Kernel()
    layout = KernelLayout(0, 4, 0, PHYS_OFFSET, "vmcoreinfo", machine="aarch64", va_bits=48)
    tables = Aarch64Kernel().page_tables(k.image.read, k.tables.root, layout, kernel=False)
    assert isinstance(tables, Arm64PageTables) and not tables.kernel
    assert not tables.canonical(k.stext) and tables.canonical(0x40_0000)


def test_no_vmcoreinfo_is_no_layout(tmp_path: Path) -> None:
    k = Arm64Kernel()
    from kcrash.dumps.write.elf_vmcore import bytes_segment, write_elf_vmcore  # lazy: only this test writes by hand
    write_elf_vmcore(tmp_path / "e", k.notes(with_vmcoreinfo=False), [bytes_segment(PHYS_OFFSET, k.ram())],
                     e_machine=183)
    mem = open_kernel_memory(open_dump(tmp_path / "e"))
    assert (mem.layout.source, mem.page_tables, mem.machine) == ("none", None, "aarch64")
    assert mem.read(PHYS_OFFSET + 0x1000, 10, physical=True) == b"linear map"


def test_image_rule_and_module_fallback() -> None:
    arch = Aarch64Kernel()
    info = parse_vmcoreinfo(b"SYMBOL(_stext)=ffff800080010000\nNUMBER(kimage_voffset)=0xffff80003fe00000\n")
    layout = KernelLayout(1, 4, 0, PHYS_OFFSET, "vmcoreinfo", machine="aarch64", va_bits=48,
                          image_voffset=0xFFFF_8000_3FE0_0000)
    assert arch.image_physical_or_none(0xFFFF_8000_8001_0000, layout, info) == 0x4021_0000
    assert arch.image_physical_or_none(0xFFFF_8000_7000_0000, layout, info) is None
    assert arch.module_range(info, layout) == (0xFFFF_8000_0000_0000, 0xFFFF_8000_8000_0000)
    assert arch.image_start(info, layout) == 0xFFFF_8000_8000_0000


def test_64k_pages_walk_with_configured_va_bits() -> None:
    # 64 KiB pages keep 3 levels when 52-bit falls back to 48: swapper_pg_dir is laid out for VA_BITS
    info = parse_vmcoreinfo(b"PAGESIZE=65536\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
                            b"SYMBOL(swapper_pg_dir)=ffff800081000000\nNUMBER(kimage_voffset)=0xffff800040000000\n")
    layout = Aarch64Kernel().open_layout(None, [], info, None)  # type: ignore[arg-type]
    assert (layout.va_bits, layout.page_shift, layout.levels, layout.pgd) == (52, 16, 3, 0x4100_0000)


def test_unknown_machine() -> None:
    assert kernel_arch("aarch64").machine == "aarch64"
    with pytest.raises(UnsupportedDumpFormat, match="riscv64"):
        kernel_arch("riscv64")
