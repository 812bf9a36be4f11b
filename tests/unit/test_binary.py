"""kcrash._binary: struct layouts per byte order and word size. ELF layouts have pyelftools'
sizes (an independent implementation, 32/64-bit, both byte orders); the dump formats' structs have
the sizes their writers use (makedumpfile's page_desc and flattened headers, the kernel's x86-64
elf_prstatus, QEMU's QEMUCPUState); C alignment follows max_align (i386 aligns 8-byte members to
4); pack/unpack round-trip; a short buffer is CorruptDumpError at the file offset."""

from __future__ import annotations

import pytest
from elftools.elf.structs import ELFStructs

from kcrash._binary import BinaryStructs, binary_structs, flat_structs
from kcrash.errors import CorruptDumpError


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("word_size", [4, 8])
def test_elf_layouts_match_pyelftools(little_endian: bool, word_size: int) -> None:
    ours = binary_structs(little_endian, word_size)
    theirs = ELFStructs(little_endian=little_endian, elfclass=8 * word_size)
    theirs.create_basic_structs()
    theirs.create_advanced_structs()
    assert ours.Elf_Ehdr.size == theirs.Elf_Ehdr.sizeof()
    assert ours.Elf_Phdr.size == theirs.Elf_Phdr.sizeof()
    assert ours.Elf_Shdr.size == theirs.Elf_Shdr.sizeof()
    assert ours.Elf_Nhdr.size == theirs.Elf_Nhdr.sizeof()
    # field order too: pack with ours, parse with pyelftools
    raw = ours.Elf_Phdr.pack(p_type=1, p_flags=5, p_offset=0x1000, p_vaddr=0x400000, p_paddr=0x2000,
                             p_filesz=0x30, p_memsz=0x40, p_align=0x1000)
    parsed = theirs.Elf_Phdr.parse(raw)
    assert (parsed.p_type, parsed.p_flags, parsed.p_offset, parsed.p_vaddr, parsed.p_paddr, parsed.p_filesz,
            parsed.p_memsz, parsed.p_align) == ("PT_LOAD", 5, 0x1000, 0x400000, 0x2000, 0x30, 0x40, 0x1000)


def test_dump_struct_sizes() -> None:
    s = binary_structs()
    assert s.page_desc.size == 24  # makedumpfile diskdump_mod.h: packed on every architecture
    assert s.elf_prstatus_x86_64.size == 336  # the NT_PRSTATUS descsz of an x86-64 core/vmcore
    assert s.QEMUCPUState_x86_64.size == 0x1B8  # target/i386/arch_dump.c, the size field QEMU writes
    flat = flat_structs()
    assert (flat.makedumpfile_header.size, flat.makedumpfile_data_header.size) == (32, 16)


def test_round_trip_both_byte_orders() -> None:
    for little_endian in (True, False):
        s = binary_structs(little_endian, 8)
        raw = s.disk_dump_header.pack(signature=b"KDUMP   ", header_version=6, release=b"6.1.0", block_size=4096,
                                      nr_cpus=2, tv_sec=-1)
        rec = s.disk_dump_header.unpack(raw)
        assert (rec["header_version"], rec["block_size"], rec["nr_cpus"], rec["tv_sec"]) == (6, 4096, 2, -1)
        assert rec.text("release") == b"6.1.0" and rec.raw("release") == b"6.1.0".ljust(65, b"\0")
        assert rec.text("signature") == b"KDUMP   "
        assert raw[8:12] == (6).to_bytes(4, "little" if little_endian else "big")
        assert "status" in rec.as_dict() and "release" not in rec.as_dict()


def test_padding_fields_are_not_returned() -> None:
    layout = binary_structs().QEMUCPUState_x86_64
    assert "_cs_pad" not in layout.fields and "cs_base" in layout.fields
    rec = layout.unpack(layout.pack(rip=0xFFFFFFFF81000000, cr3=0x1234000, gs_base=0xFFFF888000000000))
    assert (rec["rip"], rec["cr3"], rec["gs_base"]) == (0xFFFFFFFF81000000, 0x1234000, 0xFFFF888000000000)


def test_max_align_places_8_byte_members() -> None:
    # kdump_sub_header on a 32-bit target: offset_vmcoreinfo (long long) follows 20 bytes of words;
    # i386 aligns it to 4 (offset 20), 32-bit ARM to 8 (offset 24)
    marker = 0x1122334455667788
    for max_align, where in ((4, 20), (8, 24)):
        layout = BinaryStructs(True, 4, max_align).kdump_sub_header
        raw = layout.pack(offset_vmcoreinfo=marker)
        assert raw.index(marker.to_bytes(8, "little")) == where


def test_short_buffer_is_corrupt_at_the_file_offset() -> None:
    layout = binary_structs().Elf_Ehdr
    with pytest.raises(CorruptDumpError, match="truncated Elf_Ehdr at file offset 0x40") as info:
        layout.unpack(b"\x7fELF" + bytes(20), file_offset=0x40)
    assert info.value.offset == 0x40
    with pytest.raises(CorruptDumpError) as info:
        layout.unpack(bytes(100), offset=50)
    assert info.value.offset == 50


def test_cached_and_checked() -> None:
    assert binary_structs(True, 8) is binary_structs(True, 8)
    assert flat_structs() is flat_structs()
    with pytest.raises(ValueError, match="word size 2"):
        BinaryStructs(True, 2)
