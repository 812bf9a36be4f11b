"""
kcrash.analysis.live
====================

The typed side of a live session: kernel symbols (kallsyms), types (in-memory BTF), the task list and
ORC backtraces of a running kernel reached through :mod:`kcrash.live`. ``kcrash.live`` itself only speaks
the GDB remote protocol and exposes memory; this module binds it to the analysis layers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kcrash.analysis.target import load_modules
from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.base import MemorySegment
from kcrash.dumps.cpustate import PRSTATUS_REGISTERS_X86_64, CpuState, PrStatus
from kcrash.errors import KcrashError, LiveTargetError, MissingDebugInfoError
from kcrash.helpers.linux.list import ListWalk
from kcrash.helpers.linux.sched import for_each_task, task_state
from kcrash.helpers.linux.stack import kernel_unwinder
from kcrash.live.breakpoints import Breakpoint
from kcrash.live.connect import attach
from kcrash.live.session import ARGUMENT_REGISTERS, HitContext, LiveSession, Location, thread_cpu
from kcrash.memory import MemoryReader, SegmentMap, open_kernel_memory
from kcrash.types.btf import BTF_KIND, parse_btf
from kcrash.types.cexpr import evaluate
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object, sizeof
from kcrash.types.program import Program, read_vmlinux_btf
from kcrash.unwind import MemoryUnwindContext, OrcTables, Registers, StackRange, unwind, vmlinux_orc_table

__all__ = ["KernelBinder", "attach_kernel", "backtrace_lines", "kernel_binder_factory", "kernel_binder_or_none",
           "list_tasks", "live_program", "task_row"]

#: syscall arguments in ``struct pt_regs`` (x86-64 syscall convention: r10 replaces rcx)
_SYSCALL_REGS = ("di", "si", "dx", "r10", "r8", "r9")
_SYSCALL_PREFIXES = ("__x64_sys_", "__ia32_sys_", "__se_sys_")
_THREAD_SIZE = 16384
# The kernel binder made for each session (KernelBinder.__init__ registers itself): how the layers
# above reach a session's symbols, types and Program without downcasting its Binder protocol, which
# kcrash.live (below kcrash.types) declares and so cannot name them.
_KERNEL_BINDERS: weakref.WeakKeyDictionary[LiveSession, KernelBinder] = weakref.WeakKeyDictionary()


class KernelBinder:
    """Symbols (kallsyms), types (in-memory BTF) and tasks for a live session.

    ``prog`` reads the kernel address space (through :func:`kcrash.memory.open_kernel_memory` on
    the session's :class:`~kcrash.live.memory.LiveDump`); ``cpu_prog`` reads any virtual address as
    the stopped vCPU sees it (user pointers among a syscall's arguments)."""

    def __init__(self, session: LiveSession, cache: Path | None) -> None:
        self.session = session
        info = session.dump.vmcoreinfo
        if info is None:
            raise MissingDebugInfoError("no VMCOREINFO for the live kernel: give --qmp or a QEMU stub")
        self.memory = open_kernel_memory(session.dump)
        self.symbols: SymbolTable = load_kallsyms(self.memory, info, cache)
        btf = parse_btf(read_vmlinux_btf(self.memory, self.symbols), name="vmlinux")
        self.prog = Program(self.memory, self.symbols, btf, vmcoreinfo=info)
        cpu_view = SegmentMap([MemorySegment(0, 1 << 64, session.read, False)])
        self.cpu_prog = Program(MemoryReader(cpu_view), self.symbols, btf, vmcoreinfo=info)
        _KERNEL_BINDERS[session] = self

    # --- Binder protocol ------------------------------------------------------------------------

    def resolve(self, spec: str) -> Location:
        """``symbol``, ``symbol+off``, an address, or a C expression naming an lvalue."""
        name, _, off = spec.replace(" ", "").partition("+")
        offset = _int_or_none(off or "0")
        if offset is not None and self.symbols.has_symbol(name):
            address = self.symbols.address_of(name) + offset
            return Location(address, self._size_of(name) if not offset else None, name if not offset else None, spec)
        number = _int_or_none(name)
        if number is not None and offset is not None:
            return Location(number + offset, None, None, self.symbols.format_address(number + offset))
        obj = evaluate(self.prog, spec)
        if obj.address_ is None:
            raise LiveTargetError(f"{spec!r} is a value, not an object in memory: cannot watch or break on it")
        return Location(obj.address_, _sizeof_or_none(obj.type_), None, spec)

    def _size_of(self, name: str) -> int | None:
        try:
            return _sizeof_or_none(self.prog.variable_type(name))
        except KcrashError:
            return None

    def symbolize(self, address: int) -> str:
        """``symbol+0xoff``."""
        return self.symbols.format_address(address)

    def current_task(self, ctx: HitContext) -> Object:
        """``current``: the per-CPU ``pcpu_hot.current_task`` (or ``current_task``) at the CPU's
        kernel GS base."""
        regs = ctx.registers
        base = regs["k_gs_base"] if regs.get("cs", 0) & 3 else regs["gs_base"]
        task_ptr = self.prog.type("struct task_struct *")
        # Since Linux kernel commit 64701838bf05 (v6.2) current_task lives in pcpu_hot.
        if self.symbols.has_symbol("pcpu_hot"):
            hot = self.prog.object("struct pcpu_hot", base + self.symbols.address_of("pcpu_hot"))
            return hot.current_task.read_()
        return Object(self.prog, task_ptr, address=base + self.symbols.address_of("current_task")).read_()

    def arguments(self, ctx: HitContext, function: str | None) -> dict[str, object]:
        """Arguments from the BTF prototype and the calling convention; for syscall wrappers
        (``__x64_sys_*``) also the syscall's own arguments from ``regs``, typed from the syscall
        metadata."""
        if function is None:
            return {f"arg{i}": ctx.registers[r] for i, r in enumerate(ARGUMENT_REGISTERS)}
        params = self._parameters(function)
        args: dict[str, object] = {}
        for i, (name, t) in enumerate(params[:len(ARGUMENT_REGISTERS)]):
            args[name or f"arg{i}"] = self._typed(t, ctx.registers[ARGUMENT_REGISTERS[i]])
        if function.startswith(_SYSCALL_PREFIXES) and "regs" in args:
            args.update(self._syscall_arguments(function, args["regs"]))
        return args

    def _parameters(self, function: str) -> list[tuple[str | None, Type]]:
        btf = self.prog.btf
        ids = btf.ids_named(function, (BTF_KIND["FUNC"],)) if btf is not None else []
        if not ids or btf is None:
            raise MissingDebugInfoError(f"no BTF prototype for {function}")
        proto = btf.type_by_id(ids[0])
        return [(p.name, p.type) for p in proto.parameters]

    def _typed(self, t: Type, value: int) -> Object:
        if t.strip_typedefs().kind in (TypeKind.STRUCT, TypeKind.UNION):
            return Object(self.cpu_prog, self.cpu_prog.pointer_type(t), value)  # passed by reference
        size = t.size or 8
        return Object(self.cpu_prog, t, value & ((1 << (8 * size)) - 1))

    def _syscall_arguments(self, wrapper: str, regs: object) -> dict[str, object]:
        name = wrapper
        for prefix in _SYSCALL_PREFIXES:
            name = name.removeprefix(prefix)
        if not isinstance(regs, Object):
            return {}
        pt = regs.deref_()
        values = [int(pt.member_(r)) for r in _SYSCALL_REGS]
        return {pname: self._typed(self.cpu_prog.type(tname), values[i])
                for i, (tname, pname) in enumerate(self._syscall_signature(name)[:6])}

    def _syscall_signature(self, name: str) -> list[tuple[str, str]]:
        # The SYSCALL_DEFINE metadata (CONFIG_FTRACE_SYSCALLS) keeps each argument's C type and
        # name as strings: the wrapper's own BTF prototype only has ``struct pt_regs *``.
        meta_name = f"__syscall_meta__{name}"
        if not self.symbols.has_symbol(meta_name):
            return []
        meta = self.prog.object("struct syscall_metadata", self.symbols.address_of(meta_name))
        count = min(int(meta.nb_args), 6)
        return [(meta.types[i].string_().decode().replace("__user", "").strip(), meta.args[i].string_().decode())
                for i in range(count)]

    def value(self, ctx: HitContext, bp: Breakpoint, data: bytes) -> object:
        """Watched bytes as the watched variable's type when the spec names one."""
        try:
            obj = evaluate(self.prog, bp.spec)
        except KcrashError:
            return data
        if _sizeof_or_none(obj.type_) != len(data):
            return data
        return Object(self.prog, obj.type_, data)

    def invalidate(self) -> None:
        """The kernel memory cache lives in the LiveDump, dropped by the session."""


def _sizeof_or_none(t: Type) -> int | None:
    try:
        return sizeof(t)
    except (KcrashError, TypeError, ValueError):
        return None


def _int_or_none(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def kernel_binder_or_none(session: LiveSession) -> KernelBinder | None:
    """The kernel symbols, types and Program of ``session``: the :class:`KernelBinder` it binds
    with; None when it has none (attached without them, or its binder was replaced by another kind).

    >>> kernel_binder_or_none(attach_kernel("localhost:1234")).prog  # doctest: +SKIP
    """
    binder = _KERNEL_BINDERS.get(session)
    return binder if binder is not None and session.binder is binder else None


def kernel_binder_factory(cache: Path | None) -> Callable[[LiveSession], KernelBinder]:
    """A ``binder_factory`` for :func:`kcrash.live.attach`."""
    return lambda session: KernelBinder(session, cache)


def attach_kernel(target: str, *, qmp: str | None = None, cache: Path | None = None, **options: Any) -> LiveSession:
    """Attach with kernel symbols and types: ``with attach_kernel("localhost:1234", qmp=sock) as t:``."""
    return attach(target, qmp=qmp, binder_factory=kernel_binder_factory(cache), **options)


def live_program(session: LiveSession, *, orc: bool = True) -> Program:
    """The stopped kernel of ``session`` (attached by :func:`attach_kernel`) as the analysis commands'
    :class:`Program`, like :func:`kcrash.analysis.target.open_target` for a dump: the modules' symbols
    and BTF loaded and (``orc``) the unwinder's tables. Valid while the target stays stopped; the
    session's detach resumes it (``prog.dump`` stays None: nothing is a frozen image)."""
    binder = kernel_binder_or_none(session)
    if binder is None:
        raise MissingDebugInfoError("the live session has no kernel symbols and types")
    binder.prog.live = True
    if not binder.prog.cpus:
        binder.prog.cpus = vcpu_states(session)
    load_modules(binder.prog)
    if orc:
        kernel_unwinder(binder.prog)
    return binder.prog


def vcpu_states(session: LiveSession) -> list[CpuState]:
    """Every vCPU's registers from the stub (one ``g`` per thread), shaped like a dump's
    ``NT_PRSTATUS`` notes, so that running tasks unwind from their CPU as in a dump."""
    client = session.client
    stopped = session.thread
    states = []
    try:
        for thread in client.thread_ids():
            client.select_thread(thread)
            regs = client.read_registers()
            named = {name: regs.get(name, 0) for name in PRSTATUS_REGISTERS_X86_64}
            states.append(CpuState(thread_cpu(thread), PrStatus(thread_cpu(thread) + 1, 0, named), None))
    finally:
        client.select_thread(stopped)
    return sorted(states, key=lambda c: c.cpu)


# --- kernel views for the commands ----------------------------------------------------------------


def list_tasks(prog: Program) -> ListWalk:
    """Every task with a PID: :func:`~kcrash.helpers.linux.sched.for_each_task` (bounded; a broken
    list ends the walk with ``truncated`` set)."""
    return for_each_task(prog)


def task_row(task: Object) -> dict[str, Any]:
    """The ``ps`` row of a live task: pid, tgid, state bits (:func:`~kcrash.helpers.linux.sched.task_state`),
    comm and address."""
    return {"pid": int(task.pid), "tgid": int(task.tgid), "state": task_state(task),
            "comm": task.comm.string_().decode("utf-8", "replace"), "task": int(task)}


def backtrace_lines(binder: KernelBinder, regs: dict[str, int]) -> list[str]:
    syms = binder.symbols
    orc = OrcTables([vmlinux_orc_table(binder.memory, syms.address_of("__start_orc_unwind_ip"),
                                       syms.address_of("__stop_orc_unwind_ip"),
                                       syms.address_of("__start_orc_unwind"))])
    task = binder.current_task(_RegistersOnly(regs))
    stack = int(task.stack)
    ctx = MemoryUnwindContext(binder.memory, orc, [StackRange(stack, stack + _THREAD_SIZE, "task")])
    trace = unwind(Registers.from_mapping(regs), ctx)
    lines = [f"#{i:<2} {'' if f.reliable else '? '}{syms.format_address(f.pc)}" for i, f in enumerate(trace.frames)]
    if trace.truncated:
        lines.append(f"   (stopped: {trace.truncated})")
    return lines


class _RegistersOnly(HitContext):
    def __init__(self, registers: dict[str, int]) -> None:  # only .registers is used by current_task
        self.registers = registers


