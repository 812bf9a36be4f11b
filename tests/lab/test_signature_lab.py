"""The same crash seen in the serial console and in the vmcore's own dmesg has the same signature."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main

pytestmark = pytest.mark.lab


def _signature(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["oops", "signature", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines, f"no crash found in {path}"
    return lines[0]


@pytest.mark.parametrize("kind", ["BUG", "HUNG_ABBA", "SYSRQ", "NMI"])
def test_console_and_vmcore_dmesg_give_the_same_signature(lab_crash: Callable[..., Path], kind: str,
                                                          tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = lab_crash(kind, "6.12")
    dmesg = tmp_path / "dmesg.txt"
    assert main(["dump", "dmesg", str(out / "vmcore.kdump"), str(dmesg)]) == 0
    capsys.readouterr()
    from_console = _signature(out / "console.log", capsys)
    from_dump = _signature(dmesg, capsys)
    assert from_console.startswith("kc1-")
    assert from_console == from_dump
