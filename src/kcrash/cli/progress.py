"""
kcrash.cli.progress
===================

The progress line of the dump writers (``kcrash collect vmcore``, ``kcrash dump convert``), in the
manner of makedumpfile's ``Copying data : [ 45.3 %]`` lines: one line on stderr rewritten in place
with the percentage, pages done of pages to write, the input rate in MB/s (pages × page size per
second) and the time left. Drawn only on a terminal and when not asked to be quiet; never on a pipe
or a log file, which get nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

__all__ = ["format_progress", "progress_lines"]

_EVERY = 0.2  # seconds between redraws (makedumpfile redraws about once a second)


def format_progress(label: str, done: int, total: int, seconds: float, page_size: int = 4096) -> str:
    """Return one progress line: ``LABEL : [ 45.3 %] 1,234/2,725 pages  87.1 MB/s  eta: 2s``."""
    percent = 100.0 * done / total if total else 100.0
    rate = done * page_size / seconds / 1e6 if seconds > 0 else 0.0
    left = (total - done) * seconds / done if done and total > done else 0.0
    return (f"{label} : [{percent:5.1f} %] {done:,}/{total:,} pages  {rate:6.1f} MB/s  "
            f"eta: {left:.0f}s")


@contextmanager
def progress_lines(label: str, *, quiet: bool = False, page_size: int = 4096,
                   stream: TextIO | None = None) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(done, total)`` callback drawing :func:`format_progress` lines on
    ``stream`` (stderr), or None when ``quiet`` or the stream is not a terminal."""
    out = stream if stream is not None else sys.stderr
    if quiet or not out.isatty():
        yield None
        return
    start = time.monotonic()
    drawn, last = 0.0, ""

    def update(done: int, total: int) -> None:
        nonlocal drawn, last
        now = time.monotonic()
        if now - drawn < _EVERY and done < total:
            return
        drawn = now
        last = format_progress(label, done, total, now - start, page_size)
        out.write("\r" + last)
        out.flush()

    try:
        yield update
    finally:
        if last:
            out.write("\n")
            out.flush()
