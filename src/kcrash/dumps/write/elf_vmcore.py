"""
kcrash.dumps.write.elf_vmcore
=============================

Writers of ELF64 vmcores. :func:`write_elf_vmcore` lays out a ``/proc/vmcore``-shaped file (program
headers right after the ELF header, ``PT_NOTE`` first, then one ``PT_LOAD`` per segment) or QEMU's
layout (a two-entry section header table at 0x40 and program headers after it).
:func:`convert_to_proc_vmcore` copies any dump kcrash can read into the ``/proc/vmcore`` shape, which
is what makedumpfile 1.7.2 expects (it cannot read QEMU's layout), streaming the memory in chunks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kcrash._binary import binary_structs
from kcrash.dumps.base import DumpFormat, MemorySegment
from kcrash.dumps.elf_vmcore import ElfVmcore

__all__ = ["LoadSegment", "convert_to_proc_vmcore", "write_elf_vmcore"]

_EHDR = 64
_PHDR = 56
_SHDR = 64
_CHUNK = 1 << 20
_SHSTRTAB = b"\0.shstrtab\0"


@dataclass(frozen=True, slots=True)
class LoadSegment:
    """One ``PT_LOAD``: ``p_paddr``, ``p_vaddr``, ``p_memsz``, and a reader of its first ``filesz``
    bytes (``read(offset, size)``, offset relative to the segment)."""

    p_paddr: int
    p_vaddr: int
    p_memsz: int
    filesz: int
    read: Callable[[int, int], bytes]


def bytes_segment(p_paddr: int, data: bytes, *, p_vaddr: int | None = None, p_memsz: int | None = None
                  ) -> LoadSegment:
    """Return a LoadSegment holding ``data`` (``p_memsz`` may exceed it)."""
    return LoadSegment(p_paddr, p_paddr if p_vaddr is None else p_vaddr,
                       len(data) if p_memsz is None else p_memsz, len(data),
                       lambda off, size: data[off:off + size])


def _ehdr(phoff: int, phnum: int, shoff: int, shnum: int, e_flags: int, e_machine: int = 62) -> bytes:
    s = binary_structs(True, 8)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return s.Elf_Ehdr.pack(e_ident=ident, e_type=4, e_machine=e_machine, e_version=1, e_phoff=phoff, e_shoff=shoff,
                           e_flags=e_flags, e_ehsize=_EHDR, e_phentsize=_PHDR, e_phnum=phnum,
                           e_shentsize=_SHDR if shnum else 0, e_shnum=shnum, e_shstrndx=1 if shnum else 0)


def _shdrs(strtab_offset: int) -> bytes:
    s = binary_structs(True, 8)
    return s.Elf_Shdr.pack() + s.Elf_Shdr.pack(sh_name=1, sh_type=3, sh_offset=strtab_offset,
                                               sh_size=len(_SHSTRTAB), sh_addralign=1)


def write_elf_vmcore(path: Path, notes: bytes, segments: Sequence[LoadSegment], *, qemu_layout: bool = False,
                     e_flags: int = 0, e_machine: int = 62) -> None:
    """Write an ELF64 core file (``e_machine`` 62: x86-64, 183: aarch64): ``PT_NOTE`` with ``notes``,
    then one PT_LOAD per segment."""
    s = binary_structs(True, 8)
    phnum = 1 + len(segments)
    shnum = 2 if qemu_layout else 0
    phoff = _EHDR + shnum * _SHDR if qemu_layout else _EHDR
    pos = phoff + phnum * _PHDR
    strtab = pos
    if qemu_layout:
        pos += len(_SHSTRTAB)
    note_offset = pos
    pos += len(notes)
    phdrs = [s.Elf_Phdr.pack(p_type=4, p_offset=note_offset, p_filesz=len(notes), p_memsz=len(notes))]
    for seg in segments:
        phdrs.append(s.Elf_Phdr.pack(p_type=1, p_flags=7, p_offset=pos, p_vaddr=seg.p_vaddr,
                                     p_paddr=seg.p_paddr, p_filesz=seg.filesz, p_memsz=seg.p_memsz))
        pos += seg.filesz
    with Path(path).open("wb") as f:
        f.write(_ehdr(phoff, phnum, _EHDR if qemu_layout else 0, shnum, e_flags, e_machine))
        if qemu_layout:
            f.write(_shdrs(strtab))
        f.write(b"".join(phdrs))
        if qemu_layout:
            f.write(_SHSTRTAB)
        f.write(notes)
        for seg in segments:
            _copy(f.write, seg)


def _copy(write: Callable[[bytes], object], seg: LoadSegment) -> None:
    for off in range(0, seg.filesz, _CHUNK):
        write(seg.read(off, min(_CHUNK, seg.filesz - off)))


def _raw_notes(dump: DumpFormat) -> bytes:
    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
    from kcrash.dumps.write.notes import build_note

    return b"".join(build_note(n.name, n.n_type, n.desc) for n in dump.notes())


def _physical_loads(dump: DumpFormat, fd: int) -> Iterable[LoadSegment]:
    if isinstance(dump, ElfVmcore):
        for ph in dump.loads():
            if ph.p_filesz:
                yield LoadSegment(ph.p_paddr, ph.p_vaddr, ph.p_memsz, ph.p_filesz,
                                  _file_reader(fd, ph.p_offset))
        return
    for seg in dump.segments():
        if seg.physical:
            yield LoadSegment(seg.start, seg.start, seg.size, seg.size, _segment_reader(seg))


def _file_reader(fd: int, base: int) -> Callable[[int, int], bytes]:
    return lambda off, size: os.pread(fd, size, base + off)


def _segment_reader(seg: MemorySegment) -> Callable[[int, int], bytes]:
    return lambda off, size: seg.read_fn(seg.start + off, size)


def convert_to_proc_vmcore(dump: DumpFormat, out: Path) -> None:
    """Write ``dump`` (notes and physical memory) as a ``/proc/vmcore``-shaped ELF64 file at ``out``.

    ELF input keeps its ``PT_LOAD`` headers (``p_vaddr`` included); other formats give one PT_LOAD per
    physical segment with ``p_vaddr = p_paddr``, as QEMU writes with paging off.
    """
    fd = os.open(dump.path, os.O_RDONLY)
    try:
        write_elf_vmcore(out, _raw_notes(dump), list(_physical_loads(dump, fd)))
    finally:
        os.close(fd)
