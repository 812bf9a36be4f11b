"""
kcrash.dumps.elf_vmcore
=======================

Reader of ELF core dumps of a kernel: ``/proc/vmcore`` and ``makedumpfile -E`` output, QEMU
``dump-guest-memory`` (section headers before the program headers; ``p_vaddr == p_paddr`` with
paging off, virtual addresses with paging on) and the ``/proc/kcore`` layout (``p_paddr`` of -1 for
regions with no physical address). ELF32 and ELF64, either byte order; ``PN_XNUM`` program header
counts. Every ``PT_LOAD`` becomes a physical segment at ``p_paddr`` and, when ``p_vaddr`` differs, a
virtual one; bytes between ``p_filesz`` and ``p_memsz`` read as zeros, or as lost pages when the
dump is flagged incomplete (``e_flags & DUMP_ELF_INCOMPLETE``). A file cut short keeps every byte it
still has: the part of a segment past the end of the file reads as missing (a
:class:`~kcrash.errors.FaultError`), and the dump warns once with the count of missing pages.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from kcrash._binary import BinaryStructs, Record, binary_structs
from kcrash.dumps._io import PlainFile, read_exact
from kcrash.dumps.base import (
    DumpDescription,
    DumpWarning,
    MemorySegment,
    PageCounts,
    ReadFn,
    machine_from_e_machine,
    missing_pages_warning,
)
from kcrash.dumps.notes import Note, parse_notes
from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from kcrash.errors import CorruptDumpError, FaultError, UnsupportedDumpFormat
from kcrash.metrics import COUNTERS

__all__ = ["DUMP_ELF_INCOMPLETE", "ElfVmcore", "ProgramHeader"]

ET_CORE = 4
PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
DUMP_ELF_INCOMPLETE = 0x1
_NT_TASKSTRUCT = 4
_MAX_PHNUM = 1 << 22
_MAX_NOTE_BYTES = 64 << 20
_PAGE = 4096
_ALIGN_SLACK = 1 << 16  # the most padding a writer puts before a segment (page or 64 KiB alignment)


@dataclass(frozen=True, slots=True)
class ProgramHeader:
    """One ``Elf_Phdr``, field names as in the spec."""

    p_type: int
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int
    p_flags: int
    p_align: int


class ElfVmcore:
    """An ELF core dump of a kernel. Open with :meth:`open` or ``open_dump``."""

    format_name: ClassVar[str] = "elf"

    def __init__(self, path: Path, file: PlainFile, structs: BinaryStructs, ehdr: Record,
                 phdrs: list[ProgramHeader], *, zero_fill: bool = False) -> None:
        self.path = path
        self.ehdr = ehdr
        self.phdrs = phdrs
        self.zero_fill = zero_fill
        self._file = file
        self._structs = structs
        self._notes: list[Note] | None = None
        self.incomplete = bool(ehdr["e_flags"] & DUMP_ELF_INCOMPLETE)
        #: pages of PT_LOAD data past the end of a file cut short
        self.cut_pages = sum(_pages(ph.p_filesz) - self._stored(ph) // _PAGE for ph in self.loads()
                             if self._stored(ph) < ph.p_filesz)
        if self.cut_pages:
            total = sum(_pages(ph.p_filesz) for ph in self.loads())
            warnings.warn(missing_pages_warning(path, f"dump is cut short at byte {file.size:,}", self.cut_pages,
                                                total), DumpWarning, stacklevel=3)
        if self.incomplete:
            warnings.warn(f"{path}: ELF dump is flagged incomplete", DumpWarning, stacklevel=3)

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Return True for an ELF ``ET_CORE`` file."""
        if head[:4] != b"\x7fELF" or len(head) < 18 or head[5] not in (1, 2):
            return False
        return int.from_bytes(head[16:18], "little" if head[5] == 1 else "big") == ET_CORE

    @classmethod
    def open(cls, path: Path, *, zero_fill: bool = False) -> Self:
        """Open and validate ``path``."""
        file = PlainFile(Path(path))
        try:
            structs, ehdr = _read_ehdr(file)
            phdrs = _read_phdrs(file, structs, ehdr)
            return cls(Path(path), file, structs, ehdr, phdrs, zero_fill=zero_fill)
        except BaseException:
            file.close()
            raise

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    @property
    def word_size(self) -> int:
        """Return 8 for ELF64, 4 for ELF32."""
        return self._structs.word_size

    @property
    def machine(self) -> str:
        """Return the canonical machine of ``e_machine`` (``"x86_64"``, ``"aarch64"``)."""
        return machine_from_e_machine(self.ehdr["e_machine"])

    def loads(self) -> list[ProgramHeader]:
        """Return the ``PT_LOAD`` headers."""
        return [p for p in self.phdrs if p.p_type == PT_LOAD]

    def segments(self) -> Sequence[MemorySegment]:
        """Return a physical segment per PT_LOAD (unless ``p_paddr`` is -1) and a virtual one when
        ``p_vaddr != p_paddr``."""
        no_paddr = (1 << (8 * self.word_size)) - 1
        out: list[MemorySegment] = []
        for ph in self.loads():
            if ph.p_memsz == 0:
                continue
            if ph.p_paddr != no_paddr:
                out.append(MemorySegment(ph.p_paddr, ph.p_memsz, self._reader(ph, ph.p_paddr, True), True))
            if ph.p_vaddr != ph.p_paddr:
                out.append(MemorySegment(ph.p_vaddr, ph.p_memsz, self._reader(ph, ph.p_vaddr, False), False))
        return out

    def _stored(self, ph: ProgramHeader) -> int:
        # bytes of the segment's p_filesz that the file still has (fewer when it is cut short)
        return max(0, min(ph.p_filesz, self._file.size - ph.p_offset))

    def _reader(self, ph: ProgramHeader, base: int, physical: bool) -> ReadFn:
        pread = self._file.pread
        stored = self._stored(ph)

        def read(address: int, size: int) -> bytes:
            rel = address - base
            COUNTERS.pages_read += (address + size - 1) // 4096 - address // 4096 + 1 if size else 0
            if rel + size <= stored:
                return pread(ph.p_offset + rel, size)
            return self._read_tail(ph, rel, size, address, physical)

        return read

    def _read_tail(self, ph: ProgramHeader, rel: int, size: int, address: int, physical: bool) -> bytes:
        # Part or all of the read lies past what the file has, or between p_filesz and p_memsz.
        have = self._stored(ph)
        if have < ph.p_filesz and rel + size > have:
            raise FaultError(address + max(have - rel, 0), physical,
                             f"missing: the dump file is cut short ({self._file.size:,} bytes)")
        stored = max(0, min(ph.p_filesz - rel, size))
        head = self._file.pread(ph.p_offset + rel, stored) if stored else b""
        if self.incomplete and not self.zero_fill:
            raise FaultError(address + stored, physical, "lost: dump incomplete")
        return head + bytes(size - stored)

    def notes(self) -> Sequence[Note]:
        """Return the notes of every PT_NOTE segment, in order."""
        if self._notes is None:
            self._notes = []
            for ph in self.phdrs:
                if ph.p_type != PT_NOTE or ph.p_filesz == 0:
                    continue
                if ph.p_filesz > _MAX_NOTE_BYTES:
                    raise CorruptDumpError(f"PT_NOTE p_filesz {ph.p_filesz} is absurd", ph.p_offset,
                                           str(self.path))
                have = self._stored(ph)  # a cut file: the notes that are whole
                data = read_exact(self._file, ph.p_offset, have, "PT_NOTE segment")
                self._notes += parse_notes(data, ph.p_offset, little_endian=self._structs.little_endian,
                                           partial=have < ph.p_filesz)
        return self._notes

    def vmcoreinfo_or_none(self) -> VmcoreInfo | None:
        """Return the VMCOREINFO note, parsed, or None."""
        for note in self.notes():
            if note.name == "VMCOREINFO":
                return parse_vmcoreinfo(note.desc)
        return None

    def layout(self) -> str:
        """Return which writer's layout this is: ``qemu``, ``qemu-paging``, ``kcore`` or ``vmcore``."""
        names = {(n.name, n.n_type) for n in self.notes()}
        loads = self.loads()
        no_paddr = (1 << (8 * self.word_size)) - 1
        if ("QEMU", 0) in names:
            return "qemu-paging" if any(p.p_vaddr != p.p_paddr for p in loads) else "qemu"
        if ("CORE", _NT_TASKSTRUCT) in names or any(p.p_paddr == no_paddr for p in loads):
            return "kcore"
        return "vmcore"

    def describe(self) -> DumpDescription:
        """Return the header facts; pages are counted from PT_LOAD sizes (4 KiB pages)."""
        loads = self.loads()
        stored = sum(p.p_filesz for p in loads)
        total = sum(p.p_memsz for p in loads if p.p_paddr != (1 << (8 * self.word_size)) - 1)
        present = stored // _PAGE - self.cut_pages
        unstored = max(total - stored, 0) // _PAGE
        counts = PageCounts(_PAGE, present=present, zero=0 if self.incomplete else unstored,
                            lost=(unstored if self.incomplete else 0) + self.cut_pages, raw=present)
        cpus = sum(1 for n in self.notes() if n.name == "CORE" and n.n_type == 1)
        return DumpDescription(
            path=str(self.path), format=f"elf{8 * self.word_size} ({self.layout()})", codecs=("raw",),
            pages=counts, nr_cpus=cpus, status=self.ehdr["e_flags"],
            status_flags=(("incomplete",) if self.incomplete else ()) + (("cut short",) if self.cut_pages else ()),
            incomplete=self.incomplete or bool(self.cut_pages),
            files=(str(self.path),))


def _read_ehdr(file: PlainFile) -> tuple[BinaryStructs, Record]:
    head = file.pread(0, 64)
    if not ElfVmcore.sniff(head):
        raise UnsupportedDumpFormat(f"{file.path}: not an ELF core file")
    if head[4] not in (1, 2):
        raise CorruptDumpError(f"bad EI_CLASS {head[4]}", 4, str(file.path))
    structs = binary_structs(head[5] == 1, 8 if head[4] == 2 else 4)
    return structs, structs.Elf_Ehdr.unpack(head, 0, file_offset=0)


def _read_phdrs(file: PlainFile, structs: BinaryStructs, ehdr: Record) -> list[ProgramHeader]:
    layout = structs.Elf_Phdr
    path = str(file.path)
    if ehdr["e_phentsize"] != layout.size:
        raise CorruptDumpError(f"e_phentsize {ehdr['e_phentsize']}, expected {layout.size}",
                               0x36 if structs.word_size == 8 else 0x2A, path)
    phnum = ehdr["e_phnum"]
    if phnum == PN_XNUM:
        phnum = _extended_phnum(file, structs, ehdr)
    phoff = ehdr["e_phoff"]
    if phnum > _MAX_PHNUM or phoff + phnum * layout.size > file.size:
        raise CorruptDumpError(f"{phnum} program headers at e_phoff {phoff:#x} do not fit in the file",
                               0x38 if structs.word_size == 8 else 0x2C, path)
    table = read_exact(file, phoff, phnum * layout.size, "program headers")
    phdrs = [_phdr(layout.unpack(table, i * layout.size, file_offset=phoff + i * layout.size))
             for i in range(phnum)]
    for i, ph in enumerate(phdrs):
        _check_phdr(ph, file, phoff + i * layout.size)
    _check_cut(phdrs, file, phoff)
    return phdrs


def _check_cut(phdrs: list[ProgramHeader], file: PlainFile, phoff: int) -> None:
    # Segments past the end of the file are a cut only if they are laid out as a writer lays them:
    # one after another, without overlap, and with no more room between them than alignment needs;
    # otherwise the headers are garbage.
    spans = sorted((p.p_offset, p.p_offset + p.p_filesz, i) for i, p in enumerate(phdrs)
                   if p.p_type in (PT_LOAD, PT_NOTE))
    if not spans or max(end for _, end, _ in spans) <= file.size:
        return
    room = phoff + sum(end - start for start, end, _ in spans) + _ALIGN_SLACK * len(spans)
    for (_, prev_end, _), (start, end, i) in itertools.pairwise([(0, 0, -1), *spans]):
        if start < prev_end or end > room:
            raise CorruptDumpError(f"segment {i} [{start:#x}, {end:#x}) lies outside the file ({file.size} bytes) "
                                   "and is not where a cut file would have it", phoff, str(file.path))


def _extended_phnum(file: PlainFile, structs: BinaryStructs, ehdr: Record) -> int:
    # PN_XNUM: the real count is section 0's sh_info.
    shoff = ehdr["e_shoff"]
    layout = structs.Elf_Shdr
    if shoff == 0:
        raise CorruptDumpError("e_phnum is PN_XNUM but there is no section header", 0x3C, str(file.path))
    shdr = layout.unpack(read_exact(file, shoff, layout.size, "section header 0"), file_offset=shoff)
    return shdr["sh_info"]


def _phdr(rec: Record) -> ProgramHeader:
    return ProgramHeader(rec["p_type"], rec["p_offset"], rec["p_vaddr"], rec["p_paddr"], rec["p_filesz"],
                         rec["p_memsz"], rec["p_flags"], rec["p_align"])


def _pages(size: int) -> int:
    return (size + _PAGE - 1) // _PAGE


def _check_phdr(ph: ProgramHeader, file: PlainFile, where: int) -> None:
    # A segment running past the end of the file is a file cut short (its head is kept); one that
    # cannot lie in any file is corrupt.
    if ph.p_type not in (PT_LOAD, PT_NOTE):
        return
    if ph.p_offset + ph.p_filesz >= 1 << 63:
        raise CorruptDumpError(f"segment [{ph.p_offset:#x}, +{ph.p_filesz:#x}) lies outside any file",
                               where, str(file.path))
    if ph.p_type == PT_LOAD and ph.p_filesz > ph.p_memsz:
        raise CorruptDumpError(f"p_filesz {ph.p_filesz:#x} > p_memsz {ph.p_memsz:#x}", where, str(file.path))
