"""``kcrash live -x CMD`` with a stand-in session: every number or address a live command takes
follows kcrash.cli.params' rule; garbage is one ``kcrash: error:`` line (exit status 2), never a
traceback; ``--script`` errors show the script's own frames only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kcrash.cli import main


class _Session:
    # The few LiveSession methods the commands under test call; records them.
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.breakpoints: list[Any] = []
        self.binder = None

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.calls.append(("exit", None))

    def _bp(self, spec: str, length: int) -> Any:
        return SimpleNamespace(number=1, kind="write", address=0x1000, length=length, spec=spec, enabled=True,
                               hits=0, is_watchpoint=True)

    def break_at(self, spec: str, **kw: Any) -> Any:
        self.calls.append(("break", spec))
        return self._bp(spec, 1)

    def watch(self, spec: str, *, length: int | None = None, **kw: Any) -> Any:
        self.calls.append(("watch", (spec, length)))
        return self._bp(spec, length or 8)

    def delete(self, n: int) -> None:
        self.calls.append(("delete", n))

    def enable(self, n: int) -> None:
        self.calls.append(("enable", n))

    def disable(self, n: int) -> None:
        self.calls.append(("disable", n))

    def cont(self, timeout: float | None = None) -> None:
        self.calls.append(("cont", timeout))

    def metrics(self) -> dict[str, int]:
        return {}


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> _Session:
    fake = _Session()
    monkeypatch.setattr("kcrash.cli.live.attach_kernel", lambda *a, **kw: fake)
    return fake


def _live(capsys: pytest.CaptureFixture[str], *commands: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    args = ["live", "127.0.0.1:1234", *extra]
    for c in commands:
        args += ["-x", c]
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", [
    "delete abc", "delete 1 x", "enable 1.5", "disable -1", "watch x --len zz", "watch x --len", "continue soon",
    "c -1", "log many", "break 0xq", "watch 0x12g", "p \"unbalanced", "break schedule if (",
])
def test_garbage_is_one_line(session: _Session, capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = _live(capsys, command)
    assert code == 2, err
    assert "Traceback" not in out + err
    assert err.startswith("kcrash: error: ") and err.count("\n") == 1, err


def test_good_forms(session: _Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _live(capsys, "delete 2 0x3", "enable 4", "disable 5", "watch x --len 0x10", "watch y --len 4",
                         "continue 0.5", "c", "break ffffffff81000000", "break schedule+0x10", "watch &init_task.pid")
    assert code == 0, err
    assert session.calls == [("delete", 2), ("delete", 3), ("enable", 4), ("disable", 5), ("watch", ("x", 16)),
                             ("watch", ("y", 4)), ("cont", 0.5), ("cont", None), ("break", "0xffffffff81000000"),
                             ("break", "schedule+0x10"), ("watch", ("&init_task.pid", None)), ("exit", None)]


def test_script_error_shows_only_the_script_frames(session: _Session, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "s.py"
    script.write_text("def f():\n    return session.nope\n\nf()\n")
    code, _, err = _live(capsys, extra=("--script", str(script)))
    assert code == 1
    lines = err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert [line for line in lines if line.lstrip().startswith("File ")] == [
        f'  File "{script}", line 4, in <module>', f'  File "{script}", line 2, in f']
    assert lines[-1] == "kcrash: error: AttributeError: '_Session' object has no attribute 'nope'"
    assert "kcrash/" not in err
    script.write_text("x = (\n")
    code, _, err = _live(capsys, extra=("--script", str(script)))
    assert code == 1 and err.startswith("kcrash: error: SyntaxError:") and err.count("\n") == 1
