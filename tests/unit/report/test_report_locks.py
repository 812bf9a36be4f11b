"""The report's "Why it hung" section (kcrash.model.LockAnalysis) in the three renderers: at the top
of the terminal report (after the verdict), as an HTML block whose PIDs link to the task backtraces
and whose task names are escaped, and in JSON valid against the shipped schema; absent when the
report has no lock analysis."""

from __future__ import annotations

import dataclasses
import io
import json

import jsonschema
import pytest

from kcrash import model
from kcrash.report.html import render_html
from kcrash.report.json import render_json, schema
from kcrash.report.terminal import make_console, render_report
from support.locks_sample import abba_waits, spin_lockup, task_row

HOSTILE = "<i>x</i>&\"'"
TRACE = model.Trace(
    (
        model.Frame(
            0,
            0xFFFFFFFF81000010,
            0xFFFFC90000013800,
            "__mutex_lock",
            0x10,
            None,
            "__mutex_lock+0x10/0x6f0",
            True,
            "call",
        ),
    ),
    None,
)


_BASE = 0xFFFF888005000000


def _row(pid: int, comm: str, state: str = "D") -> model.TaskRow:
    return task_row(pid, comm, state, _BASE)


def _locks() -> model.LockAnalysis:
    a, b = _row(174, "kcrash_abba_a"), _row(175, HOSTILE)
    wa, wb = abba_waits(a, b, TRACE, "__mutex_lock+0x10/0x6f0")
    spin = spin_lockup(TRACE, _BASE)
    why = (
        "AB-BA deadlock: kcrash_abba_a (pid 174) waits for mutex kcrash_test_mutex_b held by ...",
        "CPU 1, init (pid 1), spins on spinlock kcrash_test_lock",
    )
    return model.LockAnalysis(why, (model.Deadlock((wa, wb)),), (spin,), (wa, wb), (), ())


@pytest.fixture
def hung(report: model.CrashReport) -> model.CrashReport:
    return dataclasses.replace(report, locks=_locks())


def _terminal(report: model.CrashReport) -> str:
    out = io.StringIO()
    render_report(report, make_console(out, width=200, color=False))
    return out.getvalue()


def test_terminal_why_it_hung_follows_the_verdict(hung: model.CrashReport, report: model.CrashReport) -> None:
    text = _terminal(hung)
    assert text.index("CRASHING FUNCTION") < text.index("Why it hung") < text.index("System")
    assert "  AB-BA deadlock: kcrash_abba_a (pid 174)" in text
    assert "Deadlock #1: PID: 175" in text and "CPU 1: PID: 1" in text
    assert "__mutex_lock+0x10/0x6f0" in text.split("Why it hung")[1]
    assert "Why it hung" not in _terminal(report)


def test_html_why_it_hung_links_and_escapes(hung: model.CrashReport, report: model.CrashReport) -> None:
    page = render_html(hung)
    block = page[page.index('id="why"') : page.index('id="oops"')]
    assert '<a class="task-link" href="#bt-ffff8880050ae000">174</a>' in block
    assert "&lt;i&gt;x&lt;/i&gt;&amp;" in block and HOSTILE not in block
    assert "ffffffffc021c968 (kcrash_test_lock)" in block and "a qspinlock records no holder" in block
    assert "174 → 175 → 174" in block
    assert 'id="why"' not in render_html(report)


def test_json_why_it_hung_is_valid(hung: model.CrashReport) -> None:
    doc = json.loads(render_json(hung))
    jsonschema.validate(doc, schema(), cls=jsonschema.Draft202012Validator)
    assert doc["locks"]["deadlocks"][0]["waits"][1]["task"]["comm"] == HOSTILE
    assert doc["locks"]["lockups"][0]["symbol"] == "kcrash_test_lock"
