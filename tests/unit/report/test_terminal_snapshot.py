"""Snapshot of the whole terminal report at a fixed width (plain: a StringIO console, no colour).
``pytest --update-golden`` rewrites tests/fixtures/report/*.txt; review the diff."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kcrash.model import CrashReport
from kcrash.report.terminal import make_console, render_report

SNAPSHOTS = Path(__file__).resolve().parents[2] / "fixtures" / "report"


@pytest.mark.parametrize("width", [100, 60])
def test_terminal_report_snapshot(report: CrashReport, width: int, update_golden: bool) -> None:
    out = io.StringIO()
    render_report(report, make_console(out, width=width, color=False))
    text = out.getvalue()
    path = SNAPSHOTS / f"terminal-{width}.txt"
    if update_golden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; run pytest --update-golden and review"


def test_snapshot_shows_every_section(report: CrashReport) -> None:
    text = (SNAPSHOTS / "terminal-100.txt").read_text(encoding="utf-8")
    for heading in (
        "SIGNATURE: kc1-0123456789abcdef",
        "Crashing context",
        "Backtrace of the crashed thread",
        "Disassembly around the faulting IP",
        "Log (last 2 lines)",
        "Tasks: 4",
        "Blocked (D state) tasks",
        "Modules: 1",
        "Memory",
        "Top slab caches",
        "Memory regions of PID 1: 3",
        "Dump",
        "Notes",
    ):
        assert heading in text, heading
    assert "=> ffffffffc021b009  0f0b" in text
    assert 'COMMAND: "kworker/0:1"' in text and "nu\\xff\\xfe\\x01<b>" not in text  # hostile names are in ps only
    assert "\x01" not in text and "\x1b" not in text
