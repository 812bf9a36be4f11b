"""
kcrash.oops.stream
==================

Parsing logs that may be huge or hostile, in bounded memory: :func:`iter_reports` reads a binary stream
in chunks (bytes are decoded as latin-1, so any input decodes and offsets stay byte offsets), throws
away text that holds no crash (keeping nothing but a short tail), and runs :func:`~kcrash.oops.parser.parse`
on windows of a few MiB around crash lines. Report offsets and line numbers are shifted to the stream's. A report that
would need more than one window of text is cut at the window end (it is still returned).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

from kcrash.errors import OopsParseError
from kcrash.oops.model import OopsReport
from kcrash.oops.parser import first_crash_line, iter_parse
from kcrash.oops.patterns import REPORT_START_IGNORES

__all__ = ["decode_log", "iter_reports", "iter_reports_in_file", "read_log"]

_CHUNK: Final = 1 << 20
#: Text kept after the first crash line of a window before it is parsed.
_WINDOW_AFTER: Final = 4 << 20
#: Reports starting in the last part of a window are left for the next window.
_MARGIN: Final = 1 << 20
_KEEP_TAIL: Final = 64 << 10
_FOLLOWUP_LINES: Final = 400


def decode_log(data: bytes) -> str:
    """Bytes → text, one character per byte (never fails; NUL and invalid UTF-8 are kept as is)."""
    return data.decode("latin-1")


def read_log(path: Path) -> str:
    """The whole log file as text (for small files; use :func:`iter_reports_in_file` for big ones)."""
    try:
        return decode_log(path.read_bytes())
    except OSError as exc:
        raise OopsParseError(f"{path}: {exc.strerror or exc}") from exc


def _shift(rep: OopsReport, base: int, base_line: int) -> OopsReport:
    return dataclasses.replace(rep, start_pos=rep.start_pos + base, end_pos=rep.end_pos + base,
                               skip_pos=rep.skip_pos + base, start_line=rep.start_line + base_line,
                               end_line=rep.end_line + base_line)


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


class _Window:
    # The text currently held, its offset in the stream, the number of lines dropped before it, and
    # whether the stream has ended.

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.text, self.base, self.base_line, self.eof = stream, "", 0, 0, False

    def fill(self, size: int) -> None:
        while not self.eof and len(self.text) < size:
            chunk = self.stream.read(_CHUNK)
            if not chunk:
                self.eof = True
            self.text += decode_log(chunk)

    def drop(self, upto: int) -> None:
        self.base += upto
        self.base_line += self.text.count("\n", 0, upto)
        self.text = self.text[upto:]


def _is_followup(text: str, rep: OopsReport, prev: OopsReport | None) -> bool:
    # "invalid opcode: 0000", "Kernel panic - not syncing: Fatal exception", "---[ end ... ]---" and
    # repeated titles shortly after a report belong to that report.
    if prev is None or prev.start_pos > rep.start_pos:
        return False
    if text.count("\n", prev.start_pos, rep.start_pos) > _FOLLOWUP_LINES:
        return False
    line = text[rep.start_pos:rep.skip_pos]
    return rep.title == prev.title or "---[ end " in line or any(r.found_in(line) for r in REPORT_START_IGNORES)


def _parse_window(win: _Window, crash: int, distinct: bool) -> Iterator[OopsReport]:
    win.fill(crash + _WINDOW_AFTER)
    text = win.text
    cut = len(text) if win.eof else _line_start(text, max(len(text) - _MARGIN, crash + 1))
    resume = cut
    prev: OopsReport | None = None
    for rep in iter_parse(text):
        if rep.start_pos >= cut:
            break
        resume = max(cut, min(rep.skip_pos + 1, len(text)))
        if distinct and _is_followup(text, rep, prev):
            continue
        prev = rep
        yield _shift(rep, win.base, win.base_line)
    win.drop(max(resume, 1) if not win.eof else len(text))


def iter_reports(stream: BinaryIO, distinct: bool = True) -> Iterator[OopsReport]:
    """Every crash report in a binary stream, in order, in bounded memory. With ``distinct``, the
    follow-up oops lines of a report (its ``invalid opcode``/``Kernel panic - not syncing`` lines, its
    ``---[ end trace`` line, a repeat of its title within a few hundred lines) are not reported again."""
    win = _Window(stream)
    while True:
        win.fill(_CHUNK)
        if not win.text:
            return
        # At the end of the stream the window is parsed whole whatever the first crash line is (it only
        # sizes the window), so the parser's own search finds it: no separate scan of the text.
        crash = 0 if win.eof else first_crash_line(win.text)
        if crash is not None:
            yield from _parse_window(win, crash, distinct)
            continue
        if win.eof:
            return
        keep = _line_start(win.text, max(len(win.text) - _KEEP_TAIL, 0))
        win.drop(keep if keep > 0 else len(win.text))


def iter_reports_in_file(path: Path, distinct: bool = True) -> Iterator[OopsReport]:
    """Every crash report in the file at ``path`` (see :func:`iter_reports`)."""
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise OopsParseError(f"{path}: {exc.strerror or exc}") from exc
    with stream:
        yield from iter_reports(stream, distinct)

