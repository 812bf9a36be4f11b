"""
kcrash._binary
==============

Endian- and word-size-aware struct layouts for the binary formats kcrash reads and writes:
ELF headers and notes, the kdump-compressed (diskdump) headers and page descriptors, the
makedumpfile flattened records, ``struct elf_prstatus`` and QEMU's CPU-state note. Each layout is
built once per (byte order, word size) and cached; field names are the spec's, verbatim. This
module does no I/O and sets no policy: a short buffer becomes :class:`~kcrash.errors.CorruptDumpError`
with the file offset, and callers decide what else to trust.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from kcrash.errors import CorruptDumpError

__all__ = [
    "BinaryStructs",
    "Layout",
    "Record",
    "binary_structs",
    "flat_structs",
]

# A field is (name, struct code); names starting with "_" are padding and never returned.
_Field = tuple[str, str]
_SIZES = {"b": 1, "B": 1, "h": 2, "H": 2, "i": 4, "I": 4, "q": 8, "Q": 8}


class Record:
    """The unpacked fields of one :class:`Layout`: integers by ``rec["name"]``, strings by ``rec.text()``."""

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_ints", "_texts")

    def __init__(self, ints: dict[str, int], texts: dict[str, bytes]) -> None:
        self._ints = ints
        self._texts = texts

    def __getitem__(self, name: str) -> int:
        return self._ints[name]

    def text(self, name: str) -> bytes:
        """Return a char-array field with its NUL padding removed."""
        return self._texts[name].split(b"\0", 1)[0]

    def raw(self, name: str) -> bytes:
        """Return a char-array field as stored."""
        return self._texts[name]

    def as_dict(self) -> dict[str, int]:
        """Return the integer fields by name."""
        return dict(self._ints)


@dataclass(frozen=True, slots=True)
class Layout:
    """One C struct: its name, a compiled :class:`struct.Struct` and the field names in order."""

    name: str
    struct: struct.Struct
    fields: tuple[str, ...]

    @property
    def size(self) -> int:
        """Return ``sizeof`` the struct in bytes."""
        return self.struct.size

    def unpack(self, buf: bytes | memoryview, offset: int = 0, *, file_offset: int | None = None) -> Record:
        """Unpack at ``offset`` in ``buf``; a short buffer raises CorruptDumpError at ``file_offset``."""
        try:
            values = self.struct.unpack_from(buf, offset)
        except struct.error:
            where = file_offset if file_offset is not None else offset
            raise CorruptDumpError(f"truncated {self.name}", where) from None
        ints: dict[str, int] = {}
        texts: dict[str, bytes] = {}
        for name, value in zip(self.fields, values, strict=True):
            if isinstance(value, bytes):
                texts[name] = value
            else:
                ints[name] = value
        return Record(ints, texts)

    def pack(self, **values: int | bytes) -> bytes:
        """Pack the named fields (missing ones are 0 or empty)."""
        args = [values.get(name, self._zero(i)) for i, name in enumerate(self.fields)]
        return self.struct.pack(*args)

    def _zero(self, index: int) -> int | bytes:
        codes = [c for c in _codes(self.struct.format) if c != "x"]
        return b"" if codes[index] == "s" else 0


def _codes(fmt: str) -> list[str]:
    # Expand "16s" -> ["s"], "2x" -> ["x", "x"], "I" -> ["I"].
    out: list[str] = []
    count = ""
    for ch in fmt[1:]:
        if ch.isdigit():
            count += ch
            continue
        if ch == "x":
            out.extend("x" * int(count or "1"))
        else:
            out.append(ch)
        count = ""
    return out


def _build(name: str, prefix: str, fields: list[_Field], max_align: int) -> Layout:
    # Insert C padding: each integer field aligned to min(its size, max_align); the struct is
    # padded to its largest member alignment. max_align 1 gives a packed struct.
    fmt = prefix
    offset = 0
    names: list[str] = []
    biggest = 1
    for field_name, code in fields:
        size = _SIZES.get(code[-1], 1) if not code.endswith("s") else 1
        align = min(size, max_align) if code[-1] != "x" else 1
        biggest = max(biggest, align)
        pad = (-offset) % align
        fmt += "x" * pad
        offset += pad
        width = struct.calcsize(prefix + code)
        if field_name.startswith("_"):  # padding or an ignored member
            fmt += "x" * width
        else:
            fmt += code
            names.append(field_name)
        offset += width
    fmt += "x" * ((-offset) % biggest)
    return Layout(name, struct.Struct(fmt), tuple(names))


_UTSNAME: list[_Field] = [(n, "65s") for n in
                          ("sysname", "nodename", "release", "version", "machine", "domainname")]


class BinaryStructs:
    """All layouts for one byte order and word size (``little_endian``, ``word_size`` 4 or 8).

    ``max_align`` is the largest alignment of 8-byte members: 8 on LP64 and 32-bit ARM, 4 on i386.
    """

    def __init__(self, little_endian: bool, word_size: int, max_align: int | None = None) -> None:
        if word_size not in (4, 8):
            raise ValueError(f"word size {word_size}")
        self.little_endian = little_endian
        self.word_size = word_size
        p = "<" if little_endian else ">"
        a = max_align if max_align is not None else word_size
        w = "Q" if word_size == 8 else "I"
        sw = "q" if word_size == 8 else "i"
        self.prefix = p
        self.u16 = struct.Struct(p + "H")
        self.u32 = struct.Struct(p + "I")
        self.u64 = struct.Struct(p + "Q")
        self.word = struct.Struct(p + w)
        self.Elf_Nhdr = _build("Elf_Nhdr", p, [("n_namesz", "I"), ("n_descsz", "I"), ("n_type", "I")], a)
        self.Elf_Ehdr = self._ehdr(p, w, a)
        self.Elf_Phdr = self._phdr(p, a)
        self.Elf_Shdr = _build("Elf_Shdr", p, [
            ("sh_name", "I"), ("sh_type", "I"), ("sh_flags", w), ("sh_addr", w), ("sh_offset", w),
            ("sh_size", w), ("sh_link", "I"), ("sh_info", "I"), ("sh_addralign", w), ("sh_entsize", w)], a)
        self.disk_dump_header = _build("disk_dump_header", p, [
            ("signature", "8s"), ("header_version", "i"), *_UTSNAME,
            ("tv_sec", sw), ("tv_usec", sw), ("status", "I"), ("block_size", "i"), ("sub_hdr_size", "i"),
            ("bitmap_blocks", "I"), ("max_mapnr", "I"), ("total_ram_blocks", "I"), ("device_blocks", "I"),
            ("written_blocks", "I"), ("current_cpu", "I"), ("nr_cpus", "i")], a)
        self.kdump_sub_header = _build("kdump_sub_header", p, [
            ("phys_base", w), ("dump_level", "i"), ("split", "i"), ("start_pfn", w), ("end_pfn", w),
            ("offset_vmcoreinfo", "q"), ("size_vmcoreinfo", w), ("offset_note", "q"), ("size_note", w),
            ("offset_eraseinfo", "q"), ("size_eraseinfo", w), ("start_pfn_64", "Q"), ("end_pfn_64", "Q"),
            ("max_mapnr_64", "Q")], a)
        # page_desc is 24 bytes, packed, on every architecture.
        self.page_desc = _build("page_desc", p, [
            ("offset", "q"), ("size", "I"), ("flags", "I"), ("page_flags", "Q")], 1)
        self.elf_prstatus_x86_64 = _elf_prstatus(p, 27)
        # arm64: pr_reg is struct user_pt_regs (x0-x30, sp, pc, pstate): 34 words at offset 112, 392 bytes
        self.elf_prstatus_aarch64 = _elf_prstatus(p, 34)
        self.QEMUCPUState_x86_64 = _build("QEMUCPUState", p, _qemu_cpu_state_fields(), 8)

    def _ehdr(self, p: str, w: str, a: int) -> Layout:
        return _build("Elf_Ehdr", p, [
            ("e_ident", "16s"), ("e_type", "H"), ("e_machine", "H"), ("e_version", "I"), ("e_entry", w),
            ("e_phoff", w), ("e_shoff", w), ("e_flags", "I"), ("e_ehsize", "H"), ("e_phentsize", "H"),
            ("e_phnum", "H"), ("e_shentsize", "H"), ("e_shnum", "H"), ("e_shstrndx", "H")], a)

    def _phdr(self, p: str, a: int) -> Layout:
        if self.word_size == 8:
            return _build("Elf64_Phdr", p, [
                ("p_type", "I"), ("p_flags", "I"), ("p_offset", "Q"), ("p_vaddr", "Q"), ("p_paddr", "Q"),
                ("p_filesz", "Q"), ("p_memsz", "Q"), ("p_align", "Q")], a)
        return _build("Elf32_Phdr", p, [
            ("p_type", "I"), ("p_offset", "I"), ("p_vaddr", "I"), ("p_paddr", "I"), ("p_filesz", "I"),
            ("p_memsz", "I"), ("p_flags", "I"), ("p_align", "I")], a)


def _elf_prstatus(p: str, registers: int) -> Layout:
    # struct elf_prstatus of a 64-bit kernel: siginfo, signal sets, pids, four timevals, then
    # ``registers`` words of pr_reg (the arch's elf_gregset_t) and pr_fpvalid
    return _build("elf_prstatus", p, [
        ("si_signo", "i"), ("si_code", "i"), ("si_errno", "i"), ("pr_cursig", "h"),
        ("pr_sigpend", "Q"), ("pr_sighold", "Q"), ("pr_pid", "i"), ("pr_ppid", "i"), ("pr_pgrp", "i"),
        ("pr_sid", "i"), *[(f"_tv{i}", "q") for i in range(8)],
        *[(f"pr_reg{i}", "Q") for i in range(registers)], ("pr_fpvalid", "i")], 8)


def _qemu_cpu_state_fields() -> list[_Field]:
    regs = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
            "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"]
    fields: list[_Field] = [("version", "I"), ("size", "I"), *[(r, "Q") for r in regs]]
    for seg in ("cs", "ds", "es", "fs", "gs", "ss", "ldt", "tr", "gdt", "idt"):
        fields += [(f"{seg}_selector", "I"), (f"{seg}_limit", "I"), (f"{seg}_flags", "I"),
                   (f"_{seg}_pad", "I"), (f"{seg}_base", "Q")]
    fields += [(f"cr{i}", "Q") for i in range(5)]
    fields.append(("kernel_gs_base", "Q"))
    return fields


@functools.cache
def binary_structs(little_endian: bool = True, word_size: int = 8,
                   max_align: int | None = None) -> BinaryStructs:
    """Return the (cached) layouts for one byte order and word size."""
    return BinaryStructs(little_endian, word_size, max_align)


class FlatStructs:
    """The makedumpfile flattened format's big-endian header and record header."""

    def __init__(self) -> None:
        self.makedumpfile_header = _build("makedumpfile_header", ">", [
            ("signature", "16s"), ("type", "q"), ("version", "q")], 8)
        self.makedumpfile_data_header = _build("makedumpfile_data_header", ">", [
            ("offset", "q"), ("buf_size", "q")], 8)


@functools.cache
def flat_structs() -> FlatStructs:
    """Return the (cached) flattened-format layouts."""
    return FlatStructs()
