"""kcrash.oops.stream and parser: report line numbers (1-based, as ``grep -n``) next to the offsets (issue 22)."""

from __future__ import annotations

import io

from kcrash.oops import iter_reports, parse, parse_all

_OOPS = ("[    7.415695] kernel BUG at /b/6.12.118+deb12-amd64-x.build/kcrash_test.c:274!\n"
         "[    7.416993] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
         "[    7.419841] RIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]\n"
         "[    7.426524] Call Trace:\n"
         "[    7.426524]  kcrash_test_level2+0x65/0x80 [kcrash_test]\n"
         "[    7.427134] ---[ end trace 0000000000000000 ]---\n")


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_parse_gives_the_line_of_the_oops_line_and_of_the_last_line() -> None:
    log = "[    0.0] booting\n" * 10 + _OOPS + "[    8.0] after\n"
    rep = parse(log)
    assert rep is not None
    assert rep.start_line == 11 == _line_of(log, rep.start_pos)
    assert log.splitlines()[rep.start_line - 1].endswith("kcrash_test.c:274!")
    assert rep.end_line == _line_of(log, rep.end_pos) and rep.start_line < rep.end_line <= log.count("\n") + 1


def test_every_report_of_a_log_has_its_own_lines_whatever_the_order_of_the_calls() -> None:
    log = ("x\n" * 3 + _OOPS) * 3
    reports = parse_all(log)  # each BUG, and its "Oops:" line as a follow-up report
    assert [r.start_line for r in reports] == [_line_of(log, r.start_pos) for r in reports]
    assert [r.start_line for r in reports if "BUG" in r.title] == [4, 13, 22]
    assert [r.end_line for r in reports] == [_line_of(log, r.end_pos) for r in reports]
    again = parse(log, reports[2].start_pos)  # a fresh scan, then an earlier offset
    assert again is not None and again.start_line == 13


def test_stream_lines_count_the_text_dropped_before_the_window() -> None:
    # Over 1 MiB of filler: the window drops text before the crash, the line numbers still count it.
    filler = "[    1.000000] nothing to see here, just a long line of boot chatter\n" * 40000
    log = filler + _OOPS
    (rep,) = list(iter_reports(io.BytesIO(log.encode())))
    assert (rep.start_pos, rep.start_line) == (len(filler), 40001)
    assert rep.end_line == _line_of(log, rep.end_pos)
