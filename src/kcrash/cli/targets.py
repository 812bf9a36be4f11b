"""
kcrash.cli.targets
==================

The ``PID|TASK`` argument of the analysis commands (``vm``, ``task``, ``files``, ``net``, ``bt``
via ``foreach``, ``vtop -c``): :func:`find_task` turns it into the ``struct task_struct *`` it names,
the panic task when it is absent, or a one-line :class:`~kcrash.errors.CliError`. The lookup itself
is :func:`kcrash.analysis.triage.task_by_pid_or_address_or_none`; this module only maps its answers
to command-line errors, once for every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcrash.analysis import triage
from kcrash.errors import CliError, KcrashError, ValidationError
from kcrash.helpers.linux.panic import panic_task_or_none

if TYPE_CHECKING:
    from kcrash.types.object import Object
    from kcrash.types.program import Program

__all__ = ["find_task"]


def find_task(prog: Program, value: int | None) -> Object:
    """The task a ``PID|TASK`` argument names (the panic task when None).

    :param value: a PID or a ``struct task_struct *`` address, as :mod:`kcrash.cli.params` reads it.
    :return: ``struct task_struct *``.
    :raises CliError: no such task, the address is not a task's, or the task list cannot be read.
    """
    if value is None:
        task = panic_task_or_none(prog)
        if task is None:
            raise CliError("no CPU panicked in this dump: give a PID or task address", 1)
        return task
    try:
        task = triage.task_by_pid_or_address_or_none(prog, value)
    except ValidationError as exc:
        raise CliError(str(exc) if str(exc).startswith(f"{value:#x}") else f"{value:#x} is not a task: {exc}",
                       1) from None
    except KcrashError as exc:  # the lookup itself failed (a page of the task list is missing): say so
        raise CliError(f"cannot look up task {value}: {exc}", 1) from None
    if task is None:
        raise CliError(f"no task with pid {value}", 1)
    return task
