"""
kcrash.oops.checks
==================

Whole-report checks made after the title is known: whether a report is corrupted (a stack-start line
with no frames after it, no stack at all, a timestamp merged into the title), whether the log is
suppressed (known benign or infrastructure failures), and which syzkaller executor crashed.
"""

from __future__ import annotations

import re
from typing import Final

from kcrash.oops.lazyre import LazyPattern
from kcrash.oops.model import Executor
from kcrash.oops.patterns import (
    CORRUPTED_TITLE_RE,
    FRAME_RES,
    RISCV_STACK_START,
    STACK_START_RES,
    SUPPRESSIONS,
    OopsFormat,
)

__all__ = ["find_executor", "is_suppressed", "why_corrupted"]

_EXECUTOR_RE: Final = LazyPattern(r" Comm: syz\.(\d+)\.(\d+) ", re.ASCII)
_LOOKAHEAD: Final = 15


def _stack_has_frames(lines: list[str]) -> bool:
    for line in lines[1:1 + _LOOKAHEAD]:
        if any(r.found_in(line) for r in STACK_START_RES):
            return False
        if "(stack is not available)" in line or any(r.found_in(line) for r in FRAME_RES):
            return True
    return False


def why_corrupted(title: str, report: str, fmt: OopsFormat | None) -> str:
    """The reason ``report`` (stripped, without prefix) looks corrupted, or ``""``."""
    if CORRUPTED_TITLE_RE.found_in(title):
        return "title matches corrupted regexp"
    if fmt is None or fmt.nostack:
        return ""
    has_stack = False
    for key in STACK_START_RES:
        m = key.search(report)
        if m is None:
            continue
        lines = report[m.start():].split("\n", _LOOKAHEAD + 1)  # only the first lines are looked at
        if len(lines) < 4:
            return "call trace is missed"
        if _stack_has_frames(lines):
            has_stack = True
        elif key is not RISCV_STACK_START:
            return "no frames in a stack trace"
    return "" if has_stack else "no stack trace in report"


def is_suppressed(log: str) -> bool:
    """True when the log shows a known infrastructure failure (OOM-killed executor, SIGBUS, …)."""
    return any(r.found_in(log) for r in SUPPRESSIONS)


def find_executor(report: str) -> Executor | None:
    """The ``Comm: syz.P.I`` executor named in the report, if any."""
    m = _EXECUTOR_RE.search(report)
    if m is None:
        return None
    return Executor(int(m.group(1)), int(m.group(2)))
