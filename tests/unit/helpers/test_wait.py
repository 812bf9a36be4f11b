"""kcrash.helpers.linux.wait on a synthetic kernel: wait queues and simple wait queues."""

from __future__ import annotations

from kcrash.helpers.linux.wait import (
    swait_active,
    swait_for_each_task,
    waitqueue_active,
    waitqueue_for_each_entry,
    waitqueue_for_each_task,
)
from kcrash.types.object import Object
from support.wait_kernel import TEXT, Kernel


def _head(k: Kernel, type_name: str, address: int) -> Object:
    return Object(k.prog, k.prog.pointer_type(type_name), address)


def test_waitqueue_entries_and_tasks_in_queue_order() -> None:
    k = Kernel()
    a, b = k.task(5, b"a"), k.task(6, b"b")
    wq = _head(k, "wait_queue_head_t", k.wait_queue([(b, TEXT), (a, TEXT + 0x40)]))
    assert waitqueue_active(wq)
    entries = list(waitqueue_for_each_entry(wq))
    assert [int(e.private) for e in entries] == [b, a] and [int(e.func) for e in entries] == [TEXT, TEXT + 0x40]
    assert [int(t.pid) for t in waitqueue_for_each_task(wq)] == [6, 5]


def test_empty_queues_are_inactive() -> None:
    k = Kernel()
    assert not waitqueue_active(_head(k, "wait_queue_head_t", k.wait_queue([])))
    assert not swait_active(_head(k, "struct swait_queue_head", k.swait_queue([])))


def test_swait_tasks_and_a_cycle_ends_the_walk() -> None:
    k = Kernel()
    a, b = k.task(5, b"a"), k.task(6, b"b")
    head = k.swait_queue([a, b])
    swq = _head(k, "struct swait_queue_head", head)
    assert swait_active(swq)
    assert [int(t) for t in swait_for_each_task(swq)] == [a, b]
    # the second entry's next points back at the first: two tasks, then the walk stops
    first = int.from_bytes(k.memory[head + 8 - k.prog.symbols.address_of("_stext"):][:8], "little")
    second = int.from_bytes(k.memory[first - k.prog.symbols.address_of("_stext"):][:8], "little")
    k.u64(second, first)
    assert [int(t) for t in swait_for_each_task(swq)] == [a, b]


def test_exports_documented_with_an_example() -> None:
    from kcrash.helpers.linux import wait

    for name in wait.__all__:
        doc = getattr(wait, name).__doc__
        assert doc and ">>>" in doc, name
