"""
kcrash.oops.model
=================

The result of parsing a console log: one :class:`OopsReport` per crash found, with the syzkaller-style
description (title, alternative titles, type, guilty frame, corrupted flag and reason, suppressed,
panicked, executor, guilty file), kcrash's guilty function (the function at fault by the kernel's
semantics, where it differs from syzkaller's title frame), the offsets of the report in the log, a stable crash
:attr:`~OopsReport.signature`, and the structured fields read from the report text
(:class:`OopsDetails`: registers, RIP, ``Code:`` bytes, call trace, taint, CPU, PID, comm, release,
hardware). Pure frozen dataclasses plus :func:`report_to_dict` for JSON; no parsing here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "CodeBytes",
    "Executor",
    "OopsDetails",
    "OopsReport",
    "Register",
    "TraceFrame",
    "report_to_dict",
]


@dataclass(frozen=True, slots=True)
class TraceFrame:
    """One call-trace line such as `` ? kcrash_test_level2+0x15/0x30 [kcrash_test]``."""

    function: str
    offset: int | None = None
    size: int | None = None
    module: str = ""
    address: int | None = None
    reliable: bool = True
    section: str = ""
    source: str = ""
    inline: bool = False


@dataclass(frozen=True, slots=True)
class Register:
    """A register name and value from the register dump (``RAX: 0000000000000000``)."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class CodeBytes:
    """The ``Code:`` line: the bytes and the index of the faulting byte (``<0f>``/``(0f)``)."""

    data: bytes
    fault_index: int | None


@dataclass(frozen=True, slots=True)
class Executor:
    """The syzkaller executor that ran into the crash (``Comm: syz.P.I``)."""

    proc: int
    id: int


@dataclass(frozen=True, slots=True)
class OopsDetails:
    """Structured fields of a report; absent fields are ``None``/empty."""

    registers: tuple[Register, ...] = ()
    rip: TraceFrame | None = None
    code: CodeBytes | None = None
    call_trace: tuple[TraceFrame, ...] = ()
    tainted: bool | None = None
    taint_flags: str = ""
    cpu: int | None = None
    pid: int | None = None
    comm: str = ""
    kernel_release: str = ""
    hardware_name: str = ""


@dataclass(frozen=True, slots=True)
class OopsReport:
    """One crash report found in a log. ``start_pos``/``end_pos``/``skip_pos`` are character offsets in
    the parsed text (byte offsets in a file read by :mod:`kcrash.oops.stream`); ``start_line`` and
    ``end_line`` are the 1-based numbers of the report's first line (the oops line) and last line, as an
    editor or ``grep -n`` counts them.

    ``frame`` is syzkaller's title frame (pinned by the corpus). ``guilty_function`` is the function at
    fault by the kernel's semantics: the same as ``frame`` for traps, oopses and warnings; the running
    (RIP) function for soft lockups and stack overflows, where ``frame`` is the syscall-side caller; the
    caller of ``panic()`` for explicit panics, where the title has no frame; the function a hung task
    sleeps in, below the scheduler and the lock/wait primitives. ``""`` when the log does not show it.
    """

    title: str
    alt_titles: tuple[str, ...]
    crash_type: str
    frame: str
    guilty_function: str
    report: str
    start_pos: int
    end_pos: int
    skip_pos: int
    start_line: int
    end_line: int
    corrupted: bool
    corrupted_reason: str
    suppressed: bool
    panicked: bool
    executor: Executor | None
    context: str
    prefix_len: int
    guilty_file: str
    signature: str
    details: OopsDetails


def report_to_dict(report: OopsReport) -> dict[str, object]:
    """A JSON-ready dict (bytes become hex strings, the type ``""`` becomes ``"UNKNOWN"``)."""
    data: dict[str, object] = asdict(report)
    details: dict[str, object] = asdict(report.details)
    code = report.details.code
    if code is not None:
        details["code"] = {"data": code.data.hex(), "fault_index": code.fault_index}
    data.update(crash_type=report.crash_type or "UNKNOWN", alt_titles=list(report.alt_titles), details=details)
    return data
