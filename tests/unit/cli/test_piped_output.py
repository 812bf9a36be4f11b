"""Output that is not a terminal is never wrapped (issue 22, item 8): ``kcrash log DUMP > f`` has one
line per record however long, so grep, diff and ``kcrash oops parse`` read it back."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kcrash.analysis import triage
from kcrash.cli.app import kcrash
from kcrash.helpers.linux.printk import PrintkLog, PrintkRecord
from kcrash.model import LogLine
from kcrash.report.terminal import make_console, render_log

# the shape of the lines rich used to split at 200 columns: the version banner and a Code: line
_BANNER = (
    "Linux version 6.12.118+deb12-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-12 "
    "(Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC "
    "Debian 6.12.118-1~deb12u1 (2026-11-28)"
)
_CODE = "Code: " + " ".join(["90"] * 40) + " <0f> 0b " + " ".join(["cc"] * 30)
_TEXTS = (_BANNER, "Command line: console=ttyS0", _CODE, "x" * 5000)


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "vmcore"
    path.write_bytes(b"not really a dump")
    monkeypatch.setattr("kcrash.cli.dump.open_dump", lambda paths, zero_fill=False: _Handle())
    monkeypatch.setattr(
        triage,
        "dump_log",
        lambda handle: PrintkLog(
            [PrintkRecord(i, i * 1_000_000, text.encode(), 0x80000001, 6, 0, 0) for i, text in enumerate(_TEXTS)], 0
        ),
    )
    return path


class _Handle:
    def close(self) -> None:
        pass


def test_piped_log_has_one_line_per_record(dump: Path) -> None:
    result = CliRunner().invoke(kcrash, ["log", str(dump)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(_TEXTS)
    assert [line.split("] ", 1)[1] for line in lines] == list(_TEXTS)
    assert max(len(line) for line in lines) > 5000
    assert not any(line.endswith(" ") for line in lines)


def test_console_that_is_not_a_terminal_does_not_wrap() -> None:
    out = io.StringIO()
    console = make_console(out)
    assert not console.is_terminal
    render_log([LogLine(0, 0, None, "x" * 3000)], console)
    assert out.getvalue() == f"[    0.000000] {'x' * 3000}\n"


def test_piped_log_keeps_tabs() -> None:
    # as dmesg and ``kcrash dump dmesg`` print it (rich would expand the tab to spaces)
    out = io.StringIO()
    render_log([LogLine(0, 1_000, "T1", "rcu: \tRCU restricting CPUs")], make_console(out), caller=True)
    assert out.getvalue() == "[    0.000001][    T1] rcu: \tRCU restricting CPUs\n"


def test_explicit_width_still_wraps() -> None:
    # snapshots and a terminal ask for a width and get it
    out = io.StringIO()
    console = make_console(out, width=100, color=True)
    render_log([LogLine(0, 0, None, "y" * 150)], console)
    assert len(out.getvalue().splitlines()) > 1


def test_stats_table_on_stderr_is_not_wrapped(dump: Path) -> None:
    result = CliRunner().invoke(kcrash, ["--stats", "log", str(dump)])
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stderr.splitlines()]
    assert lines[0] == "kcrash stats"
    assert re.fullmatch(r"total debug time +\d+\.\d{3} s", lines[-1]), lines
