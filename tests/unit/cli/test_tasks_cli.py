"""kcrash.cli.tasks: argument errors of foreach/waitq/task are one line and exit 2 before a dump is opened;
the ps time format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kcrash.cli import main, tasks
from kcrash.cli.analyze import print_backtraces
from kcrash.cli.tasks import _filter_words, _hms
from kcrash.errors import CliError
from kcrash.model import TaskRow, TaskTraceDetail, Trace


@pytest.fixture
def dump(tmp_path: Path) -> str:
    path = tmp_path / "vmcore"
    path.write_bytes(b"not a dump")
    return str(path)


@pytest.mark.parametrize(("args", "message"), [
    (["foreach", "{dump}", "1", "2"], "exactly one command"),
    (["foreach", "{dump}", "bt", "vm"], "exactly one command"),
    (["foreach", "{dump}", "bt", "-k", "-u"], "exclude each other"),
    (["foreach", "{dump}", "ps", "-s", "XX"], "unknown task state 'XX'"),
    (["waitq", "{dump}", "0xzz"], "invalid wait queue"),
])
def test_usage_errors(dump: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([a.format(dump=dump) for a in args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_filter_words() -> None:
    command, f = _filter_words(["UN", "bt", "7", "0xffff888003a10000", "sh", "kernel"], ("RU",), False, False)
    assert command == "bt"
    assert (f.states, f.pids, f.tasks, f.comms, f.kernel) == (
        frozenset("DR"), frozenset({7}), frozenset({0xFFFF888003A10000}), frozenset({"sh"}), True)
    assert _filter_words(["ps"], (), False, True)[1].kernel is False
    with pytest.raises(CliError):
        _filter_words(["ps", "user", "kernel"], (), False, False)


def test_run_time_format() -> None:
    assert _hms(None) == "?"
    assert _hms(3_723 * 10**9 + 5) == "01:02:03"
    assert _hms((2 * 86400 + 3600) * 10**9) == "2:01:00:00"


def test_foreach_bt_prints_as_bt_does(capsys: pytest.CaptureFixture[str]) -> None:
    traces = [TaskTraceDetail(TaskRow(pid, 1, pid, 0, 0xFFFF888004259840 + pid, "D", f"t{pid}", False),
                              Trace((), None), (), None) for pid in (42, 43)]
    for as_json in (False, True):
        print_backtraces(traces, as_json)
        bt = capsys.readouterr().out
        tasks._print_bt(traces, as_json)
        assert capsys.readouterr().out == bt and "t42" in bt and "t43" in bt
    assert json.loads(bt)[1]["task"]["pid"] == 43
