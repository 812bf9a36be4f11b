"""The live command interpreter is a cmd.Cmd: aliases and ``-`` in names reach the same do_* method,
an empty line does nothing (cmd.Cmd would repeat the last command), unknown commands and bad quoting
are one-line CliErrors, ``detach`` ends the loop."""

from __future__ import annotations

import cmd
import json
from typing import Any

import pytest

from kcrash.cli.live import _Repl
from kcrash.errors import CliError
from support.jsonout import assert_json_output


class _Session:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.breakpoints: list[Any] = []

    def cont(self, timeout: float | None = None) -> None:
        self.calls.append(("cont", timeout))

    def step(self) -> None:
        self.calls.append(("step", None))

    def delete(self, n: int) -> None:
        self.calls.append(("delete", n))

    def detach(self, keep_stopped: bool | None = None) -> None:
        self.calls.append(("detach", keep_stopped))


def _repl() -> tuple[_Repl, _Session, list[str]]:
    out: list[str] = []
    session = _Session()
    return _Repl(session, False, out.append), session, out  # type: ignore[arg-type]


def test_is_a_cmd_and_dispatches_aliases_and_hyphens() -> None:
    repl, session, out = _repl()
    assert isinstance(repl, cmd.Cmd)
    for line in ("c 5", "cont 1", "continue", "si", "next-instruction", "stepi", "d 3 4", "", "   "):
        repl.run(line)
    assert session.calls == [("cont", 5), ("cont", 1), ("cont", None), ("step", None), ("step", None),
                             ("step", None), ("delete", 3), ("delete", 4)]
    assert out.count("stopped (timeout)") == 6


def test_help_lists_the_commands() -> None:
    repl, _, out = _repl()
    repl.run("help")
    assert out[0].startswith("commands: ") and "next-instruction" not in out[0]
    assert {"break", "continue", "detach", "watch", "p"} <= set(out[0][len("commands: "):].split(", "))


@pytest.mark.parametrize(("line", "message"), [("frobnicate 1", "unknown live command 'frobnicate'"),
                                               ("foo.bar", "unknown live command 'foo.bar'"),
                                               ('p "abc', "cannot read live command")])
def test_bad_lines_are_one_line_errors(line: str, message: str) -> None:
    repl, session, _ = _repl()
    with pytest.raises(CliError, match=message) as info:
        repl.run(line)
    assert "\n" not in str(info.value) and session.calls == []


def test_detach_stops_the_loop() -> None:
    repl, session, _ = _repl()
    repl.run("q --keep-stopped")
    assert repl.done and session.calls == [("detach", True)]
    assert repl.onecmd(repl.precmd("")) is False


def test_json_records_follow_the_live_schema() -> None:
    # --json: one record per line by `kcrash schema live`; register values are "0x…" strings, small or not
    session = _Session()
    session.registers = lambda: {"rip": 0xFFFFFFFF81000000, "rax": 0, "eflags": 0x246}  # type: ignore[attr-defined]
    out: list[str] = []
    repl = _Repl(session, True, out.append)  # type: ignore[arg-type]
    for line in ("regs", "continue 1", "info"):
        repl.run(line)
    records = [json.loads(line) for line in out]
    assert records == [{"rip": "0xffffffff81000000", "rax": "0x0", "eflags": "0x246"}, {"stopped": "timeout"}, []]
    for record in records:
        assert_json_output("live", record)
