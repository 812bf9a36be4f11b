"""
kcrash.oops.guilty
==================

The guilty source file of a symbolized report (frames like ``func+0x1/0x2 fs/ext4/inode.c:123``): the
first file that is not generic infrastructure (headers, ``lib/``, allocators, locking, printk, …), then
refined to a deeper path in the same directory when the stack leads there. Used to route a crash to
maintainers. Unsymbolized reports usually have no file and give ``""``.
"""

from __future__ import annotations

import posixpath
import re
from typing import Final

from kcrash.oops.lazyre import Alternation, LazyPattern

__all__ = ["guilty_file"]

# Path characters: syzkaller's [a-zA-Z0-9_\-\./] plus "+", "~", "," and "@", which out-of-tree build
# directories have (Debian's "6.12.118+deb12-amd64", "1~deb12u1"): without them the path was cut there.
_P: Final = r"a-zA-Z0-9_\-\./+~,@"
_N: Final = r"a-zA-Z0-9_\-+~,@"  # in a file name (no "/" or ".")
# The lookbehind only makes the search linear (the leftmost match always starts where a run of path
# characters starts, so it changes no result; without it every position inside a run was retried).
_FILE_RE: Final = LazyPattern(rf"(?<![{_P}])([{_P}]*[{_N}]+\.(c|h)):[0-9]+", re.ASCII,
                              prefilter=False)  # _file_in tests ".c:"/".h:" first
_DEEPER_RE: Final = LazyPattern(rf"^/[{_P}]+/[{_N}]+\.(c|h)$", re.ASCII)
_LINE_IGNORE: Final = LazyPattern(
    r"(hardirqs|softirqs)\s+last\s+(enabled|disabled)|,\s+at:\s+|^\s*#\d+:|^Register r\d+ information", re.ASCII)
_FILE_IGNORE: Final = Alternation((
    r".*\.h", "^lib/.*", "^virt/lib/.*", "^mm/kasan/.*", "^mm/kmsan/.*", "^kernel/kcov.c", "^mm/sl.b.c",
    "^mm/filemap.c", "^mm/folio-compat.c", "^mm/truncate.c", "^mm/memory.c", "^mm/percpu.*", "^mm/vmalloc.c",
    "^mm/page_alloc.c", "^mm/mempool.c", "^mm/util.c", "^kernel/rcu/.*", "^arch/.*/kernel/traps.c",
    "^arch/.*/kernel/unwind.*.c", "^arch/.*/mm/fault.c", "^arch/.*/mm/physaddr.c", "^arch/.*/kernel/stacktrace.c",
    "^arch/.*/kernel/apic/apic.c", "^arch/arm64/kernel/entry.*.c", r"^arch/arm64/kernel/process\.c",
    "^kernel/locking/.*", "^kernel/panic.c", "^kernel/printk/printk.*.c", "^kernel/softirq.c", "^kernel/kthread.c",
    "^kernel/sched/.*.c", "^kernel/stacktrace.c", "^kernel/time/timer.c", "^kernel/workqueue.c", "^net/core/dev.c",
    "^net/core/sock.c", "^net/core/skbuff.c", "^fs/proc/generic.c", "^trusty/", "^drivers/usb/core/urb.c",
    "^arch/.*/lib/crc.*",
), re.ASCII)
_RCU_STALL_STARTS: Final = ("apic_timer_interrupt+0x", "el1h_64_irq+0x", "Exception stack")


def _clean(path: str) -> str:
    # Go's filepath.Clean on a relative path.
    return posixpath.normpath(path) if path else "."


def _file_in(line: str) -> str | None:
    # Cheap pre-check: a match needs ".c:" or ".h:".
    if ".c:" not in line and ".h:" not in line:
        return None
    m = _FILE_RE.search(line)
    return m.group(1) if m is not None else None


def _ignored(path: str, line: str) -> bool:
    return _FILE_IGNORE.found_in(path) or _LINE_IGNORE.found_in(line)


def _first_guilty(lines: list[str]) -> tuple[str, int]:
    guilty = ""
    for i, line in enumerate(lines):
        path = _file_in(line)
        if path is None:
            continue
        if not guilty:
            guilty = path
        if not _ignored(path, line):
            return _clean(path), i + 1
    return guilty, len(lines)


def _guilty_impl(report: str) -> str:
    lines = report.split("\n")
    guilty, pos = _first_guilty(lines)
    deepest = posixpath.dirname(guilty) or "."
    for line in lines[pos:]:
        path = _file_in(line)
        if path is None or _ignored(path, line):
            continue
        clean = _clean(path)
        if clean.startswith(deepest) and _DEEPER_RE.match(clean[len(deepest):]):
            guilty = clean
            deepest = posixpath.dirname(guilty) or "."
    return guilty


def guilty_file(title: str, report: str) -> str:
    """The guilty source file of ``report`` (no prefix lines) with the final ``title``; ``""`` if none."""
    if title.startswith("INFO: rcu detected stall"):
        for marker in _RCU_STALL_STARTS:
            pos = report.find(marker)
            if pos >= 0:
                found = _guilty_impl(report[pos:])
                if found:
                    return found
    return _guilty_impl(report)
