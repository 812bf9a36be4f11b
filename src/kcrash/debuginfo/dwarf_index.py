"""
kcrash.debuginfo.dwarf_index
============================

A lazy address index over DWARF, built with pyelftools and cacheable by build-id. Three levels, each
built only when a lookup needs it:

* :class:`ArangeIndex` — address range -> compilation unit, from ``.debug_aranges`` (read in bulk);
* :class:`CuIndex` — for one compilation unit touched by a lookup: its whole line table (as flat
  arrays), its file names, and the address ranges of its top-level functions;
* function scopes — for one function touched: its tree of ``DW_TAG_inlined_subroutine`` scopes with
  call sites, which gives the inline chain (``addr2line -i``).

The parsers take section bytes or pyelftools' :class:`DWARFInfo` (built from an
:class:`~kcrash.debuginfo.elf_symtab.ElfImage` by :func:`open_dwarf` without copying the 600 MB of
debug sections). Symbol tables and the symbolizer's policy live elsewhere.
"""

from __future__ import annotations

import bisect
import contextlib
import io
import marshal
import mmap
import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from kcrash.errors import CorruptDumpError, MissingDebugInfoError

if TYPE_CHECKING:
    from kcrash.debuginfo.elf_symtab import ElfImage

__all__ = [
    "ArangeIndex",
    "CuIndex",
    "DwarfReader",
    "Scope",
    "open_dwarf",
]

_CACHE_VERSION = 3
_DWARF_SECTIONS = (".debug_info", ".debug_aranges", ".debug_abbrev", ".debug_str", ".debug_line",
                   ".debug_addr", ".debug_str_offsets", ".debug_line_str", ".debug_loclists",
                   ".debug_rnglists", ".debug_ranges", ".debug_loc")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class Scope:
    """A function or an inlined call inside it. ``ranges`` are [low, high) pairs; ``parent`` indexes
    the enclosing scope (-1 for the function); ``call_*`` say where an inlined call was made."""

    ranges: tuple[tuple[int, int], ...]
    parent: int
    depth: int
    name: str
    call_file: int
    call_line: int
    call_column: int

    def contains(self, address: int) -> bool:
        """True if ``address`` lies in one of the ranges."""
        return any(lo <= address < hi for lo, hi in self.ranges)


class ArangeIndex:
    """Sorted [start, end) -> compilation-unit offset, read from ``.debug_aranges``."""

    def __init__(self, starts: array[int], ends: array[int], units: array[int]) -> None:
        self._starts = starts
        self._ends = ends
        self._units = units

    @classmethod
    def from_section(cls, data: bytes | memoryview) -> ArangeIndex:
        """Parse ``.debug_aranges`` (DWARF 2-5, 32- and 64-bit, 8-byte addresses).

        :raises CorruptDumpError: a set header or tuple runs past the section.
        """
        rows: list[tuple[int, int, int]] = []
        pos = 0
        while pos + 4 <= len(data):
            pos = _read_arange_set(data, pos, rows)
        rows.sort()
        return cls(array("Q", [r[0] for r in rows]), array("Q", [r[1] for r in rows]),
                   array("Q", [r[2] for r in rows]))

    def __len__(self) -> int:
        return len(self._starts)

    def cu_offset_or_none(self, address: int) -> int | None:
        """The ``.debug_info`` offset of the unit covering ``address``, or None."""
        i = bisect.bisect_right(self._starts, address) - 1
        # Ranges of different units do not overlap in practice; look back a little in case they do.
        for j in range(i, max(i - 4, -1), -1):
            if self._starts[j] <= address < self._ends[j]:
                unit: int = self._units[j]
                return unit
        return None

    def to_bytes(self) -> bytes:
        """A compact image for the cache."""
        return _U64.pack(len(self._starts)) + self._starts.tobytes() + self._ends.tobytes() + self._units.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> ArangeIndex:
        """Reload :meth:`to_bytes` output.

        :raises CorruptDumpError: the blob is damaged.
        """
        if len(blob) < 8 or len(blob) != 8 + 24 * _U64.unpack_from(blob)[0]:
            raise CorruptDumpError("aranges cache entry is damaged", 0)
        n = _U64.unpack_from(blob)[0]
        parts = [array("Q", blob[8 + 8 * n * k:8 + 8 * n * (k + 1)]) for k in range(3)]
        return cls(parts[0], parts[1], parts[2])


def _read_arange_set(data: bytes | memoryview, pos: int, rows: list[tuple[int, int, int]]) -> int:
    start = pos
    length = _U32.unpack_from(data, pos)[0]
    offset_size, pos = (8, pos + 12) if length == 0xFFFFFFFF else (4, pos + 4)
    if length == 0xFFFFFFFF:
        length = _U64.unpack_from(data, start + 4)[0]
    end = pos + length
    if end > len(data) or length < 4 + offset_size:
        raise CorruptDumpError(".debug_aranges: set runs past the section", start)
    unit = (_U64 if offset_size == 8 else _U32).unpack_from(data, pos + 2)[0]
    address_size, segment_size = data[pos + 2 + offset_size], data[pos + 3 + offset_size]
    if address_size != 8 or segment_size != 0:
        raise CorruptDumpError(f".debug_aranges: unsupported address size {address_size}", start)
    tuples = pos + 4 + offset_size
    tuples += (-(tuples - start)) % 16
    for lo, size in struct.iter_unpack("<QQ", data[tuples:end - (end - tuples) % 16]):
        if lo == 0 and size == 0:
            break
        if size:
            rows.append((lo, lo + size, unit))
    return int(end)


#: A column of integers: an array while building, a typed view of the cache entry's bytes once reloaded.
_Column: TypeAlias = "array[int] | memoryview[int]"


class CuIndex:
    """What one compilation unit tells about addresses: line rows, file names, function ranges, and
    the inline scopes of the functions walked so far (filled in by :class:`DwarfReader`)."""

    def __init__(self, offset: int, rows: tuple[_Column, ...], ends: bytes, files: list[str],
                 functions: tuple[_Column, _Column, _Column],
                 scopes: dict[int, list[Scope]] | None = None, comp_dir: str = "") -> None:
        self.offset = offset
        self.comp_dir = comp_dir
        self._addresses, self._files_of, self._lines, self._columns, self._discriminators = rows
        self._ends = ends
        self.files = files
        self._fn_lows, self._fn_highs, self._fn_dies = functions
        self.scopes: dict[int, list[Scope]] = scopes if scopes is not None else {}

    def line_at_or_none(self, address: int) -> tuple[str, int, int, int] | None:
        """(file, line, column, discriminator) of the line-table row covering ``address``.

        Among rows at one address the last wins, as in binutils (``add_line_info``, PR ld/4986).
        """
        i = bisect.bisect_right(self._addresses, address) - 1
        if i < 0 or self._ends[i]:
            return None
        return self.file_name(self._files_of[i]), self._lines[i], self._columns[i], self._discriminators[i]

    def file_name(self, index: int) -> str:
        """The path of file ``index`` of the line table (``??`` when out of range)."""
        return self.files[index] if 0 <= index < len(self.files) else "??"

    def function_die_or_none(self, address: int) -> int | None:
        """The DIE offset of the top-level function whose ranges hold ``address``."""
        i = bisect.bisect_right(self._fn_lows, address) - 1
        # Ranges of one function may interleave with others (hot/cold parts): scan back a little.
        for j in range(i, max(i - 64, -1), -1):
            if self._fn_lows[j] <= address < self._fn_highs[j]:
                return self._fn_dies[j]
        return None

    def to_bytes(self) -> bytes:
        """A compact image for the cache (marshal of arrays as bytes, scopes as tuples)."""
        rows = [a.tobytes() for a in (self._addresses, self._files_of, self._lines, self._columns,
                                      self._discriminators)]
        functions = [a.tobytes() for a in (self._fn_lows, self._fn_highs, self._fn_dies)]
        scopes = {k: [(s.ranges, s.parent, s.depth, s.name, s.call_file, s.call_line, s.call_column) for s in v]
                  for k, v in self.scopes.items()}
        return marshal.dumps((_CACHE_VERSION, self.offset, rows, self._ends, self.files, functions, scopes,
                              self.comp_dir))

    @classmethod
    def from_bytes(cls, blob: bytes | mmap.mmap) -> CuIndex:
        """Reload :meth:`to_bytes` output (``blob`` may be a mapping of the cache file: nothing
        keeps a reference to it).

        :raises CorruptDumpError: the blob is damaged or from another cache version.
        """
        try:
            version, offset, rows, ends, files, functions, scopes, comp_dir = marshal.loads(blob)
            if version != _CACHE_VERSION:
                raise ValueError(version)
            # Views, not copies: a warm decode reloads megabytes of line tables.
            addresses, files_of, lines, columns, discriminators = rows
            arrays = (memoryview(addresses).cast("Q"), memoryview(files_of).cast("I"), memoryview(lines).cast("I"),
                      memoryview(columns).cast("I"), memoryview(discriminators).cast("I"))
            fns = (memoryview(functions[0]).cast("Q"), memoryview(functions[1]).cast("Q"),
                   memoryview(functions[2]).cast("Q"))
            walked = {k: [Scope(*t) for t in v] for k, v in scopes.items()}
        except (ValueError, TypeError, EOFError) as exc:
            raise CorruptDumpError(f"compilation-unit cache entry is damaged ({exc})", 0) from exc
        return cls(offset, arrays, ends, files, fns, walked, comp_dir)


class _SectionMap(mmap.mmap):
    # A read-only mapping of one section that seeks section-relative offsets (pyelftools' view) while
    # read() stays mmap's C implementation: mappings start at a page boundary, so positions are
    # shifted by the section's offset within its first page.
    _delta = 0
    _size = 0

    def seek(self, pos: int, whence: int = 0) -> None:
        if whence == 0:
            super().seek(pos + self._delta)
        elif whence == 2:
            super().seek(self._delta + self._size + pos)
        else:
            super().seek(pos, 1)

    def tell(self) -> int:
        return super().tell() - self._delta


def _map_section(fileno: int, offset: int, size: int) -> _SectionMap:
    aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapped = _SectionMap(fileno, size + offset - aligned, offset=aligned, access=mmap.ACCESS_READ)
    mapped._delta = offset - aligned
    mapped._size = size
    mapped.seek(0)
    return mapped


def open_dwarf(image: ElfImage, relocated: Callable[[str], bytes] | None = None) -> Any:
    """A pyelftools ``DWARFInfo`` over ``image``'s debug sections.

    Sections are read through the mapping; for a relocatable ``.ko`` pass ``relocated(name)``, which
    returns a section with its relocations applied.

    :raises MissingDebugInfoError: the file has no ``.debug_info`` (a stripped image).
    :raises CorruptDumpError: a debug section lies outside the file or is compressed.
    """
    # lazy: +53 ms CPU to import it after this module (measured, loaded host)
    from elftools.dwarf.dwarfinfo import DebugSectionDescriptor, DwarfConfig, DWARFInfo

    info = image.find_section_or_none(".debug_info")
    if info is None or info.sh_size == 0:
        raise MissingDebugInfoError(f"{image.path}: no DWARF debug information (.debug_info); it is stripped —"
                                    " use the -dbg package's file")
    found: dict[str, Any] = {}
    for name in _DWARF_SECTIONS:
        section = image.find_section_or_none(name)
        if section is None:
            continue
        if section.sh_flags & 0x800 or section.sh_offset + section.sh_size > len(image.data):
            raise CorruptDumpError(f"{name} is compressed or truncated", section.sh_offset, str(image.path))
        stream: Any = (io.BytesIO(relocated(name)) if relocated is not None
                       else _map_section(image.fileno, section.sh_offset, section.sh_size))
        found[name] = DebugSectionDescriptor(stream, name, section.sh_offset, section.sh_size, 0)
    args = {n[1:].replace(".", "_") + "_sec": found.get(n) for n in _DWARF_SECTIONS}
    return DWARFInfo(config=DwarfConfig(little_endian=True, machine_arch="x64", default_address_size=8),
                     debug_frame_sec=None, eh_frame_sec=None, debug_pubtypes_sec=None, debug_pubnames_sec=None,
                     debug_sup_sec=None, gnu_debugaltlink_sec=None, debug_types_sec=None, **args)


class DwarfReader:
    """Builds :class:`CuIndex` objects and function scopes from a pyelftools ``DWARFInfo``.

    Every pyelftools failure on damaged input is mapped to :class:`~kcrash.errors.CorruptDumpError`.
    """

    def __init__(self, dwarf: Any, path: str) -> None:
        self._dwarf = dwarf
        self._path = path

    def build_aranges(self) -> ArangeIndex:
        """The unit index from ``.debug_aranges`` (empty when the section is missing)."""
        section = self._dwarf.debug_aranges_sec
        if section is None:
            return ArangeIndex(array("Q"), array("Q"), array("Q"))
        section.stream.seek(0)
        return ArangeIndex.from_section(section.stream.read(section.size))

    def unit_length(self, offset: int) -> int:
        """The length of the unit at ``.debug_info`` offset ``offset`` (its header's ``unit_length``,
        read directly: 4 bytes, or 12 for 64-bit DWARF), or 0 when it cannot be read."""
        section = self._dwarf.debug_info_sec
        section.stream.seek(offset)
        head = section.stream.read(12)
        if len(head) < 4:
            return 0
        length: int = _U32.unpack_from(head)[0]
        if length == 0xFFFFFFFF and len(head) == 12:
            length = _U64.unpack_from(head, 4)[0]
        return length

    def build_cu(self, offset: int) -> CuIndex:
        """Index the compilation unit at ``.debug_info`` offset ``offset``."""
        with self._mapped_errors(offset):
            cu = self._dwarf.get_CU_at(offset)
            top = cu.get_top_DIE()
            program = self._dwarf.line_program_for_CU(cu)
            rows, ends, files = _line_table(program, top) if program is not None else (_empty_rows(), b"", [])
            comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top.attributes else ""
            return CuIndex(offset, rows, ends, files, self._functions(cu, top), comp_dir=comp_dir)

    def walk_function(self, index: CuIndex, die_offset: int) -> list[Scope]:
        """The scopes of the function at ``die_offset`` (stored into ``index.scopes``)."""
        with self._mapped_errors(die_offset):
            cu = self._dwarf.get_CU_at(index.offset)
            die = cu.get_DIE_from_refaddr(die_offset)
            scopes = [Scope(tuple(self._ranges(cu, die)), -1, 0, _die_name(die), 0, 0, 0)]
            self._walk(cu, die, 0, scopes)
        index.scopes[die_offset] = scopes
        return scopes

    def _walk(self, cu: Any, die: Any, parent: int, scopes: list[Scope]) -> None:
        for child in die.iter_children():
            tag = child.tag
            if tag == "DW_TAG_inlined_subroutine":
                a = child.attributes
                scopes.append(Scope(tuple(self._ranges(cu, child)), parent, scopes[parent].depth + 1,
                                    _die_name(child), _attr(a, "DW_AT_call_file"), _attr(a, "DW_AT_call_line"),
                                    _attr(a, "DW_AT_call_column")))
                self._walk(cu, child, len(scopes) - 1, scopes)
            elif tag == "DW_TAG_lexical_block" and child.has_children:
                self._walk(cu, child, parent, scopes)

    def _functions(self, cu: Any, top: Any) -> tuple[array[int], array[int], array[int]]:
        found: list[tuple[int, int, int]] = []
        for die in top.iter_children():
            if die.tag == "DW_TAG_subprogram" and ("DW_AT_low_pc" in die.attributes
                                                  or "DW_AT_ranges" in die.attributes):
                found.extend((lo, hi, die.offset) for lo, hi in self._ranges(cu, die) if hi > lo)
        found.sort()
        return array("Q", [f[0] for f in found]), array("Q", [f[1] for f in found]), array("Q", [f[2] for f in found])

    def _ranges(self, cu: Any, die: Any) -> Iterator[tuple[int, int]]:
        a = die.attributes
        if "DW_AT_low_pc" in a and "DW_AT_high_pc" in a:
            lo = self._address(cu, a["DW_AT_low_pc"])
            high = a["DW_AT_high_pc"]
            hi = self._address(cu, high) if high.form in ("DW_FORM_addr", "DW_FORM_addrx") else lo + high.value
            yield lo, hi
        elif "DW_AT_ranges" in a:
            yield from self._range_list(cu, a["DW_AT_ranges"])

    def _address(self, cu: Any, attr: Any) -> int:
        if attr.form.startswith("DW_FORM_addrx"):
            return int(self._dwarf.get_addr(cu, attr.value))
        return int(attr.value)

    def _range_list(self, cu: Any, attr: Any) -> Iterator[tuple[int, int]]:
        offset = attr.value
        if attr.form == "DW_FORM_rnglistx":
            base = cu.get_top_DIE().attributes["DW_AT_rnglists_base"].value
            stream = self._dwarf.debug_rnglists_sec.stream
            stream.seek(base + 4 * offset)
            offset = base + _U32.unpack(stream.read(4))[0]
        top = cu.get_top_DIE().attributes
        base_address = self._address(cu, top["DW_AT_low_pc"]) if "DW_AT_low_pc" in top else 0
        for entry in self._dwarf.range_lists().get_range_list_at_offset(offset, cu=cu):
            if hasattr(entry, "base_address"):
                base_address = entry.base_address
            elif entry.is_absolute:
                yield entry.begin_offset, entry.end_offset
            else:
                yield base_address + entry.begin_offset, base_address + entry.end_offset

    @contextlib.contextmanager
    def _mapped_errors(self, offset: int) -> Iterator[None]:
        # Maps pyelftools' and struct's failures on damaged DWARF to CorruptDumpError at one boundary.
        # lazy: +1 ms CPU to import it after this module (measured, loaded host)
        from elftools.common.exceptions import DWARFError, ELFError, ELFParseError

        damaged = (DWARFError, ELFError, ELFParseError, struct.error, IndexError, KeyError, ValueError, AttributeError,
                   TypeError, AssertionError, NotImplementedError, EOFError, RecursionError)
        try:
            yield
        except (CorruptDumpError, MissingDebugInfoError):
            raise
        except damaged as exc:
            raise CorruptDumpError(f"damaged DWARF near .debug_info offset {offset:#x} ({type(exc).__name__}:"
                                   f" {exc})", None, self._path) from exc


def _attr(attributes: dict[str, Any], name: str) -> int:
    a = attributes.get(name)
    return int(a.value) if a is not None else 0


def _die_name(die: Any) -> str:
    # DW_AT_name, else follow abstract_origin/specification (out-of-line and inlined instances).
    for _ in range(8):
        a = die.attributes
        if "DW_AT_name" in a:
            value = a["DW_AT_name"].value
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        ref = "DW_AT_abstract_origin" if "DW_AT_abstract_origin" in a else "DW_AT_specification"
        if ref not in a:
            return "??"
        die = die.get_DIE_from_attribute(ref)
    return "??"


def _empty_rows() -> tuple[array[int], ...]:
    return array("Q"), array("I"), array("I"), array("I"), array("I")


def _line_table(program: Any, top: Any) -> tuple[tuple[array[int], ...], bytes, list[str]]:
    # Sequences sorted by start address, rows kept in program order within each sequence.
    sequences: list[list[tuple[int, int, int, int, int, int]]] = []
    current: list[tuple[int, int, int, int, int, int]] = []
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        current.append((state.address, state.file, state.line, state.column, state.discriminator,
                        1 if state.end_sequence else 0))
        if state.end_sequence:
            sequences.append(current)
            current = []
    sequences.sort(key=lambda seq: seq[0][0])
    flat = [row for seq in sequences for row in seq]
    columns = list(zip(*flat, strict=True)) if flat else [()] * 6
    rows = tuple(array(code, col) for code, col in zip("QIIII", columns[:5], strict=True))
    return rows, bytes(columns[5]), _file_names(program, top)


def _file_names(program: Any, top: Any) -> list[str]:
    header = program.header
    version = header["version"]
    comp_dir = _text(top.attributes["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top.attributes else ""
    dirs = [_text(d) for d in header["include_directory"]]
    if version < 5:
        dirs = [comp_dir, *dirs]
    names = [_path(comp_dir, dirs, _text(f.name), f.dir_index) for f in header["file_entry"]]
    # DWARF 2-4 number files from 1, DWARF 5 from 0: index the list directly in both cases.
    return ["??", *names] if version < 5 else names


def _path(comp_dir: str, dirs: list[str], name: str, dir_index: int) -> str:
    # binutils' concat_filename, verbatim joins (no normalization, so "dir//name" when a directory
    # ends in "/"): a relative name goes under its directory, a relative directory under comp_dir.
    if name.startswith("/"):
        return name
    directory = dirs[dir_index] if 0 <= dir_index < len(dirs) else ""
    if directory.startswith("/"):
        return f"{directory}/{name}"
    if comp_dir and directory and directory != comp_dir:
        return f"{comp_dir}/{directory}/{name}"
    base = directory or comp_dir
    return f"{base}/{name}" if base else name


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
