"""
kcrash.model
===================

The crash report as data: frozen dataclasses built by :mod:`kcrash.analysis.triage` and rendered by
:mod:`kcrash.report.terminal`, :mod:`kcrash.report.html` and :mod:`kcrash.report.json` (whose JSON
Schema is derived from these classes). Plain values only (str, int, bool,
tuples of these and of the classes here), so :func:`to_dict` gives JSON-ready data and a renderer
never needs the dump. Addresses are ints; byte strings from the kernel (``comm``) are decoded with
``backslashreplace`` so they round-trip. This module imports nothing from kcrash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = [
    "CpuBacktrace",
    "CrashReport",
    "CrashingContext",
    "Disassembly",
    "DumpMetadata",
    "ExceptionFrame",
    "Frame",
    "FrameDetail",
    "Instruction",
    "LogLine",
    "MemoryRegion",
    "MemorySummary",
    "ModuleRow",
    "OopsHeader",
    "SectionNote",
    "SlabCache",
    "SourceLine",
    "SourceSnippet",
    "StackWord",
    "SystemInfo",
    "Taint",
    "TaskMemory",
    "TaskRow",
    "TaskStateCount",
    "TaskTrace",
    "TaskTraceDetail",
    "Trace",
    "Verdict",
    "to_dict",
]


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One source location of an address (from DWARF, when debug information was given):
    ``inlined`` is True when ``function`` was inlined into the next (outer) location."""

    function: str
    file: str
    line: int
    inlined: bool


@dataclass(frozen=True, slots=True)
class SourceSnippet:
    """Lines of a source file around ``line`` (``first`` is the number of ``lines[0]``)."""

    file: str
    line: int
    first: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Frame:
    """One backtrace frame: ``text`` is the kernel's ``%pS`` form (``func+0x12/0x40 [mod]``, or
    the bare address); ``reliable`` False marks a guess printed with ``?``; ``kind`` is how it was
    found (``regs``: a register set, such as an exception's ``pt_regs``; ``call``; ``partial``;
    ``scan``)."""

    index: int
    pc: int
    sp: int
    function: str | None
    offset: int
    module: str | None
    text: str
    reliable: bool
    kind: str
    source: tuple[SourceLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Trace:
    """The frames of one stack, innermost first; ``truncated`` says why the walk stopped early."""

    frames: tuple[Frame, ...]
    truncated: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What happened: the panic message (the log's ``Kernel panic`` line or the oops line), the oops
    title and crash type from the log parser, the crashing function and where it was found
    (``backtrace`` or ``log``), and each source's own answer for comparison."""

    panic_message: str | None
    title: str | None
    crash_type: str | None
    crashing_function: str | None
    source: str | None
    trace_function: str | None
    log_function: str | None
    signature: str | None = None
    corrupted: bool = False


@dataclass(frozen=True, slots=True)
class CrashingContext:
    """The crashing CPU and task, and the registers where the fault happened: an exception's
    ``pt_regs`` when the crashed thread has one (``registers_from`` = ``pt_regs``), else the CPU's
    dump registers (``NT_PRSTATUS``)."""

    cpu: int
    pid: int
    comm: str
    task: int
    ip: int
    ip_text: str
    sp: int
    registers: tuple[tuple[str, int], ...]
    registers_from: str
    ip_source: tuple[SourceLine, ...] = ()
    snippet: SourceSnippet | None = None


@dataclass(frozen=True, slots=True)
class LogLine:
    """One kernel log record, named after ``struct printk_info`` (``kernel/printk/printk_ringbuffer.h``):
    ``seq``, ``ts_nsec`` (nanoseconds since boot), the caller (``T123``/``C1`` as dmesg shows
    ``caller_id``, when recorded), the text, and the ``level`` (0-7) and syslog ``facility`` when
    recorded."""

    seq: int
    ts_nsec: int
    caller: str | None
    text: str
    level: int | None = None
    facility: int | None = None

    def formatted(self, *, caller: bool = False) -> str:
        """``[    1.234567] text`` as dmesg prints it (with ``[T123]`` when ``caller``)."""
        stamp = f"[{self.ts_nsec // 1_000_000_000:5d}.{self.ts_nsec % 1_000_000_000 // 1000:06d}]"
        who = f"[{self.caller:>6}]" if caller and self.caller else ""
        return f"{stamp}{who} {self.text}"


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task as ``ps`` shows it; ``active`` marks a task running on a CPU (crash's ``>``)."""

    pid: int
    ppid: int
    tgid: int
    cpu: int
    task: int
    state: str
    comm: str
    active: bool


@dataclass(frozen=True, slots=True)
class TaskTrace:
    """A task and its stack (a ``bt`` entry; the report's blocked tasks)."""

    task: TaskRow
    trace: Trace


@dataclass(frozen=True, slots=True)
class StackWord:
    """One word of a stack frame (``bt -f``) and, with ``bt -F``, what its value points at:
    ``symbol`` ``func+0x12/0x40 [mod]`` for kernel or module memory, ``slab_cache`` the cache of a
    slab object (crash prints ``[cache]``); None when not asked for or nothing."""

    address: int
    value: int
    symbol: str | None = None
    slab_cache: str | None = None


@dataclass(frozen=True, slots=True)
class ExceptionFrame:
    """Registers an exception, interrupt or system call saved on the stack: a whole ``struct
    pt_regs`` (``kind`` ``pt_regs``) or only its IRET frame (``iret``: rip, cs, eflags, rsp, ss) at
    ``address``; ``rip_text`` is the saved rip the ``%pS`` way; ``user`` when saved in user mode."""

    address: int | None
    kind: str
    registers: tuple[tuple[str, int], ...]
    rip_text: str
    user: bool


@dataclass(frozen=True, slots=True)
class FrameDetail:
    """What ``bt`` shows around frame ``index`` beyond its line: the stack holding it (``task 1``,
    ``IRQ 0``, ``NMI 0`` …), the exception frame it was found from, the words of the frame
    (``bt -f``; innermost first, up to the next frame's return address or saved registers) and,
    when the next frame is on another stack, the crash-style mark of the one left
    (``IRQ stack``, ``NMI exception stack`` …)."""

    index: int
    stack: str | None
    exception: ExceptionFrame | None
    words: tuple[StackWord, ...]
    leaves: str | None


@dataclass(frozen=True, slots=True)
class TaskTraceDetail:
    """``bt`` of one task with its frames' details (:class:`FrameDetail`, one per frame of
    ``trace``) and the user-mode registers where the kernel stack ends (a system call's or a user
    fault's ``pt_regs``)."""

    task: TaskRow
    trace: Trace
    frames: tuple[FrameDetail, ...]
    user_registers: ExceptionFrame | None


@dataclass(frozen=True, slots=True)
class ModuleRow:
    """A loaded module: name, text base, core size, taint letters, and the debug information found
    in memory for it (symbols, BTF bytes; ``error`` when something could not be read)."""

    name: str
    base: int
    size: int
    taints: str
    num_symbols: int
    btf_size: int
    error: str | None


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """Facts about the crashed system (crash's ``sys``)."""

    release: str
    version: str
    machine: str
    nodename: str
    cpus: int
    panic_cpu: int | None
    uptime_ns: int | None
    crash_time: int | None
    tainted: str
    #: None when ``tainted_mask`` cannot be read (a kernel without CONFIG_KALLSYMS_ALL, no symbol file)
    taint_mask: int | None
    memory_bytes: int | None
    dump: str


@dataclass(frozen=True, slots=True)
class Instruction:
    """One disassembled instruction: its bytes as hex, its text, and whether it is at the
    faulting IP; ``source`` its source locations (innermost first) when debug information covers it."""

    address: int
    hex: str
    text: str
    faulting: bool
    source: tuple[SourceLine, ...] = ()


@dataclass(frozen=True, slots=True)
class Disassembly:
    """Instructions around the faulting IP, decoded from the dump's own kernel text (from the
    function's start when known); ``error`` says why there are none."""

    ip: int
    function: str | None
    instructions: tuple[Instruction, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class TaskStateCount:
    """How many tasks are in one state (``ps`` letter)."""

    state: str
    count: int


@dataclass(frozen=True, slots=True)
class Taint:
    """One kernel taint flag set at the crash: its letter and what it means."""

    letter: str
    name: str


@dataclass(frozen=True, slots=True)
class SlabCache:
    """One slab cache (``/proc/slabinfo``): object size, objects and slabs allocated, total bytes."""

    name: str
    object_size: int
    objects: int
    slabs: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class MemorySummary:
    """Memory at the crash (``/proc/meminfo`` style, bytes) and the biggest slab caches; ``error``
    says what could not be read."""

    total_bytes: int | None
    free_bytes: int | None
    file_bytes: int | None
    anon_bytes: int | None
    slab_reclaimable_bytes: int | None
    slab_unreclaimable_bytes: int | None
    slab_caches: int
    top_slabs: tuple[SlabCache, ...]
    error: str | None


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """One VMA of a task (the article's ``memory_region``): [start, end), ``vm_flags``, ``perms``
    as ``/proc/PID/maps`` prints them (``rwxp``/``rwxs``), the file offset and what backs it (a
    file path, or ``[heap]``, ``[stack]``, ``[vdso]``, ``[anon]``)."""

    start: int
    end: int
    flags: int
    perms: str
    offset: int
    backing: str


@dataclass(frozen=True, slots=True)
class TaskMemory:
    """The memory regions of a task; none for kernel threads (``kernel_thread``); ``truncated``
    says why the walk stopped early."""

    pid: int
    comm: str
    kernel_thread: bool
    regions: tuple[MemoryRegion, ...]
    truncated: str | None


@dataclass(frozen=True, slots=True)
class DumpMetadata:
    """The dump file itself: format, codecs, dump level, size, when it was collected (seconds
    since the epoch) and where that time comes from (``header``, ``vmcoreinfo`` or ``file mtime``),
    whether it is incomplete, and page counts."""

    path: str
    format: str
    codecs: tuple[str, ...]
    dump_level: int | None
    size: int
    collected: int | None
    collected_from: str
    incomplete: bool
    pages_total: int
    pages_dumped: int


@dataclass(frozen=True, slots=True)
class SectionNote:
    """A report section that could not be read (whole or in part), and why: ``section`` is one of
    ``system``, ``log``, ``backtrace``, ``context``, ``tasks``, ``blocked``, ``modules``, ``disassembly``,
    ``memory``, ``regions``, ``dump``, ``cpus``."""

    section: str
    reason: str


@dataclass(frozen=True, slots=True)
class OopsHeader:
    """The panic's oops header as the console printed it, read from the dump's own log: ``lines``
    are the records from the oops line (``kernel BUG at …``, ``BUG: unable to handle …``) through
    the ``RIP:`` line (``Oops: …``, ``CPU: … PID: … Comm: …``, ``Hardware name: …`` between),
    ``code`` is the ``Code:`` line of the faulting instruction, and ``first_seq``..``last_seq`` the
    sequence numbers of every record of the oops report (for highlighting it in the log)."""

    lines: tuple[LogLine, ...]
    code: LogLine | None
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class CpuBacktrace:
    """What one possible CPU was doing: its active task (``cpu_curr``) and that task's stack,
    unwound from the CPU's dump registers (``registers_from`` ``NT_PRSTATUS``) or, for a CPU with no
    registers in the dump, from the task's saved context (``saved``); ``panic`` marks the CPU that
    panicked."""

    cpu: int
    panic: bool
    task: TaskRow
    trace: Trace
    registers_from: str


@dataclass(frozen=True, slots=True)
class LockWait:
    """What one blocked task waits on (``kcrash locks``): ``kind`` (``mutex``, ``rwsem``,
    ``semaphore``, ``completion``, ``page``, ``rcu``, or ``unknown`` when no frame names a wait),
    the lock's address and symbol (static locks have a kallsyms name), ``mode`` (``read``/``write``
    for an rwsem), the task's waiter structure on its stack, ``waiters`` (every task queued on the
    lock, in queue order, as pids), the ``owner`` the kernel records (None where it records none:
    ``owner_note`` says why), ``chain`` the pids from this task along the owners, ``frame`` the
    frame that names the wait and ``trace`` the task's stack."""

    task: TaskRow
    kind: str
    lock: int | None
    symbol: str | None
    mode: str | None
    waiter: int | None
    waiters: tuple[int, ...]
    owner: TaskRow | None
    owner_note: str | None
    chain: tuple[int, ...]
    frame: str | None
    trace: Trace


@dataclass(frozen=True, slots=True)
class Deadlock:
    """A cycle of the wait-for graph: ``waits`` in cycle order, each task waiting on a lock owned
    by the next one's task (the last one's owner is the first task)."""

    waits: tuple[LockWait, ...]


@dataclass(frozen=True, slots=True)
class Lockup:
    """A CPU stuck in the kernel (soft or hard lock-up): its task and stack, ``kind``
    (``spinlock`` when it spins on one, else ``busy``), the function it was interrupted in, and for
    a spinlock the lock's address, symbol, and holder where the kernel records one
    (``holder_note`` says when it does not)."""

    cpu: int
    task: TaskRow
    kind: str
    function: str | None
    lock: int | None
    symbol: str | None
    holder: TaskRow | None
    holder_note: str | None
    trace: Trace


@dataclass(frozen=True, slots=True)
class LockAnalysis:
    """Why the machine hung: ``why`` (one sentence per culprit, deadlocks and lock-ups first),
    the ``deadlocks``, the ``lockups``, every blocked task's ``waits``, the stacks of owners that are
    not blocked themselves (``owners``), and ``notes`` on what could not be read."""

    why: tuple[str, ...]
    deadlocks: tuple[Deadlock, ...]
    lockups: tuple[Lockup, ...]
    waits: tuple[LockWait, ...]
    owners: tuple[TaskTrace, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CrashReport:
    """Everything ``kcrash report`` shows. ``notes`` lists what could not be determined and why.
    ``oops`` is the panic's oops header from the log, ``cpus`` every possible CPU's backtrace (the
    panic CPU first), ``task_traces`` every task's backtrace, and ``frame_disassembly`` the
    instructions around the pc of every frame of these traces (one per distinct pc)."""

    system: SystemInfo
    verdict: Verdict
    context: CrashingContext | None
    backtrace: Trace
    log_tail: tuple[LogLine, ...]
    blocked: tuple[TaskTrace, ...]
    modules: tuple[ModuleRow, ...]
    notes: tuple[str, ...]
    disassembly: Disassembly | None = None
    tasks: tuple[TaskRow, ...] = ()
    task_states: tuple[TaskStateCount, ...] = ()
    taints: tuple[Taint, ...] = ()
    memory: MemorySummary | None = None
    regions: TaskMemory | None = None
    dump: DumpMetadata | None = None
    unavailable: tuple[SectionNote, ...] = ()
    oops: OopsHeader | None = None
    cpus: tuple[CpuBacktrace, ...] = ()
    task_traces: tuple[TaskTrace, ...] = ()
    frame_disassembly: tuple[Disassembly, ...] = ()
    locks: LockAnalysis | None = None


def to_dict(model: object) -> dict[str, object]:
    """Any model of this module as JSON-ready data (dataclasses become dicts, tuples lists)."""
    data = asdict(model)  # type: ignore[call-overload]
    assert isinstance(data, dict)
    return _lists(data)  # type: ignore[return-value]


def _lists(value: object) -> object:
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value
