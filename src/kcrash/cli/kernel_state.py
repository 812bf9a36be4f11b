"""
kcrash.cli.kernel_state
=======================

crash's machine-state commands: ``kcrash dev DUMP [-d]`` (character device ranges and block
majors; ``-d`` disks), ``kcrash irq DUMP [-s]`` (IRQ descriptors with chip and actions; ``-s`` the
per-CPU counts and handlers, as ``/proc/interrupts``), ``kcrash timer DUMP [-r]`` (every CPU's
timer wheel by expiry: EXPIRES, TTE, TIMER_LIST, FUNCTION; ``-r`` the hrtimers) and
``kcrash runq DUMP`` (every CPU's run queue: current task, clock, queued tasks per class). Every
possible CPU is shown, the offline ones too (after a panic the other CPUs are offline). Argument
parsing and output only; the work is :mod:`kcrash.analysis.kernel_state`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import DumpOrLive
from kcrash.errors import CliError, KcrashError

if TYPE_CHECKING:
    from kcrash.analysis.kernel_state import DeviceTable, IrqTable, RunqueueTable, TimerTable
    from kcrash.helpers.linux.irq import IrqInfo
    from kcrash.helpers.linux.runqueue import QueuedTask, Runqueue
    from kcrash.types.program import Program

__all__ = ["commands"]

_DUMP = click.argument("path", metavar="DUMP", type=DumpOrLive())
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


class _Table(Protocol):
    # the analysis tables: dataclasses with the CPUs/IRQs that could not be read in ``errors``
    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def errors(self) -> tuple[str, ...]: ...


_T = TypeVar("_T", bound=_Table)


def _show(path: str, what: str, work: Callable[[Program], _T], as_json: bool, show: Callable[[_T], None]) -> None:
    # The one shape of every command here: gather the table, print it as JSON, or print the
    # warnings and then the table.
    with opened_target(path, orc=False) as prog:
        try:
            table = work(prog)
        except (KcrashError, LookupError) as exc:
            raise CliError(f"{what}: {exc}", 1) from None
    if as_json:
        echo_json(dataclasses.asdict(table))
        return
    for error in table.errors:
        click.echo(f"kcrash: warning: {error}", err=True)
    show(table)


def _symbol(address: int, name: str | None) -> str:
    return f"{address:016x}  <{name}>" if name else f"{address:016x}"


# -- dev ----------------------------------------------------------------------------------------

@click.command("dev")
@_DUMP
@symbol_file_options
@click.option("-d", "disks", is_flag=True, help="Disks (struct gendisk) instead of device numbers.")
@_JSON
def dev_command(path: str, disks: bool, as_json: bool) -> None:
    """Registered character device ranges and block majors; with -d the disks."""
    # lazy: +368 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.kernel_state import devices

    _show(path, "dev", lambda prog: devices(prog, disks=disks), as_json, _print_disks if disks else _print_devices)


def _print_devices(table: DeviceTable) -> None:
    click.echo(f"{'CHRDEV':>6}  {'MINORS':<14} {'NAME':<20} {'CDEV':<16}  OPERATIONS")
    for c in table.chrdevs:
        minors = f"{c.baseminor}-{c.baseminor + c.minorct - 1}" if c.minorct > 1 else str(c.baseminor)
        cdev = f"{c.cdev:016x}" if c.cdev else "(none)"
        ops = f"<{c.ops_name}>" if c.ops_name else (f"{c.ops:x}" if c.ops else "")
        click.echo(f"{c.major:>6}  {minors:<14} {c.name:<20} {cdev:<16}  {ops}")
    click.echo()
    click.echo(f"{'BLKDEV':>6}  {'NAME':<20} BLK_MAJOR_NAME")
    for b in table.blkdevs:
        click.echo(f"{b.major:>6}  {b.name:<20} {b.address:016x}")


def _print_disks(table: DeviceTable) -> None:
    if not table.disks:
        click.echo("no disks (block_class has no whole-disk device)")
        return
    click.echo(f"{'MAJOR':>5} {'MINOR':>5}  {'GENDISK':<16}  {'NAME':<12} {'REQUEST_QUEUE':<16}  "
               f"{'TYPE':<4} {'IN_FLIGHT(R/W)':<14} FOPS")
    for d in table.disks:
        fops = f"<{d.fops_name}>" if d.fops_name else ""
        flight = f"{d.in_flight[0]}/{d.in_flight[1]}" if d.in_flight is not None else "-"
        click.echo(f"{d.major:>5} {d.first_minor:>5}  {d.address:016x}  {d.name:<12} {d.queue:016x}  "
                   f"{'mq' if d.mq else 'bio':<4} {flight:<14} {fops}")


# -- irq ----------------------------------------------------------------------------------------

@click.command("irq")
@_DUMP
@symbol_file_options
@click.option("-s", "stats", is_flag=True, help="Per-CPU counts, chip, flow handler and actions (/proc/interrupts).")
@click.option("-a", "all_irqs", is_flag=True, help="Also IRQs without actions or counts.")
@_JSON
def irq_command(path: str, stats: bool, all_irqs: bool, as_json: bool) -> None:
    """IRQ descriptors: number, irq_desc, chip and actions (handler symbols); with -s the count on
    every possible CPU."""
    # lazy: +368 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.kernel_state import irqs

    def show(table: IrqTable) -> None:
        shown = [i for i in table.irqs if all_irqs or i.actions or i.total]
        if stats:
            _print_irq_stats(table, shown)
        else:
            _print_irqs(shown)

    _show(path, "irq", irqs, as_json, show)


def _actions_text(info: IrqInfo, handlers: bool) -> str:
    parts = []
    for a in info.actions:
        text = a.name or "(no name)"
        if handlers:
            fns = [f"<{n}>" for n in (a.handler_name, a.thread_fn_name) if n]
            text += f" {'/'.join(fns)}" if fns else ""
        parts.append(text)
    return ", ".join(parts)


def _print_irqs(shown: Sequence[IrqInfo]) -> None:
    click.echo(f"{'IRQ':>4}  {'IRQ_DESC':<16}  {'CHIP':<12} {'AFFINITY':<10} NAME")
    for i in shown:
        affinity = ",".join(map(str, i.affinity)) or "-"
        click.echo(f"{i.irq:>4}  {i.desc:016x}  {i.chip or '-':<12} {affinity:<10} {_actions_text(i, True)}")


def _print_irq_stats(table: IrqTable, shown: Sequence[IrqInfo]) -> None:
    click.echo("     " + "".join(f"{f'CPU{cpu}':>11}" for cpu in table.cpus))
    for i in shown:
        counts = "".join(f"{count:>11}" for _, count in i.counts)
        flow = (i.flow_handler or "").removeprefix("handle_").removesuffix("_irq")
        click.echo(f"{i.irq:>3}: {counts}  {i.chip or '-':<10} {flow:<8} {_actions_text(i, True)}")


# -- timer --------------------------------------------------------------------------------------

@click.command("timer")
@_DUMP
@symbol_file_options
@click.option("-r", "hrtimers", is_flag=True, help="The hrtimers of every CPU's hrtimer_bases.")
@_JSON
def timer_command(path: str, hrtimers: bool, as_json: bool) -> None:
    """Every possible CPU's pending timers by expiry: EXPIRES, TTE (jiffies to go), TIMER_LIST and
    FUNCTION; with -r the hrtimers (SOFTEXPIRES, EXPIRES, HRTIMER, FUNCTION) per clock base."""
    # lazy: +368 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.kernel_state import timers

    _show(path, "timer", lambda prog: timers(prog, hrtimers=hrtimers), as_json,
          _print_hrtimers if hrtimers else _print_timers)


def _print_timers(table: TimerTable) -> None:
    click.echo(f"JIFFIES: {table.jiffies}")
    for base in table.bases:
        click.echo(f"CPU: {base.cpu}  {base.name}: {base.address:016x}  CLK: {base.clk}")
        rows = [f"{t.expires:>12} {t.expires - table.jiffies:>12}  {t.address:016x}  "
                f"{_symbol(t.function, t.function_name)}" for t in base.timers]
        _print_queue("  ", "timers", f"{'EXPIRES':>12} {'TTE':>12}  {'TIMER_LIST':<16}  FUNCTION", rows,
                     base.truncated)


def _print_hrtimers(table: TimerTable) -> None:
    cpu = None
    for base in table.hrtimer_bases:
        if base.cpu != cpu:
            cpu = base.cpu
            click.echo(f"CPU: {cpu}")
        click.echo(f"  CLOCK: {base.index}  HRTIMER_CLOCK_BASE: {base.address:016x}  [{base.name}]")
        rows = [f"{t.softexpires:>20} {t.expires:>20}  {t.address:016x}  {_symbol(t.function, t.function_name)}"
                for t in base.timers]
        _print_queue("    ", "hrtimers", f"{'SOFTEXPIRES':>20} {'EXPIRES':>20}  {'HRTIMER':<16}  FUNCTION", rows,
                     base.truncated)


def _print_queue(indent: str, what: str, header: str, rows: Sequence[str], truncated: str | None) -> None:
    # One timer base's queue: "[no timers queued]", or the header, a row a timer, and why the walk
    # stopped early when it did.
    if not rows:
        click.echo(f"{indent}[no {what} queued]")
        return
    for line in (header, *rows):
        click.echo(indent + line)
    if truncated:
        click.echo(f"{indent}(walk stopped early: {truncated})")


# -- runq ---------------------------------------------------------------------------------------

@click.command("runq")
@_DUMP
@symbol_file_options
@_JSON
def runq_command(path: str, as_json: bool) -> None:
    """Every possible CPU's run queue: the current task, nr_running, the rq clock and the queued
    tasks of the real-time, deadline and fair classes ([prio] PID TASK COMMAND), and a queued
    stopper task (migration/N)."""
    # lazy: +368 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.kernel_state import runqueues

    _show(path, "runq", runqueues, as_json, _print_runqueues)


def _task_text(t: QueuedTask) -> str:
    return f"PID: {t.pid:<7} TASK: {t.task:016x}  COMMAND: \"{t.comm}\""


def _print_class(name: str, tasks: Sequence[QueuedTask]) -> None:
    click.echo(f"  {name}:")
    if not tasks:
        click.echo("     [no tasks queued]")
    for t in tasks:
        click.echo(f"     [{t.prio:3}] {_task_text(t)}")


def _print_runqueue(rq: Runqueue, online: bool) -> None:
    click.echo(f"CPU {rq.cpu} RUNQUEUE: {rq.address:016x}{'' if online else '  (offline)'}")
    click.echo(f"  CURRENT: {_task_text(rq.curr)}")
    click.echo(f"  CLOCK: {rq.clock}  CLOCK_TASK: {rq.clock_task}  NR_RUNNING: {rq.nr_running} "
               f"(cfs {rq.cfs_nr_running}, rt {rq.rt_nr_running}, dl {rq.dl_nr_running})")
    if rq.stop:
        _print_class("STOP", rq.stop)
    _print_class("RT PRIO_ARRAY", rq.rt)
    _print_class("DL RB_ROOT", rq.dl)
    _print_class("CFS RB_ROOT", rq.cfs)
    for reason in rq.truncated:
        click.echo(f"  (walk stopped early: {reason})")


def _print_runqueues(table: RunqueueTable) -> None:
    for i, rq in enumerate(table.runqueues):
        if i:
            click.echo()
        _print_runqueue(rq, rq.cpu in table.online)


commands: list[click.Command] = [dev_command, irq_command, timer_command, runq_command]
