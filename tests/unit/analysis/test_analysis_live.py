"""The live session's task list and ps rows come from the sched helpers: every thread, a damaged
list ends with a reason instead of looping, and the state is ``__state`` read as the helpers read it."""

from __future__ import annotations

from kcrash.analysis.live import list_tasks, task_row
from kcrash.helpers.linux.sched import task_state
from support.task_kernel import INIT_TASK, Kernel


def _kernel() -> tuple[Kernel, list[int]]:
    k = Kernel()
    a1, a2 = k.task(1, 1, b"init", state=1), k.task(2, 1, b"init-thread", state=2)
    b = k.task(3, 3, b"kworker/0:1", state=0x402)
    k.ring(INIT_TASK + 32, [a1 + 32, b + 32])
    k.group([a1, a2])
    k.group([b])
    return k, [a1, a2, b]


def test_live_rows_are_every_thread_with_its_state_bits() -> None:
    k, (a1, a2, b) = _kernel()
    walk = list_tasks(k.prog)
    rows = [task_row(t) for t in walk]
    assert rows == [
        {"pid": 1, "tgid": 1, "state": 1, "comm": "init", "task": a1},
        {"pid": 2, "tgid": 1, "state": 2, "comm": "init-thread", "task": a2},
        {"pid": 3, "tgid": 3, "state": 0x402, "comm": "kworker/0:1", "task": b},
    ]
    assert walk.truncated is None
    assert [task_state(k.obj(t)) for t in (a1, a2, b)] == [1, 2, 0x402]


def test_a_cycle_in_a_thread_list_ends_the_live_walk_with_a_reason() -> None:
    k = Kernel()
    c1, c2 = k.task(10, 10, b"a"), k.task(11, 10, b"b")
    k.group([c1, c2])
    k.u64(c2 + 48, c1 + 48)  # the second thread points back to the first, never to the head
    k.ring(INIT_TASK + 32, [c1 + 32])
    walk = list_tasks(k.prog)
    assert [int(t.pid) for t in walk] == [10, 11]
    assert walk.truncated is not None and "cycle" in walk.truncated
