"""kcrash.cli.locks: a file that is not a dump is a one-line error; the text (deadlocks, lock-ups,
blocked tasks with their owners and chains, owners' stacks) and JSON of an analysis."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcrash import model
from kcrash.analysis import locks as analysis_locks
from kcrash.cli import locks as cli_locks
from kcrash.cli import main
from support.locks_sample import abba_waits, task_row

TRACE = model.Trace(
    (model.Frame(0, 0xFFFFFFFF81000010, 0, "__mutex_lock", 0x10, None, "__mutex_lock+0x10/0x40", True, "call"),), None
)


def _analysis() -> model.LockAnalysis:
    a, b, holder = task_row(174, "kcrash_abba_a"), task_row(175, "kcrash_abba_b"), task_row(146, "kcrash_holder", "S")
    wa, wb = abba_waits(a, b, TRACE, "__mutex_lock+0x10/0x40", a_stack=0xFFFFC90000001E00)
    ws = model.LockWait(
        task_row(149, "kcrash_wait_sem"),
        "semaphore",
        0xFFFFFFFFC021C830,
        "kcrash_test_sem",
        None,
        None,
        (149,),
        None,
        "a semaphore records no owner (count 0)",
        (149,),
        "__down_common",
        TRACE,
    )
    wr = model.LockWait(
        task_row(148, "kcrash_wait_rws"),
        "rwsem",
        0xFFFFFFFFC021C160,
        "kcrash_test_held_rwsem",
        "read",
        None,
        (148,),
        holder,
        None,
        (148, 146),
        "rwsem_down_read_slowpath",
        TRACE,
    )
    deadlock = model.Deadlock((wa, wb))
    waits = (wr, ws, wa, wb)
    return model.LockAnalysis(
        analysis_locks.why_it_hung((deadlock,), (), waits),
        (deadlock,),
        (),
        waits,
        (model.TaskTrace(holder, TRACE),),
        (),
    )


@pytest.fixture
def analysed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    @contextlib.contextmanager
    def opened(path: str, **_: object) -> Iterator[object]:
        yield object()

    monkeypatch.setattr(cli_locks, "opened_target", opened)
    monkeypatch.setattr(analysis_locks, "analyze_locks", lambda prog: _analysis())
    path = tmp_path / "vmcore"
    path.write_bytes(b"x")
    return str(path)


def test_not_a_dump_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "vmcore"
    path.write_bytes(b"not a dump")
    code = main(["locks", str(path)])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1


def test_text(analysed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["locks", analysed]) == 0
    out = capsys.readouterr().out
    assert out.startswith("WHY IT HUNG\n  AB-BA deadlock: kcrash_abba_a (pid 174) waits for mutex kcrash_test_mutex_b")
    assert (
        '    PID 174 "kcrash_abba_a" [D] waits for mutex ffffffffc021c1c0 (kcrash_test_mutex_b), '
        'owned by PID 175 "kcrash_abba_b" [D]'
    ) in out
    assert "rwsem ffffffffc021c160 (kcrash_test_held_rwsem) for read" in out
    assert "148 -> 146" in out and "174 -> 175 -> 174" in out
    assert "a semaphore records no owner (count 0)" in out
    assert out.index("DEADLOCKS") < out.index("BLOCKED TASKS") < out.index("OWNERS NOT BLOCKED THEMSELVES")
    assert '  PID 146 "kcrash_holder" [S]\n    #0  __mutex_lock+0x10/0x40' in out


def test_json(analysed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["locks", analysed, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [w["task"]["comm"] for w in doc["deadlocks"][0]["waits"]] == ["kcrash_abba_a", "kcrash_abba_b"]
    assert doc["waits"][0]["mode"] == "read" and doc["waits"][0]["owner"]["pid"] == 146
