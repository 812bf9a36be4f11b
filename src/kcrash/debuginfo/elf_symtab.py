"""
kcrash.debuginfo.elf_symtab
===========================

ELF debug files (a ``vmlinux`` or a module ``.ko``) read in bulk: the section headers, the GNU
build-id note, and the code symbols of ``.symtab`` unpacked with numpy in one pass (iterating
pyelftools symbol objects costs seconds on a 633 MB vmlinux). For a relocatable ``.ko`` it also lays
the sections out the way the kernel's module loader does (``kernel/module/main.c:layout_sections``)
and applies the ``R_X86_64_64``/``R_X86_64_32`` relocations of a debug section, so DWARF addresses
become load addresses. The file is mmapped, never read whole. DWARF itself is not parsed here.
The ELF constants are pyelftools' names and values, declared here rather than imported from
``elftools.elf.enums``, which costs ~10 ms of CPU per process (``bench/ab_cpu.py``, bench/RESULTS.md
"ELF enums") on the warm ``kcrash decode`` that has a stated target; a unit test keeps them equal.
"""

from __future__ import annotations

import bisect
import contextlib
import mmap
import os
import struct
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kcrash._binary import binary_structs
from kcrash.errors import CorruptDumpError, SymbolNotFoundError

__all__ = [
    "ET_REL",
    "ElfImage",
    "ElfSection",
    "ElfSymbol",
    "ElfSymbolTable",
    "module_section_bases",
    "open_elf_image",
    "relocated_section",
]

# The ELF constants kcrash uses, with pyelftools' names and values (a unit test compares them with
# elftools.elf.enums and elftools.elf.constants). Kept here rather than imported: elftools.elf.enums
# loads pyelftools' construct package, +10 ms CPU per process (bench/ab_cpu.py, bench/RESULTS.md "ELF
# enums"), and the warm `kcrash decode`, whose target is <= 1.0x llvm-symbolizer with a 4 % margin,
# imports this module but nothing else of pyelftools.
ET_REL = 1
SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOBITS = 8
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
STB_LOCAL = 0
STT_NOTYPE = 0
STT_FUNC = 2
NT_GNU_BUILD_ID = 3
R_X86_64_64 = 1
R_X86_64_32 = 10
R_X86_64_32S = 11
EM_X86_64 = 62

# numpy is imported where a table is unpacked, not at module import: a warm symbolizer loads its
# tables from the cache and must start fast.
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


def _dtypes() -> tuple[np.dtype[Any], np.dtype[Any]]:
    # lazy: +149 ms CPU to import it after this module (measured, loaded host)
    import numpy as np

    # Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64.
    sym = np.dtype([("st_name", "<u4"), ("st_info", "u1"), ("st_other", "u1"), ("st_shndx", "<u2"),
                    ("st_value", "<u8"), ("st_size", "<u8")])
    rela = np.dtype([("r_offset", "<u8"), ("r_info", "<u8"), ("r_addend", "<i8")])
    return sym, rela


@dataclass(frozen=True, slots=True)
class ElfSection:
    """One section header, field names as in ``Elf64_Shdr``."""

    index: int
    name: str
    sh_type: int
    sh_flags: int
    sh_addr: int
    sh_offset: int
    sh_size: int
    sh_link: int
    sh_info: int
    sh_addralign: int
    sh_entsize: int


@dataclass(frozen=True, slots=True)
class ElfSymbol:
    """A code symbol: name, address (load address; section-relative plus the section base for a .ko),
    size, and the index of its section."""

    name: str
    address: int
    size: int
    shndx: int


class ElfImage:
    """An ELF file mapped read-only; ``sections`` are its section headers, ``e_type`` its type."""

    def __init__(self, path: Path, data: mmap.mmap, e_type: int, e_machine: int,
                 sections: tuple[ElfSection, ...], fileno: int = -1) -> None:
        self.path = path
        self.fileno = fileno
        self.data = data
        self.e_type = e_type
        self.e_machine = e_machine
        self.sections = sections
        self._by_name = {s.name: s for s in reversed(sections)}

    def find_section_or_none(self, name: str) -> ElfSection | None:
        """The first section called ``name``, or None."""
        return self._by_name.get(name)

    def section_bytes(self, section: ElfSection) -> memoryview:
        """The section's contents (a zero-copy view of the mapping); empty for ``SHT_NOBITS``."""
        if section.sh_type == SHT_NOBITS:
            return memoryview(b"")
        end = section.sh_offset + section.sh_size
        if end > len(self.data):
            raise CorruptDumpError(f"section {section.name} runs past the end of the file",
                                   section.sh_offset, str(self.path))
        return memoryview(self.data)[section.sh_offset:end]

    def build_id_or_none(self) -> str | None:
        """The GNU build-id as lowercase hex, from ``.note.gnu.build-id`` or ``.notes``."""
        for name in (".note.gnu.build-id", ".notes"):
            section = self.find_section_or_none(name)
            if section is not None:
                found = _find_build_id(bytes(self.section_bytes(section)))
                if found is not None:
                    return found
        return None

    def is_relocatable(self) -> bool:
        """True for an ``ET_REL`` object (a kernel module)."""
        return self.e_type == ET_REL

    def close(self) -> None:
        """Unmap the file and close it (views from :meth:`section_bytes` must be released first)."""
        if self.fileno >= 0:
            os.close(self.fileno)
            self.fileno = -1
        self.data.close()


def open_elf_image(path: Path) -> ElfImage:
    """Map ``path`` and read its ELF and section headers (64-bit little-endian only).

    :raises CorruptDumpError: not an ELF file, or headers outside the file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size < 64:
            raise CorruptDumpError("not an ELF file (too short)", 0, str(path))
        data = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            data.close()
            raise CorruptDumpError("not a 64-bit little-endian ELF file", 0, str(path))
        try:
            return _parse_headers(path, data, fd)
        except CorruptDumpError:
            # A view may still be referenced by the traceback; the mapping then goes with it.
            with contextlib.suppress(BufferError):
                data.close()
            raise
    except BaseException:
        os.close(fd)
        raise


def _parse_headers(path: Path, data: mmap.mmap, fd: int) -> ElfImage:
    structs = binary_structs(True, 8)
    view = memoryview(data)
    ehdr = structs.Elf_Ehdr.unpack(view, 0, file_offset=0)
    shoff, shnum, shentsize = ehdr["e_shoff"], ehdr["e_shnum"], ehdr["e_shentsize"]
    if shnum == 0 or shentsize < structs.Elf_Shdr.size or shoff + shnum * shentsize > len(data):
        raise CorruptDumpError("section headers missing or outside the file", shoff, str(path))
    raw = [structs.Elf_Shdr.unpack(view, shoff + i * shentsize, file_offset=shoff + i * shentsize)
           for i in range(shnum)]
    strndx = ehdr["e_shstrndx"]
    if strndx >= shnum:
        raise CorruptDumpError("bad e_shstrndx", 0, str(path))
    names = raw[strndx]
    table = bytes(data[names["sh_offset"]:names["sh_offset"] + names["sh_size"]])
    sections = tuple(
        ElfSection(i, _cstr(table, r["sh_name"]), r["sh_type"], r["sh_flags"], r["sh_addr"], r["sh_offset"],
                   r["sh_size"], r["sh_link"], r["sh_info"], r["sh_addralign"], r["sh_entsize"])
        for i, r in enumerate(raw))
    return ElfImage(path, data, ehdr["e_type"], ehdr["e_machine"], sections, fd)


def _raw_name(table: bytes, offset: int) -> bytes:
    # A string-table entry as bytes; one without its NUL (a truncated table) never equals a name.
    end = table.find(b"\0", offset)
    return table[offset:end] if end >= 0 else table[offset:] + b"\0"


def _cstr(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset:end if end >= 0 else len(table)].decode("utf-8", "replace")


def _find_build_id(notes: bytes) -> str | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name_at = pos + 12
        desc_at = name_at + ((namesz + 3) & ~3)
        if desc_at + descsz > len(notes):
            return None
        if ntype == NT_GNU_BUILD_ID and notes[name_at:name_at + namesz].rstrip(b"\0") == b"GNU":
            return notes[desc_at:desc_at + descsz].hex()
        pos = desc_at + ((descsz + 3) & ~3)
    return None


def module_section_bases(image: ElfImage, base: int) -> dict[int, int]:
    """Load addresses of a ``.ko``'s allocated sections when its core text starts at ``base``.

    Follows ``layout_sections``: executable sections first, then read-only, then writable data, each
    in file order and aligned to ``sh_addralign``; ``.init*`` sections go to a separate (freed) area,
    placed here after the core so their addresses never overlap it.
    """
    bases: dict[int, int] = {}
    core = _layout(image, base, init=False, bases=bases)
    _layout(image, core, init=True, bases=bases)
    return bases


def _layout(image: ElfImage, start: int, *, init: bool, bases: dict[int, int]) -> int:
    masks = ((SHF_EXECINSTR | SHF_ALLOC, 0), (SHF_ALLOC, SHF_WRITE | SHF_EXECINSTR), (SHF_WRITE | SHF_ALLOC, 0))
    size = start
    for want, avoid in masks:
        for s in image.sections:
            if (s.sh_flags & want) != want or s.sh_flags & avoid or s.index in bases:
                continue
            if s.name.startswith(".init") != init:
                continue
            align = max(s.sh_addralign, 1)
            size = (size + align - 1) // align * align
            bases[s.index] = size
            size += s.sh_size
    return size


def relocated_section(image: ElfImage, section: ElfSection, bases: dict[int, int]) -> bytes:
    """The contents of ``section`` with its ``SHT_RELA`` relocations applied, symbols of allocated
    sections taking their address from ``bases`` (section index -> load address).

    :raises CorruptDumpError: an unsupported relocation type or an offset outside the section.
    """
    data = bytearray(image.section_bytes(section))
    for rela in image.sections:
        if rela.sh_type == SHT_RELA and rela.sh_info == section.index:
            _apply_rela(image, rela, data, bases)
    return bytes(data)


def _apply_rela(image: ElfImage, rela: ElfSection, data: bytearray, bases: dict[int, int]) -> None:
    # lazy: +149 ms CPU to import it after this module (measured, loaded host)
    import numpy as np

    sym_t, rela_t = _dtypes()
    entries = np.frombuffer(image.section_bytes(rela), rela_t, rela.sh_size // rela_t.itemsize)
    if rela.sh_link >= len(image.sections):
        raise CorruptDumpError(f"{rela.name}: bad sh_link", rela.sh_offset, str(image.path))
    symtab = image.sections[rela.sh_link]
    syms = np.frombuffer(image.section_bytes(symtab), sym_t, symtab.sh_size // sym_t.itemsize)
    sym_index = (entries["r_info"] >> np.uint64(32)).astype(np.int64)
    kinds = (entries["r_info"] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    if len(sym_index) and int(sym_index.max()) >= len(syms):
        raise CorruptDumpError(f"{rela.name}: relocation symbol out of range", rela.sh_offset, str(image.path))
    section_base = np.array([bases.get(i, 0) for i in range(len(image.sections))] + [0], dtype=np.uint64)
    shndx = np.minimum(syms["st_shndx"][sym_index].astype(np.int64), len(image.sections))
    values = (syms["st_value"][sym_index] + section_base[shndx] + entries["r_addend"].astype(np.uint64))
    for offset, kind, value in zip(entries["r_offset"].tolist(), kinds.tolist(), values.tolist(), strict=True):
        width = 8 if kind == R_X86_64_64 else 4 if kind in (R_X86_64_32, R_X86_64_32S) else 0
        if width == 0 or offset + width > len(data):
            raise CorruptDumpError(f"{rela.name}: unsupported relocation {kind} at {offset:#x}",
                                   rela.sh_offset, str(image.path))
        data[offset:offset + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")


class ElfSymbolTable:
    """The code symbols of ``.symtab`` (functions and labels in executable sections), sorted by address.

    Kept as flat arrays plus the raw string table so that it can be cached and reloaded without
    numpy; :meth:`to_bytes`/:meth:`from_bytes` do that.
    """

    def __init__(self, addresses: array[int], sizes: array[int], names: array[int], shndx: array[int],
                 strtab: bytes, name_order: array[int], name_keys: array[int], types: array[int]) -> None:
        self._addresses = addresses
        self._sizes = sizes
        self._names = names
        self._shndx = shndx
        self._strtab = strtab
        self._types = types
        # Symbol indices ordered by name (bytes), and their name offsets in that order: lookups by
        # name are a binary search, without a dict of 100k names (a scan of the string table for
        # each name cost ~1 ms).
        self._name_order = name_order
        self._name_keys = name_keys

    @classmethod
    def from_image(cls, image: ElfImage, bases: dict[int, int] | None = None) -> ElfSymbolTable:
        """Read ``.symtab`` of ``image``; for a ``.ko`` pass the section load addresses ``bases``.

        :raises CorruptDumpError: the table or its string table lies outside the file.
        """
        symtab = image.find_section_or_none(".symtab")
        if symtab is None or symtab.sh_link >= len(image.sections):
            return cls(array("Q"), array("Q"), array("I"), array("H"), b"", array("I"), array("I"), array("B"))
        # lazy: +149 ms CPU to import it after this module (measured, loaded host)
        import numpy as np

        strtab = bytes(image.section_bytes(image.sections[symtab.sh_link]))
        sym_t, _ = _dtypes()
        syms = np.frombuffer(image.section_bytes(symtab), sym_t, symtab.sh_size // sym_t.itemsize)
        code = _code_symbols(image, syms, len(strtab))
        # ARM/AArch64 mapping symbols ($x, $d, $x.12) mark code/data starts, not functions (kallsyms drops them)
        code[code] = np.frombuffer(strtab, np.uint8)[syms["st_name"][code]] != ord("$")
        syms = syms[code]
        values = syms["st_value"].copy()
        if bases is not None:
            offsets = np.array([bases.get(i, 0) for i in range(len(image.sections))], dtype=np.uint64)
            values += offsets[syms["st_shndx"]]
        order = np.argsort(values, kind="stable")
        names = syms["st_name"][order]
        offsets = names.tolist()
        keys = [_raw_name(strtab, o) for o in offsets]
        by_name = sorted(range(len(keys)), key=keys.__getitem__)
        return cls(array("Q", values[order].tobytes()), array("Q", syms["st_size"][order].tobytes()),
                   array("I", names.tobytes()), array("H", syms["st_shndx"][order].tobytes()), strtab,
                   array("I", by_name), array("I", [offsets[i] for i in by_name]),
                   array("B", (syms["st_info"][order] & 0xF).tobytes()))

    def __len__(self) -> int:
        return len(self._addresses)

    def _symbol(self, i: int) -> ElfSymbol:
        return ElfSymbol(_cstr(self._strtab, self._names[i]), self._addresses[i], self._sizes[i], self._shndx[i])

    def symbolize_or_none(self, address: int) -> tuple[ElfSymbol, int] | None:
        """The symbol covering ``address`` and the offset into it: the last symbol at or below the
        address, preferring among aliases one whose size covers it; a sized symbol that ends below
        the address does not cover it."""
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0:
            return None
        start = self._addresses[i]
        j = i
        while j >= 0 and self._addresses[j] == start:
            if self._sizes[j] == 0 or address < start + self._sizes[j]:
                return self._symbol(j), address - start
            j -= 1
        return None

    def nearest_function_or_none(self, address: int) -> ElfSymbol | None:
        """The function binutils names for an address without DWARF (``elf_find_function`` with
        ``better_fit``): the closest symbol at or below it, whether or not its size reaches it; among
        aliases one that covers the address, then a function over a label, then the smallest."""
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0:
            return None
        first = i
        while first > 0 and self._addresses[first - 1] == self._addresses[i]:
            first -= 1
        best = first
        for k in range(first + 1, i + 1):
            if self._better_fit(k, best, address):
                best = k
        return self._symbol(best)

    def _better_fit(self, k: int, best: int, address: int) -> bool:
        start = self._addresses[k]
        size_k, size_b = max(self._sizes[k], 1), max(self._sizes[best], 1)
        if start + size_b <= address:
            return size_k > size_b
        if start + size_k <= address:
            return False
        if (self._types[k] == STT_FUNC) != (self._types[best] == STT_FUNC):
            return self._types[k] == STT_FUNC
        return size_k < size_b

    def get_symbols_by_name(self, name: str) -> tuple[ElfSymbol, ...]:
        """Every code symbol called ``name`` (static functions share names across files)."""
        needle, table, keys = name.encode(), self._strtab, self._name_keys

        def key(k: int) -> bytes:
            return _raw_name(table, keys[k])

        k = bisect.bisect_left(range(len(keys)), needle, key=key)
        found = []
        while k < len(keys) and key(k) == needle:
            found.append(self._name_order[k])
            k += 1
        return tuple(self._symbol(i) for i in sorted(found))

    def address_of(self, name: str, size: int | None = None) -> int:
        """The address of ``name``; with several, the one whose size is ``size`` (as printed in a
        ``func+0x1f/0x80`` frame), else the first.

        :raises SymbolNotFoundError: no code symbol has that name (and size).
        """
        found = self.get_symbols_by_name(name)
        if size is not None and len(found) > 1:
            found = tuple(s for s in found if size in (s.size, self.kallsyms_size(s))) or found
        if not found:
            raise SymbolNotFoundError(f"no code symbol {name!r} in the ELF symbol table")
        return found[0].address

    def kallsyms_size(self, symbol: ElfSymbol) -> int:
        """The size the kernel prints for ``symbol`` (``kallsyms_lookup_size_offset``): the distance to
        the next higher code symbol (``st_size`` for the last one)."""
        i = bisect.bisect_right(self._addresses, symbol.address)
        return self._addresses[i] - symbol.address if i < len(self._addresses) else symbol.size

    def to_bytes(self) -> bytes:
        """A compact image for the cache."""
        parts = [self._addresses.tobytes(), self._sizes.tobytes(), self._names.tobytes(),
                 self._name_order.tobytes(), self._name_keys.tobytes(), self._shndx.tobytes(),
                 self._types.tobytes(), self._strtab]
        header = array("Q", [len(self._addresses), len(self._strtab)]).tobytes()
        return header + b"".join(parts)

    @classmethod
    def from_bytes(cls, blob: bytes) -> ElfSymbolTable:
        """Reload :meth:`to_bytes` output.

        :raises CorruptDumpError: the blob is truncated.
        """
        head = array("Q", blob[:16])
        if len(head) != 2 or len(blob) != 16 + head[0] * 31 + head[1]:
            raise CorruptDumpError("symbol cache entry is damaged", 0)
        n, pos = head[0], 16
        view = memoryview(blob)
        out: list[Any] = []  # columns are casts of the blob (no copies), read like the arrays
        for code, width in (("Q", 8), ("Q", 8), ("I", 4), ("I", 4), ("I", 4), ("H", 2), ("B", 1)):
            out.append(view[pos:pos + n * width].cast(code))  # type: ignore[call-overload]
            pos += n * width
        return cls(out[0], out[1], out[2], out[5], blob[pos:], out[3], out[4], out[6])


def _code_symbols(image: ElfImage, syms: npt.NDArray[Any], strsize: int) -> npt.NDArray[np.bool_]:
    # lazy: +149 ms CPU to import it after this module (measured, loaded host)
    import numpy as np

    kinds = syms["st_info"] & 0xF
    shndx = syms["st_shndx"].astype(np.int64)
    exec_sections = np.zeros(len(image.sections) + 1, dtype=bool)
    for s in image.sections:
        exec_sections[s.index] = bool(s.sh_flags & SHF_EXECINSTR)
    in_range = (shndx > SHN_UNDEF) & (shndx < min(len(image.sections), SHN_LORESERVE))
    mask = in_range & ((kinds == STT_FUNC) | (kinds == STT_NOTYPE)) & (syms["st_name"] > 0)
    mask &= syms["st_name"] < strsize
    mask[mask] = exec_sections[shndx[mask]]
    result: npt.NDArray[np.bool_] = mask
    return result
