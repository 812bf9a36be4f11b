"""The parser's one scan over oops-header lines (issue 22): the first crash line counts a replayed
header, a report never starts at one, and a report ends at the last header line that is not
replayed (the same scan, run from the end of the log)."""

from __future__ import annotations

from kcrash.oops.parser import contains_crash, first_crash_line, parse, parse_all

WARN = "WARNING: CPU: 0 PID: 1 at foo.c:1 bar+0x1/0x2\n"
REPLAY = "** replaying previous printk message **\n"


def test_a_replayed_header_is_a_crash_line_but_starts_no_report() -> None:
    bug = "BUG: spinlock bad magic on CPU#0, swapper/0\n"
    log = "noise\n" + bug + REPLAY + WARN + " foo+0x1/0x2\n"
    assert first_crash_line(log) == len("noise\n") and contains_crash(log)
    rep = parse(log)
    assert rep is not None and rep.start_pos == log.index(WARN) and rep.title.startswith("WARNING")


def test_a_report_ends_at_the_last_header_line_not_replayed() -> None:
    log = WARN + "x\n" + WARN + REPLAY + "tail\n"
    reports = parse_all(log)
    assert [(r.start_pos, r.end_pos) for r in reports] == [(0, len(WARN) - 1)]


def test_reports_end_at_the_last_header_line_and_a_log_without_one_has_none() -> None:
    log = WARN + "[ 1.0] eth0\n" + WARN + "more\n" + WARN.replace("WARNING", "XWARN")
    second = len(WARN) + len("[ 1.0] eth0\n")
    assert [(r.start_pos, r.end_pos) for r in parse_all(log)] == [(0, second + len(WARN) - 1),
                                                                   (second, second + len(WARN) - 1)]
    assert first_crash_line("nothing here\n") is None and parse("nothing here\n") is None
