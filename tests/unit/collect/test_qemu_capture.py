"""kcrash collect qemu, the parts that need no VM: HMP ``info registers -a`` and ``info mtree -f``
parsing (texts captured from QEMU 7.2 with a Debian 6.1 guest), and a capture of a synthetic
kernel's RAM file written as a filtered dump, with VMCOREINFO found in RAM and validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.collect.convert import ConvertOptions
from kcrash.collect.qemu import GuestCapture, find_vmcoreinfo, parse_info_registers, parse_mtree_ram, write_capture
from kcrash.collect.source import RamRange
from kcrash.dumps import cpu_states, open_dump
from kcrash.dumps.write.notes import build_vmcoreinfo_note
from kcrash.errors import LiveTargetError
from kcrash.memory import open_kernel_memory
from support.synthetic import make_synthetic_kernel

REGISTERS = """\
CPU#0
RAX=000000000001ad40 RBX=0000000000000000 RCX=0000000000000001 RDX=4000000000000000
RSI=0000000000000083 RDI=00000000000295dc RBP=ffffffff82a1aa40 RSP=ffffffff82a03e98
R8 =0000000000000000 R9 =0000000000000007 R10=0000000000000000 R11=0000000000000001
R12=0000000000000000 R13=0000000000000000 R14=ffffffff82a1a120 R15=0000000000014790
RIP=ffffffff81a592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
ES =0000 0000000000000000 00000000 00000000
CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]
SS =0018 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
DS =0000 0000000000000000 00000000 00000000
FS =0000 0000000000000000 00000000 00000000
GS =0000 ffff88800f800000 00000000 00000000
LDT=0000 0000000000000000 00000000 00008200 DPL=0 LDT
TR =0040 fffffe0000003000 00004087 00008900 DPL=0 TSS64-avl
GDT=     fffffe0000001000 0000007f
IDT=     fffffe0000000000 00000fff
CR0=80050033 CR2=00000000005794a9 CR3=0000000005a50000 CR4=000006f0
EFER=0000000000000d01
CPU#1
RAX=000000000001ad40 RBX=0000000000000000 RCX=0000000000000000 RDX=4000000000000000
RSI=0000000000000083 RDI=0000000000048a64 RBP=ffff888004a68000 RSP=ffffc9000009bed8
R8 =0000000000000000 R9 =0000000000000007 R10=00000000fffffffb R11=0000000000000001
R12=0000000000000001 R13=0000000000000000 R14=0000000000000000 R15=0000000000000000
RIP=ffffffff81a592eb RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=1
ES =0000 0000000000000000 00000000 00000000
CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]
SS =0018 0000000000000000 ffffffff 00cf9300 DPL=0 DS   [-WA]
DS =0000 0000000000000000 00000000 00000000
FS =0000 0000000000000000 00000000 00000000
GS =0000 ffff88800f900000 00000000 00000000
LDT=0000 0000000000000000 00000000 00008200 DPL=0 LDT
TR =0040 fffffe000003e000 00004087 00008900 DPL=0 TSS64-avl
GDT=     fffffe000003c000 0000007f
IDT=     fffffe0000000000 00000fff
CR0=80050033 CR2=00000000005794a9 CR3=0000000005b72000 CR4=000006e0
EFER=0000000000000d01
"""

MTREE = """\
FlatView #1
 AS "cpu-smm-0", root: memory
 Root memory region: memory
  0000000000000000-00000000000c2fff (prio 0, ram): ram0
FlatView #3
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
  0000000000000000-00000000000c2fff (prio 0, ram): ram0
  00000000000c3000-00000000000e7fff (prio 0, rom): ram0 @00000000000c3000
  00000000000e8000-00000000000effff (prio 0, ram): ram0 @00000000000e8000
  00000000000f0000-00000000000fffff (prio 0, rom): ram0 @00000000000f0000
  0000000000100000-000000000fffffff (prio 0, ram): ram0 @0000000000100000
  00000000fec00000-00000000fec00fff (prio 0, i/o): ioapic
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
"""

MTREE_5G = """\
FlatView #0
 AS "memory", root: system
 Root memory region: system
  0000000000000000-000000000009ffff (prio 0, ram): ram0
  00000000000a0000-00000000000bffff (prio 1, i/o): vga-lowmem
  00000000000c0000-00000000bfffffff (prio 0, ram): ram0 @00000000000c0000
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
  0000000100000000-000000013fffffff (prio 0, ram): ram0 @00000000c0000000
"""


def test_info_registers_every_cpu() -> None:
    cpus = parse_info_registers(REGISTERS)
    assert [c.cpu for c in cpus] == [0, 1]
    c0, c1 = cpus
    assert c0.regs["rip"] == 0xFFFFFFFF81A592EB and c0.regs["rsp"] == 0xFFFFFFFF82A03E98
    assert c0.regs["r8"] == 0 and c0.regs["r9"] == 7 and c0.regs["r15"] == 0x14790
    assert c0.regs["rflags"] == 0x246
    assert c0.cr == (0x80050033, 0, 0x5794A9, 0x5A50000, 0x6F0)
    assert c0.segments["cs"] == (0x10, 0) and c1.segments["gs"] == (0, 0xFFFF88800F900000)
    assert c1.regs["rbp"] == 0xFFFF888004A68000 and c1.cr[3] == 0x5B72000


def test_info_registers_garbage_is_a_typed_error() -> None:
    with pytest.raises(LiveTargetError):
        parse_info_registers("Error: no CPUs")
    with pytest.raises(LiveTargetError, match="RIP"):
        parse_info_registers("CPU#0\nRAX=0000000000000001\n")


def test_mtree_ram_ranges_follow_the_backend() -> None:
    assert parse_mtree_ram(MTREE, "ram0") == [RamRange(0, 0x10000000, 0)]
    assert parse_mtree_ram(MTREE, "other") == []
    # a 4 GiB guest: the VGA window is a hole and RAM above 3 GiB moves to 4 GiB
    assert parse_mtree_ram(MTREE_5G, "ram0") == [RamRange(0, 0xA0000, 0), RamRange(0xC0000, 0xBFF40000, 0xC0000),
                                                  RamRange(0x100000000, 0x40000000, 0xC0000000)]


@pytest.fixture()
def guest(tmp_path: Path) -> GuestCapture:
    k = make_synthetic_kernel(kaslr_offset=0x1E00000)
    k.image.write(0x7F000, b"VMCOREINFO\0\0OSRELEASE=6.1.0-bogus\n")  # a stray copy: not a note
    k.image.write(0x80000, build_vmcoreinfo_note("OSRELEASE=9.9-stale\nSYMBOL(init_uts_ns)=0\n"))
    k.image.write(0x81000, build_vmcoreinfo_note(k.vmcoreinfo))
    ram = tmp_path / "guest.ram"
    ram.write_bytes(b"".join(k.pages().values()))
    cpus = parse_info_registers(REGISTERS)
    cpus = [type(c)(c.cpu, c.regs, (c.cr[0], 0, 0, k.pgd, c.cr[4]), c.segments) for c in cpus]
    return GuestCapture(ram, [RamRange(0, 0xA0000, 0), RamRange(0xC0000, k.ram_pages * 4096 - 0xC0000, 0xC0000)],
                        cpus, "paused", False)


def test_vmcoreinfo_is_found_and_validated(guest: GuestCapture) -> None:
    text = find_vmcoreinfo(guest)
    assert text is not None and text.startswith("OSRELEASE=6.1.0-synthetic")


@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_capture_written_as_dump(guest: GuestCapture, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"guest.{fmt}"
    result, has_info = write_capture(guest, out, ConvertOptions(dump_level=1, codec="lzo", format=fmt))
    assert has_info and not result.write.incomplete and result.report.excluded["zero"] > 0
    dump = open_dump(out)
    assert dump.vmcoreinfo_or_none().osrelease == "6.1.0-synthetic"  # type: ignore[union-attr]
    cpus = cpu_states(dump.notes())
    assert [c.prstatus.pr_pid for c in cpus] == [1, 2]  # type: ignore[union-attr]
    assert cpus[1].prstatus.registers["rsp"] == 0xFFFFC9000009BED8  # type: ignore[union-attr]
    assert cpus[0].qemu is not None and cpus[0].qemu.segment_bases["gs"] == 0xFFFF88800F800000
    ram = guest.ram_file.read_bytes()
    mem = open_kernel_memory(dump)
    for addr in range(0x200000, len(ram), 0x7000):
        page = ram[addr & ~0xFFF:(addr & ~0xFFF) + 4096]
        if any(page):
            assert mem.read(addr & ~0xFFF, 4096, physical=True) == page
    dump.close()
