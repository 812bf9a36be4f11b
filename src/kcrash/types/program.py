"""
kcrash.types.program
====================

:class:`Program`: one debugging target as typed objects, shaped like drgn's ``Program``: a memory
reader, a symbol source (kallsyms), types (vmlinux BTF plus modules' split BTF) and a declaration
table giving global variables their types. ``prog["init_task"]`` is the variable,
``prog.type("struct task_struct *")`` a type, ``prog.object(type, address)`` an object at an
address, ``prog.constant("TASK_RUNNING")`` an enum constant. :func:`open_program` builds one from
dump files with nothing else: memory from the dump, symbols from in-memory kallsyms, types from the
in-memory BTF (``__start_BTF`` .. ``__stop_BTF``). DWARF is not read here.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from kcrash.errors import FaultError, MissingDebugInfoError, SymbolNotFoundError, TypeLookupError
from kcrash.types.btf import Btf, parse_btf
from kcrash.types.declarations import KERNEL_DECLARATIONS, TypeSpec, parse_declarations, parse_type_spec
from kcrash.types.model import Type, TypeKind, array_type, int_type, pointer_type
from kcrash.types.object import Object

if TYPE_CHECKING:
    from kcrash.dumps.base import DumpFormat
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.memory.reader import MemoryReader

__all__ = ["Program", "SymbolSource", "open_program", "read_vmlinux_btf"]

# C's built-in integer types, for literals and casts when BTF lacks one.
_BUILTIN_INTS = {"int": (4, True), "unsigned int": (4, False), "long int": (8, True),
                 "long unsigned int": (8, False), "long long int": (8, True),
                 "long long unsigned int": (8, False), "char": (1, True), "_Bool": (1, False)}
_MAX_BTF = 64 << 20


class SymbolSource(Protocol):
    """Where global addresses come from (:class:`kcrash.debuginfo.symbols.SymbolTable`)."""

    def address_of(self, name: str) -> int:
        """The address of symbol ``name``; SymbolNotFoundError if absent."""
        ...


class Program:
    """A target's memory, symbols and types.

    :param memory: the kernel address space
    :param symbols: global symbol addresses (None: only :meth:`object` works)
    :param btf: vmlinux BTF (None: no types until :meth:`add_types`)
    :param declarations: C declarations of global variables (default: :data:`KERNEL_DECLARATIONS`)
    """

    def __init__(self, memory: MemoryReader, symbols: SymbolSource | None = None, btf: Btf | None = None, *,
                 declarations: str = KERNEL_DECLARATIONS, vmcoreinfo: VmcoreInfo | None = None) -> None:
        self.memory = memory
        self.symbols = symbols
        self.btf = btf
        self.vmcoreinfo = vmcoreinfo
        self.module_btf: dict[str, Btf] = {}
        self._declarations: dict[str, TypeSpec | Type] = dict(parse_declarations(declarations))
        self._user: set[str] = set()
        self._types: dict[str, Type] = {}
        self._closers: list[Callable[[], None]] = []
        #: the dump file(s) this program reads, when :func:`open_program` opened them
        self.dump: DumpFormat | None = None
        #: a running kernel (stopped while read; ``kcrash.analysis.live.live_program``): no panic,
        #: its CPUs' registers are the stub's
        self.live = False

    # -- memory ---------------------------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        """Read kernel virtual memory (FaultError if unreadable)."""
        return self.memory.read(address, size)

    def read_u64(self, address: int) -> int:
        """Read a little-endian u64."""
        return int.from_bytes(self.read(address, 8), "little")

    def read_u32(self, address: int) -> int:
        """Read a little-endian u32."""
        return int.from_bytes(self.read(address, 4), "little")

    # -- types ----------------------------------------------------------------------------------

    def add_types(self, btf: Btf) -> None:
        """Use ``btf`` as the vmlinux types."""
        self.btf = btf
        self._types.clear()

    def add_module_types(self, name: str, btf_bytes: bytes) -> Btf:
        """Add a module's split BTF (its type ids continue after vmlinux's)."""
        if self.btf is None:
            raise MissingDebugInfoError(f"module {name}: split BTF needs the vmlinux BTF first")
        btf = parse_btf(btf_bytes, self.btf, name=name)
        self.module_btf[name] = btf
        self._types.clear()
        return btf

    def type(self, name: str | Type) -> Type:
        """A type by C name: ``struct task_struct``, ``u64``, ``unsigned long``, ``char *``, ``int [4]``."""
        if isinstance(name, Type):
            return name
        cached = self._types.get(name)
        if cached is None:
            cached = parse_type_spec(name).resolve(self._lookup)
            self._types[name] = cached
        return cached

    def find_type_or_none(self, name: str) -> Type | None:
        """Like :meth:`type`, None when the type does not exist."""
        try:
            return self.type(name)
        except TypeLookupError:
            return None

    def _lookup(self, name: str, kind: TypeKind) -> Type:
        for btf in (self.btf, *self.module_btf.values()):
            found = btf.find_type_or_none(name, kind) if btf is not None else None
            if found is not None:
                return found
        if kind in (TypeKind.INT, TypeKind.BOOL) and name in _BUILTIN_INTS:
            size, signed = _BUILTIN_INTS[name]
            return int_type(name, size, signed)
        where = "BTF" if self.btf is not None else "no types loaded (vmlinux BTF missing)"
        keyword = f"{kind.value} " if kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ENUM) else ""
        raise TypeLookupError(f"no type {keyword}{name!r} ({where})")

    def pointer_type(self, target: Type | str) -> Type:
        """``target *``."""
        return pointer_type(self.type(target))

    def array_type(self, element: Type | str, length: int | None) -> Type:
        """``element [length]``."""
        return array_type(self.type(element), length)

    # -- variables ------------------------------------------------------------------------------

    def declare(self, name: str, type: Type | str) -> None:
        """Give global ``name`` a type (a C type name or a Type); overrides BTF and the table."""
        self._declarations[name] = parse_type_spec(type) if isinstance(type, str) else type
        self._user.add(name)

    def variable_type(self, name: str) -> Type:
        """The type of global ``name``: user declaration, then BTF VAR, then the shipped table."""
        decl = self._declarations.get(name)
        if name not in self._user:
            for btf in (self.btf, *self.module_btf.values()):
                found = btf.find_variable_type_or_none(name) if btf is not None else None
                if found is not None:
                    return found
        if decl is None:
            raise TypeLookupError(f"no type known for global {name!r}: declare it with "
                                  f"Program.declare({name!r}, 'TYPE')")
        return decl if isinstance(decl, Type) else decl.resolve(self._lookup)

    def symbol_address(self, name: str) -> int:
        """The address of global symbol ``name``."""
        if self.symbols is None:
            raise MissingDebugInfoError(f"no symbols to find {name!r} (kallsyms or System.map)")
        return self.symbols.address_of(name)

    def variable(self, name: str) -> Object:
        """Global variable ``name`` as a reference object (per-CPU ones: the per-CPU offset)."""
        address = self.symbol_address(name)
        return Object(self, self.variable_type(name), address=address)

    def __getitem__(self, name: str) -> Object:
        return self.variable(name)

    def __contains__(self, name: str) -> bool:
        try:
            self.symbol_address(name)
        except (SymbolNotFoundError, MissingDebugInfoError):
            return False
        return True

    def constant(self, name: str) -> Object:
        """Enum constant ``name`` as a value object of its enum type."""
        for btf in (self.btf, *self.module_btf.values()):
            hit = btf.find_enumerator_or_none(name) if btf is not None else None
            if hit is not None:
                return Object(self, hit[0], hit[1])
        raise TypeLookupError(f"no enum constant {name!r}")

    def object(self, type: Type | str, address: int) -> Object:
        """The object of ``type`` at ``address``."""
        return Object(self, self.type(type), address=address)

    def format_object(self, obj: Object, **options: int | bool) -> str:
        """The text of ``str(obj)`` / ``obj.format_(**options)``: :func:`kcrash.types.format.format_object`
        (a subclass may print objects its own way, as the shell's drgn-compatible program does)."""
        from kcrash.types.format import format_object

        return format_object(obj, **options)

    def is_percpu(self, name: str) -> bool:
        """True if BTF lists ``name`` in ``.data..percpu``."""
        return self.btf is not None and self.btf.is_percpu_variable(name)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the files behind this program."""
        while self._closers:
            self._closers.pop()()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: builtins.object) -> None:
        self.close()


def read_vmlinux_btf(memory: MemoryReader, symbols: SymbolSource) -> bytes:
    """The vmlinux BTF from memory, between ``__start_BTF`` and ``__stop_BTF``."""
    try:
        start, stop = symbols.address_of("__start_BTF"), symbols.address_of("__stop_BTF")
    except SymbolNotFoundError as exc:
        raise MissingDebugInfoError(
            "no __start_BTF/__stop_BTF symbols: the kernel has no BTF (CONFIG_DEBUG_INFO_BTF); "
            "types need a vmlinux with DWARF") from exc
    if not 0 < stop - start <= _MAX_BTF:
        raise MissingDebugInfoError(f"implausible BTF size {stop - start} (__start_BTF {start:#x})")
    return memory.read(start, stop - start)


def open_program(dump_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                 cache_dir: Path | None = None, *, zero_fill: bool = False, symbol_file: Path | None = None,
                 force: bool = False) -> Program:
    """Open dump files as a :class:`Program` with kallsyms symbols and in-memory BTF types.

    :param symbol_file: a System.map or vmlinux to take the kernel's symbols from instead of its
        kallsyms (checked against the dump unless ``force``). Without it, a dump whose kallsyms cannot
        be read falls back to one found in the usual places (:func:`find_symbol_file_or_none`).
    """
    from kcrash.dumps import open_dump
    from kcrash.memory import open_kernel_memory

    dump = open_dump(dump_paths, zero_fill=zero_fill)
    try:
        memory = open_kernel_memory(dump)
        info = dump.vmcoreinfo_or_none()
        symbols = _symbols(memory, info, cache_dir, symbol_file, force)
        btf = parse_btf(read_vmlinux_btf(memory, symbols), name="vmlinux", cache_dir=cache_dir,
                        cache_key=info.build_id if info is not None else None)
        prog = Program(memory, symbols, btf, vmcoreinfo=info)
    except BaseException:
        dump.close()
        raise
    prog.dump = dump
    prog._closers.append(dump.close)
    return prog


def _symbols(memory: MemoryReader, info: VmcoreInfo | None, cache_dir: Path | None, symbol_file: Path | None,
             force: bool) -> SymbolSource:
    from kcrash.debuginfo.symbol_files import find_symbol_file_or_none, load_symbol_file

    if symbol_file is not None:
        return load_symbol_file(symbol_file, info, force=force)
    try:
        return _load_symbols(memory, info, cache_dir)
    except (MissingDebugInfoError, FaultError) as exc:
        found = find_symbol_file_or_none(info.osrelease if info is not None else None,
                                         info.build_id if info is not None else None)
        if found is None:
            raise MissingDebugInfoError(f"{exc}; give --system-map or --vmlinux") from None
        try:
            return load_symbol_file(found, info)
        except MissingDebugInfoError as refused:
            raise MissingDebugInfoError(f"{exc}; and {refused}") from None


def _load_symbols(memory: MemoryReader, info: VmcoreInfo | None, cache_dir: Path | None) -> SymbolSource:
    if info is None:
        raise MissingDebugInfoError("the dump has no VMCOREINFO, so kallsyms cannot be found; "
                                    "a dump taken with QEMU '-device vmcoreinfo' or by kdump would have it")
    try:
        from kcrash.debuginfo import kallsyms
    except ImportError as exc:  # pragma: no cover - until the kallsyms loader lands
        raise MissingDebugInfoError("kallsyms support is not available in this kcrash") from exc
    return kallsyms.load_kallsyms(memory, info, cache_dir)
