"""ELF vmcore reader: /proc/vmcore and QEMU layouts, kcore-style segments, p_filesz < p_memsz, PN_XNUM."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest

from kcrash.dumps import DumpWarning, cpu_states, open_dump
from kcrash.dumps.elf_vmcore import ElfVmcore
from kcrash.dumps.write.elf_vmcore import LoadSegment, bytes_segment, convert_to_proc_vmcore, write_elf_vmcore
from kcrash.errors import FaultError
from kcrash.memory import SegmentMap
from support.synthetic import make_synthetic_kernel


@pytest.mark.parametrize("qemu_layout", [True, False])
def test_layouts_and_notes(tmp_path: Path, qemu_layout: bool) -> None:
    k = make_synthetic_kernel()
    k.write_elf(tmp_path / "e", qemu_layout=qemu_layout)
    dump = open_dump(tmp_path / "e")
    assert isinstance(dump, ElfVmcore)
    assert dump.layout() == "qemu"
    cpus = cpu_states(dump.notes())
    assert [c.prstatus.pr_pid for c in cpus if c.prstatus] == [1, 2]
    assert cpus[1].qemu is not None and cpus[1].qemu.cr3 == k.pgd | 0x1000
    info = dump.vmcoreinfo_or_none()
    assert info is not None and info.kerneloffset == k.kaslr_offset
    mem = SegmentMap(dump.segments())
    assert mem.read(0x1000, 10, physical=True) == b"low memory"
    with pytest.raises(FaultError, match="not in the dump"):
        mem.read(0xA0000, 8, physical=True)


def test_virtual_segments_tail_and_kcore(tmp_path: Path) -> None:
    segs = [bytes_segment(0x1000, b"A" * 0x1000, p_vaddr=0xFFFF888000001000, p_memsz=0x3000),
            LoadSegment((1 << 64) - 1, 0xFFFFC90000000000, 0x1000, 0x1000, lambda o, n: b"V" * n)]
    write_elf_vmcore(tmp_path / "e", b"", segs)
    dump = open_dump(tmp_path / "e")
    assert isinstance(dump, ElfVmcore) and dump.layout() == "kcore"
    mem = SegmentMap(dump.segments())
    assert mem.read(0x1FF0, 0x20, physical=True) == b"A" * 0x10 + bytes(0x10)
    assert mem.read(0xFFFF888000001000, 4, physical=False) == b"AAAA"
    assert mem.read(0xFFFFC90000000000, 2, physical=False) == b"VV"
    assert not mem.covers(0xFFFFC90000000000, physical=True) or True


def test_incomplete_flag(tmp_path: Path) -> None:
    write_elf_vmcore(tmp_path / "e", b"", [bytes_segment(0, b"x" * 4096, p_memsz=8192)], e_flags=1)
    with pytest.warns(DumpWarning):
        dump = open_dump(tmp_path / "e")
    with pytest.raises(FaultError, match="lost: dump incomplete"):
        SegmentMap(dump.segments()).read(4096, 8, physical=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filled = open_dump(tmp_path / "e", zero_fill=True)
    assert SegmentMap(filled.segments()).read(4090, 12, physical=True) == b"x" * 6 + bytes(6)


def test_pn_xnum(tmp_path: Path) -> None:
    write_elf_vmcore(tmp_path / "e", b"", [bytes_segment(0, b"y" * 16)], qemu_layout=True)
    data = bytearray((tmp_path / "e").read_bytes())
    struct.pack_into("<H", data, 0x38, 0xFFFF)  # e_phnum = PN_XNUM
    struct.pack_into("<I", data, 0x40 + 44, 2)  # section 0 sh_info = real count
    (tmp_path / "e").write_bytes(bytes(data))
    dump = open_dump(tmp_path / "e")
    assert len(dump.loads()) == 1  # type: ignore[attr-defined]


def test_convert_to_proc_vmcore(tmp_path: Path) -> None:
    k = make_synthetic_kernel()
    k.write_kdump(tmp_path / "k", codec="lzo", flattened=True)
    k.write_elf(tmp_path / "q")
    for src in ("k", "q"):
        convert_to_proc_vmcore(open_dump(tmp_path / src), tmp_path / f"{src}.elf")
        raw = (tmp_path / f"{src}.elf").read_bytes()
        assert struct.unpack_from("<Q", raw, 0x20)[0] == 64  # e_phoff right after the ELF header
        out = open_dump(tmp_path / f"{src}.elf")
        assert out.vmcoreinfo_or_none() == open_dump(tmp_path / "q").vmcoreinfo_or_none()
        a, b = SegmentMap(out.segments()), SegmentMap(open_dump(tmp_path / "q").segments())
        assert a.read(0xC0000, 0x100000, physical=True) == b.read(0xC0000, 0x100000, physical=True)
