"""
kcrash.analysis.drgn_compat
===========================

drgn's ``Program`` API on a kcrash :class:`~kcrash.types.program.Program`, for drgn scripts run in
``kcrash shell``: :class:`DrgnProgram` adds ``prog.stack_trace(pid | task)``, ``prog.threads()``,
``prog.thread(tid)``, ``prog.crashed_thread()``, ``prog.symbol(address | name)``,
``prog.symbols()``, ``prog.cache``, ``prog.object(name)`` and ``prog.read(..., physical)``;
:class:`StackTrace`/:class:`StackFrame` are drgn's (``str(trace)`` prints ``#0  func+0x12/0x40``
lines as drgn does for frames without DWARF), :class:`Symbol` is drgn's ``Symbol`` built from
kallsyms (``binding``/``kind`` from the ``nm`` letter). The names, arguments and results follow
drgn's documentation (drgn 0.3.0, ``_drgn.pyi``); the work is kcrash's own helpers
(:mod:`kcrash.helpers.linux.stack`, :mod:`~kcrash.helpers.linux.sched`,
:mod:`~kcrash.helpers.linux.panic`). What differs from drgn with a vmlinux: no source lines, no
inline frames, symbol sizes are kallsyms' (the distance to the next symbol). drgn's helper
functions are :mod:`kcrash.analysis.drgn_helpers`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from kcrash.analysis.drgn_format import drgn_format
from kcrash.debuginfo.symbols import Symbol as KallsymsSymbol
from kcrash.debuginfo.symbols import SymbolTable, lookup_address
from kcrash.errors import MissingDebugInfoError, SymbolNotFoundError
from kcrash.helpers.linux.panic import panic_task_or_none
from kcrash.helpers.linux.sched import for_each_task
from kcrash.helpers.linux.stack import stack_trace as unwind_stack
from kcrash.types.model import TypeKind
from kcrash.types.object import Object
from kcrash.types.program import Program
from kcrash.unwind import Frame, Trace

__all__ = [
    "DrgnProgram",
    "StackFrame",
    "StackTrace",
    "Symbol",
    "SymbolBinding",
    "SymbolKind",
    "Thread",
    "drgn_program",
    "find_task_or_none",
    "task_of",
]


class SymbolBinding(enum.Enum):
    """drgn's ``SymbolBinding`` (the ELF ``STB_*`` values)."""

    UNKNOWN = 0
    LOCAL = 1
    GLOBAL = 2
    WEAK = 3
    UNIQUE = 11


class SymbolKind(enum.Enum):
    """drgn's ``SymbolKind`` (the ELF ``STT_*`` values)."""

    UNKNOWN = 0
    OBJECT = 1
    FUNC = 2
    SECTION = 3
    FILE = 4
    COMMON = 5
    TLS = 6
    IFUNC = 10


@dataclass(frozen=True, slots=True)
class Symbol:
    """drgn's ``Symbol``: a kallsyms entry (``size`` is the distance to the next symbol)."""

    name: str
    address: int
    size: int
    binding: SymbolBinding
    kind: SymbolKind

    @classmethod
    def from_kallsyms(cls, symbol: KallsymsSymbol) -> Symbol:
        """The drgn view of a kallsyms symbol (``nm`` letter: upper case global, ``w``/``v`` weak)."""
        letter = symbol.kind
        if letter in "wWvV":
            binding = SymbolBinding.WEAK
        elif letter.isalpha():
            binding = SymbolBinding.GLOBAL if letter.isupper() else SymbolBinding.LOCAL
        else:
            binding = SymbolBinding.UNKNOWN
        kind = {"t": SymbolKind.FUNC, "w": SymbolKind.FUNC, "d": SymbolKind.OBJECT, "b": SymbolKind.OBJECT,
                "r": SymbolKind.OBJECT, "v": SymbolKind.OBJECT}.get(letter.lower(), SymbolKind.UNKNOWN)
        return cls(symbol.name, symbol.address, symbol.size, binding, kind)

    def __repr__(self) -> str:
        return (f"Symbol(name={self.name!r}, address={self.address:#x}, size={self.size:#x}, "
                f"binding={self.binding!r}, kind={self.kind!r})")


class StackFrame:
    """drgn's ``StackFrame``: one frame of a :class:`StackTrace` (never inline: no DWARF)."""

    def __init__(self, trace: StackTrace, index: int, frame: Frame) -> None:
        self._trace = trace
        self._index = index
        self._frame = frame
        self.pc: int = frame.pc
        self.sp: int = frame.sp
        #: True where the frame was interrupted (an exception's or the starting registers)
        self.interrupted: bool = frame.kind in ("regs", "partial")
        self.is_inline = False
        found = self._symbolized()
        self.name: str | None = found.name if found is not None else None
        self.function_name: str | None = self.name

    def _symbolized(self) -> Symbol | None:
        # a return address may be one past its function's end: look up pc - 1 (as drgn does)
        try:
            return self.symbol()
        except LookupError:
            return None

    def symbol(self) -> Symbol:
        """The symbol holding this frame's code (LookupError if none)."""
        return self._trace.prog.symbol(lookup_address(self.pc, interrupted=self.interrupted))

    def registers(self) -> dict[str, int]:
        """The registers known in this frame (all of them only where it was interrupted)."""
        regs = self._frame.regs.as_dict() if self._frame.regs is not None else {}
        pc, sp = _pc_sp_names(self._trace.prog)
        return {**regs, pc: self.pc, sp: self.sp}

    def register(self, reg: str) -> int:
        """One register's value (LookupError if it is not known in this frame)."""
        try:
            return self.registers()[reg]
        except KeyError:
            raise LookupError(f"register value is not known: {reg}") from None

    def source(self) -> tuple[str, int, int]:
        """drgn's source location: never known without DWARF."""
        raise LookupError("source code location not available (kcrash reads no DWARF)")

    def locals(self) -> list[str]:
        """Local variables: none without DWARF."""
        return []

    def _where(self) -> str:
        # "func+0x12/0x40", or the bare address when no symbol holds the pc (as drgn prints)
        sym = self._symbolized()
        if sym is None:
            return f"{self.pc:#x}"
        return f"{sym.name}+{self.pc - sym.address:#x}/{sym.size:#x}"

    def __str__(self) -> str:
        sym = self._symbolized()
        text = f"#{self._index} at {self.pc:#x}"
        return text if sym is None else f"{text} ({self._where()}) in {sym.name}"

    def __repr__(self) -> str:
        return f"StackFrame(#{self._index} {self._where()}, pc={self.pc:#x}, sp={self.sp:#x})"


def _pc_sp_names(prog: Program) -> tuple[str, str]:
    # the register names of the pc and sp: rip/rsp on x86-64, pc/sp on arm64
    return ("pc", "sp") if prog.machine == "aarch64" else ("rip", "rsp")


class StackTrace:
    """drgn's ``StackTrace``: frames innermost first, then (after a system call or an interrupt
    from user mode) the user-mode frame, as drgn shows it. ``truncated`` says why the unwinder
    stopped early (kcrash's addition), None when it reached the end."""

    def __init__(self, prog: DrgnProgram, trace: Trace) -> None:
        self.prog = prog
        self.truncated = trace.truncated
        frames = list(trace.frames)
        if trace.user_regs is not None:
            regs = trace.user_regs
            pc, sp = _pc_sp_names(prog)
            frames.append(Frame(regs[pc], regs[sp], True, regs, "regs", trace.user_regs_address))
        self._frames = [StackFrame(self, i, frame) for i, frame in enumerate(frames)]

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> StackFrame:
        return self._frames[index]

    def __iter__(self) -> Iterator[StackFrame]:
        return iter(self._frames)

    def __str__(self) -> str:
        return "\n".join(f"#{i:<2} {frame._where()}" for i, frame in enumerate(self._frames))

    def __repr__(self) -> str:
        return f"StackTrace({len(self._frames)} frames)\n{self}"


class Thread:
    """drgn's ``Thread`` of a kernel target: a task."""

    def __init__(self, prog: DrgnProgram, task: Object) -> None:
        self.prog = prog
        self.object = task
        self.tid = int(task.pid)
        self.name: str | None = task.comm.string_().decode(errors="surrogateescape")  # as drgn

    def stack_trace(self) -> StackTrace:
        """The task's stack trace."""
        return self.prog.stack_trace(self.object)

    def __repr__(self) -> str:
        return f"Thread(tid={self.tid}, name={self.name!r}, object={int(self.object):#x})"


def find_task_or_none(prog: Program, pid: int) -> Object | None:
    """The task with ``pid`` (``struct task_struct *``), None if there is none (as for drgn, PID 0,
    the idle tasks, is none: they are not on the task list)."""
    for task in for_each_task(prog):
        if int(task.pid) == pid:
            return task
    return None


def task_of(prog: Program, thread: Object | int) -> Object:
    """``struct task_struct *`` of a PID, a task pointer or a task (drgn's meaning of a thread).

    :raises LookupError: no task has that PID
    """
    if isinstance(thread, Object):
        t = thread.type_.strip_typedefs()
        if t.kind is TypeKind.POINTER:
            return thread
        return thread.address_of_()
    task = find_task_or_none(prog, int(thread))
    if task is None:
        hint = "; use stack_trace(idle_task(prog, cpu)) for PID 0" if int(thread) == 0 else ""
        raise LookupError(f"thread with PID {int(thread)} not found{hint}")
    return task


class DrgnProgram(Program):
    """A :class:`Program` with drgn's ``Program`` methods (made by :func:`drgn_program`)."""

    def stack_trace(self, thread: Object | int) -> StackTrace:
        """drgn's ``prog.stack_trace(thread)``: of a PID, a ``struct task_struct *`` or a task."""
        return StackTrace(self, unwind_stack(self, task_of(self, thread)))

    def threads(self) -> Iterator[Thread]:
        """Every task (drgn's threads of a kernel), as :class:`Thread`, in PID order as drgn's."""
        for task in sorted(for_each_task(self), key=lambda task: int(task.pid)):
            yield Thread(self, task)

    def thread(self, tid: int) -> Thread:
        """The task with PID ``tid`` (LookupError if none)."""
        return Thread(self, task_of(self, tid))

    def crashed_thread(self) -> Thread:
        """The task that panicked (ValueError when no CPU panicked, as drgn)."""
        task = panic_task_or_none(self)
        if task is None:
            raise ValueError("crashed thread not found (no panic recorded in the dump)")
        return Thread(self, task)

    def _table(self) -> SymbolTable:
        table = self.symbol_table
        if table is None:
            raise MissingDebugInfoError("no symbol table (kallsyms) for symbol lookups")
        return table

    def symbol(self, address: Object | int | str) -> Symbol:
        """drgn's ``prog.symbol``: the symbol named ``address`` or containing it."""
        table = self._table()
        if isinstance(address, str):
            return Symbol.from_kallsyms(table.get_symbol_by_name(address))
        value = int(address) & 0xFFFFFFFFFFFFFFFF
        found = table.symbolize_or_none(value)
        if found is None or found[1] >= found[0].size:
            raise SymbolNotFoundError(f"could not find symbol containing {value:#x}")
        return Symbol.from_kallsyms(found[0])

    def object(self, name: str | Any, address: int | None = None) -> Object:
        """drgn's ``prog.object(name)`` (a global), or kcrash's ``prog.object(type, address)``."""
        if address is None:
            return self.variable(name)
        return super().object(name, address)

    def format_object(self, obj: Object, **options: int | bool) -> str:
        """Objects print as drgn prints them (:func:`~kcrash.analysis.drgn_format.drgn_format`)."""
        return drgn_format(obj, **options)

    def read(self, address: int, size: int, physical: bool = False) -> bytes:
        """drgn's ``prog.read(address, size, physical=False)``."""
        return self.memory.read(address, size, physical=physical)

    def read_u8(self, address: int) -> int:
        """Read a u8."""
        return self.read(address, 1)[0]

    def read_u16(self, address: int) -> int:
        """Read a little-endian u16."""
        return int.from_bytes(self.read(address, 2), "little")


class _CallableSymbols(SymbolTable):
    # The kallsyms table of a DrgnProgram: still ``prog.symbols`` for kcrash's code, and callable as
    # drgn's ``prog.symbols(...)`` (kcrash's attribute and drgn's method share the name).

    def __call__(self, address: Object | int | str | None = None) -> list[Symbol]:
        if address is None:
            return [Symbol.from_kallsyms(s) for s in self.iter_symbols()]
        if isinstance(address, str):
            return [Symbol.from_kallsyms(s) for s in self.iter_symbols_by_name(address)]
        found = self.symbolize_or_none(int(address) & 0xFFFFFFFFFFFFFFFF)
        if found is None or found[1] >= found[0].size:
            return []
        return [Symbol.from_kallsyms(found[0])]


def drgn_program(prog: Program) -> DrgnProgram:
    """``prog`` itself, now a :class:`DrgnProgram` (the same object: its caches and the objects
    already made from it stay valid).

    >>> prog = drgn_program(open_target("vmcore"))  # doctest: +SKIP
    >>> print(prog.crashed_thread().stack_trace())  # doctest: +SKIP
    """
    if not isinstance(prog, DrgnProgram):
        prog.__class__ = DrgnProgram
    assert isinstance(prog, DrgnProgram)
    if type(prog.symbols) is SymbolTable:
        prog.symbols.__class__ = _CallableSymbols
    return prog


