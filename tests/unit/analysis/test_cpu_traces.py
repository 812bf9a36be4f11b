"""kcrash.analysis.cpu_traces: every possible CPU's backtrace, the panic CPU first; a possible CPU
without registers in the dump is unwound from its active task's saved context; every task's trace,
the running ones taking their CPU's. The kernel helpers it calls are replaced by stand-ins recording
what was asked (the unwinding itself is tested against drgn in tests/oracle/test_report_cpus_drgn.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from kcrash import model
from kcrash.analysis import cpu_traces
from kcrash.errors import FaultError

TASKS = {0: 0xFFFF888000000000, 1: 0xFFFF888000001000, 2: 0xFFFF888000002000}  # cpu_curr of each CPU


def _row(cpu: int) -> model.TaskRow:
    return model.TaskRow(cpu + 100, 1, cpu + 100, cpu, TASKS[cpu], "R", f"task{cpu}", True)


def _trace(label: str) -> model.Trace:
    return model.Trace((model.Frame(0, 0xFFFFFFFF81000000, 0, label, 0, None, label, True, "call"),), None)


class _Task(int):
    pass


@pytest.fixture
def stubs(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    calls: dict[str, Any] = {"saved": []}
    monkeypatch.setattr(cpu_traces, "kernel_unwinder", lambda prog: SimpleNamespace(num_cpus=lambda: 2))
    monkeypatch.setattr(cpu_traces, "for_each_possible_cpu", lambda prog: iter([0, 1, 2]))
    monkeypatch.setattr(cpu_traces, "cpu_task_row", lambda prog, cpu: _row(cpu))
    monkeypatch.setattr(cpu_traces, "crashed_trace", lambda prog, cpu: _trace(f"regs{cpu}"))
    monkeypatch.setattr(cpu_traces, "cpu_curr", lambda prog, cpu: _Task(TASKS[cpu]))
    monkeypatch.setattr(cpu_traces, "task_row", lambda task, running: _row(running[int(task)]))

    def saved(prog: object, task: object) -> model.Trace:
        calls["saved"].append(int(task))  # type: ignore[call-overload]
        return _trace(f"saved{int(task):x}")  # type: ignore[call-overload]

    monkeypatch.setattr(cpu_traces, "task_trace", saved)
    return calls


def test_panic_cpu_first_and_a_cpu_without_a_note_from_its_saved_context(stubs: dict[str, Any]) -> None:
    cpus = cpu_traces.every_cpu_backtrace(object(), 1)  # type: ignore[arg-type]
    assert [(c.cpu, c.panic, c.registers_from) for c in cpus] == [
        (1, True, "NT_PRSTATUS"),
        (0, False, "NT_PRSTATUS"),
        (2, False, "saved"),
    ]
    assert [c.trace.frames[0].text for c in cpus] == ["regs1", "regs0", f"saved{TASKS[2]:x}"]
    assert cpus[2].task == _row(2) and stubs["saved"] == [TASKS[2]]


def test_no_panic_cpu_keeps_cpu_order(stubs: dict[str, Any]) -> None:
    assert [c.cpu for c in cpu_traces.every_cpu_backtrace(object(), None)] == [0, 1, 2]  # type: ignore[arg-type]


def test_unreadable_cpu_curr_is_a_row_saying_so(stubs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def fault(prog: object, cpu: int) -> object:
        raise FaultError(0xFFFF888000003000)

    monkeypatch.setattr(cpu_traces, "cpu_curr", fault)
    last = cpu_traces.every_cpu_backtrace(object(), 0)[-1]  # type: ignore[arg-type]
    assert last.cpu == 2 and last.task.pid == -1 and "unreadable" in last.task.comm
    assert last.trace.frames == () and last.trace.truncated and "no registers" in last.trace.truncated


def test_possible_cpus_without_the_mask_are_the_cpus_with_notes(
    stubs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(prog: object) -> object:
        raise FaultError(0)

    monkeypatch.setattr(cpu_traces, "for_each_possible_cpu", missing)
    assert cpu_traces.possible_cpus(object()) == [0, 1]  # type: ignore[arg-type]
