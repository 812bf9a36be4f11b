"""The live session's task list and ps rows come from the sched helpers: every thread, a damaged
list ends with a reason instead of looping, and the state is ``__state`` read as the helpers read it."""

from __future__ import annotations

from typing import Any

import pytest

from kcrash.analysis.live import (
    _KERNEL_BINDERS,
    KernelBinder,
    kernel_binder_or_none,
    list_tasks,
    live_program,
    task_row,
)
from kcrash.errors import MissingDebugInfoError
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


class _Client:
    # the stub's two vCPU threads and their registers (QEMU numbers threads from 1)
    def __init__(self) -> None:
        self.selected = "01"

    def thread_ids(self) -> list[str]:
        return ["01", "02"]

    def select_thread(self, thread: str) -> None:
        self.selected = thread

    def read_registers(self) -> dict[str, int]:
        return {"rip": 0xFFFFFFFF81000000 + int(self.selected, 16), "rsp": 0xFFFFC90000004000}


class _Session:
    def __init__(self, binder: object) -> None:
        self.binder = binder
        self.client = _Client()
        self.thread = "01"


def _bound(prog: object) -> tuple[Any, KernelBinder]:
    # a KernelBinder as attach_kernel makes one, without a stub behind it
    binder = object.__new__(KernelBinder)
    binder.prog = prog  # type: ignore[assignment]
    session = _Session(binder)
    _KERNEL_BINDERS[session] = binder  # type: ignore[index]
    return session, binder


def test_a_sessions_kernel_binder_is_found_without_a_downcast() -> None:
    session, binder = _bound(Kernel().prog)
    assert kernel_binder_or_none(session) is binder
    session.binder = object()  # replaced (e.g. by an address-only binder): no kernel binder now
    assert kernel_binder_or_none(session) is None
    assert kernel_binder_or_none(_Session(binder)) is None  # never registered for that session
    with pytest.raises(MissingDebugInfoError, match="no kernel symbols and types"):
        live_program(session)


def test_live_program_gives_a_non_kernel_memory_program_the_vcpus_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    # The vCPUs' registers used to be set only when the program's memory was a KernelMemory; a live
    # Program over any other reader had no CPUs, so its running tasks could not unwind from them.
    monkeypatch.setattr("kcrash.analysis.live.load_modules", lambda prog: ())  # the synthetic kernel has no modules
    k = Kernel()
    session, _ = _bound(k.prog)
    prog = live_program(session, orc=False)  # type: ignore[arg-type]
    assert prog is k.prog and prog.live
    assert [(c.cpu, c.prstatus.registers["rip"] if c.prstatus else None) for c in prog.cpus] == \
        [(0, 0xFFFFFFFF81000001), (1, 0xFFFFFFFF81000002)]
    assert session.client.selected == "01"  # the stopped thread is selected again
