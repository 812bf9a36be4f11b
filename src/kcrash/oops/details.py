"""
kcrash.oops.details
===================

Structured fields of one report, read from its stripped lines: the register dump, the faulting
instruction pointer (``RIP:``/``pc :``/``PC is at``/``NIP``), the ``Code:`` bytes, the call-trace frames
(function, offset, size, module, the ``?`` unreliable marker, ``<IRQ>``/``<TASK>``/``<NMI>``/
``<SOFTIRQ>`` sections, source file and ``[inline]`` when symbolized), the taint flags, CPU, PID, comm,
kernel release and hardware name. Read-only text parsing; lines that do not fit are ignored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from kcrash.oops.lazyre import LazyPattern
from kcrash.oops.model import CodeBytes, OopsDetails, Register, TraceFrame

__all__ = ["parse_bug_location", "parse_code", "parse_details", "parse_frame"]

# Compiled on first use, without the literal prefilter: the callers test each line for the literal first
# ("+0x", "<", "race:", "Code:", "PID: ", "Hardware name: "), or every report has such lines (RIP, registers).
_FRAME_RE: Final = LazyPattern(
    r"^\s*(?:\[<?(?:0x)?(?P<addr>[0-9a-f]+)>?\]\s+)*(?P<q>\?\s+)?"
    r"(?P<func>[A-Za-z_$.][\w$.]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
    r"(?:\s+\[(?P<mod>[\w.-]+)(?:\s[^\]]*)?\])?(?:\s+(?P<src>[\w./+~,@-]+:\d+))?(?P<inl>\s+\[inline\])?", re.ASCII,
    prefilter=False)
_INLINE_RE: Final = LazyPattern(
    r"^\s*(?P<func>[A-Za-z_][\w.]*)\s+(?P<src>[\w./+~,@-]+\.[a-zA-Z]+:\d+)\s+\[inline\]\s*$", re.ASCII)
_SECTION_RE: Final = LazyPattern(r"^\s*<(/?)(IRQ|TASK|NMI|SOFTIRQ|EOI|#[A-Z]+)>\s*$", prefilter=False)
_TRACE_START_RE: Final = LazyPattern(r"^\s*(?:Call Trace:|Call trace:|Backtrace:)\s*$", prefilter=False)
_RIP_RE: Final = LazyPattern(
    r"^\s*(?:RIP: (?:[0-9a-f]{4}:)?|pc : |PC is at |NIP:? +|EIP: (?:[0-9a-f]{4}:)?)(?P<rest>.*)$", re.ASCII,
    prefilter=False)
_REG_LINE_RE: Final = LazyPattern(
    r"^\s*(?:[A-Za-z][A-Za-z0-9]{0,5}\s?: ?(?:[0-9a-f]{4}:)?[0-9a-f]{4,16}\s*)+$", re.ASCII, prefilter=False)
_REG_PAIR_RE: Final = LazyPattern(
    r"([A-Za-z][A-Za-z0-9]{0,5})\s?: ?(?:([0-9a-f]{4}):)?([0-9a-f]{4,16})\b", re.ASCII, prefilter=False)
_CODE_RE: Final = LazyPattern(r"^\s*Code: ((?:[<(]?[0-9a-fA-F]{2,8}[>)]?\s*)+)$", re.ASCII, prefilter=False)
# lib/dump_stack.c dump_stack_print_info(): "Kdump: loaded " follows the comm when a capture kernel is loaded
_TASK_LINE_RE: Final = LazyPattern(
    r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>\S+)(?: Kdump: loaded)?"
    r"(?: (?P<taint>Not tainted|Tainted: (?P<flags>[A-Z ]*?)))? +(?P<rel>\S+) #", re.ASCII, prefilter=False)
_HW_RE: Final = LazyPattern(r"Hardware name: (.*?)\s*$", prefilter=False)
# lib/bug.c report_bug(): "kernel BUG at %s:%u!"; kernel/panic.c __warn(): "WARNING: CPU: %d PID: %d at
# %s:%d %pS"; include/asm-generic/bug.h BUG() without a bug table: "BUG: failure at %s:%d/%s()!".
_BUG_AT_RE: Final = LazyPattern(
    r"(?:kernel BUG at |WARNING: CPU: \d+ PID: \d+ at |BUG: failure at )(?P<file>[^\s:]+):(?P<line>\d+)\b",
    re.ASCII, prefilter=False)


@functools.lru_cache(maxsize=1 << 15)
def parse_frame(line: str, section: str = "") -> TraceFrame | None:
    """A :class:`TraceFrame` from one stripped call-trace line, or ``None`` (memoised: the frames are
    immutable, and every report of a log re-reads the trace lines after it)."""
    # Cheap exact pre-check: _FRAME_RE needs "+0x", _INLINE_RE needs "[inline]".
    if "+0x" not in line and "[inline]" not in line:
        return None
    m = _FRAME_RE.match(line)
    if m is None:
        inline = _INLINE_RE.match(line)
        if inline is None:
            return None
        return TraceFrame(inline["func"], section=section, source=inline["src"], inline=True)
    addr = m["addr"]
    return TraceFrame(m["func"], int(m["off"], 16), int(m["size"], 16), m["mod"] or "",
                      int(addr, 16) if addr else None, m["q"] is None, section, m["src"] or "",
                      m["inl"] is not None)


def parse_bug_location(line: str) -> tuple[str, int] | None:
    """The source file and line that a ``kernel BUG at FILE:LINE!``, ``WARNING: CPU: N PID: N at
    FILE:LINE …`` or ``BUG: failure at FILE:LINE/func()!`` line names (the ``BUG()``/``WARN()`` call at
    the faulting IP), or ``None``.

    >>> parse_bug_location("kernel BUG at /b/6.12.118+deb12-amd64.build/kcrash_test.c:274!")
    ('/b/6.12.118+deb12-amd64.build/kcrash_test.c', 274)
    """
    m = _BUG_AT_RE.search(line) if " at " in line else None
    return None if m is None else (m["file"], int(m["line"]))


def parse_code(line: str) -> CodeBytes | None:
    """The bytes of a ``Code:`` line (``<..>``/``(..)`` marks the faulting byte)."""
    m = _CODE_RE.match(line)
    if m is None:
        return None
    data = bytearray()
    fault: int | None = None
    for token in m.group(1).split():
        if token[0] in "<(":
            fault = len(data)
        try:
            data += bytes.fromhex(token.strip("<>()"))
        except ValueError:
            return None
    return CodeBytes(bytes(data), fault)


@functools.lru_cache(maxsize=1 << 14)
def _line_registers(line: str) -> tuple[tuple[str, int], ...]:
    # The (name, value) pairs of one register-dump line; memoised like parse_frame.
    if "Code:" in line or not _REG_LINE_RE.match(line):
        return ()
    return tuple((name, int(value, 16)) for name, _seg, value in _REG_PAIR_RE.findall(line))


def _registers(lines: Iterable[str]) -> tuple[Register, ...]:
    regs: dict[str, int] = {}
    for line in lines:
        if ": " in line:
            for name, value in _line_registers(line):
                regs.setdefault(name, value)
    return tuple(Register(k, v) for k, v in regs.items())


def _rip(lines: list[str]) -> TraceFrame | None:
    for line in lines:
        m = _RIP_RE.match(line)
        if m is not None:
            return parse_frame(m["rest"])
    return None


def _call_trace(lines: list[str]) -> tuple[TraceFrame, ...]:
    frames: list[TraceFrame] = []
    section, inside = "", False
    for line in lines:
        # The pre-checks are exact: the trace-start words all end in "race:", a section marker has "<".
        if "race:" in line and _TRACE_START_RE.match(line):
            if inside and frames:
                break
            inside = True
            continue
        if not inside:
            continue
        sec = _SECTION_RE.match(line) if "<" in line else None
        if sec is not None:
            section = "" if sec.group(1) or sec.group(2) == "EOI" else sec.group(2).lstrip("#")
            continue
        frame = parse_frame(line, section)
        if frame is not None:
            frames.append(frame)
        elif frames and not line.strip():
            break
    return tuple(frames)


def parse_details(lines: list[str]) -> OopsDetails:
    """Structured fields of a report given as stripped lines (``?`` frames included)."""
    task = next((m for line in lines if "PID: " in line and (m := _TASK_LINE_RE.search(line))), None)
    hw = next((m for line in lines if "Hardware name: " in line and (m := _HW_RE.search(line))), None)
    code = next((c for line in lines if "Code:" in line and (c := parse_code(line))), None)
    tainted = None if task is None or task["taint"] is None else task["taint"] != "Not tainted"
    return OopsDetails(
        registers=_registers(lines), rip=_rip(lines), code=code, call_trace=_call_trace(lines),
        tainted=tainted, taint_flags=((task["flags"] or "").replace(" ", "") if task else ""),
        cpu=int(task["cpu"]) if task else None, pid=int(task["pid"]) if task else None,
        comm=task["comm"] if task else "", kernel_release=task["rel"] if task else "",
        hardware_name=hw.group(1) if hw else "")
