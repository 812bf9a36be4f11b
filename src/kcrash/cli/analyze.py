"""
kcrash.cli.analyze
==================

Crash-like commands on a dump with no vmlinux (symbols from kallsyms, types from BTF, unwinding
from ORC, all read from the dump): ``kcrash sys``, ``bt [-a] [PID|TASK]``, ``ps``, ``log``, ``mod``,
``report`` (the full report: terminal, one self-contained HTML file, or JSON checked by a published
JSON Schema, ``--schema``); ``shell`` is :mod:`kcrash.cli.shell`.
Every command takes DUMP first and has ``--json``. Argument parsing and output
only: the work is :mod:`kcrash.analysis`, the rendering :mod:`kcrash.report.terminal` (rich, imported
only for terminal output).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kcrash.analysis import backtrace, triage
from kcrash.analysis.backtrace import BacktraceOptions
from kcrash.cli.common import (
    cache_dir,
    echo_json,
    echo_schema,
    given_vmlinux,
    opened_target,
    printed_dump_warnings,
    symbol_file_options,
    warn_of_missing_log,
)
from kcrash.cli.params import DumpOrLive, Number
from kcrash.errors import CliError, FaultError, MissingDebugInfoError, ValidationError
from kcrash.helpers.linux.panic import panic_cpu_or_none
from kcrash.metrics import phase
from kcrash.model import CrashReport, TaskTraceDetail, to_dict
from kcrash.types.program import Program

if TYPE_CHECKING:
    from kcrash.debuginfo.symbolizer import KernelSymbolizer

__all__ = ["commands", "print_backtraces"]

_DUMP = click.argument("path", metavar="DUMP", type=DumpOrLive())
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

_DEBUGINFO = click.option(
    "--debuginfo",
    "debuginfo",
    multiple=True,
    type=click.Path(exists=True),
    help="vmlinux / module .ko with DWARF, or a directory holding them (repeatable); matched to the dump by build-id.",
)
_FORCE = click.option("--force", is_flag=True, help="Use a vmlinux even if its build-id differs from the dump's.")


@click.command("sys")
@_DUMP
@symbol_file_options
@_JSON
def sys_command(path: str, as_json: bool) -> None:
    """System facts at the crash: release, CPUs, uptime, time, panic CPU, taint."""
    with opened_target(path, orc=False) as prog:
        info = triage.system_info(prog, path)
    if as_json:
        echo_json(to_dict(info))
        return
    # lazy: +69 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_system

    render_system(info, make_console())


def _backtraces(
    prog: Program, all_cpus: bool, target: int | None, options: BacktraceOptions
) -> tuple[TaskTraceDetail, ...]:
    if all_cpus:
        return backtrace.cpu_backtrace_details(prog, options)
    if target is None:
        return (backtrace.cpu_backtrace_detail(prog, panic_cpu_or_none(prog) or 0, options),)
    try:
        task = triage.task_by_pid_or_address_or_none(prog, target)
    except ValidationError as exc:
        raise CliError(str(exc)) from exc
    if task is None:
        raise CliError(f"no task with pid {target}")
    return (backtrace.task_backtrace_detail(prog, task, options),)


@click.command("bt")
@_DUMP
@symbol_file_options
@click.argument("target", metavar="[PID|TASK]", required=False, type=Number("pid_or_address"))
@click.option("-a", "all_cpus", is_flag=True, help="The active task of every CPU.")
@click.option("-f", "words", is_flag=True, help="Each frame's stack words.")
@click.option("-F", "symbolic", is_flag=True, help="Each frame's stack words as symbols and [slab cache] names.")
@click.option(
    "-l",
    "lines",
    is_flag=True,
    help="Each frame's file:line (needs --debuginfo/--vmlinux or debug files in the standard places).",
)
@_DEBUGINFO
@_FORCE
@_JSON
def bt_command(
    path: str,
    target: int | None,
    all_cpus: bool,
    words: bool,
    symbolic: bool,
    lines: bool,
    debuginfo: tuple[str, ...],
    force: bool,
    as_json: bool,
) -> None:
    """Backtrace of the panic task (default), a PID or task address, or every CPU (-a), with the
    registers of exception frames and IRQ/exception stack switches marked; -f/-F each frame's stack
    words; -l (or --debuginfo) each frame's file:line and inlined calls."""
    with opened_target(path) as prog:
        traces = _backtraces(prog, all_cpus, target, BacktraceOptions(words=words, symbolic=symbolic))
        symbolizer = _bt_symbolizer(prog, debuginfo, force, lines)
    if symbolizer is not None:
        traces = _with_sources(traces, symbolizer)
    print_backtraces(traces, as_json)


def print_backtraces(traces: Sequence[TaskTraceDetail], as_json: bool) -> None:
    """Print backtraces as ``bt`` does: JSON, or each as crash prints it with a blank line between;
    also ``foreach bt``'s output."""
    if as_json:
        echo_json([to_dict(t) for t in traces])
        return
    # lazy: +69 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_backtrace

    console = make_console()
    for i, entry in enumerate(traces):
        if i:
            console.print()
        render_backtrace(entry, console)


def _bt_symbolizer(prog: Program, debuginfo: tuple[str, ...], force: bool, lines: bool) -> KernelSymbolizer | None:
    # -l: crash's flag for source lines; the debug files given, or those of the standard places
    vmlinux = given_vmlinux() if lines else None
    if not lines:
        return _symbolizer(prog, None, debuginfo, force)
    try:
        # lazy: +114 ms CPU to import it after this module (measured, loaded host)
        from kcrash.analysis.sources import open_kernel_symbolizer

        with printed_dump_warnings():  # a vmlinux of another build taken with --force
            return open_kernel_symbolizer(
                prog, [Path(p) for p in ((vmlinux,) if vmlinux else ()) + debuginfo], force=force, cache_dir=cache_dir()
            )
    except MissingDebugInfoError as exc:
        raise CliError(f"bt -l needs debug information (--debuginfo or --vmlinux): {exc}") from exc


def _with_sources(traces: tuple[Any, ...], symbolizer: KernelSymbolizer) -> tuple[Any, ...]:
    # lazy: +131 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import annotate_trace

    try:
        return tuple(dataclasses.replace(t, trace=annotate_trace(t.trace, symbolizer)) for t in traces)
    finally:
        symbolizer.close()


@click.command("ps")
@_DUMP
@symbol_file_options
@click.argument("targets", metavar="[PID|TASK]...", nargs=-1, type=Number("pid_or_address"))
@click.option("-p", "mode", flag_value="parents", help="Each task's parentage, from init_task down.")
@click.option("-c", "mode", flag_value="children", help="Each task's children.")
@click.option("-t", "mode", flag_value="times", help="Run time, start time, user and system time.")
@click.option("-l", "mode", flag_value="last", help="Last arrival on a CPU (sched_info), latest first.")
@click.option("-G", "mode", flag_value="leaders", help="Thread group leaders only.")
@_JSON
def ps_command(path: str, targets: tuple[int, ...], mode: str | None, as_json: bool) -> None:
    """Every task (all threads, idle tasks first) with its state letter; '>' marks running ones.
    -p/-c/-t/-l/-G: crash's parentage, children, times, last-run and thread-group views (of the
    PIDs or task addresses given, else of every task)."""
    if mode is not None or targets:
        # lazy: +11 ms CPU to import it after this module (measured, loaded host)
        from kcrash.cli.tasks import print_ps

        with opened_target(path, orc=False) as prog:
            print_ps(prog, targets, mode or "rows", as_json)
        return
    with opened_target(path, orc=False) as prog:
        rows, truncated = triage.task_rows(prog)
    if as_json:
        echo_json({"tasks": [to_dict(r) for r in rows], "truncated": truncated})
        return
    # lazy: +69 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_tasks

    render_tasks(rows, make_console())
    if truncated:
        click.echo(f"kcrash: warning: task list truncated: {truncated}", err=True)


@click.command("log")
@_DUMP
@symbol_file_options
@click.option("--caller", is_flag=True, help="Show the caller id ([T123]/[C1]) when recorded.")
@click.option("--tail", type=click.IntRange(min=1), help="Only the last N records.")
@_JSON
def log_command(path: str, caller: bool, tail: int | None, as_json: bool) -> None:
    """The kernel log (printk ring buffer) with timestamps; needs only the dump's VMCOREINFO."""
    # lazy: +97 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.dump import opened_dump

    with opened_dump((path,)) as handle:
        log = triage.dump_log(handle)
    records = log.records
    lines = triage.log_lines(records[-tail:] if tail else records)
    warn_of_missing_log(log)
    if as_json:
        echo_json([to_dict(line) for line in lines])
        return
    # lazy: +69 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_log

    render_log(lines, make_console(), caller=caller)


@click.command("mod")
@_DUMP
@symbol_file_options
@_JSON
def mod_command(path: str, as_json: bool) -> None:
    """Loaded modules: name, base, size, taints, and the symbols/BTF found in memory."""
    with opened_target(path, orc=False) as prog:
        rows = triage.module_rows(prog)
    if as_json:
        echo_json([to_dict(r) for r in rows])
        return
    # lazy: +69 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_modules

    render_modules(rows, make_console())


def _symbolizer(prog: Program, vmlinux: str | None, debuginfo: tuple[str, ...], force: bool) -> KernelSymbolizer | None:
    paths = [Path(p) for p in ((vmlinux,) if vmlinux else ()) + debuginfo]
    if not paths:
        return None
    # lazy: +131 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import open_kernel_symbolizer  # DWARF modules only with debuginfo

    with printed_dump_warnings():  # a vmlinux of another build taken with --force
        return open_kernel_symbolizer(prog, paths, force=force, cache_dir=cache_dir())


def _render(report: Any, fmt: str, output: str | None, color: bool | None) -> None:
    with phase("render"):
        if fmt == "terminal":
            _render_terminal(report, output, color)
            return
        text = _render_text(report, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"kcrash: wrote {output}", err=True)


def _render_terminal(report: Any, output: str | None, color: bool | None) -> None:
    # rich only for terminal output
    # lazy: +69 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_report

    if output is None:
        render_report(report, make_console(color=color))
        return
    with open(output, "w", encoding="utf-8") as out:
        render_report(report, make_console(out, color=False))


def _render_text(report: Any, fmt: str) -> str:
    # jinja2 (HTML) and the JSON renderer only for their formats
    if fmt == "html":
        # lazy: +52 ms CPU to import it after this module (measured, loaded host)
        from kcrash.report.html import render_html

        return render_html(report)
    # lazy: +16 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.json import render_json

    return render_json(report)


@click.command("report")
@click.argument("path", metavar="DUMP", required=False, type=DumpOrLive())
@click.option("--log-lines", type=click.IntRange(min=0), default=30, show_default=True, help="Log tail length.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["terminal", "html", "json"]),
    default="terminal",
    show_default=True,
    help="terminal (rich), one self-contained HTML file, or JSON.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report to FILE.")
@click.option("--schema", is_flag=True, help="Print the JSON Schema of the JSON report and exit.")
@click.option("--no-color", is_flag=True, help="Plain terminal output even on a terminal.")
@symbol_file_options
@_DEBUGINFO
@_FORCE
@click.option(
    "--source-dir",
    "source_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Where to look for source files for snippets (repeatable).",
)
@_JSON
def report_command(
    path: str | None,
    log_lines: int,
    fmt: str,
    output: str | None,
    schema: bool,
    no_color: bool,
    debuginfo: tuple[str, ...],
    force: bool,
    source_dirs: tuple[str, ...],
    as_json: bool,
) -> None:
    """The crash report: verdict, crashing context, backtrace, disassembly, log, tasks, modules,
    memory, the crashing task's memory regions and the dump's metadata."""
    if schema:
        # lazy: +16 ms CPU to import it after this module (measured, loaded host)
        from kcrash.report.json import schema as json_schema

        echo_schema(json_schema())
        return
    if path is None:
        raise CliError("missing argument DUMP (or --schema)", 2)
    try:
        with opened_target(path) as prog:
            symbolizer = _symbolizer(prog, given_vmlinux(), debuginfo, force)
            try:
                with phase("triage"):
                    report = triage.build_report(
                        prog, path, log_tail=log_lines, symbolizer=symbolizer, source_dirs=source_dirs
                    )
            finally:
                if symbolizer is not None:
                    symbolizer.close()
    except (FaultError, MissingDebugInfoError, ValidationError) as exc:  # a dump whose symbols are gone
        report = _bare_report(path, str(exc), log_lines)
    color = False if no_color else (None if sys.stdout.isatty() else False)
    _render(report, "json" if as_json else fmt, output, color)
    _warn_unavailable(report)


def _warn_unavailable(report: CrashReport) -> None:
    # One stderr line for a snippet asked for (--source-dir) but missing, with the reason, and one
    # naming the sections the dump could not give.
    if not report.unavailable:
        return
    # lazy: +131 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import SNIPPET_NOTE  # only when there is something to say

    snippet = [n for n in report.unavailable if n.reason.startswith(SNIPPET_NOTE)]
    for note in snippet:
        click.echo(f"kcrash: warning: {note.reason}", err=True)
    gone = [n for n in report.unavailable if n not in snippet]
    if gone:
        names = ", ".join(dict.fromkeys(n.section for n in gone))
        click.echo(
            f"kcrash: warning: the report lacks part of: {names} (the dump is damaged or filtered; "
            "each section says why)",
            err=True,
        )


def _bare_report(path: str, reason: str, log_lines: int) -> Any:
    # lazy: +97 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.dump import opened_dump

    click.echo(f"kcrash: warning: {reason}", err=True)
    with opened_dump((path,)) as handle:
        return triage.build_bare_report(handle, path, reason, log_tail=log_lines)


commands: list[click.Command] = [sys_command, bt_command, ps_command, log_command, mod_command, report_command]
