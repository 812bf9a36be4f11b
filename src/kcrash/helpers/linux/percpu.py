"""
kcrash.helpers.linux.percpu
===========================

Per-CPU variables (``include/linux/percpu-defs.h``) for helper users: :func:`per_cpu`,
:func:`per_cpu_ptr` and :func:`per_cpu_offset` from :mod:`kcrash.types.percpu`, plus
:func:`this_cpu_current`, the ``current`` task of a CPU as the kernel stores it
(``pcpu_hot.current_task`` or ``current_task``). Which CPUs exist is
:mod:`~kcrash.helpers.linux.cpumask`.
"""

from __future__ import annotations

from kcrash.errors import SymbolNotFoundError, TypeLookupError
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu, per_cpu_offset, per_cpu_ptr
from kcrash.types.program import Program

__all__ = ["per_cpu", "per_cpu_offset", "per_cpu_ptr", "this_cpu_current"]


def this_cpu_current(prog: Program, cpu: int) -> Object:
    """``current`` on ``cpu`` (``struct task_struct *``), from the per-CPU variable the kernel reads.

    Since Linux kernel commit e57ef2ed97c1 (v6.2) it is ``pcpu_hot.current_task``; before (and after
    ``pcpu_hot`` was dissolved again) the per-CPU ``current_task``.
    """
    try:
        return per_cpu(prog, "pcpu_hot", cpu).current_task
    except (SymbolNotFoundError, TypeLookupError):
        return per_cpu(prog, "current_task", cpu)
