"""
kcrash.analysis.search
======================

What ``kcrash search`` needs beyond :mod:`kcrash.memory.search`: the address space of a task's user
half (its ``mm->pgd``, ``include/linux/mm_types.h``) and the bounds of the user and kernel halves
of this kernel's paging mode. The scan itself is :func:`kcrash.memory.search.search_virtual`.
"""

from __future__ import annotations

from kcrash.errors import KcrashError, SymbolNotFoundError
from kcrash.helpers.linux.sched import find_task_or_none
from kcrash.memory.layout import PageTables
from kcrash.types.program import Program

__all__ = ["kernel_half", "task_page_tables", "user_half"]


def user_half(levels: int) -> tuple[int, int]:
    """``[0, TASK_SIZE_MAX]``-ish: the user half of the canonical space for 4- or 5-level paging.

    >>> user_half(4)
    (0, 140737488355328)
    """
    return 0, 1 << (56 if levels == 5 else 47)


def kernel_half(levels: int) -> tuple[int, int]:
    """The kernel half of the canonical space (``0xffff800000000000`` up with 4 levels).

    >>> hex(kernel_half(4)[0])
    '0xffff800000000000'
    """
    return (1 << 64) - (1 << (56 if levels == 5 else 47)), 1 << 64


def task_page_tables(prog: Program, pid: int) -> PageTables:
    """The page tables of task ``pid``'s address space (``task->mm->pgd``, translated to physical).

    :raises SymbolNotFoundError: no such task
    :raises KcrashError: a kernel thread (no ``mm``), or no page tables in this dump

    >>> task_page_tables(prog, 1).root
    """
    if prog.page_tables is None:
        raise KcrashError("this dump has no kernel page tables to reach a task's mm->pgd")
    task = find_task_or_none(prog, pid)
    if task is None:
        raise SymbolNotFoundError(f"no task with PID {pid}")
    mm = int(task.mm)
    if not mm:
        raise KcrashError(f"PID {pid} is a kernel thread: it has no user address space (mm is NULL)")
    pgd = int(prog.object("struct mm_struct", mm).pgd)
    return prog.page_tables_at(prog.memory.translate(pgd))
