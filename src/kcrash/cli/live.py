"""
kcrash.cli.live
===============

``kcrash live TARGET``: live kernel debugging over the GDB remote protocol (QEMU gdbstub, kgdb
through a TCP bridge or a serial device). Interactive commands (``break``, ``watch``, ``delete``,
``enable``, ``disable``, ``info``, ``continue``, ``step``/``next-instruction``, ``regs``, ``bt``,
``ps``, ``log``, ``p``, ``metrics``, ``detach``), ``-x CMD`` to run commands in batch, and
``--script FILE.py`` to run Python with ``session`` bound. :class:`KernelBinder` gives a
:class:`~kcrash.live.session.LiveSession` kallsyms symbols, BTF types, the current task and typed
function arguments; it is the composition root of the live layers (``live`` sits beside ``memory``
and cannot import the typed layers itself). :func:`attach_kernel` is the Python entry point.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from kcrash.cli.common import cache_dir
from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.base import MemorySegment
from kcrash.errors import CliError, KcrashError, LiveTargetError, MissingDebugInfoError
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.printk import format_record, get_printk_records
from kcrash.live.breakpoints import Breakpoint
from kcrash.live.connect import attach
from kcrash.live.session import ARGUMENT_REGISTERS, HitContext, LiveSession, Location
from kcrash.memory import MemoryReader, SegmentMap, open_kernel_memory
from kcrash.types.btf import BTF_KIND, parse_btf
from kcrash.types.cexpr import evaluate
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object, sizeof
from kcrash.types.program import Program, read_vmlinux_btf
from kcrash.unwind import MemoryUnwindContext, OrcTables, Registers, StackRange, unwind, vmlinux_orc_table

__all__ = ["KernelBinder", "attach_kernel", "commands", "kernel_binder_factory", "list_tasks"]

#: syscall arguments in ``struct pt_regs`` (x86-64 syscall convention: r10 replaces rcx)
_SYSCALL_REGS = ("di", "si", "dx", "r10", "r8", "r9")
_SYSCALL_PREFIXES = ("__x64_sys_", "__ia32_sys_", "__se_sys_")
_THREAD_SIZE = 16384


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


def kernel_binder_factory(cache: Path | None) -> Callable[[LiveSession], KernelBinder]:
    """A ``binder_factory`` for :func:`kcrash.live.attach`."""
    return lambda session: KernelBinder(session, cache)


def attach_kernel(target: str, *, qmp: str | None = None, cache: Path | None = None, **options: Any) -> LiveSession:
    """Attach with kernel symbols and types: ``with attach_kernel("localhost:1234", qmp=sock) as t:``."""
    return attach(target, qmp=qmp, binder_factory=kernel_binder_factory(cache), **options)


# --- kernel views for the commands ----------------------------------------------------------------


def list_tasks(prog: Program) -> Iterator[Object]:
    """Every task with a PID: thread-group leaders on ``init_task.tasks`` and their threads."""
    init = prog["init_task"]
    for leader in list_for_each_entry("struct task_struct", init.tasks.address_of_(), "tasks"):
        yield leader
        for thread in list_for_each_entry("struct task_struct", leader.signal.thread_head.address_of_(),
                                          "thread_node"):
            if int(thread) != int(leader):
                yield thread


def _task_row(task: Object) -> dict[str, Any]:
    # Since Linux kernel commit 2f064a59a11f (v5.14) the state member is __state.
    state = task.member_("__state") if _has_member(task, "__state") else task.member_("state")
    return {"pid": int(task.pid), "tgid": int(task.tgid), "state": int(state),
            "comm": task.comm.string_().decode("utf-8", "replace"), "task": int(task)}


def _has_member(obj: Object, name: str) -> bool:
    try:
        obj.member_(name)
    except KcrashError:
        return False
    return True


def _backtrace(binder: KernelBinder, regs: dict[str, int]) -> list[str]:
    syms = binder.symbols
    orc = OrcTables([vmlinux_orc_table(binder.memory, syms.address_of("__start_orc_unwind_ip"),
                                       syms.address_of("__stop_orc_unwind_ip"),
                                       syms.address_of("__start_orc_unwind"))])
    task = binder.current_task(_FakeCtx(regs))
    stack = int(task.stack)
    ctx = MemoryUnwindContext(binder.memory, orc, [StackRange(stack, stack + _THREAD_SIZE, "task")])
    trace = unwind(Registers.from_mapping(regs), ctx)
    lines = [f"#{i:<2} {'' if f.reliable else '? '}{syms.format_address(f.pc)}" for i, f in enumerate(trace.frames)]
    if trace.truncated:
        lines.append(f"   (stopped: {trace.truncated})")
    return lines


class _FakeCtx(HitContext):
    def __init__(self, registers: dict[str, int]) -> None:  # only .registers is used by current_task
        self.registers = registers


# --- interactive and batch commands -----------------------------------------------------------


class _Repl:
    """One live session's command interpreter; output goes through ``echo``."""

    def __init__(self, session: LiveSession, as_json: bool, echo: Callable[[str], None] = click.echo) -> None:
        self.session = session
        self.as_json = as_json
        self.echo = echo
        self.done = False

    @property
    def binder(self) -> KernelBinder:
        if not isinstance(self.session.binder, KernelBinder):
            raise MissingDebugInfoError("this command needs kernel symbols and types")
        return self.session.binder

    def out(self, text: str, data: object = None) -> None:
        self.echo(json.dumps(data, default=str) if self.as_json and data is not None else text)

    def run(self, line: str) -> None:
        words = shlex.split(line)
        if not words:
            return
        handler = getattr(self, "do_" + _ALIASES.get(words[0], words[0]).replace("-", "_"), None)
        if handler is None:
            raise CliError(f"unknown live command {words[0]!r} (try 'help')")
        handler(words[1:])

    def do_help(self, args: list[str]) -> None:
        self.echo("commands: " + ", ".join(sorted(n[3:].replace("_", "-") for n in dir(self) if n.startswith("do_"))))

    def do_break(self, args: list[str]) -> None:
        if not args:
            raise CliError("usage: break SPEC [--hw] [if PYTHON-CONDITION]")
        cond = _condition(args)
        bp = self.session.break_at(args[0], hardware="--hw" in args, condition=cond)
        self.out(f"breakpoint {bp.number} at {bp.spec} ({bp.address:#x})", _bp_row(bp))

    def do_watch(self, args: list[str]) -> None:
        if not args:
            raise CliError("usage: watch EXPR [--len N] [--write|--read|--access] [if PYTHON-CONDITION]")
        kind = next((a[2:] for a in args if a in ("--write", "--read", "--access")), "write")
        length = int(args[args.index("--len") + 1], 0) if "--len" in args else None
        bp = self.session.watch(args[0], length=length, kind=kind, condition=_condition(args))
        self.out(f"watchpoint {bp.number} ({kind}) on {bp.spec}, {bp.length} bytes at {bp.address:#x}", _bp_row(bp))

    def do_delete(self, args: list[str]) -> None:
        for n in args or [str(bp.number) for bp in self.session.breakpoints]:
            self.session.delete(int(n))

    def do_enable(self, args: list[str]) -> None:
        for n in args:
            self.session.enable(int(n))

    def do_disable(self, args: list[str]) -> None:
        for n in args:
            self.session.disable(int(n))

    def do_info(self, args: list[str]) -> None:
        rows = [_bp_row(bp) for bp in self.session.breakpoints]
        for r in rows:
            self.out(f"{r['number']:<3} {r['kind']:<9} {'y' if r['enabled'] else 'n'} {r['address']:#x} "
                     f"{r['spec']} hits={r['hits']}", r)
        if not rows:
            self.out("no breakpoints or watchpoints", [])

    def do_continue(self, args: list[str]) -> None:
        ctx = self.session.cont(timeout=float(args[0]) if args else None)
        self._report(ctx)

    def do_step(self, args: list[str]) -> None:
        self._report(self.session.step())

    def _report(self, ctx: HitContext | None) -> None:
        if ctx is None:
            self.out("stopped (timeout)", {"stopped": "timeout"})
            return
        bp = ctx.breakpoint
        what = f"signal {ctx.stop.signal}"
        if bp is not None:
            what = f"{'watchpoint' if bp.is_watchpoint else 'breakpoint'} {bp.number}"
        text = f"{what} on CPU {ctx.cpu} at {ctx.symbol}"
        if bp is not None and bp.is_watchpoint:
            text += f": old {_show_value(ctx.old)}, new {_show_value(ctx.new)}"
        self.out(text, {"stop": what, "cpu": ctx.cpu, "pc": ctx.pc, "symbol": ctx.symbol})

    def do_regs(self, args: list[str]) -> None:
        regs = self.session.registers()
        names = args or [n for n in regs if not n.startswith(("st", "xmm", "f"))]
        self.out("\n".join(f"{n:<9} {regs[n]:#018x}" for n in names), {n: regs[n] for n in names})

    def do_bt(self, args: list[str]) -> None:
        lines = _backtrace(self.binder, self.session.registers())
        self.out("\n".join(lines), lines)

    def do_ps(self, args: list[str]) -> None:
        rows = [_task_row(t) for t in list_tasks(self.binder.prog)]
        if self.as_json:
            self.out("", rows)
            return
        self.echo(f"{'PID':>7} {'TGID':>7} {'STATE':>6}  {'TASK':<18} COMM")
        for r in rows:
            self.echo(f"{r['pid']:>7} {r['tgid']:>7} {r['state']:>6}  {r['task']:#018x} {r['comm']}")

    def do_log(self, args: list[str]) -> None:
        info = self.session.dump.vmcoreinfo
        if info is None:
            raise MissingDebugInfoError("log needs VMCOREINFO")
        records = get_printk_records(self.binder.memory, info)[-int(args[0]):] if args else \
            get_printk_records(self.binder.memory, info)
        lines = [format_record(r).rstrip("\n") for r in records]
        self.out("\n".join(lines), lines)

    def do_p(self, args: list[str]) -> None:
        obj = evaluate(self.binder.prog, " ".join(args))
        self.out(obj.format_(), {"expression": " ".join(args), "value": obj.format_()})

    def do_metrics(self, args: list[str]) -> None:
        m = self.session.metrics()
        self.out("\n".join(f"{k:<28} {v}" for k, v in m.items()), m)

    def do_detach(self, args: list[str]) -> None:
        self.session.detach(keep_stopped=True if "--keep-stopped" in args else None)
        self.done = True


_ALIASES = {"b": "break", "c": "continue", "cont": "continue", "si": "step", "stepi": "step",
            "ni": "step", "next-instruction": "step", "d": "delete", "q": "detach", "quit": "detach",
            "i": "info", "print": "p", "dmesg": "log"}


def _condition(args: list[str]) -> Callable[[HitContext], bool] | None:
    if "if" not in args:
        return None
    source = " ".join(args[args.index("if") + 1:])
    code = compile(source, "<condition>", "eval")
    return lambda ctx: bool(eval(code, {}, _ConditionNames(ctx)))


class _ConditionNames(dict[str, object]):
    # ``ctx``, ``task`` and ``args`` for a condition, computed only when it uses them.
    def __init__(self, ctx: HitContext) -> None:
        super().__init__(ctx=ctx)
        self.ctx = ctx

    def __missing__(self, key: str) -> object:
        if key in ("task", "args", "registers"):
            return getattr(self.ctx, key)
        raise KeyError(key)


def _bp_row(bp: Breakpoint) -> dict[str, Any]:
    return {"number": bp.number, "kind": bp.kind, "address": bp.address, "length": bp.length, "spec": bp.spec,
            "enabled": bp.enabled, "hits": bp.hits}


def _show_value(value: object) -> str:
    if isinstance(value, Object):
        return value.format_()
    if isinstance(value, bytes):
        return int.from_bytes(value, "little").__str__() if len(value) <= 8 else value.hex()
    return str(value)


def _interactive(repl: _Repl) -> None:
    while not repl.done:
        try:
            line = click.prompt("(kcrash-live)", default="", show_default=False, prompt_suffix=" ")
        except (EOFError, click.Abort):
            return
        try:
            repl.run(line)
        except KeyboardInterrupt:
            repl.echo("interrupted; the target is stopped")
        except (KcrashError, ValueError) as exc:
            repl.echo(f"error: {exc}")


@click.command("live")
@click.argument("target")
@click.option("--qmp", "qmp", metavar="SOCKET", help="QEMU QMP socket (VMCOREINFO, KVM detection).")
@click.option("--script", "script", type=click.Path(exists=True, dir_okay=False),
              help="Run FILE.py with `session` bound.")
@click.option("-x", "--command", "commands_", multiple=True, help="Run a live command (repeatable), then detach.")
@click.option("--keep-stopped", is_flag=True, help="Leave the target stopped after detaching.")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for any stub reply.")
@click.option("--hw-slots", type=int, default=None, help="Hardware debug registers (default: 4 under KVM).")
@click.option("--baud", default=115200, show_default=True, help="Baud rate of a serial target.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def live(target: str, qmp: str | None, script: str | None, commands_: tuple[str, ...], keep_stopped: bool,
         timeout: float, hw_slots: int | None, baud: int, as_json: bool) -> None:
    """Debug a running kernel over the GDB remote protocol (TARGET: HOST:PORT or a serial device)."""
    session = attach_kernel(target, qmp=qmp, cache=cache_dir(), timeout=timeout, hw_slots=hw_slots,
                            keep_stopped=keep_stopped, baud=baud)
    with session:
        repl = _Repl(session, as_json)
        if script is not None:
            _run_script(session, Path(script))
        for line in commands_:
            repl.run(line)
        if script is None and not commands_:
            _interactive(repl)
    if script is not None and as_json:
        click.echo(json.dumps(session.metrics()))


def _run_script(session: LiveSession, path: Path) -> None:
    binder = session.binder
    prog = binder.prog if isinstance(binder, KernelBinder) else None
    with contextlib.suppress(SystemExit):
        runpy.run_path(str(path), init_globals={"session": session, "t": session, "prog": prog},
                       run_name="__main__")


commands: list[click.Command] = [live]
