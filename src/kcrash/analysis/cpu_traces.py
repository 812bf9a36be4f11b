"""
kcrash.analysis.cpu_traces
==========================

What every CPU and every task was doing, for the report: the active task (``cpu_curr``) of every
possible CPU (``__cpu_possible_mask``, include/linux/cpumask.h) with its stack, the panic CPU first,
and every task's stack (a task running on a CPU gets that CPU's trace: its saved context is stale).
A CPU with registers in the dump (an ``NT_PRSTATUS`` note) is unwound from them, as ``bt -a``; a
possible CPU without a note (never brought up, or not saved by the dumper) is unwound from its
active task's saved context. Traces come from :mod:`kcrash.analysis.triage`; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kcrash import model
from kcrash.analysis.triage import cpu_task_row, crashed_trace, task_row, task_trace
from kcrash.errors import KcrashError
from kcrash.helpers.linux.cpumask import for_each_possible_cpu
from kcrash.helpers.linux.sched import cpu_curr
from kcrash.helpers.linux.stack import kernel_unwinder
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["every_cpu_backtrace", "every_task_backtrace", "possible_cpus"]


def possible_cpus(prog: Program) -> list[int]:
    """The possible CPUs, or (without ``__cpu_possible_mask``) the CPUs with registers in the dump.

    >>> possible_cpus(prog)  # doctest: +SKIP
    [0, 1]
    """
    with_notes = range(kernel_unwinder(prog).num_cpus())
    try:
        cpus = list(for_each_possible_cpu(prog))
    except KcrashError:
        return list(with_notes)
    return cpus or list(with_notes)


def every_cpu_backtrace(prog: Program, panic_cpu: int | None) -> tuple[model.CpuBacktrace, ...]:
    """The active task and stack of every possible CPU, ``panic_cpu`` first, then by number.

    >>> [c.cpu for c in every_cpu_backtrace(prog, 1)]  # doctest: +SKIP
    [1, 0]
    """
    cpus = possible_cpus(prog)
    ordered = sorted(cpus, key=lambda cpu: (cpu != panic_cpu, cpu))
    with_notes = kernel_unwinder(prog).num_cpus()
    return tuple(_cpu_backtrace(prog, cpu, cpu == panic_cpu, cpu < with_notes) for cpu in ordered)


def _cpu_backtrace(prog: Program, cpu: int, panic: bool, has_note: bool) -> model.CpuBacktrace:
    if has_note:
        return model.CpuBacktrace(cpu, panic, cpu_task_row(prog, cpu), crashed_trace(prog, cpu), "NT_PRSTATUS")
    try:
        task = cpu_curr(prog, cpu)
        row = task_row(task, {int(task): cpu})
    except KcrashError as exc:
        row = model.TaskRow(
            pid=-1, ppid=-1, tgid=-1, cpu=cpu, task=0, state="?", comm=f"(unreadable: {exc})", active=True
        )
        return model.CpuBacktrace(cpu, panic, row, model.Trace((), f"no registers and no task: {exc}"), "saved")
    return model.CpuBacktrace(cpu, panic, row, task_trace(prog, task), "saved")


def every_task_backtrace(
    prog: Program, rows: Iterable[model.TaskRow], cpus: Sequence[model.CpuBacktrace]
) -> tuple[model.TaskTrace, ...]:
    """The stack of every task of ``rows``: a task active on one of ``cpus`` gets that CPU's trace.

    >>> len(every_task_backtrace(prog, rows, cpus)) == len(rows)  # doctest: +SKIP
    True
    """
    active = {c.task.task: c.trace for c in cpus if c.task.task}
    task_type = prog.pointer_type("struct task_struct")
    return tuple(
        model.TaskTrace(
            row, active[row.task] if row.task in active else task_trace(prog, Object(prog, task_type, row.task))
        )
        for row in rows
    )
