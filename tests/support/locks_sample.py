"""Pieces of lock analyses (kcrash.model.LockAnalysis) shared by the analysis, report and CLI tests:
task rows, the lab's AB-BA mutex pair and the lab's spinlock lock-up on CPU 1."""

from __future__ import annotations

from kcrash import model


def task_row(pid: int, comm: str, state: str = "D", base: int = 0xFFFF888000000000) -> model.TaskRow:
    """A task row of pid ``pid`` (ppid 2, CPU 0, not active) at ``base + pid * 0x1000``."""
    return model.TaskRow(
        pid=pid, ppid=2, tgid=pid, cpu=0, task=base + pid * 0x1000, state=state, comm=comm, active=False
    )


def abba_waits(
    a: model.TaskRow, b: model.TaskRow, trace: model.Trace, where: str, a_stack: int | None = None
) -> tuple[model.LockWait, model.LockWait]:
    """The lab's AB-BA deadlock: ``a`` waits for kcrash_test_mutex_b held by ``b``, ``b`` for
    kcrash_test_mutex_a held by ``a``; both blocked at ``where`` with ``trace``."""
    wa = model.LockWait(
        a, "mutex", 0xFFFFFFFFC021C1C0, "kcrash_test_mutex_b", None, a_stack, (a.pid,), b, None,
        (a.pid, b.pid, a.pid), where, trace,
    )  # fmt: skip
    wb = model.LockWait(
        b, "mutex", 0xFFFFFFFFC021C1E0, "kcrash_test_mutex_a", None, None, (b.pid,), a, None,
        (b.pid, a.pid, b.pid), where, trace,
    )  # fmt: skip
    return wa, wb


def spin_lockup(trace: model.Trace, base: int = 0xFFFF888000000000) -> model.Lockup:
    """CPU 1, init (pid 1), spinning on kcrash_test_lock (a qspinlock records no holder)."""
    return model.Lockup(
        1,
        task_row(1, "init", "R", base),
        "spinlock",
        "native_queued_spin_lock_slowpath",
        0xFFFFFFFFC021C968,
        "kcrash_test_lock",
        None,
        "a qspinlock records no holder",
        trace,
    )
