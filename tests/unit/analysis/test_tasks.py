"""kcrash.analysis.tasks on a synthetic kernel: waitq's kinds, task members, parentage, children, times."""

from __future__ import annotations

import pytest

from kcrash.analysis import tasks
from kcrash.errors import TypeLookupError, ValidationError
from kcrash.model import TaskRow
from support.wait_kernel import INIT_TASK, TEXT, Kernel


def _kernel() -> tuple[Kernel, int, int, int]:
    k = Kernel()
    init = k.task(1, b"init", times=(10, 11, 12, 13, 14))
    kthreadd = k.task(2, b"kthreadd", flags=tasks.PF_KTHREAD, state=1)
    sh = k.task(7, b"sh", parent=init, state=2, prio=100, times=(100, 150, 1, 2, 999))
    return k, init, kthreadd, sh


def test_wait_queue_by_type_and_by_entries() -> None:
    k, init, kthreadd, sh = _kernel()
    wq = k.wait_queue([(sh, TEXT), (init, TEXT + 0x40)])
    typed = tasks.wait_queue(k.prog, wq, k.prog.type("wait_queue_head_t"))
    told = tasks.wait_queue(k.prog, wq)
    assert (typed.kind, typed.decided_by, told.kind, told.decided_by) == (
        "wait_queue_head",
        "type",
        "wait_queue_head",
        "entries",
    )
    assert typed.waiters == told.waiters
    assert [(w.task, w.pid, w.comm, w.func) for w in told.waiters] == [
        (sh, 7, "sh", "default_wake_function"),
        (init, 1, "init", "autoremove_wake_function"),
    ]
    swq = k.swait_queue([kthreadd])
    found = tasks.wait_queue(k.prog, swq)
    assert (found.kind, [(w.pid, w.func) for w in found.waiters]) == ("swait_queue_head", [(2, None)])


def test_a_completion_is_its_simple_wait_queue() -> None:
    k, _, _, sh = _kernel()
    comp = k.swait_queue([sh], completion=True)
    found = tasks.wait_queue(k.prog, comp, k.prog.type("struct completion"))
    assert (found.address, found.kind, [w.comm for w in found.waiters]) == (comp + 8, "swait_queue_head", ["sh"])
    # untyped: the list at comp (done, lock) is no ring; the completion's wait is taken instead
    untyped = tasks.wait_queue(k.prog, comp)
    assert (untyped.address, untyped.kind, untyped.decided_by, [w.comm for w in untyped.waiters]) == (
        comp + 8,
        "swait_queue_head",
        "entries",
        ["sh"],
    )


def test_private_that_is_no_task_and_non_queues() -> None:
    k, _, _, sh = _kernel()
    # an epoll-like entry: its own wake function, private not a task
    found = tasks.wait_queue(k.prog, k.wait_queue([(0x1234, TEXT)]))
    assert [(w.task, w.pid, w.comm) for w in found.waiters] == [(0x1234, None, None)]
    assert tasks.wait_queue(k.prog, k.wait_queue([])).decided_by == "empty"
    # a ring whose entries hold neither tasks nor functions
    bogus = k.wait_queue([(0x1234, 0x5678)])
    with pytest.raises(ValidationError, match="not a wait queue"):
        tasks.wait_queue(k.prog, bogus)
    with pytest.raises(ValidationError, match="is not a wait queue"):
        tasks.wait_queue(k.prog, sh, k.prog.type("struct task_struct"))


def test_a_damaged_queue_ends_with_a_reason() -> None:
    k, init, _, sh = _kernel()
    wq = k.wait_queue([(sh, TEXT), (init, TEXT)])
    first = int.from_bytes(bytes(k.prog.read(wq + 8, 8)), "little")
    second = int.from_bytes(bytes(k.prog.read(first, 8)), "little")
    k.u64(second, first)  # the last entry points back at the first
    found = tasks.wait_queue(k.prog, wq, k.prog.type("wait_queue_head_t"))
    assert [w.pid for w in found.waiters] == [7, 1] and "cycle" in (found.truncated or "")


def test_wait_queue_at_expressions() -> None:
    k, _, _, sh = _kernel()
    wq = k.wait_queue([(sh, TEXT)])
    assert [w.pid for w in tasks.wait_queue_at(k.prog, f"{wq:#x}").waiters] == [7]
    assert tasks.wait_queue_at(k.prog, f"(wait_queue_head_t *){wq:#x}").decided_by == "type"
    assert tasks.wait_queue_at(k.prog, f"*(wait_queue_head_t *){wq:#x}").decided_by == "type"


def test_task_members() -> None:
    k, _, _, sh = _kernel()
    found = tasks.task_members(k.obj(sh), ["pid", "comm", "prio", "sched_info.last_arrival", "sched_info"])
    assert [(m.name, m.text, m.value) for m in found[:4]] == [
        ("pid", "7", 7),
        ("comm", '"sh"', "sh"),
        ("prio", "100", 100),
        ("sched_info.last_arrival", "999", "0x3e7"),  # 64-bit values are "0x..." (JSON rule)
    ]
    assert found[4].value == {"last_arrival": "0x3e7"} and ".last_arrival = 999," in found[4].text
    assert tasks.task_members(k.obj(sh), ["prio"], radix=16)[0].text == "0x64"
    (whole,) = tasks.task_members(k.obj(sh))
    assert whole.name == "task_struct" and whole.value["pid"] == 7 and whole.text.startswith("{\n\t.pid = 7,")
    with pytest.raises(TypeLookupError, match=r"no member 'sched_info\.nope'"):
        tasks.task_members(k.obj(sh), ["sched_info.nope"])


def test_parentage_and_children() -> None:
    k, init, kthreadd, sh = _kernel()
    assert [r.pid for r in tasks.task_parentage(k.prog, k.obj(sh))] == [0, 1, 7]
    assert [r.pid for r in tasks.task_parentage(k.prog, k.obj(INIT_TASK))] == [0]
    children, truncated = tasks.task_children(k.prog, k.obj(INIT_TASK))
    assert ([r.pid for r in children], truncated) == ([1, 2], None)
    assert [r.comm for r in tasks.task_children(k.prog, k.obj(init))[0]] == ["sh"]
    assert tasks.task_children(k.prog, k.obj(kthreadd))[0] == ()
    # a parent loop that never reaches init_task ends where a task repeats
    k.u64(init + 72, sh)
    assert [r.pid for r in tasks.task_parentage(k.prog, k.obj(sh))] == [1, 7]


def test_times() -> None:
    k, init, _, sh = _kernel()
    rows = [TaskRow(1, 0, 1, 0, init, "R", "init", False), TaskRow(7, 1, 7, 0, sh, "D", "sh", False)]
    got = tasks.task_times(k.prog, rows)
    assert [(t.start_time, t.start_boottime, t.utime, t.stime, t.last_arrival) for t in got] == [
        (10, 11, 12, 13, 14),
        (100, 150, 1, 2, 999),
    ]
    assert all(t.run_time is None for t in got)  # no timekeeper in this kernel


def test_parse_states() -> None:
    assert tasks.parse_states("RU,UN") == frozenset("RD")
    assert tasks.parse_states("un, I") == frozenset("DI")
    with pytest.raises(ValueError, match="unknown task state 'XX'"):
        tasks.parse_states("XX")


def test_select_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    k, init, kthreadd, sh = _kernel()
    rows = tuple(
        TaskRow(p, 0, p, 0, a, s, c, False)
        for p, a, s, c in (
            (0, INIT_TASK, "R", "swapper/0"),
            (1, init, "S", "init"),
            (2, kthreadd, "S", "kthreadd"),
            (7, sh, "D", "sh"),
        )
    )
    monkeypatch.setattr(tasks.triage, "task_rows", lambda prog: (rows, None))

    def pids(**kw: object) -> list[int]:
        return [r.pid for r in tasks.select_tasks(k.prog, tasks.TaskFilter(**kw))[0]]  # type: ignore[arg-type]

    assert pids() == [0, 1, 2, 7]
    assert pids(states=frozenset("D")) == [7]
    assert pids(kernel=True) == [0, 2] and pids(kernel=False) == [1, 7]
    assert pids(pids=frozenset({7}), comms=frozenset({"init"})) == [1, 7]
    assert pids(tasks=frozenset({kthreadd}), states=frozenset("S")) == [2]
