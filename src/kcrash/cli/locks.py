"""
kcrash.cli.locks
================

``kcrash locks DUMP``: why the machine hung. The deadlocks (cycles of the wait-for graph) first,
with both tasks' stacks, then the CPUs stuck in a lock-up (the spinlock they spin on and its
holder where the kernel records one), then every blocked task: pid, comm, state, what it waits on
(kind, address, symbol), the owner (pid, comm, state) and the chain of owners, then the stacks of
the owners that are not blocked themselves. Argument parsing and output only; the work is in
:mod:`kcrash.analysis.locks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import DumpOrLive

if TYPE_CHECKING:
    from kcrash.model import LockAnalysis, Lockup, LockWait, TaskRow, Trace

__all__ = ["locks"]


@click.command("locks")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.option("-v", "verbose", is_flag=True, help="Every blocked task's stack, not only the deadlocked ones'.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def locks(path: str, verbose: bool, as_json: bool) -> None:
    """Deadlocks, lock-ups and what every blocked task waits on (mutex, rwsem, semaphore,
    completion, page lock, RCU grace period), with the owners the kernel records and their stacks."""
    # lazy: +530 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.locks import analyze_locks

    # lazy: +67 ms CPU to import it after this module (measured, loaded host)
    from kcrash.model import to_dict

    with opened_target(path) as prog:
        analysis = analyze_locks(prog)
    if as_json:
        echo_json(to_dict(analysis))
        return
    _print_analysis(analysis, verbose)


def _task(row: TaskRow | None) -> str:
    if row is None:
        return "-"
    return f'PID {row.pid} "{row.comm}" [{row.state}]'


def _lock(wait: LockWait) -> str:
    where = f"{wait.lock:x}" if wait.lock is not None else "?"
    name = f" ({wait.symbol})" if wait.symbol else ""
    mode = f" for {wait.mode}" if wait.mode else ""
    return f"{wait.kind} {where}{name}{mode}"


def _print_trace(trace: Trace, indent: str = "      ") -> None:
    for frame in trace.frames:
        mark = "" if frame.reliable else "? "
        click.echo(f"{indent}#{frame.index:<2} {mark}{frame.text}")
    if trace.truncated:
        click.echo(f"{indent}(stack ends early: {trace.truncated})")


def _print_analysis(analysis: LockAnalysis, verbose: bool) -> None:
    click.echo("WHY IT HUNG")
    for line in analysis.why or ("no deadlock, lock-up or blocked task found",):
        click.echo(f"  {line}")
    for note in analysis.notes:
        click.echo(f"  (note: {note})")
    if analysis.deadlocks:
        click.echo("\nDEADLOCKS")
    for number, deadlock in enumerate(analysis.deadlocks, 1):
        click.echo(f"  #{number}: {len(deadlock.waits)} tasks in a cycle")
        for wait in deadlock.waits:
            click.echo(f"    {_task(wait.task)} waits for {_lock(wait)}, owned by {_task(wait.owner)}")
            _print_trace(wait.trace)
    if analysis.lockups:
        click.echo("\nLOCK-UPS")
    for lockup in analysis.lockups:
        _print_lockup(lockup)
    _print_waits(analysis, verbose)
    if analysis.owners:
        click.echo("\nOWNERS NOT BLOCKED THEMSELVES")
    for owner in analysis.owners:
        click.echo(f"  {_task(owner.task)}")
        _print_trace(owner.trace, "    ")


def _print_lockup(lockup: Lockup) -> None:
    if lockup.kind == "spinlock":
        lock = f"{lockup.lock:x}" if lockup.lock is not None else "?"
        name = f" ({lockup.symbol})" if lockup.symbol else ""
        click.echo(f"  CPU {lockup.cpu}: {_task(lockup.task)} spins on spinlock {lock}{name} in {lockup.function}")
        click.echo(f"    holder: {_task(lockup.holder) if lockup.holder else lockup.holder_note}")
    else:
        click.echo(f"  CPU {lockup.cpu}: {_task(lockup.task)} is stuck in {lockup.function or '?'}")
    _print_trace(lockup.trace, "    ")


def _print_waits(analysis: LockAnalysis, verbose: bool) -> None:
    if not analysis.waits:
        return
    click.echo("\nBLOCKED TASKS")
    click.echo(f"  {'PID':>7}  {'COMM':<16} ST  {'WAITS ON':<48} {'OWNER':<32} CHAIN")
    for wait in analysis.waits:
        owner = _task(wait.owner) if wait.owner else (wait.owner_note or "-")
        chain = " -> ".join(str(pid) for pid in wait.chain) if len(wait.chain) > 1 else ""
        what = _lock(wait) if wait.kind != "unknown" else f"? in {wait.frame or '?'}"
        click.echo(f"  {wait.task.pid:>7}  {wait.task.comm:<16} {wait.task.state:<2}  {what:<48} {owner:<32} {chain}")
        if verbose:
            _print_trace(wait.trace)
