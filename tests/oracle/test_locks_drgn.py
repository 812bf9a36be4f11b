"""Oracle for issue 18's lock analysis (``kcrash locks``): kcrash opens each lab dump WITHOUT vmlinux
(kallsyms and BTF from the dump) and is compared with drgn 0.3.0 given the Debian -dbg vmlinux and
the module's .ko:

* HUNG_ABBA (6.12, 6.1): one deadlock, an AB-BA cycle of ``kcrash_abba_a`` and ``kcrash_abba_b``,
  each waiting on the mutex the other owns: the lock addresses equal drgn's
  ``prog["kcrash_test_mutex_a"].address_`` / ``_b``, the owners equal drgn's read of
  ``mutex.owner`` (flag bits masked), and each task is in drgn's ``list_for_each_entry`` of that
  mutex's ``wait_list``;
* the planted waiters (BUG 6.1/6.12/5.10 and the HUNG_ABBA dumps): ``kcrash_wait_mutex`` waits on
  ``kcrash_test_held_mutex`` owned by ``kcrash_holder``, ``kcrash_wait_rwsem`` (for reading) on
  ``kcrash_test_held_rwsem`` whose writer is ``kcrash_holder``, ``kcrash_wait_sem`` on
  ``kcrash_test_sem``, ``kcrash_wait_comp`` on ``kcrash_test_completion``;
* every wait kcrash reports on a mutex, rwsem, semaphore or completion lists the same waiters, in
  order, as drgn's ``list_for_each_entry`` of that lock's wait list, and every D-state task drgn sees
  has a wait;
* SPINLOCKUP 6.12: the CPU the watchdog names spins on ``kcrash_test_lock`` (drgn's address; the
  lock is held in drgn's read), its task is drgn's ``cpu_curr``; no holder (qspinlock records none);
  SOFTLOCKUP 6.12: the CPU and task are drgn's, stuck in ``kcrash_test_do_softlockup``, which drgn's
  stack trace of that task also shows.

On 5.10 the module has no BTF, which the analysis does not need (the lock types are vmlinux's;
the lock names come from the module's kallsyms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash import model
from kcrash.analysis.locks import analyze_locks
from kcrash.analysis.target import open_target
from support.drgn_oracle import KDUMP_READABLE, case_id, drgn_program, skip_lost_slab

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.list import list_for_each_entry  # noqa: E402
from drgn.helpers.linux.pid import for_each_task  # noqa: E402
from drgn.helpers.linux.sched import cpu_curr, task_state_to_char  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

HUNG = [("HUNG_ABBA", "6.12", False), ("HUNG_ABBA", "6.1", False)]
BUG = [("BUG", "6.1", True), ("BUG", "6.12", False), ("BUG", "5.10", True)]
LOCKUPS = [("SPINLOCKUP", "6.12", False), ("SOFTLOCKUP", "6.12", False)]
#: the planted waiters: comm (cut to 15 characters) -> (kind, lock symbol, mode, owner comm or None)
PLANTED = {
    "kcrash_wait_mut": ("mutex", "kcrash_test_held_mutex", None, "kcrash_holder"),
    "kcrash_wait_rws": ("rwsem", "kcrash_test_held_rwsem", "read", "kcrash_holder"),
    "kcrash_wait_sem": ("semaphore", "kcrash_test_sem", None, None),
    "kcrash_wait_com": ("completion", "kcrash_test_completion", None, None),
}
#: an owner word (a signed atomic_long_t) without its flag bits (MUTEX_FLAGS, RWSEM_OWNER_FLAGS_MASK)
OWNER_MASK = (1 << 64) - 8
#: drgn's view of each kind's wait list: (lock type, head member, waiter type, link member)
WAIT_LISTS = {
    "mutex": ("struct mutex", "wait_list", "struct mutex_waiter", "list"),
    "rwsem": ("struct rw_semaphore", "wait_list", "struct rwsem_waiter", "list"),
    "semaphore": ("struct semaphore", "wait_list", "struct semaphore_waiter", "list"),
    "completion": ("struct completion", "wait.task_list", "struct swait_queue", "task_list"),
}


def _ids(case: tuple[Any, ...]) -> str:
    return case_id(case)


def _open(
    case: tuple[Any, ...],
    lab_case: Callable[..., Path],
    lab_vmlinux_dbg: Callable[[str], Path],
    tmp: Path,
) -> tuple[model.LockAnalysis, Any, float]:
    skip_lost_slab(case)
    out = lab_case(case)
    dprog = drgn_program(out, lab_vmlinux_dbg(case[1]))
    prog = open_target(str(out / "vmcore.elf"), tmp)
    try:
        start = time.perf_counter()
        analysis = analyze_locks(prog)
        elapsed = time.perf_counter() - start
    finally:
        prog.close()
    return analysis, dprog, elapsed


@pytest.fixture(scope="module", params=HUNG + BUG + LOCKUPS + KDUMP_READABLE, ids=_ids)
def crash(
    request: pytest.FixtureRequest,
    lab_case: Callable[..., Path],
    lab_vmlinux_dbg: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, model.LockAnalysis, Any, float]:
    analysis, dprog, elapsed = _open(request.param, lab_case, lab_vmlinux_dbg, tmp_path_factory.mktemp("c"))
    return request.param[0], analysis, dprog, elapsed


def _drgn_waiter_tasks(dprog: Any, kind: str, lock: int) -> list[int]:
    lock_type, head, waiter_type, link = WAIT_LISTS[kind]
    obj = drgn.Object(dprog, lock_type, address=lock)
    for member in head.split("."):
        obj = getattr(obj, member)
    return [w.task.value_() for w in list_for_each_entry(waiter_type, obj.address_of_(), link)]


def _pid_of(dprog: Any, task: int) -> int:
    return int(drgn.Object(dprog, "struct task_struct *", value=task).pid)


def test_hung_abba_is_one_deadlock_of_both_threads_and_both_mutexes(
    crash: tuple[str, model.LockAnalysis, Any, float],
) -> None:
    kind, analysis, dprog, _ = crash
    if kind != "HUNG_ABBA":
        assert analysis.deadlocks == (), "only HUNG_ABBA plants a deadlock"
        return
    assert len(analysis.deadlocks) == 1
    waits = {w.task.comm: w for w in analysis.deadlocks[0].waits}
    assert set(waits) == {"kcrash_abba_a", "kcrash_abba_b"}
    # a takes mutex_a and waits for mutex_b; b the other way round
    for comm, wanted, other in (
        ("kcrash_abba_a", "kcrash_test_mutex_b", "kcrash_abba_b"),
        ("kcrash_abba_b", "kcrash_test_mutex_a", "kcrash_abba_a"),
    ):
        wait = waits[comm]
        lock = dprog[wanted]
        assert (wait.kind, wait.symbol, wait.lock) == ("mutex", wanted, lock.address_)
        drgn_owner = lock.owner.counter.value_() & OWNER_MASK
        assert wait.owner is not None and wait.owner.task == drgn_owner and wait.owner.comm == other
        assert wait.task.task in _drgn_waiter_tasks(dprog, "mutex", wait.lock)
    assert any(
        line.startswith("AB-BA deadlock") and "kcrash_test_mutex_a" in line and "kcrash_test_mutex_b" in line
        for line in analysis.why
    )


def test_planted_waiters_wait_on_the_planted_locks(crash: tuple[str, model.LockAnalysis, Any, float]) -> None:
    _, analysis, dprog, _ = crash
    waits = {w.task.comm: w for w in analysis.waits}
    for comm, (lock_kind, symbol, mode, owner) in PLANTED.items():
        wait = waits[comm]
        assert (wait.kind, wait.symbol, wait.mode, wait.lock) == (lock_kind, symbol, mode, dprog[symbol].address_)
        assert (wait.owner.comm if wait.owner else None) == owner, comm
        assert wait.task.task in _drgn_waiter_tasks(dprog, lock_kind, wait.lock)
    holder = waits["kcrash_wait_mut"].owner
    assert holder is not None
    assert holder.task == dprog["kcrash_test_held_mutex"].owner.counter.value_() & OWNER_MASK
    rwsem = dprog["kcrash_test_held_rwsem"]
    assert rwsem.count.counter.value_() & 1, "drgn: the rwsem is writer-locked"
    assert waits["kcrash_wait_rws"].owner == holder and holder.task == rwsem.owner.counter.value_() & OWNER_MASK
    # the owner is not blocked on a lock itself: its stack is shown
    assert [o.task.comm for o in analysis.owners] == ["kcrash_holder"]


def test_every_wait_list_is_drgns(crash: tuple[str, model.LockAnalysis, Any, float]) -> None:
    _, analysis, dprog, _ = crash
    checked = 0
    for wait in analysis.waits:
        if wait.kind in WAIT_LISTS and wait.lock is not None:
            drgn_pids = [_pid_of(dprog, t) for t in _drgn_waiter_tasks(dprog, wait.kind, wait.lock)]
            assert list(wait.waiters) == drgn_pids, (wait.task.comm, wait.kind)
            checked += 1
    assert checked >= len(PLANTED)


def test_every_d_state_task_has_a_wait(crash: tuple[str, model.LockAnalysis, Any, float]) -> None:
    _, analysis, dprog, _ = crash
    drgn_d = {t.value_() for t in for_each_task(dprog) if task_state_to_char(t) == "D"}
    ours = {w.task.task for w in analysis.waits if w.task.state == "D"}
    assert drgn_d and drgn_d == ours


def test_lockups_name_the_spinning_cpu_task_and_lock(crash: tuple[str, model.LockAnalysis, Any, float]) -> None:
    kind, analysis, dprog, _ = crash
    if kind not in ("SPINLOCKUP", "SOFTLOCKUP"):
        assert analysis.lockups == ()
        return
    assert len(analysis.lockups) == 1
    lockup = analysis.lockups[0]
    assert lockup.task.task == cpu_curr(dprog, lockup.cpu).value_()
    drgn_functions = [f.name for f in dprog.stack_trace(cpu_curr(dprog, lockup.cpu))]
    if kind == "SPINLOCKUP":
        lock = dprog["kcrash_test_lock"]
        assert (lockup.kind, lockup.symbol, lockup.lock) == ("spinlock", "kcrash_test_lock", lock.address_)
        assert lock.rlock.raw_lock.locked.value_() != 0, "drgn: the lock is held"
        assert lockup.holder is None and "records no holder" in (lockup.holder_note or "")
        assert "kcrash_test_do_spinlockup" in drgn_functions
        assert any("kcrash_test_lock" in line for line in analysis.why)
    else:
        assert (lockup.kind, lockup.function) == ("busy", "kcrash_test_do_softlockup")
        assert "kcrash_test_do_softlockup" in drgn_functions


def test_the_analysis_is_quick(crash: tuple[str, model.LockAnalysis, Any, float]) -> None:
    assert crash[3] < 10.0, f"{crash[3]:.1f} s"


@pytest.mark.parametrize("case", [HUNG[0], LOCKUPS[0], BUG[1]], ids=_ids)
def test_the_report_says_why_it_hung(
    case: tuple[str, str, bool], lab_crash: Callable[..., Path], tmp_path: Path
) -> None:
    from kcrash.analysis.triage import build_report

    kind, kernel, kaslr = case
    out = lab_crash(kind, kernel, kaslr)
    prog = open_target(str(out / "vmcore.elf"), tmp_path)
    try:
        report = build_report(prog, str(out / "vmcore.elf"))
        direct = analyze_locks(prog)
    finally:
        prog.close()
    if kind == "BUG":  # an oops, not a hang: no "Why it hung"
        assert report.locks is None
        return
    assert report.locks is not None
    assert report.locks.why == direct.why and report.locks.deadlocks == direct.deadlocks
    if kind == "HUNG_ABBA":
        assert report.locks.why[0].startswith("AB-BA deadlock: kcrash_abba_a")
    else:
        assert report.locks.why[0].startswith(
            f"CPU {report.locks.lockups[0].cpu}, init (pid 1), spins on spinlock kcrash_test_lock"
        )


@pytest.mark.parametrize("case", [HUNG[0], BUG[2]], ids=_ids)
def test_the_kdump_file_gives_the_same_analysis(
    case: tuple[str, str, bool], lab_crash: Callable[..., Path], tmp_path: Path
) -> None:
    out = lab_crash(*case)
    analyses = []
    for name in ("vmcore.elf", "vmcore.kdump"):
        prog = open_target(str(out / name), tmp_path)
        try:
            analyses.append(analyze_locks(prog))
        finally:
            prog.close()
    assert analyses[0] == analyses[1] and analyses[0].waits
