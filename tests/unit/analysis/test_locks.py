"""kcrash.analysis.locks without a dump: the frame that names a wait (rwsem before semaphore, a
completion inside synchronize_rcu is an RCU grace period), owner chains (a cycle ends them),
deadlock cycles found once from their lowest pid, lock-up panics, and the 'Why it hung' sentences."""

from __future__ import annotations

import pytest

from kcrash.analysis.locks import _wait_kind, _with_chains, find_deadlocks, is_hang, why_it_hung
from kcrash.report import model


def _row(pid: int, comm: str, state: str = "D") -> model.TaskRow:
    return model.TaskRow(pid=pid, ppid=2, tgid=pid, cpu=0, task=0xFFFF888000000000 + pid * 0x1000, state=state,
                         comm=comm, active=False)


def _frames(*names: str) -> tuple[model.Frame, ...]:
    return tuple(model.Frame(i, 0xFFFFFFFF81000000 + i, 0, n, 0x10, None, f"{n}+0x10/0x40", True, "call")
                 for i, n in enumerate(names))


def _wait(task: model.TaskRow, owner: model.TaskRow | None, lock: int, symbol: str, kind: str = "mutex"
          ) -> model.LockWait:
    return model.LockWait(task, kind, lock, symbol, None, None, (task.pid,), owner, None, (), "__mutex_lock",
                          model.Trace((), None))


@pytest.mark.parametrize(("names", "kind"), [
    (("__schedule", "schedule", "schedule_preempt_disabled", "__mutex_lock.constprop.0", "f"), "mutex"),
    (("__schedule", "schedule", "rwsem_down_read_slowpath", "down_read_killable", "f"), "rwsem"),
    (("__schedule", "schedule_timeout", "__down_common", "down_killable", "f"), "semaphore"),
    (("__schedule", "schedule_timeout", "__wait_for_common", "wait_for_completion_killable", "f"), "completion"),
    (("__schedule", "schedule_timeout", "__wait_for_common", "wait_for_completion", "__wait_rcu_gp",
      "synchronize_rcu", "f"), "rcu"),
    (("__schedule", "io_schedule", "folio_wait_bit_common", "filemap_fault"), "page"),
])
def test_wait_kind_from_frames(names: tuple[str, ...], kind: str) -> None:
    found = _wait_kind(_frames(*names))
    assert found is not None and found[0] == kind


def test_no_wait_frame() -> None:
    assert _wait_kind(_frames("__schedule", "schedule", "do_nanosleep", "hrtimer_nanosleep")) is None
    # "down" alone is a semaphore, but downgrade_write is not a wait
    assert _wait_kind(_frames("downgrade_write", "f")) is None


def test_abba_cycle_is_one_deadlock_starting_at_the_lowest_pid() -> None:
    a, b, c, holder = _row(175, "b"), _row(174, "a"), _row(200, "c"), _row(146, "holder", "S")
    waits = [_wait(a, b, 0x1000, "mutex_a"), _wait(b, a, 0x2000, "mutex_b"), _wait(c, holder, 0x3000, "held")]
    deadlocks = find_deadlocks(waits)
    assert len(deadlocks) == 1
    assert [w.task.pid for w in deadlocks[0].waits] == [174, 175]
    chained = {w.task.pid: w.chain for w in _with_chains(waits)}
    assert chained == {175: (175, 174, 175), 174: (174, 175, 174), 200: (200, 146)}
    why = why_it_hung(deadlocks, (), waits)
    assert why[0] == ("AB-BA deadlock: a (pid 174) waits for mutex mutex_b held by b (pid 175); "
                      "b (pid 175) waits for mutex mutex_a held by a (pid 174)")
    assert why[1:] == ("c (pid 200) [D] waits for mutex held, held by holder (pid 146)",)


def test_three_task_cycle_and_a_chain_into_it() -> None:
    t1, t2, t3, t4 = _row(1, "t1"), _row(2, "t2"), _row(3, "t3"), _row(4, "t4")
    waits = [_wait(t1, t2, 1, "l2"), _wait(t2, t3, 2, "l3"), _wait(t3, t1, 3, "l1"), _wait(t4, t1, 4, "l1")]
    deadlocks = find_deadlocks(waits)
    assert [[w.task.pid for w in d.waits] for d in deadlocks] == [[1, 2, 3]]
    assert why_it_hung(deadlocks, (), waits)[0].startswith("deadlock of 3 tasks: t1 (pid 1) waits for mutex l2")
    assert {w.task.pid: w.chain for w in _with_chains(waits)}[4] == (4, 1, 2, 3, 1)


def test_lockup_sentences() -> None:
    spin = model.Lockup(1, _row(1, "init", "R"), "spinlock", "native_queued_spin_lock_slowpath", 0xFFFFFFFFC021C968,
                        "kcrash_test_lock", None, "a qspinlock records no holder", model.Trace((), None))
    busy = model.Lockup(0, _row(1, "init", "R"), "busy", "kcrash_test_do_softlockup", None, None, None, None,
                        model.Trace((), None))
    assert why_it_hung((), (spin, busy), ()) == (
        "CPU 1, init (pid 1), spins on spinlock kcrash_test_lock in native_queued_spin_lock_slowpath; "
        "holder: a qspinlock records no holder",
        "CPU 0, init (pid 1), is stuck in kcrash_test_do_softlockup")


@pytest.mark.parametrize(("message", "hang"), [
    ("Kernel panic - not syncing: hung_task: blocked tasks", True),
    ("Kernel panic - not syncing: softlockup: hung tasks", True),
    ("Kernel panic - not syncing: Hard LOCKUP", True),
    ("Kernel panic - not syncing: Fatal exception", False),
    (None, False),
])
def test_is_hang(message: str | None, hang: bool) -> None:
    assert is_hang(message) is hang
