"""
kcrash.analysis.oops_header
===========================

The oops header of the panic as the console printed it, read from the printk records in the dump:
the oops parser (:mod:`kcrash.oops`) finds the first crash report in the formatted log, and the
records it covers are mapped back to :class:`~kcrash.model.LogLine` s. The header runs from
the report's first line (``kernel BUG at …!``, ``BUG: unable to handle page fault …``,
``WARNING: CPU: …``) through the faulting-IP line (``RIP:`` on x86, ``pc :``/``PC is at``/``NIP``/
``EIP:`` elsewhere); the ``Code:`` line is the first one after it. The user-mode ``RIP:``/``Code:``
that a system call's registers print after the call trace are not taken. Nothing here reads the
dump; see :func:`kcrash.analysis.triage.printk_log` for the records.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kcrash import model
from kcrash.helpers.linux.printk import PrintkRecord, format_record

if TYPE_CHECKING:
    from kcrash.oops import OopsReport

__all__ = ["oops_header"]

# The kernel's __show_regs()/show_regs() faulting-IP line on x86 (RIP:, EIP:), arm64 (pc :),
# arm (PC is at), powerpc (NIP)
_IP_LINE = re.compile(rb"^(?:RIP: |EIP: |pc : |PC is at |NIP:? )")
_CODE_LINE = re.compile(rb"^Code: ")
# arch/x86/kernel/dumpstack.c: show_trace_log_lvl() starts the stack here; the header is above it
_TRACE_LINE = re.compile(rb"^(?:Call Trace:|Call trace:)")
#: a header longer than this has no faulting-IP line (a WARNING without registers, say)
_MAX_HEADER = 24


def oops_header(records: Sequence[PrintkRecord]) -> model.OopsHeader | None:
    """The oops header and ``Code:`` line of the first crash report in ``records`` (the kernel log);
    None when the log holds no crash report.

    >>> oops_header([]) is None
    True
    """
    # lazy: +103 ms CPU to import it after this module (measured, loaded host)
    from kcrash.oops import parse

    starts, text = _offsets(records)
    report = parse(text)
    if report is None:
        return None
    first = _record_at(starts, report.start_pos)
    last = max(first, _record_at(starts, max(report.start_pos, report.end_pos - 1)))
    return _header(records, first, last, report)


def _offsets(records: Sequence[PrintkRecord]) -> tuple[list[int], str]:
    # Where each record's formatted line starts in the formatted log (format_dmesg's text).
    starts, parts, pos = [], [], 0
    for record in records:
        line = format_record(record)
        starts.append(pos)
        parts.append(line)
        pos += len(line)
    return starts, "".join(parts)


def _record_at(starts: list[int], pos: int) -> int:
    return max(0, bisect.bisect_right(starts, pos) - 1)


def _header(records: Sequence[PrintkRecord], first: int, last: int, report: OopsReport) -> model.OopsHeader:
    end = min(last, first + _MAX_HEADER)
    # The registers and Code: line may lie past the report's last oops line: with a capture kernel
    # loaded, oops_end() enters it (crash_kexec) before any "end trace"/panic line, so the last oops
    # line is the "Oops: ..." one. They are looked for up to the call trace within _MAX_HEADER lines.
    reach = min(len(records) - 1, first + _MAX_HEADER)
    stop = next((i for i in range(first, reach + 1) if _TRACE_LINE.match(records[i].text)), reach + 1)
    ip = next((i for i in range(first, stop) if _IP_LINE.match(records[i].text)), None)
    header_end = ip if ip is not None else min(stop, end + 1) - 1
    code = next((i for i in range(header_end + 1, stop) if _CODE_LINE.match(records[i].text)), None)
    lines = tuple(_line(records[i]) for i in range(first, max(first, header_end) + 1))
    return model.OopsHeader(
        lines, None if code is None else _line(records[code]), records[first].seq, records[last].seq
    )


def _line(record: PrintkRecord) -> model.LogLine:
    return model.LogLine(record.seq, record.ts_nsec, record.caller, record.text.decode("utf-8", "backslashreplace"),
                         record.level, record.facility)
