"""kcrash.cli.targets: the PID|TASK argument of every analysis command, its one-line errors."""

from __future__ import annotations

import pytest

from kcrash.analysis import triage
from kcrash.cli import targets
from kcrash.cli.targets import find_task
from kcrash.errors import CliError, FaultError, ValidationError


def test_a_task_lookup_that_cannot_read_is_not_called_no_task(monkeypatch: pytest.MonkeyPatch) -> None:
    # PID 1 on a dump missing a page of the task list: the lookup failed, PID 1 is not "0x1, not a task"
    def unreadable(prog: object, value: int) -> None:
        raise FaultError(0xF836AC8, True)

    monkeypatch.setattr(triage, "task_by_pid_or_address_or_none", unreadable)
    with pytest.raises(CliError, match=r"^cannot look up task 1: ") as info:
        find_task(object(), 1)  # type: ignore[arg-type]
    assert "not a task" not in str(info.value)


def test_absent_tasks_and_non_tasks_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(prog: object, value: int) -> object:
        if value == 0xFFFF888000001000:
            raise ValidationError("task_struct.stack is not a stack")
        return None if value == 99 else f"task {value}"

    monkeypatch.setattr(triage, "task_by_pid_or_address_or_none", lookup)
    monkeypatch.setattr(targets, "panic_task_or_none", lambda prog: None)
    assert find_task(object(), 7) == "task 7"  # type: ignore[arg-type,comparison-overlap]
    with pytest.raises(CliError, match=r"^no task with pid 99$"):
        find_task(object(), 99)  # type: ignore[arg-type]
    with pytest.raises(CliError, match=r"^0xffff888000001000 is not a task: task_struct\.stack"):
        find_task(object(), 0xFFFF888000001000)  # type: ignore[arg-type]
    with pytest.raises(CliError, match="no CPU panicked"):
        find_task(object(), None)  # type: ignore[arg-type]
