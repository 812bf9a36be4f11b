"""
kcrash.helpers.linux.panic
==========================

Panic facts (``include/linux/panic.h``, ``kernel/panic.c``, ``kernel/time/timekeeping.c``): which
CPU panicked (``panic_cpu``), the task running there, the panic message (the kernel log's
``Kernel panic - not syncing:`` line, else the oops line), the taint flags (``tainted_mask`` and
the ``taint_flags`` letter table), uptime and wall-clock time at the crash (the timekeeper), and
:func:`crash_context`: the crashing CPU's registers, ip, sp, pid and comm (``debug_context``).
Stack traces are :mod:`~kcrash.helpers.linux.stack`; the log is :mod:`~kcrash.helpers.linux.printk`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from kcrash.errors import FaultError, KcrashError, MissingDebugInfoError, SymbolNotFoundError
from kcrash.helpers.linux.printk import PrintkRecord
from kcrash.memory.kernel import find_panic_cpu_or_none
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu
from kcrash.types.program import Program

__all__ = [
    "CrashContext",
    "crash_context",
    "crash_time_or_none",
    "panic_cpu_or_none",
    "panic_message_or_none",
    "panic_task_or_none",
    "taint_flags",
    "tainted",
    "uptime_ns_or_none",
]

#: Log lines naming a panic, most preferred first (as drgn's ``panic_message`` ranks them).
_PANIC_PATTERNS = (
    rb"Kernel panic - .*",
    rb"BUG: (?:kernel NULL pointer dereference|unable to handle).*|Unable to handle kernel.*",
    rb"[Kk]ernel BUG at.*",
    rb"Oops: .*",
)
_MAX_TAINTS = 64
_TAINT_CACHE = "kcrash.helpers.linux.panic.taint_flags"
#: ``tk_core`` is ``struct { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; }``: an
#: anonymous type, so the timekeeper's offset is the seqcount's size rounded up to 8.
_TK_ALIGN = 8
_YEAR_2000 = 946_684_800


@dataclass(frozen=True, slots=True)
class CrashContext:
    """Where the crash happened, as :func:`crash_context` finds it.

    The crashing CPU, the task on it and that CPU's registers.

    :param cpu: the CPU
    :param pid: the running task's ``pid``
    :param comm: its ``comm``
    :param task: its ``struct task_struct *``, as an address
    :param ip: the instruction pointer (``rip``) from ``NT_PRSTATUS``
    :param sp: the stack pointer (``rsp``)
    :param registers: every register of the CPU's ``NT_PRSTATUS`` note, by name

    >>> context = crash_context(prog)
    >>> context.comm, hex(context.ip)
    (b'khungtaskd', '0xffffffffc020a212')
    """

    cpu: int
    pid: int
    comm: bytes
    task: int
    ip: int
    sp: int
    registers: dict[str, int]


def panic_cpu_or_none(prog: Program) -> int | None:
    """Return the CPU that called ``panic()``.

    That is ``panic_cpu`` (``PANIC_CPU_INVALID``, -1, when none) or else, in a dump, the one CPU whose
    registers are not halted.

    :param prog: the program
    :return: the CPU number, or None (also on a running kernel without a panic)

    >>> panic_cpu_or_none(prog)
    1
    """
    try:
        cpu = int(prog["panic_cpu"].counter)
    except (KcrashError, AttributeError):
        cpu = -1
    if cpu >= 0:
        return cpu
    if prog.live:  # a running kernel's busy CPU is not a panicked one
        return None
    return find_panic_cpu_or_none(prog.memory, prog.cpus)


def panic_task_or_none(prog: Program) -> Object | None:
    """Return the task that panicked: ``rq->curr`` of :func:`panic_cpu_or_none`'s CPU.

    :param prog: the program
    :return: ``struct task_struct *``, or None if no CPU panicked

    >>> panic_task_or_none(prog).comm.string_()
    b'khungtaskd'
    """
    cpu = panic_cpu_or_none(prog)
    return None if cpu is None else per_cpu(prog, "runqueues", cpu).curr


def panic_message_or_none(records: Iterable[PrintkRecord]) -> str | None:
    """Return the panic line of the kernel log.

    That is ``Kernel panic - not syncing: ...`` if present, else the best-ranked oops line (NULL
    dereference, ``kernel BUG at``, ``Oops:``).

    :param records: the log's records (see :func:`~kcrash.helpers.linux.printk.get_printk_records`)
    :return: the line, or None if the log has none

    >>> from kcrash.helpers.linux.printk import get_printk_records
    >>> panic_message_or_none(get_printk_records(prog.memory, prog.vmcoreinfo))
    'Kernel panic - not syncing: hung_task: blocked tasks'
    """
    best: tuple[int, bytes] | None = None
    for record in records:
        for line in record.text.split(b"\n"):
            rank = _panic_rank(line)
            if rank is not None and (best is None or rank < best[0]):
                best = rank, line
    return None if best is None else best[1].decode("utf-8", "replace").strip()


def _panic_rank(line: bytes) -> int | None:
    for rank, pattern in enumerate(_PANIC_PATTERNS):
        m = re.search(pattern, line)
        if m is not None:
            return rank
    return None


def taint_flags(prog: Program) -> list[tuple[str, str]]:
    """Return the kernel's ``taint_flags[]`` table (``kernel/panic.c``), read once per program.

    :param prog: the program
    :return: ``(c_true, c_false)`` per taint bit, ``TAINT_PROPRIETARY_MODULE`` first

    >>> taint_flags(prog)[:2]
    [('P', 'G'), ('F', ' ')]
    """
    cached: list[tuple[str, str]] | None = prog.cache.get(_TAINT_CACHE)
    if cached is None:
        cached = prog.cache[_TAINT_CACHE] = _read_taint_flags(prog)
    return cached


def _read_taint_flags(prog: Program) -> list[tuple[str, str]]:
    # A static const array: its address from kallsyms, its length from the symbol's size (which may
    # include padding, so entries are kept while they look like taint letters).
    try:
        size = prog.type("struct taint_flag").sizeof()
        address = prog.symbol_address("taint_flags")
        length = _symbol_size(prog, "taint_flags") // size if size else 0
        data = prog.read(address, min(length, _MAX_TAINTS) * size)
    except (SymbolNotFoundError, KcrashError) as exc:
        raise MissingDebugInfoError(f"cannot read taint_flags[] ({exc}); kallsyms with data symbols "
                                    "(CONFIG_KALLSYMS_ALL) and BTF provide it") from exc
    flags = []
    for i in range(0, len(data), size):
        true, false = chr(data[i]), chr(data[i + 1])
        if not (true.isascii() and true.isupper() and (false == " " or false.isupper())):
            break
        flags.append((true, false))
    return flags


def _symbol_size(prog: Program, name: str) -> int:
    return prog.get_symbol_by_name(name).size


def tainted(prog: Program) -> str:
    """Return the kernel's taint string as oops headers print it, like the kernel's ``print_tainted()``.

    Built from ``tainted_mask`` and :func:`taint_flags`.

    :param prog: the program
    :return: the string (``G           O       ``); ``""`` when the kernel is not tainted

    >>> tainted(prog).strip()
    'G           OE'
    """
    mask = int(prog["tainted_mask"])
    if not mask:
        return ""
    return "".join(true if mask >> i & 1 else false for i, (true, false) in enumerate(taint_flags(prog)))


def _timekeeper_or_none(prog: Program) -> Object | None:
    try:
        address = prog.symbol_address("tk_core")
        seq = prog.type("seqcount_raw_spinlock_t").sizeof()
    except (SymbolNotFoundError, KcrashError):
        return None
    offset = (seq + _TK_ALIGN - 1) // _TK_ALIGN * _TK_ALIGN
    return prog.object("struct timekeeper", address + offset)


def uptime_ns_or_none(prog: Program) -> int | None:
    """Return the time since boot at the last timekeeping update (``CLOCK_BOOTTIME``, one tick's precision).

    That is ``tk_core.timekeeper``'s ``tkr_mono.base + offs_boot``.

    :param prog: the program
    :return: nanoseconds, or None if the timekeeper cannot be read or looks wrong

    >>> uptime_ns_or_none(prog) // 1_000_000_000
    32
    """
    tk = _timekeeper_or_none(prog)
    if tk is None:
        return None
    try:
        value = int(tk.tkr_mono.base) + int(tk.offs_boot)
        wall = int(tk.xtime_sec)
    except (FaultError, KcrashError):
        return None
    return value if value > 0 and wall > _YEAR_2000 else None


def crash_time_or_none(prog: Program) -> int | None:
    """Return the wall-clock time at the last timekeeping update: ``tk_core.timekeeper.xtime_sec``.

    :param prog: the program
    :return: seconds since the epoch, or None if unreadable or before 2000

    >>> crash_time_or_none(prog)
    1796647173
    """
    tk = _timekeeper_or_none(prog)
    if tk is None:
        return None
    try:
        wall = int(tk.xtime_sec)
    except (FaultError, KcrashError):
        return None
    return wall if wall > _YEAR_2000 else None


def crash_context(prog: Program, cpu: int | None = None) -> CrashContext:
    """Return the crashing CPU (or ``cpu``), the task running on it and its ``NT_PRSTATUS`` registers.

    :param prog: the program
    :param cpu: the CPU to describe (default: :func:`panic_cpu_or_none`)
    :return: the crash context
    :raises MissingDebugInfoError: if no CPU panicked, or the dump has no registers for the CPU

    >>> crash_context(prog, 0).registers["rsp"]
    18446683600570040256
    """
    if cpu is None:
        cpu = panic_cpu_or_none(prog)
    if cpu is None:
        raise MissingDebugInfoError("no CPU panicked: panic_cpu is unset and no dump note tells "
                                    "(a dump taken by kdump or with pvpanic would have it)")
    cpus = prog.cpus
    if not 0 <= cpu < len(cpus):
        raise MissingDebugInfoError(f"the dump has no registers for CPU {cpu} (no NT_PRSTATUS note)")
    prstatus = cpus[cpu].prstatus
    if prstatus is None:
        raise MissingDebugInfoError(f"the dump has no NT_PRSTATUS note for CPU {cpu}")
    regs = dict(prstatus.registers)
    task = per_cpu(prog, "runqueues", cpu).curr
    # x86-64 names the pc and sp rip and rsp; arm64 pc and sp
    return CrashContext(cpu, int(task.pid), task.comm.string_(), int(task), regs.get("rip", regs.get("pc", 0)),
                        regs.get("rsp", regs.get("sp", 0)), regs)
