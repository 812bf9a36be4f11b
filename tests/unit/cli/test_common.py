"""kcrash.cli.common.run_user_code: the user's code runs in the namespace given; its errors show the
user's own frames only (no kcrash frames) and end in one ``kcrash: error:`` line."""

from __future__ import annotations

from typing import Any

import pytest

from kcrash.cli.common import run_user_code
from kcrash.errors import CliError, FaultError

_NAME = "<kcrash shell -c>"


def _raise_fault() -> None:
    raise FaultError(0x10)


def test_runs_in_the_namespace() -> None:
    namespace: dict[str, Any] = {"x": 2}
    run_user_code("y = x * 21", namespace, _NAME)
    assert namespace["y"] == 42


def test_error_shows_only_user_frames(capsys: pytest.CaptureFixture[str]) -> None:
    source = "def g():\n    helper()\n\ng()\n"
    with pytest.raises(CliError) as info:
        run_user_code(source, {"helper": _raise_fault}, _NAME)
    assert info.value.exit_code == 1
    assert str(info.value) == "FaultError: cannot read virtual address 0x10: not present"
    err = capsys.readouterr().err
    assert err.splitlines() == ["Traceback (most recent call last):",
                                f'  File "{_NAME}", line 4, in <module>', "    g()",
                                f'  File "{_NAME}", line 2, in g', "    helper()"]


def test_syntax_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(CliError, match=r"^SyntaxError: .*line 1"):
        run_user_code("1 +", {}, _NAME)
    assert capsys.readouterr().err == ""


def test_system_exit_passes_through() -> None:
    with pytest.raises(SystemExit):
        run_user_code("raise SystemExit(3)", {}, _NAME)
