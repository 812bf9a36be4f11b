"""
kcrash.cli.tasks
================

crash's per-task commands: ``kcrash waitq DUMP ADDR|EXPR`` (the tasks waiting on a wait queue),
``kcrash task DUMP [PID|TASK]... [-R MEMBER,...]`` (a ``task_struct`` formatted, or some of its
members), ``kcrash foreach DUMP COMMAND [FILTER]...`` (``bt``, ``files``, ``vm``, ``task`` or ``ps`` of every
task a filter selects: PIDs, task addresses, command names, states ``-s RU,UN``, kernel threads
``-k`` or user tasks ``-u``) and the ``ps`` variants ``-p`` (parentage), ``-c`` (children), ``-t``
(times), ``-l`` (last arrival) and ``-G`` (thread group leaders) that ``kcrash ps`` hands to
:func:`print_ps`. Argument parsing and output only; the work is :mod:`kcrash.analysis.tasks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import DumpOrLive, Number, parse_number
from kcrash.errors import CliError, KcrashError, TypeLookupError, ValidationError

if TYPE_CHECKING:
    from kcrash.analysis.tasks import TaskFilter, TaskTimes, WaitQueue
    from kcrash.model import TaskRow
    from kcrash.types.object import Object
    from kcrash.types.program import Program

__all__ = ["commands", "print_ps"]

_DUMP = click.argument("path", metavar="DUMP", type=DumpOrLive())
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_FOREACH_COMMANDS = ("bt", "files", "vm", "task", "ps")
_NS = 1_000_000_000


def _task_line(row: TaskRow) -> str:
    return f'PID: {row.pid:<7} TASK: {row.task:016x}  CPU: {row.cpu:<3} COMMAND: "{row.comm}"'


# -- waitq --------------------------------------------------------------------------------------


@click.command("waitq")
@_DUMP
@symbol_file_options
@click.argument("queue", metavar="ADDR|EXPR")
@_JSON
def waitq_command(path: str, queue: str, as_json: bool) -> None:
    """The tasks waiting on the wait queue at ADDR or EXPR (a wait_queue_head_t, a struct
    swait_queue_head or a struct completion; a global of unknown type is told by its entries)."""
    # lazy: +665 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.tasks import wait_queue_at

    arg = parse_number(queue, "expression", "wait queue")
    with opened_target(path, orc=False) as prog:
        try:
            found = wait_queue_at(prog, queue if arg.address is None else f"{arg.address:#x}")
        except (ValidationError, KcrashError) as exc:
            raise CliError(f"waitq {queue}: {exc}", 1) from None
    if as_json:
        echo_json(dataclasses.asdict(found))
        return
    _print_waitq(queue, found)


def _print_waitq(name: str, found: WaitQueue) -> None:
    if not found.waiters:
        click.echo(f'wait queue "{name}" ({found.address:x}) is empty')
    for w in found.waiters:
        via = f"  ({w.func})" if w.func else ""
        if w.pid is None:
            click.echo(f"ENTRY: {w.entry:016x}  PRIVATE: {w.task:016x} (not a task){via}")
        else:
            click.echo(f'PID: {w.pid:<7} TASK: {w.task:016x}  COMMAND: "{w.comm}"{via}')
    if found.truncated:
        click.echo(f"(wait queue walk stopped early: {found.truncated})")


# -- task ---------------------------------------------------------------------------------------


def _members_option(text: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in (text or "").split(",") if m.strip())


@click.command("task")
@_DUMP
@symbol_file_options
@click.argument("targets", metavar="[PID|TASK]...", nargs=-1, type=Number("pid_or_address"))
@click.option("-R", "members", metavar="MEMBER,...", help="Only these members (dotted paths: se.vruntime).")
@click.option("-x", "radix", flag_value=16, help="Integers in hexadecimal.")
@click.option("-d", "radix", flag_value=10, default=True, help="Integers in decimal (the default).")
@_JSON
def task_command(path: str, targets: tuple[int, ...], members: str | None, radix: int, as_json: bool) -> None:
    """The task_struct of the panic task (default) or of each PID or task address, formatted;
    with -R only the given members."""
    # lazy: +483 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.targets import find_task

    with opened_target(path, orc=False) as prog:
        shown = [
            _task_entry(prog, find_task(prog, value), _members_option(members), radix) for value in (targets or (None,))
        ]
    _print_task_entries(shown, as_json)


def _task_entry(prog: Program, task: Object, members: Sequence[str], radix: int) -> dict[str, Any]:
    # lazy: kcrash.analysis.triage costs +550 ms CPU to import after this module (measured, loaded host)
    from kcrash.analysis import tasks, triage

    try:
        found = tasks.task_members(task, members, radix=radix)
    except TypeLookupError as exc:
        raise CliError(str(exc), 1) from None
    row = triage.task_backtrace_row(prog, task)
    return {"task": dataclasses.asdict(row), "members": [dataclasses.asdict(m) for m in found]}


def _print_task_entries(entries: Sequence[dict[str, Any]], as_json: bool) -> None:
    # lazy: +52 ms CPU to import it after this module (measured, loaded host)
    from kcrash.model import TaskRow

    if as_json:
        echo_json(list(entries))
        return
    for i, entry in enumerate(entries):
        if i:
            click.echo()
        click.echo(_task_line(TaskRow(**entry["task"])))
        for m in entry["members"]:
            click.echo(
                f"struct task_struct {m['text']}" if m["name"] == "task_struct" else f"  {m['name']} = {m['text']},"
            )


# -- foreach ------------------------------------------------------------------------------------


def _filter_words(words: Sequence[str], states: tuple[str, ...], kernel: bool, user: bool) -> tuple[str, TaskFilter]:
    # lazy: +665 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.tasks import STATE_NAMES, TaskFilter, parse_states

    command = [w for w in words if w in _FOREACH_COMMANDS]
    if len(command) != 1:
        raise CliError(f"foreach needs exactly one command of {', '.join(_FOREACH_COMMANDS)}", 2)
    pids, addresses, comms, letters = set(), set(), set(), set()
    for word in words:
        if word in _FOREACH_COMMANDS:
            continue
        if word in STATE_NAMES:
            letters.add(STATE_NAMES[word])
        elif word in ("kernel", "user"):
            kernel, user = kernel or word == "kernel", user or word == "user"
        elif word.isdecimal():
            pids.add(int(word))
        elif word.startswith("0x") or (len(word) >= 8 and all(c in "0123456789abcdefABCDEF" for c in word)):
            addresses.add(parse_number(word, "address", "task address"))
        else:
            comms.add(word)
    try:
        for text in states:
            letters |= parse_states(text)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
    if kernel and user:
        raise CliError("-k (kernel threads) and -u (user tasks) exclude each other", 2)
    return command[0], TaskFilter(
        frozenset(letters),
        True if kernel else False if user else None,
        frozenset(pids),
        frozenset(addresses),
        frozenset(comms),
    )


@click.command("foreach", context_settings={"ignore_unknown_options": False})
@_DUMP
@symbol_file_options
@click.argument("words", metavar="COMMAND [PID|TASK|NAME|STATE|kernel|user]...", nargs=-1, required=True)
@click.option(
    "-s",
    "states",
    multiple=True,
    metavar="STATE[,STATE]",
    help="Only tasks in these states: RU IN UN ST TR ZO DE PA ID (or ps letters R S D …).",
)
@click.option("-k", "kernel", is_flag=True, help="Kernel threads only.")
@click.option("-u", "user", is_flag=True, help="User tasks only.")
@click.option("-R", "members", metavar="MEMBER,...", help="task: only these members.")
@_JSON
def foreach_command(
    path: str,
    words: tuple[str, ...],
    states: tuple[str, ...],
    kernel: bool,
    user: bool,
    members: str | None,
    as_json: bool,
) -> None:
    """Run bt, files, vm, task or ps on every task the filters select (all tasks without filters):
    PIDs, task addresses, command names, states (-s or RU/IN/UN… words), -k kernel threads,
    -u user tasks. Several filters of one kind match any; of different kinds, all."""
    # lazy: +665 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.tasks import select_tasks

    command, selection = _filter_words(words, states, kernel, user)
    with opened_target(path, orc=command != "ps") as prog:
        rows, truncated = select_tasks(prog, selection)
        results = _FOREACH[command](prog, rows, _members_option(members))
    if truncated:
        click.echo(f"kcrash: warning: task list truncated: {truncated}", err=True)
    _FOREACH_PRINT[command](results, as_json)


def _objects(prog: Program, rows: Sequence[TaskRow]) -> list[Object]:
    # lazy: +263 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.object import Object

    task_type = prog.pointer_type("struct task_struct")
    return [Object(prog, task_type, r.task) for r in rows]


def _foreach_bt(prog: Program, rows: Sequence[TaskRow], _: Sequence[str]) -> list[Any]:
    # lazy: +544 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.backtrace import BacktraceOptions, task_backtrace_detail

    return [task_backtrace_detail(prog, task, BacktraceOptions()) for task in _objects(prog, rows)]


def _print_bt(results: list[Any], as_json: bool) -> None:
    # lazy: +531 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.analyze import print_backtraces

    print_backtraces(results, as_json)


def _foreach_vm(prog: Program, rows: Sequence[TaskRow], _: Sequence[str]) -> list[Any]:
    # lazy: +440 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.vmas import task_vm

    return [(task_vm(prog, task), row.cpu) for task, row in zip(_objects(prog, rows), rows, strict=True)]


def _print_vm(results: list[Any], as_json: bool) -> None:
    # lazy: +475 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.vm import print_vms

    print_vms(results, as_json)


def _foreach_files(prog: Program, rows: Sequence[TaskRow], _: Sequence[str]) -> list[Any]:
    # a task whose descriptor table cannot be read is a line saying so; the others go on
    # lazy: +378 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.system import task_files

    out: list[Any] = []
    for task, row in zip(_objects(prog, rows), rows, strict=True):
        try:
            out.append(task_files(task))
        except KcrashError as exc:
            out.append((row, f"cannot read the files of task {row.task:#x}: {exc}"))
    return out


def _print_files(results: list[Any], as_json: bool) -> None:
    from kcrash.cli import system  # lazy: +5 ms CPU to import after this module (measured, loaded host)

    if as_json:
        echo_json(
            [
                {"task": dataclasses.asdict(r[0]), "error": r[1]} if isinstance(r, tuple) else dataclasses.asdict(r)
                for r in results
            ]
        )
        return
    for i, result in enumerate(results):
        if i:
            click.echo()
        if isinstance(result, tuple):
            click.echo(_task_line(result[0]))
            click.echo(f"  ({result[1]})")
        else:
            system._print_files(result)


def _foreach_task(prog: Program, rows: Sequence[TaskRow], members: Sequence[str]) -> list[Any]:
    return [_task_entry(prog, task, members, 10) for task in _objects(prog, rows)]


def _foreach_ps(prog: Program, rows: Sequence[TaskRow], _: Sequence[str]) -> list[Any]:
    return list(rows)


def _print_ps_rows(results: list[Any], as_json: bool) -> None:
    # lazy: +52 ms CPU to import it after this module (measured, loaded host)
    from kcrash.model import to_dict

    if as_json:
        echo_json({"tasks": [to_dict(r) for r in results], "truncated": None})
        return
    # lazy: +120 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console, render_tasks

    render_tasks(results, make_console())


_FOREACH: dict[str, Callable[[Program, Sequence[TaskRow], Sequence[str]], list[Any]]] = {
    "bt": _foreach_bt,
    "files": _foreach_files,
    "vm": _foreach_vm,
    "task": _foreach_task,
    "ps": _foreach_ps,
}
_FOREACH_PRINT: dict[str, Callable[[list[Any], bool], None]] = {
    "bt": _print_bt,
    "files": _print_files,
    "vm": _print_vm,
    "task": _print_task_entries,
    "ps": _print_ps_rows,
}


# -- ps -p / -c / -t / -l / -G ------------------------------------------------------------------


def print_ps(prog: Program, targets: Sequence[int], mode: str, as_json: bool) -> None:
    """``ps`` of the tasks ``targets`` (PIDs or task addresses; every task when empty): their rows
    (``mode`` ``rows``), or crash's ``-p`` (``parents``), ``-c`` (``children``), ``-t``
    (``times``), ``-l`` (``last``) or ``-G`` (``leaders``)."""
    # lazy: kcrash.analysis.triage costs +550 ms CPU to import after this module (measured, loaded host)
    from kcrash.analysis import tasks

    rows = _target_rows(prog, targets)
    if mode == "rows":
        _print_ps_rows(list(rows), as_json)
    elif mode == "leaders":
        _print_ps_rows([r for r in rows if r.pid == r.tgid], as_json)
    elif mode == "parents":
        _print_chains([(r, tasks.task_parentage(prog, _objects(prog, [r])[0])) for r in rows], as_json)
    elif mode == "children":
        _print_children([(r, *tasks.task_children(prog, _objects(prog, [r])[0])) for r in rows], as_json)
    else:
        _print_times(tasks.task_times(prog, rows), mode == "last", as_json)


def _target_rows(prog: Program, targets: Sequence[int]) -> tuple[TaskRow, ...]:
    # lazy: kcrash.analysis.triage costs +550 ms CPU to import after this module (measured, loaded host)
    from kcrash.analysis import triage

    # lazy: +483 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.targets import find_task

    if not targets:
        rows, truncated = triage.task_rows(prog)
        if truncated:
            click.echo(f"kcrash: warning: task list truncated: {truncated}", err=True)
        return rows
    return tuple(triage.task_backtrace_row(prog, find_task(prog, value)) for value in targets)


def _print_chains(chains: list[tuple[TaskRow, tuple[TaskRow, ...]]], as_json: bool) -> None:
    if as_json:
        echo_json(
            [{"task": dataclasses.asdict(r), "parents": [dataclasses.asdict(p) for p in chain]} for r, chain in chains]
        )
        return
    for i, (_, chain) in enumerate(chains):
        if i:
            click.echo()
        for depth, row in enumerate(chain):
            click.echo(" " * depth + _task_line(row))


def _print_children(found: list[tuple[TaskRow, tuple[TaskRow, ...], str | None]], as_json: bool) -> None:
    if as_json:
        echo_json(
            [
                {
                    "task": dataclasses.asdict(r),
                    "children": [dataclasses.asdict(c) for c in children],
                    "truncated": truncated,
                }
                for r, children, truncated in found
            ]
        )
        return
    for i, (row, children, truncated) in enumerate(found):
        if i:
            click.echo()
        click.echo(_task_line(row))
        for child in children:
            click.echo("  " + _task_line(child))
        if not children:
            click.echo("  (no children)")
        if truncated:
            click.echo(f"  (children list walk stopped early: {truncated})")


def _hms(ns: int | None) -> str:
    if ns is None:
        return "?"
    seconds = ns // _NS
    return (
        f"{seconds // 86400}:{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        if seconds >= 86400
        else f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    )


def _print_times(times: tuple[TaskTimes, ...], last: bool, as_json: bool) -> None:
    if last:
        times = tuple(sorted(times, key=lambda t: t.last_arrival or 0, reverse=True))
    if as_json:
        echo_json([dataclasses.asdict(t) for t in times])
        return
    for i, t in enumerate(times):
        if last:
            arrival = "?" if t.last_arrival is None else str(t.last_arrival)
            click.echo(f"[{arrival:>14}] [{t.task.state}]  {_task_line(t.task)}")
            continue
        if i:
            click.echo()
        click.echo(_task_line(t.task))
        click.echo(
            f"    RUN TIME: {_hms(t.run_time)}\n  START TIME: {t.start_time}\n"
            f"       UTIME: {t.utime}\n       STIME: {t.stime}"
        )


commands: list[click.Command] = [waitq_command, task_command, foreach_command]
