"""kcrash.analysis.locks without a dump: the frame that names a wait (rwsem before semaphore, a
completion inside synchronize_rcu is an RCU grace period), owner chains (a cycle ends them),
deadlock cycles found once from their lowest pid, lock-up panics, and the 'Why it hung' sentences."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kcrash import model
from kcrash.analysis import locks
from kcrash.analysis.locks import _wait_kind, _with_chains, find_deadlocks, is_hang, why_it_hung
from support.lock_kernel import THREAD_SIZE, LockKernel
from support.locks_sample import spin_lockup, task_row


def _frames(*names: str) -> tuple[model.Frame, ...]:
    return tuple(
        model.Frame(i, 0xFFFFFFFF81000000 + i, 0, n, 0x10, None, f"{n}+0x10/0x40", True, "call")
        for i, n in enumerate(names)
    )


def _wait(
    task: model.TaskRow, owner: model.TaskRow | None, lock: int, symbol: str, kind: str = "mutex"
) -> model.LockWait:
    return model.LockWait(
        task, kind, lock, symbol, None, None, (task.pid,), owner, None, (), "__mutex_lock", model.Trace((), None)
    )


@pytest.mark.parametrize(
    ("names", "kind"),
    [
        (("__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0", "f"), "mutex"),
        (("__schedule", "schedule", "rwsem_down_read_slowpath", "down_read_killable", "f"), "rwsem"),
        (("__schedule", "schedule_timeout", "__down_common", "down_killable", "f"), "semaphore"),
        (("__schedule", "schedule_timeout", "__wait_for_common", "wait_for_completion_killable", "f"), "completion"),
        (
            (
                "__schedule",
                "schedule_timeout",
                "__wait_for_common",
                "wait_for_completion",
                "__wait_rcu_gp",
                "synchronize_rcu",
                "f",
            ),
            "rcu",
        ),
        (("__schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault"), "page"),
    ],
)
def test_wait_kind_from_frames(names: tuple[str, ...], kind: str) -> None:
    found = _wait_kind(_frames(*names))
    assert found is not None and found[0] == kind


def test_no_wait_frame() -> None:
    assert _wait_kind(_frames("__schedule", "schedule", "do_nanosleep", "hrtimer_nanosleep")) is None
    # "down" alone is a semaphore, but downgrade_write is not a wait
    assert _wait_kind(_frames("downgrade_write", "f")) is None


def test_abba_cycle_is_one_deadlock_starting_at_the_lowest_pid() -> None:
    a, b, c, holder = task_row(175, "b"), task_row(174, "a"), task_row(200, "c"), task_row(146, "holder", "S")
    waits = [_wait(a, b, 0x1000, "mutex_a"), _wait(b, a, 0x2000, "mutex_b"), _wait(c, holder, 0x3000, "held")]
    deadlocks = find_deadlocks(waits)
    assert len(deadlocks) == 1
    assert [w.task.pid for w in deadlocks[0].waits] == [174, 175]
    chained = {w.task.pid: w.chain for w in _with_chains(waits)}
    assert chained == {175: (175, 174, 175), 174: (174, 175, 174), 200: (200, 146)}
    why = why_it_hung(deadlocks, (), waits)
    assert why[0] == (
        "AB-BA deadlock: a (pid 174) waits for mutex mutex_b held by b (pid 175); "
        "b (pid 175) waits for mutex mutex_a held by a (pid 174)"
    )
    assert why[1:] == ("c (pid 200) [D] waits for mutex held, held by holder (pid 146)",)


def test_three_task_cycle_and_a_chain_into_it() -> None:
    t1, t2, t3, t4 = task_row(1, "t1"), task_row(2, "t2"), task_row(3, "t3"), task_row(4, "t4")
    waits = [_wait(t1, t2, 1, "l2"), _wait(t2, t3, 2, "l3"), _wait(t3, t1, 3, "l1"), _wait(t4, t1, 4, "l1")]
    deadlocks = find_deadlocks(waits)
    assert [[w.task.pid for w in d.waits] for d in deadlocks] == [[1, 2, 3]]
    assert why_it_hung(deadlocks, (), waits)[0].startswith("deadlock of 3 tasks: t1 (pid 1) waits for mutex l2")
    assert {w.task.pid: w.chain for w in _with_chains(waits)}[4] == (4, 1, 2, 3, 1)


def test_lockup_sentences() -> None:
    spin = spin_lockup(model.Trace((), None))
    busy = model.Lockup(
        0, task_row(1, "init", "R"), "busy", "kcrash_test_do_softlockup", None, None, None, None, model.Trace((), None)
    )
    assert why_it_hung((), (spin, busy), ()) == (
        "CPU 1, init (pid 1), spins on spinlock kcrash_test_lock in native_queued_spin_lock_slowpath; "
        "holder: a qspinlock records no holder",
        "CPU 0, init (pid 1), is stuck in kcrash_test_do_softlockup",
    )


@pytest.mark.parametrize(
    ("message", "hang"),
    [
        ("Kernel panic - not syncing: hung_task: blocked tasks", True),
        ("Kernel panic - not syncing: softlockup: hung tasks", True),
        ("Kernel panic - not syncing: Hard LOCKUP", True),
        ("Kernel panic - not syncing: Fatal exception", False),
        (None, False),
    ],
)
def test_is_hang(message: str | None, hang: bool) -> None:
    assert is_hang(message) is hang


# -- lock_waits on a synthetic kernel (tests/support/lock_kernel.py), the stacks given as traces ---------------


def _synthetic(monkeypatch: pytest.MonkeyPatch, first_waiter: bool = False) -> LockKernel:
    k = LockKernel(first_waiter=first_waiter)
    # the synthetic kernel has no ORC tables or modules: only the stack size is needed
    monkeypatch.setattr(locks, "kernel_unwinder", lambda prog: SimpleNamespace(thread_size=THREAD_SIZE))
    return k


def _blocked(
    k: LockKernel, task: int, pid: int, comm: str, *names: str, state: str = "D"
) -> tuple[model.TaskRow, model.Trace]:
    row = model.TaskRow(pid, 2, pid, 0, task, state, comm, False)
    frames = tuple(
        model.Frame(i, 0xFFFFFFFF81000000, k.stack_of(task)[0] + 0x100, n, 0, None, n, True, "call")
        for i, n in enumerate(names)
    )
    return row, model.Trace(frames, None)


MUTEX_FRAMES = ("__schedule", "schedule", "__mutex_lock.constprop.0", "f")


def test_lock_waits_find_an_abba_deadlock_on_synthetic_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    k = _synthetic(monkeypatch)
    a, b, w, holder = k.task(174), k.task(175), k.task(149), k.task(146)
    mutex_b = k.lock("mutex", [a], owner=b | 1)  # a waits for b's mutex (a flag bit set)
    mutex_a = k.lock("mutex", [b], owner=a)
    sem = k.lock("semaphore", [w])
    rows_traces = [
        _blocked(k, a, 174, "a", *MUTEX_FRAMES),
        _blocked(k, b, 175, "b", *MUTEX_FRAMES),
        _blocked(k, w, 149, "w", "__schedule", "schedule_timeout", "__down_common", "down", "f"),
        _blocked(k, holder, 146, "holder", "__schedule", "schedule_timeout", "f", state="S"),
    ]
    rows = [r for r, _ in rows_traces]
    waits = {x.task.pid: x for x in locks.lock_waits(k.prog, rows, {r.task: t for r, t in rows_traces})}
    assert sorted(waits) == [149, 174, 175]  # a sleeping task waiting on no lock is not a wait
    assert (waits[174].kind, waits[174].lock, waits[174].owner) == ("mutex", mutex_b, rows[1])
    assert (waits[175].lock, waits[175].owner, waits[175].chain) == (mutex_a, rows[0], (175, 174, 175))
    assert (waits[149].kind, waits[149].lock, waits[149].waiters) == ("semaphore", sem, (149,))
    assert waits[149].owner is None and waits[149].owner_note == "a semaphore records no owner (count 0)"
    deadlocks = find_deadlocks(tuple(waits.values()))
    assert [[x.task.pid for x in d.waits] for d in deadlocks] == [[174, 175]]


def test_lock_waits_on_the_first_waiter_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    k = _synthetic(monkeypatch, first_waiter=True)
    a, holder = k.task(10), k.task(11)
    mutex = k.lock("mutex", [a], owner=holder)
    row, trace = _blocked(k, a, 10, "a", *MUTEX_FRAMES)
    k.u64(k.stack_of(a)[0] + 0x200, mutex)  # the lock pointer saved on the waiter's stack
    owner = model.TaskRow(11, 2, 11, 0, holder, "S", "holder", False)
    (wait,) = locks.lock_waits(k.prog, [row, owner], {a: trace})
    assert (wait.lock, wait.owner, wait.waiters) == (mutex, owner, (10,))
    # without the lock on the stack, the hung-task detector's task->blocker names it
    k.u64(k.stack_of(a)[0] + 0x200, 0)
    k.u64(a + 32, mutex)  # BLOCKER_TYPE_MUTEX
    (wait,) = locks.lock_waits(k.prog, [row, owner], {a: trace})
    assert (wait.lock, wait.owner) == (mutex, owner)


def test_a_page_lock_waiter_names_the_folio(monkeypatch: pytest.MonkeyPatch) -> None:
    k = _synthetic(monkeypatch)
    a = k.task(10)
    folio = 0xFFFFEA0000123400
    queue = k.page_wait(a, folio)
    row, trace = _blocked(k, a, 10, "a", "__schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault")
    (wait,) = locks.lock_waits(k.prog, [row], {a: trace})
    assert (wait.kind, wait.lock, wait.waiter, wait.owner) == ("page", folio, queue, None)
    assert wait.owner_note == "a page lock records no owner"
