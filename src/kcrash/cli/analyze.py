"""
kcrash.cli.analyze
==================

Crash-like commands on a dump with no vmlinux (symbols from kallsyms, types from BTF, unwinding
from ORC, all read from the dump): ``kcrash sys``, ``bt [-a] [PID|TASK]``, ``ps``, ``log``, ``mod``,
``report`` (the one-screen summary) and ``shell`` (a Python REPL with ``prog`` and the helpers).
Every command takes DUMP first and has ``--json`` (except ``shell``). Argument parsing and output
only: the work is :mod:`kcrash.analysis`, the rendering :mod:`kcrash.report.terminal`.
"""

from __future__ import annotations

import code
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from kcrash.analysis import triage
from kcrash.analysis.target import open_target
from kcrash.cli.common import cache_dir, echo_json
from kcrash.dumps import DumpWarning
from kcrash.errors import CliError
from kcrash.helpers.linux.panic import panic_cpu_or_none
from kcrash.report.model import TaskTrace, to_dict
from kcrash.report.terminal import (
    make_console,
    render_log,
    render_modules,
    render_report,
    render_system,
    render_tasks,
    render_trace,
)
from kcrash.types.program import Program

__all__ = ["commands"]

_DUMP = click.argument("path", metavar="DUMP", type=click.Path(exists=True, dir_okay=False))
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextmanager
def _target(path: str, *, orc: bool = True) -> Iterator[Program]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DumpWarning)
        prog = open_target(path, cache_dir(), orc=orc)
    for w in caught:
        click.echo(f"kcrash: warning: {w.message}", err=True)
    try:
        yield prog
    finally:
        prog.close()


@click.command("sys")
@_DUMP
@_JSON
def sys_command(path: str, as_json: bool) -> None:
    """System facts at the crash: release, CPUs, uptime, time, panic CPU, taint."""
    with _target(path, orc=False) as prog:
        info = triage.system_info(prog, path)
    if as_json:
        echo_json(to_dict(info))
    else:
        render_system(info, make_console())


def _parse_task(text: str) -> int:
    try:
        return int(text, 16) if text.lower().startswith("0x") or len(text) >= 12 else int(text)
    except ValueError:
        raise CliError(f"not a PID or task address: {text!r}", 2) from None


def _backtraces(prog: Program, all_cpus: bool, target: str | None) -> tuple[TaskTrace, ...]:
    if all_cpus:
        return triage.cpu_backtraces(prog)
    if target is None:
        return (triage.cpu_backtrace(prog, panic_cpu_or_none(prog) or 0),)
    task = triage.task_by_pid_or_address_or_none(prog, _parse_task(target))
    if task is None:
        raise CliError(f"no task with pid {target}")
    return (triage.task_backtrace(prog, task),)


@click.command("bt")
@_DUMP
@click.argument("target", metavar="[PID|TASK]", required=False)
@click.option("-a", "all_cpus", is_flag=True, help="The active task of every CPU.")
@_JSON
def bt_command(path: str, target: str | None, all_cpus: bool, as_json: bool) -> None:
    """Backtrace of the panic task (default), a PID or task address, or every CPU (-a)."""
    with _target(path) as prog:
        traces = _backtraces(prog, all_cpus, target)
    if as_json:
        echo_json([to_dict(t) for t in traces])
        return
    console = make_console()
    for i, entry in enumerate(traces):
        if i:
            console.print()
        row = entry.task
        console.print(f"PID: {row.pid:<7} TASK: {row.task:016x}  CPU: {row.cpu:<3} COMMAND: \"{row.comm}\"",
                      markup=False)
        render_trace(entry.trace, console)


@click.command("ps")
@_DUMP
@_JSON
def ps_command(path: str, as_json: bool) -> None:
    """Every task (all threads, idle tasks first) with its state letter; '>' marks running ones."""
    with _target(path, orc=False) as prog:
        rows, truncated = triage.task_rows(prog)
    if as_json:
        echo_json({"tasks": [to_dict(r) for r in rows], "truncated": truncated})
        return
    render_tasks(rows, make_console())
    if truncated:
        click.echo(f"kcrash: warning: task list truncated: {truncated}", err=True)


@click.command("log")
@_DUMP
@click.option("--caller", is_flag=True, help="Show the caller id ([T123]/[C1]) when recorded.")
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N records.")
@_JSON
def log_command(path: str, caller: bool, tail: int | None, as_json: bool) -> None:
    """The kernel log (printk ring buffer) with timestamps."""
    with _target(path, orc=False) as prog:
        records = triage.printk_records(prog)
    lines = triage.log_lines(records[-tail:] if tail else records)
    if as_json:
        echo_json([to_dict(line) for line in lines])
    else:
        render_log(lines, make_console(), caller=caller)


@click.command("mod")
@_DUMP
@_JSON
def mod_command(path: str, as_json: bool) -> None:
    """Loaded modules: name, base, size, taints, and the symbols/BTF found in memory."""
    with _target(path, orc=False) as prog:
        rows = triage.module_rows(prog)
    if as_json:
        echo_json([to_dict(r) for r in rows])
    else:
        render_modules(rows, make_console())


@click.command("report")
@_DUMP
@click.option("--log-lines", type=click.IntRange(min=0), default=30, show_default=True, help="Log tail length.")
@_JSON
def report_command(path: str, log_lines: int, as_json: bool) -> None:
    """One-screen summary: panic, crashing context, backtrace, log tail, D-state tasks, modules."""
    with _target(path) as prog:
        report = triage.build_report(prog, path, log_tail=log_lines)
    if as_json:
        echo_json(to_dict(report))
    else:
        render_report(report, make_console())


def shell_namespace(prog: Program) -> dict[str, Any]:
    """``prog`` plus every public name of the helper modules, the triage and the object API."""
    import importlib

    namespace: dict[str, Any] = {"prog": prog, "triage": triage}
    for name in ("kcrash.types", "kcrash.helpers.linux.list", "kcrash.helpers.linux.sched",
                 "kcrash.helpers.linux.module", "kcrash.helpers.linux.panic", "kcrash.helpers.linux.printk",
                 "kcrash.helpers.linux.percpu", "kcrash.helpers.linux.cpumask", "kcrash.helpers.linux.stack"):
        module = importlib.import_module(name)
        namespace.update({k: getattr(module, k) for k in getattr(module, "__all__", ())})
    return namespace


@click.command("shell")
@_DUMP
@click.option("-c", "command", help="Run this Python code instead of the interactive prompt.")
def shell_command(path: str, command: str | None) -> None:
    """A Python REPL with `prog` (the dump as typed objects) and the helpers loaded."""
    with _target(path) as prog:
        namespace = shell_namespace(prog)
        if command is not None:
            exec(compile(command, "<kcrash shell -c>", "exec"), namespace)  # the user's own code
            return
        banner = (f"kcrash shell: {path}\n`prog` is the dump; helpers: for_each_task, task_state_to_char, "
                  "stack_trace, for_each_module, list_for_each_entry, per_cpu, triage ...")
        code.interact(banner=banner, local=namespace, exitmsg="")


commands: list[click.Command] = [sys_command, bt_command, ps_command, log_command, mod_command, report_command,
                                 shell_command]
