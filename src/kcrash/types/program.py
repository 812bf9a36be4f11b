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

What helpers need of the target beyond memory, symbols and types is the Program's own typed API,
the same for a dump and for a live kernel (:func:`kcrash.analysis.live.live_program`), so that no
helper looks behind it: :attr:`Program.cpus` (the CPUs' saved registers), :attr:`Program.vmcoreinfo`,
:attr:`Program.kaslr_offset`, :attr:`Program.page_tables`, symbol lookups by address
(:meth:`Program.symbolize_or_none`, :meth:`Program.format_address`) and by name
(:meth:`Program.get_symbol_by_name`), and :attr:`Program.cache` for per-program results (as drgn's
``prog.cache``). Where a backend lacks a fact, the answer is an empty list or None with a documented
meaning.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kcrash.debuginfo.symbols import Symbol, SymbolTable
from kcrash.dumps import open_dump
from kcrash.errors import FaultError, MissingDebugInfoError, SymbolNotFoundError, TypeLookupError
from kcrash.memory import open_kernel_memory
from kcrash.memory.kernel import KernelLayout, KernelMemory
from kcrash.memory.layout import PageTables
from kcrash.memory.translate.x86_64 import START_KERNEL_MAP
from kcrash.types.btf import Btf, parse_btf
from kcrash.types.declarations import KERNEL_DECLARATIONS, TypeSpec, parse_declarations, parse_type_spec
from kcrash.types.model import Type, TypeKind, array_type, int_type, pointer_type
from kcrash.types.object import Object
from kcrash.types.recover import recover_missing_symbols

if TYPE_CHECKING:
    from kcrash.dumps.base import DumpFormat
    from kcrash.dumps.cpustate import CpuState
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
    :param vmcoreinfo: the kernel's VMCOREINFO (default: the one ``memory`` was opened with, if any)
    """

    def __init__(self, memory: MemoryReader, symbols: SymbolSource | None = None, btf: Btf | None = None, *,
                 declarations: str = KERNEL_DECLARATIONS, vmcoreinfo: VmcoreInfo | None = None) -> None:
        self.memory = memory
        self.symbols = symbols
        self.btf = btf
        if vmcoreinfo is None and isinstance(memory, KernelMemory):
            vmcoreinfo = memory.vmcoreinfo
        #: the kernel's VMCOREINFO (the dump's note, or the live kernel's through QEMU); None when the
        #: target has none (a dump taken without it, a synthetic test kernel)
        self.vmcoreinfo = vmcoreinfo
        #: per-program results of helpers, as drgn's ``prog.cache`` (key: a name owned by the helper)
        self.cache: dict[Any, Any] = {}
        self._cpus: list[CpuState] = []
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
        """Read kernel virtual memory.

        :param address: the virtual address
        :param size: how many bytes
        :return: the bytes
        :raises FaultError: if any of them is unreadable (not mapped, or not in the dump)

        >>> prog.read(prog.symbol_address("linux_banner"), 13)
        b'Linux version'
        """
        return self.memory.read(address, size)

    def read_u64(self, address: int) -> int:
        """Read a little-endian u64 from kernel virtual memory.

        :param address: the virtual address
        :return: the value
        :raises FaultError: if it is unreadable

        >>> prog.read_u64(prog.symbol_address("jiffies_64")) == int(prog["jiffies_64"])
        True
        """
        return int.from_bytes(self.read(address, 8), "little")

    def read_u32(self, address: int) -> int:
        """Read a little-endian u32 from kernel virtual memory.

        :param address: the virtual address
        :return: the value
        :raises FaultError: if it is unreadable

        >>> prog.read_u32(prog.symbol_address("nr_cpu_ids"))
        2
        """
        return int.from_bytes(self.read(address, 4), "little")

    # -- the machine ----------------------------------------------------------------------------

    @property
    def cpus(self) -> list[CpuState]:
        """The CPUs with saved registers, in CPU order.

        A dump's ``NT_PRSTATUS`` (and QEMU) notes, a live kernel's vCPUs as its stub reports them.

        Empty when the target has none (a dump without CPU notes, a synthetic test kernel): then no CPU can
        be unwound from its registers.

        >>> len(prog.cpus)
        2
        """
        memory = self.memory
        return memory.cpus if isinstance(memory, KernelMemory) else self._cpus

    @cpus.setter
    def cpus(self, cpus: list[CpuState]) -> None:
        memory = self.memory
        if isinstance(memory, KernelMemory):
            memory.cpus = cpus
        else:
            self._cpus = cpus

    @property
    def machine(self) -> str:
        """The target's machine, ``"x86_64"`` or ``"aarch64"`` (drgn: ``prog.platform.arch``).

        A reader that is not a dump's kernel memory is taken as x86-64.

        >>> prog.machine
        'x86_64'
        """
        memory = self.memory
        return memory.machine if isinstance(memory, KernelMemory) else "x86_64"

    @property
    def layout(self) -> KernelLayout | None:
        """How kernel addresses map; None when the memory is a flat reader of virtual addresses.

        Page-table root, paging levels, KASLR offset, ``phys_base`` and where these came from.

        >>> prog.layout.levels
        4
        """
        memory = self.memory
        return memory.layout if isinstance(memory, KernelMemory) else None

    @property
    def kaslr_offset(self) -> int | None:
        """The KASLR offset of kernel text (0 without KASLR).

        From VMCOREINFO's ``KERNELOFFSET`` or, with no VMCOREINFO, from the kernel-text mapping; None when
        neither tells.

        >>> prog.kaslr_offset
        0
        """
        memory = self.memory
        if isinstance(memory, KernelMemory):
            return memory.layout.kaslr_offset
        return self.vmcoreinfo.kerneloffset if self.vmcoreinfo is not None else None

    @property
    def page_tables(self) -> PageTables | None:
        """The kernel's page tables, or None.

        None when the memory has no paging (a flat reader of virtual addresses, as tests build) or a dump
        lacks both VMCOREINFO and a CR3 note.

        >>> prog.page_tables is not None
        True
        """
        memory = self.memory
        return memory.page_tables if isinstance(memory, KernelMemory) else None

    def page_tables_at(self, pgd: int) -> PageTables:
        """Return page tables rooted at physical ``pgd``.

        ``pgd`` is a task's ``mm->pgd``, translated; the tables use the kernel's paging mode (levels, SME
        mask).

        :param pgd: the physical address of the top-level table
        :return: the page tables
        :raises MissingDebugInfoError: if the program has no kernel page tables (see :attr:`page_tables`)

        >>> tables = prog.page_tables_at(prog.page_tables.translate(int(task.mm.pgd)))
        """
        memory = self.memory
        if not isinstance(memory, KernelMemory) or memory.page_tables is None:
            raise MissingDebugInfoError("no kernel page tables in this target")
        return memory.page_tables_at(pgd)

    # -- types ----------------------------------------------------------------------------------

    def add_types(self, btf: Btf) -> None:
        """Use ``btf`` as the vmlinux types (the cached type lookups are forgotten).

        :param btf: the parsed vmlinux BTF

        >>> prog.add_types(prog.btf)
        """
        self.btf = btf
        self._types.clear()

    def add_module_types(self, name: str, btf_bytes: bytes) -> Btf:
        """Add a module's split BTF (its type ids continue after vmlinux's).

        :param name: the module's name
        :param btf_bytes: the module's raw split BTF (``mod->btf_data``)
        :return: the parsed BTF, also kept in :attr:`module_btf`
        :raises MissingDebugInfoError: if the vmlinux BTF is not loaded yet
        :raises CorruptDumpError: if the BTF cannot be parsed

        >>> from kcrash.helpers.linux.module import find_module_or_none, module_btf_or_none
        >>> btf = prog.add_module_types("kcrash_test", module_btf_or_none(find_module_or_none(prog, "kcrash_test")))
        """
        if self.btf is None:
            raise MissingDebugInfoError(f"module {name}: split BTF needs the vmlinux BTF first")
        btf = parse_btf(btf_bytes, self.btf, name=name)
        self.module_btf[name] = btf
        self._types.clear()
        return btf

    def type(self, name: str | Type) -> Type:
        """Return a type by C name: ``struct task_struct``, ``u64``, ``unsigned long``, ``char *``, ``int [4]``.

        Looked up in the vmlinux BTF, then the modules' split BTF, then the built-in integer types.

        :param name: the C type name (a :class:`~kcrash.types.model.Type` is returned as it is)
        :return: the type
        :raises TypeLookupError: if there is no such type

        >>> prog.type("struct task_struct").sizeof()
        9792
        """
        if isinstance(name, Type):
            return name
        cached = self._types.get(name)
        if cached is None:
            cached = parse_type_spec(name).resolve(self._lookup)
            self._types[name] = cached
        return cached

    def find_type_or_none(self, name: str) -> Type | None:
        """Return a type by C name, like :meth:`type`, or None when the type does not exist.

        :param name: the C type name
        :return: the type, or None

        >>> prog.find_type_or_none("struct no_such_type") is None
        True
        """
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
        """Return the type ``target *``.

        :param target: the pointed-to type, or its C name
        :return: the pointer type
        :raises TypeLookupError: if ``target`` does not exist

        >>> prog.pointer_type("struct task_struct").type_name()
        'struct task_struct *'
        """
        return pointer_type(self.type(target))

    def array_type(self, element: Type | str, length: int | None) -> Type:
        """Return the type ``element [length]``.

        :param element: the element type, or its C name
        :param length: the number of elements, None for a flexible array (``[]``)
        :return: the array type
        :raises TypeLookupError: if ``element`` does not exist

        >>> prog.array_type("u64", 4).sizeof()
        32
        """
        return array_type(self.type(element), length)

    # -- variables ------------------------------------------------------------------------------

    def declare(self, name: str, type: Type | str) -> None:
        """Give global ``name`` a type; the declaration overrides BTF and the shipped table.

        :param name: the global variable's name
        :param type: a C type name or a :class:`~kcrash.types.model.Type`

        >>> prog.declare("oom_reaper_wait", "wait_queue_head_t")
        >>> prog["oom_reaper_wait"].type_.type_name()
        'wait_queue_head_t'
        """
        self._declarations[name] = parse_type_spec(type) if isinstance(type, str) else type
        self._user.add(name)

    def variable_type(self, name: str) -> Type:
        """Return the type of global ``name``.

        Looked up in a user declaration, then a BTF ``VAR``, then the shipped table
        (:data:`KERNEL_DECLARATIONS`).

        :param name: the global variable's name
        :return: its type
        :raises TypeLookupError: if no type is known for it (give one with :meth:`declare`)

        >>> prog.variable_type("jiffies_64").type_name()
        'u64'
        """
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
        """Return the address of global symbol ``name`` (vmlinux, then the modules).

        :param name: the symbol's name
        :return: its address
        :raises SymbolNotFoundError: if there is no such symbol
        :raises MissingDebugInfoError: if the program has no symbols

        >>> hex(prog.symbol_address("init_task"))
        '0xffffffff82c10940'
        """
        if self.symbols is None:
            raise MissingDebugInfoError(f"no symbols to find {name!r} (kallsyms or System.map)")
        return self.symbols.address_of(name)

    @property
    def symbol_table(self) -> SymbolTable | None:
        """The symbols as a table (sizes, modules, lookups by address).

        None when the program was given only a name-to-address source (``symbols`` without a table) or no
        symbols.

        >>> prog.symbol_table is not None
        True
        """
        return self.symbols if isinstance(self.symbols, SymbolTable) else None

    def get_symbol_by_name(self, name: str) -> Symbol:
        """Return the symbol ``name`` with its size and kind (the first one of that name, vmlinux first).

        :param name: the symbol's name
        :return: the symbol
        :raises SymbolNotFoundError: if there is no such symbol
        :raises MissingDebugInfoError: if there is no symbol table (see :attr:`symbol_table`)

        >>> prog.get_symbol_by_name("schedule").name
        'schedule'
        """
        table = self.symbol_table
        if table is None:
            raise MissingDebugInfoError(f"the symbol {name!r} needs a symbol table (kallsyms or System.map)")
        return table.get_symbol_by_name(name)

    def symbolize_or_none(self, address: int) -> tuple[Symbol, int] | None:
        """Return how the kernel names ``address`` (its ``%pS``): the symbol at or below it and the offset.

        :param address: a kernel address
        :return: ``(symbol, offset)``; None outside the kernel image and modules, or without a symbol table

        >>> symbol, offset = prog.symbolize_or_none(prog.symbol_address("schedule") + 4)
        >>> symbol.name, offset
        ('schedule', 4)
        """
        table = self.symbol_table
        return table.symbolize_or_none(address) if table is not None else None

    def containing_symbol_or_none(self, address: int) -> tuple[Symbol, int] | None:
        """Return the symbol ``address`` lies inside (a module symbol's real size bounds it) and the offset.

        :param address: a kernel address
        :return: ``(symbol, offset)``; None if no symbol holds it, or without a symbol table

        >>> prog.containing_symbol_or_none(prog.symbol_address("schedule"))[1]
        0
        """
        table = self.symbol_table
        return table.containing_symbol_or_none(address) if table is not None else None

    def format_address(self, address: int) -> str:
        """Return ``symbol+0xoff/0xsize [module]`` for an address, as the kernel prints ``%pS``.

        :param address: a kernel address
        :return: the text; the bare ``0x...`` address when no symbol holds it or there is no symbol table

        >>> prog.format_address(prog.symbol_address("schedule") + 4)
        'schedule+0x4/0xc0'
        """
        table = self.symbol_table
        return table.format_address(address) if table is not None else f"{address:#x}"

    def variable(self, name: str) -> Object:
        """Return global variable ``name`` as a reference object (per-CPU ones: the per-CPU offset).

        ``prog[name]`` is the same.

        :param name: the variable's name
        :return: the object, of :meth:`variable_type`'s type at :meth:`symbol_address`
        :raises SymbolNotFoundError: if there is no such symbol
        :raises TypeLookupError: if no type is known for it (give one with :meth:`declare`)

        >>> prog.variable("init_task").comm.string_()
        b'swapper/0'
        """
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
        """Return enum constant ``name`` as a value object of its enum type.

        :param name: the enumerator's name
        :return: the value object
        :raises TypeLookupError: if no enum of the vmlinux or module BTF has it

        >>> int(prog.constant("PIDTYPE_TGID"))
        1
        """
        for btf in (self.btf, *self.module_btf.values()):
            hit = btf.find_enumerator_or_none(name) if btf is not None else None
            if hit is not None:
                return Object(self, hit[0], hit[1])
        raise TypeLookupError(f"no enum constant {name!r}")

    def object(self, type: Type | str, address: int) -> Object:
        """Return the object of ``type`` at ``address``.

        :param type: the object's type, or its C name
        :param address: where it is
        :return: a reference object (read on access)
        :raises TypeLookupError: if ``type`` does not exist

        >>> prog.object("struct task_struct", prog.symbol_address("init_task")).pid
        Object(prog, 'pid_t', address=0xffffffff82c112c0)
        """
        return Object(self, self.type(type), address=address)

    def format_object(self, obj: Object, **options: int | bool) -> str:
        """Return the text of ``str(obj)`` / ``obj.format_(**options)``.

        That is :func:`kcrash.types.format.format_object`; a subclass may print objects its own way, as the
        shell's drgn-compatible program does.

        :param obj: the object
        :param options: formatting options of :func:`kcrash.types.format.format_object`
        :return: the text

        >>> prog.format_object(prog["init_task"].pid)
        '(pid_t)0'
        """
        # lazy: +3 ms CPU to import it after this module (measured, loaded host)
        from kcrash.types.format import format_object

        return format_object(obj, **options)

    def is_percpu(self, name: str) -> bool:
        """Return whether BTF lists ``name`` in ``.data..percpu`` (a per-CPU variable).

        :param name: the variable's name
        :return: True for a per-CPU variable

        >>> prog.is_percpu("runqueues"), prog.is_percpu("init_task")
        (True, False)
        """
        return self.btf is not None and self.btf.is_percpu_variable(name)

    # -- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the files behind this program (``with open_target(...) as prog`` does it).

        >>> prog.close()  # doctest: +SKIP
        """
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
        # every kernel has init_task: a table without it lacks the data symbols
        if isinstance(symbols, SymbolTable) and not symbols.has_symbol("init_task"):
            raise MissingDebugInfoError(
                "the dump's kallsyms holds text symbols only (the kernel is built without CONFIG_KALLSYMS_ALL): "
                "__start_BTF, init_task and the other data symbols are not in it; give --vmlinux or a "
                "System.map (symbols only, types still come from the dump's BTF)") from exc
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
    dump = open_dump(dump_paths, zero_fill=zero_fill)
    try:
        memory = open_kernel_memory(dump)
        info = dump.vmcoreinfo_or_none()
        symbols = _symbols(memory, info, cache_dir, symbol_file, force)
        recover_missing_symbols(memory, symbols, info)
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
    # lazy: +16 ms CPU to import it after this module (measured, loaded host)
    from kcrash.debuginfo.symbol_files import find_symbol_file_or_none, load_symbol_file

    image_start = memory.image_start() if isinstance(memory, KernelMemory) else START_KERNEL_MAP
    if symbol_file is not None:
        return load_symbol_file(symbol_file, info, force=force, image_start=image_start)
    try:
        return _load_symbols(memory, info, cache_dir)
    except (MissingDebugInfoError, FaultError) as exc:
        found = find_symbol_file_or_none(info.osrelease if info is not None else None,
                                         info.build_id if info is not None else None)
        if found is None:
            hint = "" if "give --system-map or --vmlinux" in str(exc) else "; give --system-map or --vmlinux"
            raise MissingDebugInfoError(f"{exc}{hint}") from None
        try:
            return load_symbol_file(found, info, image_start=image_start)
        except MissingDebugInfoError as refused:
            raise MissingDebugInfoError(f"{exc}; and {refused}") from None


def _load_symbols(memory: MemoryReader, info: VmcoreInfo | None, cache_dir: Path | None) -> SymbolSource:
    if info is None:
        raise MissingDebugInfoError("the dump has no VMCOREINFO, so kallsyms cannot be found; "
                                    "a dump taken with QEMU '-device vmcoreinfo' or by kdump would have it")
    try:
        # lazy: +25 ms CPU to import it after this module (measured, loaded host)
        from kcrash.debuginfo import kallsyms
    except ImportError as exc:  # pragma: no cover - until the kallsyms loader lands
        raise MissingDebugInfoError("kallsyms support is not available in this kcrash") from exc
    return kallsyms.load_kallsyms(memory, info, cache_dir)
