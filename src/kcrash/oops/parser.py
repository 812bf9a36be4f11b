"""
kcrash.oops.parser
==================

Find crash reports in console or dmesg text: :func:`contains_crash`, :func:`parse` (the first report
at or after an offset) and :func:`parse_all` (every report, one after another). A report starts at the
first line matching an oops group (:data:`~kcrash.oops.patterns.OOPS_GROUPS`); its text is the lines of
the same context (timestamps, caller ids, interleaved CPUs are sorted out by :mod:`kcrash.oops.lines`),
plus a few prefix lines before it. Titles come from :mod:`kcrash.oops.extract`. Input is ``str``; byte
logs should be decoded as latin-1 so that offsets are byte offsets. Damaged text gives a report flagged
corrupted, never an exception. Reading files and streams is :mod:`kcrash.oops.stream`'s job.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Final

from kcrash.oops.checks import find_executor, is_suppressed, why_corrupted
from kcrash.oops.details import parse_details
from kcrash.oops.extract import Description, extract_description
from kcrash.oops.guilty import guilty_file
from kcrash.oops.lines import CONSOLE, classify_line, is_cpu_context, is_task_context, line_context
from kcrash.oops.model import OopsReport
from kcrash.oops.patterns import INFO_MESSAGES_WITH_STACK, OOPS_GROUPS, REPORT_START_IGNORES, OopsGroup
from kcrash.oops.signature import crash_signature
from kcrash.oops.title import frame_from_title, normalize_title, title_to_type

__all__ = ["contains_crash", "first_crash_line", "iter_parse", "parse", "parse_all"]

_HEADERS: Final = tuple(dict.fromkeys(g.header for g in OOPS_GROUPS))
_REPLAY: Final = "** replaying previous printk message **"
_PANIC: Final = "Kernel panic - not syncing"
_VM_DISCONNECTED: Final = "serialport: VM disconnected."
#: Bounds that keep pathological logs linear: lines looked at before and after the oops line.
_MAX_PREFIX_SCAN: Final = 5000
_MAX_REPORT_LINES: Final = 5000
_MAX_REPORT_BYTES: Final = 4 << 20
_MAX_REPORTS: Final = 100000
#: First block of text indexed for header words; each further block doubles the indexed part.
_FIRST_BLOCK: Final = 1 << 16


class _Hits:
    # Sorted offsets where any of ``needles`` starts in ``text``, found with str.find (one pass of each
    # needle over the text, never repeated) a block at a time, so that a report's forward scan, the
    # search for the next report and the end-of-log scan all share the work (a regex alternation of the
    # ~30 header words re-scanned the rest of the log for each of them, and is slower per byte).

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("horizon", "needles", "pos", "text")

    def __init__(self, text: str, needles: tuple[str, ...]) -> None:
        self.text, self.needles = text, needles
        self.pos: list[int] = []
        self.horizon = 0

    def _extend(self) -> None:
        lo, text = self.horizon, self.text
        hi = min(len(text), lo + max(_FIRST_BLOCK, lo))
        found: set[int] = set()
        for needle in self.needles:
            at = text.find(needle, lo, hi + len(needle) - 1)
            while at >= 0:
                found.add(at)
                at = text.find(needle, at + 1, hi + len(needle) - 1)
        self.pos.extend(sorted(found))
        self.horizon = hi

    def next(self, pos: int) -> int:
        # The first offset >= pos, or -1.
        while True:
            i = bisect.bisect_left(self.pos, pos)
            if i < len(self.pos):
                return self.pos[i]
            if self.horizon >= len(self.text):
                return -1
            self._extend()


class _LineNumbers:
    # 1-based line numbers of offsets in one text, counted on from the last offset asked for (reports
    # are built in order, so a whole log is counted once; an offset before the last one recounts). The
    # starts and the ends of reports each have their own: a flood's reports all end at the log's end.

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("line", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text, self.pos, self.line = text, 0, 1

    def of(self, pos: int) -> int:
        if pos < self.pos:
            self.pos, self.line = 0, 1
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


class _Scan:
    # One log and its header-word indexes, shared by every search made while parsing it. (The records
    # of this module are plain slotted classes: a dataclass costs ~0.4 ms of import per class.)

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_last_oops", "disconnected", "end_lines", "headers", "info", "log", "panic_at", "start_lines")

    def __init__(self, log: str, headers: _Hits, info: _Hits) -> None:
        self.log, self.headers, self.info = log, headers, info
        # Facts about the whole log that every report of it needs, found once per log (a search per
        # report made parse_all quadratic in the number of reports).
        self.panic_at = log.rfind(_PANIC)
        self.disconnected = _VM_DISCONNECTED in log
        self._last_oops: list[tuple[int, int] | None] = []  # filled on first use
        self.start_lines, self.end_lines = _LineNumbers(log), _LineNumbers(log)

    @classmethod
    def of(cls, log: str) -> _Scan:
        return cls(log, _Hits(log, _HEADERS), _Hits(log, INFO_MESSAGES_WITH_STACK))

    def boundary(self, pos: int) -> int:
        # The next oops-header or stack-carrying info word at or after pos, or -1.
        a, b = self.headers.next(pos), self.info.next(pos)
        return a if b < 0 or 0 <= a < b else b

    def last_oops_line(self) -> tuple[int, int] | None:
        # ``(begin, end)`` of the last line of the log that matches an oops group and is not
        # replayed, or None; found once, from the end (each header hit is looked at at most once).
        if not self._last_oops:
            self._last_oops.append(_last_oops_line(self))
        return self._last_oops[0]


def _line_at(log: str, pos: int, base: int) -> tuple[int, int]:
    begin = max(log.rfind("\n", base, pos) + 1, base)
    end = log.find("\n", pos)
    return begin, len(log) if end < 0 else end


def _match_group(line: str) -> OopsGroup | None:
    for group in OOPS_GROUPS:
        if group.header in line and not any(s.found_in(line) for s in group.suppressions):
            return group
    return None


def _replayed(log: str, eol: int) -> bool:
    if eol >= len(log):
        return False
    nxt = log.find("\n", eol + 1)
    return _REPLAY in log[eol + 1:len(log) if nxt < 0 else nxt]


def _oops_lines(log: str, hits: _Hits, base: int, *, reverse: bool = False) -> Iterator[tuple[OopsGroup, int, int]]:
    # Every line at or after base holding an oops header of a group that does not suppress it, as
    # (group, begin, end): from base on, or from the end of the log back with reverse. The one scan
    # over the header hits; each hit is looked at at most once (a line's other hits are skipped).
    if reverse:
        hits.next(len(log))  # index the whole log
    i = len(hits.pos) - 1
    at = (hits.pos[i] if i >= 0 and hits.pos[i] >= base else -1) if reverse else hits.next(base)
    while at >= 0:
        begin, end = _line_at(log, at, base)
        group = _match_group(log[begin:end])
        if group is not None:
            yield group, begin, end
        if reverse:
            i = bisect.bisect_left(hits.pos, begin) - 1  # the hits before this line
            at = hits.pos[i] if i >= 0 and hits.pos[i] >= base else -1
        else:
            at = hits.next(end + 1)


def _last_oops_line(scan: _Scan) -> tuple[int, int] | None:
    lines = _oops_lines(scan.log, scan.headers, 0, reverse=True)
    return next(((begin, end) for _, begin, end in lines if not _replayed(scan.log, end)), None)


def first_crash_line(log: str) -> int | None:
    """The offset of the first line that looks like the start of a crash report, or ``None``."""
    return next((begin for _, begin, _ in _oops_lines(log, _Hits(log, _HEADERS), 0)), None)


def contains_crash(log: str) -> bool:
    """True when some line of ``log`` looks like the start of a crash report."""
    return first_crash_line(log) is not None


def _find_first(scan: _Scan, base: int) -> tuple[OopsGroup, int] | None:
    lines = _oops_lines(scan.log, scan.headers, base)
    return next(((group, begin) for group, begin, end in lines if not _replayed(scan.log, end)), None)


def _prefix_lines(log: str, base: int, start: int, ctx: str) -> list[str]:
    limit = 50 if is_task_context(ctx) else 5
    out: list[str] = []
    pos = start
    for _ in range(_MAX_PREFIX_SCAN):
        if pos <= base or len(out) == limit:
            break
        begin = max(log.rfind("\n", base, pos - 1) + 1, base)
        line = log[begin:pos - 1]
        pos = begin
        ctx1, stripped, questionable = classify_line(line)
        if ctx1 != ctx:
            continue
        if stripped and not questionable:
            out.append(stripped)
    out.reverse()
    return out


class _Collector:
    # The forward pass over the lines from the oops line on (syzkaller's findReport).

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("cpu_traceback", "ctx", "end_pos", "last_end", "length", "min_lines", "parts", "report_end",
                 "second", "skip_text", "text_lines")

    def __init__(self, ctx: str, min_lines: int) -> None:
        self.ctx, self.min_lines = ctx, min_lines
        self.parts: list[str] = []
        self.length = self.report_end = self.end_pos = self.text_lines = self.last_end = 0
        self.second = -1
        self.skip_text = self.cpu_traceback = False

    def boundary(self, log: str, begin: int, end: int, is_oops: bool) -> None:
        line = log[begin:end]
        if _match_group(line) is not None and not _replayed(log, end):
            self.end_pos = end
            if not is_oops and self.second < 0 and not any(r.found_in(line) for r in REPORT_START_IGNORES):
                self.second = begin
        if not is_oops and self.second < 0 and any(m in line for m in INFO_MESSAGES_WITH_STACK):
            self.second = begin

    def take(self, line: str, is_oops: bool) -> bool:
        ctx1, stripped, questionable = classify_line(line)
        if not is_oops and (questionable or (ctx1 != self.ctx and not (
                self.cpu_traceback and is_cpu_context(ctx1)))):
            return False
        self.text_lines += 1
        skip_line = self.skip_text
        if "Disabling lock debugging due to kernel taint" in line:
            skip_line = True
        elif "Sending NMI from CPU" in line:
            self.cpu_traceback = True
        elif (_PANIC in line or "WARNING: possible circular locking dependency detected" in line) and \
                self.text_lines > self.min_lines:
            self.skip_text = skip_line = True
        if not is_oops and skip_line:
            return False
        self.parts.append(stripped + "\n")
        self.length += len(stripped) + 1
        if self.second < 0 or self.ctx not in ("", CONSOLE, "syslog"):
            self.report_end = self.length
        return True


def _collect(scan: _Scan, start: int, ctx: str) -> _Collector:
    log = scan.log
    end_of_oops_line = _line_at(log, start, start)[1]
    min_lines = 16 if "BUG: KMSAN:" in log[start:end_of_oops_line] else 22
    col = _Collector(ctx, min_lines)
    # At most _MAX_REPORT_LINES lines of the first _MAX_REPORT_BYTES, found in place (a copy of that
    # much text per report made a log of many short reports quadratic); a line the byte bound cuts
    # is left out. Once the second report is found, oops lines matter only for end_pos, which is the
    # last oops line of the log, found once per log.
    pos, size = start, len(log)
    stop = min(size, start + _MAX_REPORT_BYTES)
    hit = scan.boundary(start)
    for _ in range(_MAX_REPORT_LINES):
        if pos >= size:
            break
        end = log.find("\n", pos, stop)
        if end < 0:
            if stop < size:
                break
            end = size
        if 0 <= hit <= end:
            col.boundary(log, pos, end, pos == start)
            hit = scan.boundary(end + 1) if col.second < 0 else -1
        if col.take(log[pos:end], pos == start):
            col.last_end = end
        pos = end + 1
    last = scan.last_oops_line()
    if last is not None and last[0] >= start:
        col.end_pos = last[1]
    return col


class _Found:
    # slots: a record as a plain class, not a dataclass: 0.09 vs 0.81 ms CPU to create (bench/RESULTS.md)
    __slots__ = ("desc", "end_pos", "prefix", "report", "text_end")

    def __init__(self, desc: Description, report: str, prefix: list[str], end_pos: int, text_end: int) -> None:
        self.desc, self.report, self.prefix, self.end_pos, self.text_end = desc, report, prefix, end_pos, text_end


def _describe(scan: _Scan, base: int, group: OopsGroup, start: int) -> _Found:
    log = scan.log
    ctx = line_context(log[start:_line_at(log, start, base)[1]])
    col = _collect(scan, start, ctx)
    report = "".join(col.parts)
    desc = extract_description(report[:col.report_end], group)
    if desc.title:
        return _Found(desc, report, _prefix_lines(log, base, start, ctx), col.end_pos, col.last_end)
    raw = log[start:min(max(col.end_pos, start), start + _MAX_REPORT_BYTES)]
    desc = extract_description(raw, group)
    if not desc.title:
        line = log[start:_line_at(log, start, base)[1]]
        desc = Description(line[max(line.find(group.header), 0):], (), None, "")
    return _Found(desc, raw, [], col.end_pos, col.last_end)


def parse(log: str, start: int = 0) -> OopsReport | None:
    """The first crash report in ``log`` at or after offset ``start``, or ``None``."""
    return _parse(_Scan.of(log), start, None)


def _parse(scan: _Scan, start: int, suppressed: bool | None) -> OopsReport | None:
    found = _find_first(scan, start)
    if found is None:
        return None
    group, start_pos = found
    f = _describe(scan, start, group, start_pos)
    return _build(scan, start, start_pos, f, is_suppressed(scan.log) if suppressed is None else suppressed)


def _build(scan: _Scan, base: int, start_pos: int, f: _Found, suppressed: bool) -> OopsReport:
    log = scan.log
    prefix = "".join(p + "\n" for p in f.prefix)
    reason = f.desc.corrupted_reason or why_corrupted(f.desc.title, f.report, f.desc.format)
    if not reason and scan.disconnected:
        reason = "console disconnected (serialport: VM disconnected.)"
    title = normalize_title(f.desc.title)
    nl = log.find("\n", start_pos)
    skip_pos = len(log) if nl < 0 else nl
    details = parse_details(_detail_lines(log, start_pos, max(f.end_pos, skip_pos, f.text_end)))
    frame = frame_from_title(title)
    end_pos = max(f.end_pos, skip_pos)
    return OopsReport(
        title=title, alt_titles=tuple(sorted(normalize_title(a) for a in f.desc.alt_titles)),
        crash_type=title_to_type(f.desc.title), frame=frame,
        guilty_function=frame if f.desc.guilty is None else f.desc.guilty, report=prefix + f.report,
        start_pos=start_pos, end_pos=end_pos, skip_pos=skip_pos, start_line=scan.start_lines.of(start_pos),
        end_line=scan.end_lines.of(end_pos), corrupted=bool(reason),
        corrupted_reason=reason, suppressed=suppressed, panicked=scan.panic_at >= base,
        executor=find_executor(prefix + f.report), context=line_context(log[start_pos:skip_pos]),
        prefix_len=len(prefix), guilty_file=guilty_file(title, f.report),
        signature=crash_signature(title, details.call_trace), details=details)


def _detail_lines(log: str, start: int, end: int) -> list[str]:
    # The report region's lines of the oops line's context, stripped but keeping "?" frames: at most
    # _MAX_REPORT_LINES lines of the first _MAX_REPORT_BYTES (the region may run to the log's end).
    lines = log[start:min(end, start + _MAX_REPORT_BYTES)].split("\n", _MAX_REPORT_LINES)[:_MAX_REPORT_LINES]
    ctx = line_context(lines[0]) if lines else ""
    out: list[str] = []
    for line in lines:
        ctx1, stripped, questionable = classify_line(line)
        if ctx1 != ctx:
            continue
        out.append(" ? " + stripped.lstrip() if questionable else stripped)
    return out


def iter_parse(log: str, start: int = 0) -> Iterator[OopsReport]:
    """Every crash report in ``log`` from ``start`` on, lazily (each search resumes at the end of the
    previous oops line)."""
    suppressed = is_suppressed(log)
    scan = _Scan.of(log)
    for _ in range(_MAX_REPORTS):
        rep = _parse(scan, start, suppressed)
        if rep is None:
            return
        yield rep
        start = rep.skip_pos


def parse_all(log: str) -> list[OopsReport]:
    """Every crash report in ``log``, in order."""
    return list(iter_parse(log))
