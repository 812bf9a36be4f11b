"""
kcrash.oops.lines
=================

One console line at a time: its *context* (no timestamp, a plain printk timestamp, or a
``CONFIG_PRINTK_CALLER`` caller id such as ``[ T1234]``/``[  C0]``) and its stripped text. Besides the
printk prefix of syzkaller's console regex, syslog/journal prefixes (``Jan  2 03:04:05 host kernel:``,
ISO-8601 journal timestamps) and ``dmesg -T`` wall-clock timestamps are understood, so a ``journalctl -k``
or ``/var/log/kern.log`` excerpt parses like a serial console. Nothing here looks at several lines.
"""

from __future__ import annotations

import functools
import re
from typing import Final

from kcrash.oops.lazyre import LazyPattern

__all__ = [
    "CONSOLE",
    "classify_line",
    "is_cpu_context",
    "is_task_context",
    "iter_lines",
    "line_context",
    "strip_line",
]

#: Context of a line with a printk timestamp but no caller id.
CONSOLE: Final = "console"

_PRINTK_TAIL: Final = (r"(?:<[0-9]+>)?"
                       r"\[(?: *[0-9]+\.[0-9]+|[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} [0-9]{4})\]"
                       r"(\[ *(?:C|T)[0-9]+\])? ")
_PRINTK_RE: Final = LazyPattern(
    r"^(?:\*\* [0-9]+ printk messages dropped \*\* )?(?:.* login: )?" + _PRINTK_TAIL, re.ASCII)
# The same without the "login: " branch, for the lines that cannot match it (most): its ".*" made every
# line cost a scan to its end and back.
_PRINTK_NO_LOGIN_RE: Final = LazyPattern(
    r"^(?:\*\* [0-9]+ printk messages dropped \*\* )?" + _PRINTK_TAIL, re.ASCII, prefilter=False)
# Its common form alone, a "[seconds.micros]" stamp and maybe a caller id: where this matches, the pattern
# above matches the same way (its optional prefixes cannot match a line starting with "["), and this one
# compiles in a third of the time; the pattern above is compiled for the first line this one misses.
_PRINTK_STAMP_RE: Final = LazyPattern(r"\[ *[0-9]+\.[0-9]+\](\[ *(?:C|T)[0-9]+\])? ", re.ASCII, prefilter=False)
_SYSLOG_RE: Final = LazyPattern(
    r"^(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}"
    r"|[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)"
    r" [^ ]+ kernel(?:\[[0-9]+\])?: ", re.ASCII)
_TASK_RE: Final = LazyPattern(r"\[ *T[0-9]+\]")
_CPU_RE: Final = LazyPattern(r"\[ *C[0-9]+\]")
_SYSLOG: Final = "syslog"


def _split_syslog(line: str) -> tuple[str, str]:
    # Returns (syslog prefix, rest); the prefix is "" for plain console lines.
    if line[:1].isalnum():
        m = _SYSLOG_RE.match(line)
        if m is not None:
            return line[:m.end()], line[m.end():]
    return "", line


def _context(prefix: str, rest: str) -> str:
    if " login: " in rest:
        m = _PRINTK_RE.match(rest)
    else:
        m = _PRINTK_STAMP_RE.match(rest) or _PRINTK_NO_LOGIN_RE.match(rest)
    if m is None:
        return _SYSLOG if prefix else ""
    return m.group(1) if m.group(1) is not None else CONSOLE


def line_context(line: str) -> str:
    """The line's context: ``""``, :data:`CONSOLE`, ``"syslog"`` or the caller id text (``"[ T12]"``)."""
    return _context(*_split_syslog(line))


def is_task_context(context: str) -> bool:
    """True for a ``[ T123]`` caller id."""
    return _TASK_RE.found_in(context)


def is_cpu_context(context: str) -> bool:
    """True for a ``[ C1]`` caller id."""
    return _CPU_RE.found_in(context)


def strip_line(line: str, context: str) -> tuple[str, bool]:
    """Strip the console prefix; returns ``(text, questionable)`` (``?`` frames, ``(unreliable)``)."""
    if not context:
        return line, False
    return _strip(_split_syslog(line)[1], context)


def _strip(line: str, context: str) -> tuple[str, bool]:
    # strip_line on the text after the syslog prefix.
    if context != _SYSLOG:
        start = line.find("] ")
        line = line[start + 2:]
    if "<EOI>" not in line:
        # A "?" frame: " ? " (optionally after a "[<addr>]"); the substring alone decides.
        at = line.find(" ? ")
        if at >= 0:
            return line[at + 2:], True
        if line.endswith(" (unreliable)"):
            return line[:-13], True
    return line, False


@functools.lru_cache(maxsize=1 << 16)
def classify_line(line: str) -> tuple[str, str, bool]:
    """``(context, stripped text, questionable)`` of one line (memoised: logs repeat lines a lot)."""
    prefix, rest = _split_syslog(line)
    ctx = _context(prefix, rest)
    if not ctx:
        return ctx, line, False
    stripped, questionable = _strip(rest, ctx)
    return ctx, stripped, questionable


def iter_lines(text: str, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` offsets of the lines of ``text[start:stop]`` (``end`` is the ``\\n`` or the end)."""
    end_all = len(text) if stop is None else stop
    out: list[tuple[int, int]] = []
    pos = start
    while pos < end_all:
        nl = text.find("\n", pos, end_all)
        nxt = end_all if nl == -1 else nl
        out.append((pos, nxt))
        pos = nxt + 1
    return out
