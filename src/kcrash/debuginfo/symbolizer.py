"""
kcrash.debuginfo.symbolizer
===========================

Address -> source: function, file, line, column and the chain of inlined calls, as
``addr2line -f -i`` prints them, for a ``vmlinux`` and for module ``.ko`` files placed at their load
addresses. Lazy: the first lookup indexes ``.debug_aranges`` and the code symbols; each lookup then
parses only the compilation unit and the function it falls in. With a cache directory, every index
built is stored under the file's GNU build-id and reused by later processes. Finding the right
debug files is :mod:`kcrash.debuginfo.finder`'s job; parsing console logs is :mod:`kcrash.oops`'s.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kcrash.debuginfo.dwarf_index import ArangeIndex, CuIndex, DwarfReader, Scope, open_dwarf
from kcrash.debuginfo.elf_symtab import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    ElfImage,
    ElfSection,
    ElfSymbolTable,
    module_section_bases,
    open_elf_image,
    relocated_section,
)
from kcrash.errors import CorruptDumpError, MissingDebugInfoError, SymbolNotFoundError
from kcrash.metrics import phase, progress

__all__ = [
    "KernelSymbolizer",
    "SourceLocation",
    "Symbolizer",
    "format_location",
    "open_symbolizers",
]


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """One source-level frame. ``inlined`` is True when this function was inlined into the next
    (outer) location of the same address. ``file`` is ``??`` and ``line`` 0 when unknown."""

    function: str
    file: str
    line: int
    column: int = 0
    discriminator: int = 0
    inlined: bool = False


def format_location(location: SourceLocation, strip_prefix: str = "") -> str:
    """``file:line`` the way addr2line prints it, optionally without a leading source-tree path."""
    path = location.file
    if strip_prefix and path.startswith(strip_prefix.rstrip("/") + "/"):
        path = path[len(strip_prefix.rstrip("/")) + 1:]
    return f"{path}:{location.line if location.file != '??' else 0}"


_UNKNOWN = SourceLocation("??", "??", 0)
# The symbol-table cache entry; the name changes with the layout (v2: the name index is sorted by
# name instead of by string-table offset), so that an older entry of the same size is never misread.
_SYMBOLS_ENTRY = "symbols-v2.bin"
_MAX_UNITS = 48


class Symbolizer:
    """The debug information of one ELF file. Use :meth:`open`; close with :meth:`close`.

    ``symbolize(address)`` takes load addresses: for a vmlinux the link-time addresses (subtract the
    KASLR offset first), for a ``.ko`` addresses with its ``.text`` at ``module_base``.
    """

    def __init__(self, image: ElfImage, *, name: str, cache_dir: Path | None,
                 bases: dict[int, int] | None) -> None:
        self.image = image
        self.name = name
        self.build_id = image.build_id_or_none()
        self._bases = bases
        self._cache = _cache_path(cache_dir, self.build_id, bases)
        self._reader: DwarfReader | None = None
        self._aranges: ArangeIndex | None = None
        self._symbols: ElfSymbolTable | None = None
        self._units: dict[int, CuIndex] = {}
        self._dirty: set[int] = set()
        self._built = 0
        if image.find_section_or_none(".debug_info") is None:
            raise MissingDebugInfoError(
                f"{image.path}: no DWARF debug information (.debug_info); it is stripped — use the"
                " matching -dbg package's file")

    @classmethod
    def open(cls, path: Path, *, cache_dir: Path | None = None, module_base: int | None = None,
             name: str | None = None) -> Symbolizer:
        """Open ``path``; for a relocatable ``.ko`` its core ``.text`` goes to ``module_base``
        (0 when not given, so addresses are ``.text`` offsets like ``addr2line -j .text``).

        :raises MissingDebugInfoError: the file has no DWARF.
        :raises CorruptDumpError: the file is not a readable ELF file.
        """
        image = open_elf_image(path)
        bases = module_section_bases(image, module_base or 0) if image.is_relocatable() else None
        try:
            return cls(image, name=name or path.name, cache_dir=cache_dir, bases=bases)
        except MissingDebugInfoError:
            image.close()
            raise

    def close(self) -> None:
        """Write pending cache entries and unmap the file."""
        self.flush()
        self._reader = None
        with contextlib.suppress(BufferError):
            self.image.close()

    def __enter__(self) -> Symbolizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def symbols(self) -> ElfSymbolTable:
        """The code symbols (from the cache when present)."""
        if self._symbols is None:
            blob = self._cached(_SYMBOLS_ENTRY)
            self._symbols = (ElfSymbolTable.from_bytes(blob) if blob is not None
                             else ElfSymbolTable.from_image(self.image, self._bases))
            if blob is None:
                self._store(_SYMBOLS_ENTRY, self._symbols.to_bytes())
        return self._symbols

    def source_root_or_none(self) -> str | None:
        """The compilation directory (``DW_AT_comp_dir``) of the units looked at so far: the kernel
        source tree for a vmlinux, the build directory for an out-of-tree module."""
        for unit in self._units.values():
            if unit.comp_dir:
                return unit.comp_dir
        return None

    def load_address_of(self, section: ElfSection) -> int:
        """Where ``section`` is loaded (its ``sh_addr``, or its place in a module's layout)."""
        if self._bases is not None:
            return self._bases.get(section.index, 0)
        return section.sh_addr

    def text_ranges(self) -> list[tuple[int, int]]:
        """[start, end) of the executable sections at their load addresses."""
        ranges = []
        for s in self.image.sections:
            if s.sh_flags & SHF_EXECINSTR and s.sh_flags & SHF_ALLOC and s.sh_size:
                start = self.load_address_of(s)
                ranges.append((start, start + s.sh_size))
        return ranges

    def address_of(self, function: str, offset: int = 0, size: int | None = None) -> int:
        """The load address of ``function+offset``; ``size`` picks among same-named static functions.

        :raises SymbolNotFoundError: no such code symbol.
        """
        return self.symbols.address_of(function, size) + offset

    def symbolize(self, address: int) -> tuple[SourceLocation, ...]:
        """Source locations of ``address``, innermost (most deeply inlined) first.

        Unknown addresses give one ``??`` location named after the ELF symbol when there is one.

        :raises CorruptDumpError: the DWARF of the unit holding the address is damaged.
        """
        unit = self._unit_or_none(address)
        line = unit.line_at_or_none(address) if unit is not None else None
        scopes = self._scopes_or_none(unit, address) if unit is not None else None
        if not scopes:
            return (self._fallback(address, line),)
        chain = _chain(scopes, address)
        file, number, column, discriminator = line if line is not None else ("??", 0, 0, 0)
        assert unit is not None
        out = [SourceLocation(scopes[chain[0]].name, file, number, column, discriminator, len(chain) > 1)]
        for k in range(1, len(chain)):
            inner = scopes[chain[k - 1]]
            out.append(SourceLocation(scopes[chain[k]].name, unit.file_name(inner.call_file), inner.call_line,
                                      inner.call_column, 0, k < len(chain) - 1))
        return tuple(out)

    def _fallback(self, address: int, line: tuple[str, int, int, int] | None) -> SourceLocation:
        # No DWARF function (assembly units): binutils names the function from the symbol table.
        found = self.symbols.nearest_function_or_none(address)
        name = found.name if found is not None else "??"
        if line is None:
            return SourceLocation(name, "??", 0) if found is not None else _UNKNOWN
        return SourceLocation(name, line[0], line[1], line[2], line[3])

    def _unit_or_none(self, address: int) -> CuIndex | None:
        offset = self.aranges.cu_offset_or_none(address)
        if offset is None:
            return None
        unit = self._units.get(offset)
        if unit is None:
            unit = self._cached_unit_or_none(offset)
            if unit is None:
                with phase("debuginfo-index"):
                    unit = self.reader.build_cu(offset)
                self._dirty.add(offset)
                self._built += 1
            self._remember(offset, unit)
        return unit

    def prefetch(self, addresses: Iterable[int], *, workers: int | None = None) -> None:
        """Index, ahead of :meth:`symbolize`, the compilation units holding ``addresses`` that are
        neither loaded nor cached (and the functions holding the addresses), several units at a time
        in forked worker processes when there are several CPUs: pyelftools is pure Python, so threads
        would not run in parallel. Units that fail to build there are left to :meth:`symbolize`,
        which builds them in-process (and raises its usual errors).

        :param workers: at most this many processes (default: the CPUs this process may run on).
        """
        todo: dict[int, list[int]] = {}
        for address in addresses:
            offset = self.aranges.cu_offset_or_none(address)
            if offset is not None and offset not in self._units and not self._load_cached_unit(offset):
                todo.setdefault(offset, []).append(address)
        count = min(len(todo), workers if workers is not None else _usable_cpus())
        if count < 2 or threading.active_count() > 1 or not hasattr(os, "fork"):
            return  # one unit or one CPU: nothing to overlap; other threads: fork is unsafe
        for offset, blob in _build_units_forked(self, todo, count).items():
            self._dirty.add(offset)
            self._remember(offset, CuIndex.from_bytes(blob))

    def _load_cached_unit(self, offset: int) -> bool:
        unit = self._cached_unit_or_none(offset)
        if unit is not None:
            self._remember(offset, unit)
        return unit is not None

    def _cached_unit_or_none(self, offset: int) -> CuIndex | None:
        # Parsed straight from a mapping of the file: its megabytes of line tables are copied once.
        if self._cache is None:
            return None
        try:
            with open(self._cache / f"cu-{offset:x}.bin", "rb") as file:
                if os.fstat(file.fileno()).st_size == 0:
                    return CuIndex.from_bytes(b"")  # a damaged entry: mmap cannot map an empty file
                with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    return CuIndex.from_bytes(view)
        except OSError:
            return None

    def is_indexed(self, address: int) -> bool:
        """Whether symbolizing ``address`` needs no new index (its unit is loaded or cached, or
        no unit covers it); False means a first-time parse of DWARF, the slow part."""
        offset = self.aranges.cu_offset_or_none(address)
        return offset is None or offset in self._units or (
            self._cache is not None and (self._cache / f"cu-{offset:x}.bin").exists())

    def _remember(self, offset: int, unit: CuIndex) -> None:
        # Bounded memory over long runs: keep the most recent units, and start a fresh pyelftools
        # DWARFInfo now and then (it caches every unit and DIE it parsed).
        self._units[offset] = unit
        if len(self._units) > _MAX_UNITS:
            self.flush()
            self._units.pop(next(iter(self._units)))
        if self._built >= _MAX_UNITS:
            self._reader = None
            self._built = 0

    def _scopes_or_none(self, unit: CuIndex, address: int) -> list[Scope] | None:
        die = unit.function_die_or_none(address)
        if die is None:
            return None
        scopes = unit.scopes.get(die)
        if scopes is None:
            scopes = self.reader.walk_function(unit, die)
            self._dirty.add(unit.offset)
        return scopes

    @property
    def aranges(self) -> ArangeIndex:
        """The address -> compilation unit index."""
        if self._aranges is None:
            blob = self._cached("aranges.bin")
            self._aranges = ArangeIndex.from_bytes(blob) if blob is not None else self.reader.build_aranges()
            if blob is None:
                self._store("aranges.bin", self._aranges.to_bytes())
        return self._aranges

    @property
    def reader(self) -> DwarfReader:
        """The pyelftools-backed index builder (opened on first use)."""
        if self._reader is None:
            relocated = self._relocated if self._bases is not None else None
            self._reader = DwarfReader(open_dwarf(self.image, relocated), str(self.image.path))
        return self._reader

    def _relocated(self, name: str) -> bytes:
        section = self.image.find_section_or_none(name)
        assert section is not None and self._bases is not None
        return relocated_section(self.image, section, self._bases)

    def flush(self) -> None:
        """Store the compilation-unit indexes built or extended since the last flush."""
        for offset in sorted(self._dirty):
            self._store(f"cu-{offset:x}.bin", self._units[offset].to_bytes())
        self._dirty.clear()

    def _cached(self, name: str) -> bytes | None:
        if self._cache is None:
            return None
        try:
            return (self._cache / name).read_bytes()
        except OSError:
            return None

    def _store(self, name: str, blob: bytes) -> None:
        if self._cache is None:
            return
        # A cache that cannot be written only costs speed.
        with contextlib.suppress(OSError):
            self._cache.mkdir(parents=True, exist_ok=True)
            tmp = self._cache / f".{name}.{os.getpid()}"
            tmp.write_bytes(blob)
            tmp.replace(self._cache / name)


def _cache_path(cache_dir: Path | None, build_id: str | None, bases: dict[int, int] | None) -> Path | None:
    # Indexes hold load addresses: a module's are kept per build-id and placement.
    if cache_dir is None or build_id is None:
        return None
    placement = f"@{min(bases.values()):x}" if bases else ""
    return cache_dir / "debuginfo" / f"{build_id}{placement}"


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: The symbolizer whose units the forked workers of :meth:`Symbolizer.prefetch` build (inherited
#: through fork, so that nothing but unit offsets and index blobs crosses the process boundary).
_FORKED: list[Symbolizer] = []


def _build_units_forked(symbolizer: Symbolizer, todo: dict[int, list[int]], workers: int) -> dict[int, bytes]:
    # Biggest units first (their .debug_info length stands for the work), so that the last one to
    # finish is a small one.
    # lazy: +12 ms CPU to import it after this module (measured, loaded host)
    import multiprocessing

    # lazy: +8 ms CPU to import it after this module (measured, loaded host)
    from concurrent.futures import BrokenExecutor, ProcessPoolExecutor

    jobs = sorted(todo.items(), key=lambda job: -symbolizer.reader.unit_length(job[0]))
    _FORKED[:] = [symbolizer]
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            built = list(pool.map(_build_unit_in_worker, jobs))
    except (OSError, BrokenExecutor):
        return {}  # no processes (limits) or a worker died: symbolize() builds the units in-process
    finally:
        _FORKED.clear()
    return {offset: blob for (offset, _), blob in zip(jobs, built, strict=True) if blob is not None}


def _build_unit_in_worker(job: tuple[int, list[int]]) -> bytes | None:
    # In a forked worker: the unit's index plus the scopes of the functions holding the addresses.
    offset, addresses = job
    reader = _FORKED[0].reader
    try:
        unit = reader.build_cu(offset)
        for address in addresses:
            die = unit.function_die_or_none(address)
            if die is not None and die not in unit.scopes:
                reader.walk_function(unit, die)
    except (CorruptDumpError, MissingDebugInfoError):
        return None
    return unit.to_bytes()


def _chain(scopes: list[Scope], address: int) -> list[int]:
    # The deepest scope holding the address, then its parents up to the function.
    best = 0
    for i, scope in enumerate(scopes):
        if scope.depth > scopes[best].depth and scope.contains(address):
            best = i
    chain = [best]
    # A parent precedes its children (DwarfReader.walk_function appends them so); a parent link
    # that does not point back (a damaged cache entry: a cycle, an index out of range) ends the
    # chain, so it has at most len(scopes) entries.
    while 0 <= scopes[chain[-1]].parent < chain[-1]:
        chain.append(scopes[chain[-1]].parent)
    return chain


class KernelSymbolizer:
    """The vmlinux symbolizer plus module symbolizers by module name (``-`` and ``_`` are the same).

    Module symbolizers must be opened at the module's load address (see :meth:`Symbolizer.open`);
    ``symbolize`` then dispatches by address, and ``locate`` turns ``function+offset [module]`` into an
    address without any load address at all (KASLR-proof), as console logs need.
    """

    def __init__(self, vmlinux: Symbolizer | None, modules: Mapping[str, Symbolizer] | None = None, *,
                 kaslr_offset: int = 0) -> None:
        self.vmlinux = vmlinux
        self.kaslr_offset = kaslr_offset
        self.modules = {_module_key(k): v for k, v in (modules or {}).items()}
        self._ranges = [(lo, hi, m) for m in self.modules.values() for lo, hi in m.text_ranges()]

    def object_for(self, module: str = "") -> Symbolizer:
        """The symbolizer of ``module`` (vmlinux for ``""``).

        :raises MissingDebugInfoError: no debug file was given for it.
        """
        found = self.modules.get(_module_key(module)) if module else self.vmlinux
        if found is None:
            what = f"module {module}" if module else "vmlinux"
            raise MissingDebugInfoError(f"no debug information for {what}; pass it with --debuginfo")
        return found

    def locate(self, function: str, offset: int, module: str = "", size: int | None = None) -> int:
        """The address of ``function+offset`` in ``module`` (or vmlinux).

        :raises MissingDebugInfoError: no debug file for that module.
        :raises SymbolNotFoundError: the function is not in its symbol table.
        """
        return self.object_for(module).address_of(function, offset, size)

    def symbolize(self, address: int) -> tuple[SourceLocation, ...]:
        """Source locations of a runtime address, innermost first: module text first, then vmlinux
        (with ``kaslr_offset`` taken off)."""
        target, at = self._object_at(address)
        return (_UNKNOWN,) if target is None else target.symbolize(at)

    def symbolize_many(self, addresses: Sequence[int]) -> list[tuple[SourceLocation, ...]]:
        """:meth:`symbolize` of each address; first-time indexing, when any is needed, is
        announced through :func:`kcrash.metrics.progress`."""
        todo = [a for a in addresses if not self._indexed(a)]
        if not todo:
            return [self.symbolize(a) for a in addresses]
        with progress(f"indexing debug information ({len(todo)} addresses)") as update:
            for done, address in enumerate(todo):
                update(done, len(todo))
                self.symbolize(address)
            update(len(todo), len(todo))
        return [self.symbolize(a) for a in addresses]

    def _indexed(self, address: int) -> bool:
        target, at = self._object_at(address)
        return target is None or target.is_indexed(at)

    def _object_at(self, address: int) -> tuple[Symbolizer | None, int]:
        for lo, hi, module in self._ranges:
            if lo <= address < hi:
                return module, address
        return self.vmlinux, address - self.kaslr_offset

    def symbolize_symbol(self, function: str, offset: int, module: str = "",
                         size: int | None = None) -> tuple[SourceLocation, ...]:
        """Source locations of ``function+offset [module]``."""
        target = self.object_for(module)
        return target.symbolize(target.address_of(function, offset, size))

    def close(self) -> None:
        """Close every symbolizer (storing their caches)."""
        for item in self._all():
            item.close()

    def _all(self) -> Iterable[Symbolizer]:
        if self.vmlinux is not None:
            yield self.vmlinux
        yield from self.modules.values()


def _module_key(name: str) -> str:
    return name.replace("-", "_")


def open_symbolizers(vmlinux: Path | None, modules: Mapping[str, tuple[Path, int]], *,
                     cache_dir: Path | None, kaslr_offset: int = 0) -> KernelSymbolizer:
    """Open a :class:`KernelSymbolizer` from a vmlinux path and ``{name: (ko_path, text_base)}``."""
    opened: dict[str, Symbolizer] = {}
    top = None
    try:
        top = Symbolizer.open(vmlinux, cache_dir=cache_dir, name="vmlinux") if vmlinux is not None else None
        for name, (path, base) in modules.items():
            opened[name] = Symbolizer.open(path, cache_dir=cache_dir, module_base=base, name=name)
    except (MissingDebugInfoError, CorruptDumpError, SymbolNotFoundError):
        for item in [*opened.values(), *([top] if top else [])]:
            item.close()
        raise
    return KernelSymbolizer(top, opened, kaslr_offset=kaslr_offset)

