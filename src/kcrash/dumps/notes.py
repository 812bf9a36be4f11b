"""
kcrash.dumps.notes
==================

ELF note parsing (``Elf{32,64}_Nhdr`` + name + desc, each padded to 4 bytes) shared by the ELF and
kdump-compressed readers. It yields raw :class:`Note` records; interpreting PRSTATUS and QEMU
CPU-state descs is :mod:`kcrash.dumps.cpustate`, VMCOREINFO text is :mod:`kcrash.dumps.vmcoreinfo`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcrash._binary import binary_structs
from kcrash.errors import CorruptDumpError

__all__ = ["NT_PRSTATUS", "Note", "parse_notes"]

NT_PRSTATUS = 1
_MAX_NOTES = 1 << 16


@dataclass(frozen=True, slots=True)
class Note:
    """One ELF note: ``name`` without its NUL, ``n_type``, ``desc`` bytes, and the desc's file offset."""

    name: str
    n_type: int
    desc: bytes
    offset: int


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_notes(data: bytes, file_offset: int, *, little_endian: bool = True, partial: bool = False) -> list[Note]:
    """Parse the notes in ``data`` (read from ``file_offset``); a bad note raises CorruptDumpError.

    Trailing zero padding (a zero ``Nhdr``) ends the list, as in ``/proc/vmcore``. With ``partial``
    (``data`` is the head of a segment cut short) a note running past the end ends the list instead.
    """
    nhdr = binary_structs(little_endian, 8).Elf_Nhdr
    notes: list[Note] = []
    pos = 0
    while pos + nhdr.size <= len(data) and len(notes) < _MAX_NOTES:
        hdr = nhdr.unpack(data, pos, file_offset=file_offset + pos)
        namesz, descsz = hdr["n_namesz"], hdr["n_descsz"]
        if namesz == 0 and descsz == 0 and hdr["n_type"] == 0:
            break
        name_at = pos + nhdr.size
        desc_at = name_at + _align4(namesz)
        end = desc_at + _align4(descsz)
        if desc_at + descsz > len(data):
            if partial:
                break
            raise CorruptDumpError(f"ELF note overruns its segment (n_descsz {descsz})", file_offset + pos)
        name = data[name_at:name_at + namesz].split(b"\0", 1)[0].decode("ascii", "replace")
        notes.append(Note(name, hdr["n_type"], bytes(data[desc_at:desc_at + descsz]), file_offset + desc_at))
        pos = end
    return notes
