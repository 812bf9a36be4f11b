"""
kcrash.cli.live
===============

``kcrash live TARGET``: live kernel debugging over the GDB remote protocol (QEMU gdbstub, kgdb
through a TCP bridge or a serial device). Interactive commands (``break``, ``watch``, ``delete``,
``enable``, ``disable``, ``info``, ``continue``, ``step``/``next-instruction``, ``regs``, ``bt``,
``ps``, ``log``, ``p``, ``metrics``, ``detach``), ``-x CMD`` to run commands in batch, and
``--script FILE.py`` to run Python with ``session`` bound. The typed binding of a session (symbols,
types, tasks, backtraces) is :mod:`kcrash.analysis.live`; its :func:`attach_kernel` is the Python entry point.
"""

from __future__ import annotations

import cmd
import contextlib
import functools
import json
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kcrash import metrics
from kcrash.analysis.live import (
    KernelBinder,
    attach_kernel,
    backtrace_lines,
    kernel_binder_or_none,
    list_tasks,
    task_row,
)
from kcrash.cli.common import cache_dir, run_user_code
from kcrash.cli.params import parse_number
from kcrash.errors import CliError, KcrashError, MissingDebugInfoError
from kcrash.helpers.linux.printk import format_record, get_printk_records
from kcrash.live.breakpoints import Breakpoint
from kcrash.live.session import HitContext, LiveSession
from kcrash.report.json import json_ready
from kcrash.types.cexpr import evaluate
from kcrash.types.object import Object

__all__ = ["commands"]

# --- interactive and batch commands -----------------------------------------------------------


def _argv(method: Callable[[_Repl, list[str]], None]) -> Callable[[_Repl, str], None]:
    # cmd.Cmd hands a do_* method the rest of the line; ours take its shell-style words.
    @functools.wraps(method)
    def do(self: _Repl, arg: str) -> None:
        method(self, shlex.split(arg))

    return do


class _Repl(cmd.Cmd):
    """One live session's command interpreter (:class:`cmd.Cmd`); output goes through ``echo``.
    Commands may be abbreviated by the aliases of ``_ALIASES`` and written with ``-`` for ``_``."""

    identchars = cmd.Cmd.identchars + "-"
    prompt = "(kcrash-live) "

    def __init__(self, session: LiveSession, as_json: bool, echo: Callable[[str], None] = click.echo) -> None:
        super().__init__()
        self.session = session
        self.as_json = as_json
        self.echo = echo
        self.done = False

    @property
    def binder(self) -> KernelBinder:
        binder = kernel_binder_or_none(self.session)
        if binder is None:
            raise MissingDebugInfoError("this command needs kernel symbols and types")
        return binder

    def out(self, text: str, data: object = None) -> None:
        # one JSON value per line, numbers by the --json rule (kcrash.report.json.json_ready)
        self.echo(json.dumps(json_ready(data), default=str) if self.as_json and data is not None else text)

    def run(self, line: str) -> None:
        """Run one command line (cmd.Cmd's precmd, onecmd and postcmd)."""
        self.postcmd(self.onecmd(self.precmd(line)), line)

    def precmd(self, line: str) -> str:
        # Check the quoting of the whole line, then spell the command's name as its do_* method.
        try:
            shlex.split(line)
        except ValueError as exc:
            raise CliError(f"cannot read live command {line!r}: {exc}", 2) from None
        name, *rest = line.split(None, 1) or [""]
        return " ".join([_ALIASES.get(name, name).replace("-", "_"), *rest]).strip()

    def emptyline(self) -> bool:
        return False  # cmd.Cmd would repeat the last command

    def default(self, line: str) -> None:
        raise CliError(f"unknown live command {shlex.split(line)[0]!r} (try 'help')")

    def postcmd(self, stop: bool, line: str) -> bool:
        return self.done

    @_argv
    def do_help(self, args: list[str]) -> None:
        self.echo("commands: " + ", ".join(sorted(n[3:].replace("_", "-") for n in dir(self) if n.startswith("do_"))))

    @_argv
    def do_break(self, args: list[str]) -> None:
        if not args:
            raise CliError("usage: break SPEC [--hw] [if PYTHON-CONDITION]")
        cond = _condition(args)
        bp = self.session.break_at(_spec(args[0]), hardware="--hw" in args, condition=cond)
        self.out(f"breakpoint {bp.number} at {bp.spec} ({bp.address:#x})", _bp_row(bp))

    @_argv
    def do_watch(self, args: list[str]) -> None:
        if not args:
            raise CliError("usage: watch EXPR [--len N] [--write|--read|--access] [if PYTHON-CONDITION]")
        kind = next((a[2:] for a in args if a in ("--write", "--read", "--access")), "write")
        length = _option_number(args, "--len", "watch length") if "--len" in args else None
        bp = self.session.watch(_spec(args[0]), length=length, kind=kind, condition=_condition(args))
        self.out(f"watchpoint {bp.number} ({kind}) on {bp.spec}, {bp.length} bytes at {bp.address:#x}", _bp_row(bp))

    @_argv
    def do_delete(self, args: list[str]) -> None:
        for n in _point_numbers(args) if args else [bp.number for bp in self.session.breakpoints]:
            self.session.delete(n)

    @_argv
    def do_enable(self, args: list[str]) -> None:
        for n in _point_numbers(args):
            self.session.enable(n)

    @_argv
    def do_disable(self, args: list[str]) -> None:
        for n in _point_numbers(args):
            self.session.disable(n)

    @_argv
    def do_info(self, args: list[str]) -> None:
        rows = [_bp_row(bp) for bp in self.session.breakpoints]
        for r in rows:
            self.out(f"{r['number']:<3} {r['kind']:<9} {'y' if r['enabled'] else 'n'} {r['address']:#x} "
                     f"{r['spec']} hits={r['hits']}", r)
        if not rows:
            self.out("no breakpoints or watchpoints", [])

    @_argv
    def do_continue(self, args: list[str]) -> None:
        ctx = self.session.cont(timeout=parse_number(args[0], "seconds", "timeout") if args else None)
        self._report(ctx)

    @_argv
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

    @_argv
    def do_regs(self, args: list[str]) -> None:
        regs = self.session.registers()
        names = args or [n for n in regs if not n.startswith(("st", "xmm", "f"))]
        # register values are "0x…" strings, as inside every other output's "registers" (kcrash.report.json)
        self.out("\n".join(f"{n:<9} {regs[n]:#018x}" for n in names), {n: hex(regs[n]) for n in names})

    @_argv
    def do_bt(self, args: list[str]) -> None:
        lines = backtrace_lines(self.binder, self.session.registers())
        self.out("\n".join(lines), lines)

    @_argv
    def do_ps(self, args: list[str]) -> None:
        rows = [task_row(t) for t in list_tasks(self.binder.prog)]
        if self.as_json:
            self.out("", rows)
            return
        self.echo(f"{'PID':>7} {'TGID':>7} {'STATE':>6}  {'TASK':<18} COMM")
        for r in rows:
            self.echo(f"{r['pid']:>7} {r['tgid']:>7} {r['state']:>6}  {r['task']:#018x} {r['comm']}")

    @_argv
    def do_log(self, args: list[str]) -> None:
        count = parse_number(args[0], "number", "record count") if args else None
        info = self.session.dump.vmcoreinfo
        if info is None:
            raise MissingDebugInfoError("log needs VMCOREINFO")
        records = get_printk_records(self.binder.memory, info)
        if count is not None:
            records = records[-count:] if count else []
        lines = [format_record(r).rstrip("\n") for r in records]
        self.out("\n".join(lines), lines)

    @_argv
    def do_p(self, args: list[str]) -> None:
        obj = evaluate(self.binder.prog, " ".join(args))
        self.out(obj.format_(), {"expression": " ".join(args), "value": obj.format_()})

    @_argv
    def do_metrics(self, args: list[str]) -> None:
        m = self.session.metrics()
        self.out("\n".join(f"{k:<28} {v}" for k, v in m.items()), m)

    @_argv
    def do_detach(self, args: list[str]) -> None:
        self.session.detach(keep_stopped=True if "--keep-stopped" in args else None)
        self.done = True


_ALIASES = {"b": "break", "c": "continue", "cont": "continue", "si": "step", "stepi": "step",
            "ni": "step", "next-instruction": "step", "d": "delete", "q": "detach", "quit": "detach",
            "i": "info", "print": "p", "dmesg": "log"}


def _spec(text: str) -> str:
    # A break/watch SPEC: an address by kcrash.cli.params' rule goes to the binder as 0x...; a
    # symbol[+offset] or C expression as written.
    arg = parse_number(text, "expression", "location")
    return f"{arg.address:#x}" if arg.address is not None else text


def _point_numbers(args: list[str]) -> list[int]:
    return [parse_number(n, "number", "breakpoint number") for n in args]


def _option_number(args: list[str], option: str, what: str) -> int:
    at = args.index(option) + 1
    if at >= len(args):
        raise CliError(f"{option} needs a value", 2)
    value: int = parse_number(args[at], "number", what)
    return value


def _condition(args: list[str]) -> Callable[[HitContext], bool] | None:
    if "if" not in args:
        return None
    source = " ".join(args[args.index("if") + 1:])
    try:
        code = compile(source, "<condition>", "eval")
    except SyntaxError as exc:
        raise CliError(f"invalid condition {source!r}: {exc.msg}", 2) from None
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
    # Not cmd.Cmd.cmdloop: a failed command prints one line and the loop goes on; Ctrl-C leaves the target stopped.
    while not repl.done:
        try:
            line = click.prompt(repl.prompt.rstrip(), default="", show_default=False, prompt_suffix=" ")
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
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, metavar="N",
              help="Serve kcrash's metrics (Prometheus) on http://127.0.0.1:N/ during the session (0: any port).")
def live(target: str, qmp: str | None, script: str | None, commands_: tuple[str, ...], keep_stopped: bool,
         timeout: float, hw_slots: int | None, baud: int, as_json: bool, metrics_port: int | None) -> None:
    """Debug a running kernel over the GDB remote protocol (TARGET: HOST:PORT or a serial device)."""
    with contextlib.ExitStack() as stack:
        if metrics_port is not None:
            stack.callback(_serve_metrics(metrics_port))
        _live(target, qmp, script, commands_, keep_stopped, timeout, hw_slots, baud, as_json)


def _serve_metrics(port: int) -> Callable[[], None]:
    # Loopback only: the metrics describe the debugged machine's activity.
    try:
        bound, stop = metrics.serve(port, "127.0.0.1")
    except OSError as exc:
        raise CliError(f"cannot serve metrics on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    click.echo(f"kcrash: metrics at http://127.0.0.1:{bound}/metrics", err=True)
    return stop


def _live(target: str, qmp: str | None, script: str | None, commands_: tuple[str, ...], keep_stopped: bool,
          timeout: float, hw_slots: int | None, baud: int, as_json: bool) -> None:
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
        click.echo(json.dumps(json_ready(session.metrics())))


def _run_script(session: LiveSession, path: Path) -> None:
    binder = kernel_binder_or_none(session)
    prog = binder.prog if binder is not None else None
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read script {path}: {exc}", 1) from None
    namespace: dict[str, Any] = {"session": session, "t": session, "prog": prog, "__name__": "__main__",
                                 "__file__": str(path)}
    with contextlib.suppress(SystemExit):
        run_user_code(source, namespace, str(path))


commands: list[click.Command] = [live]
