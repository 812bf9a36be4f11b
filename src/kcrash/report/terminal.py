"""
kcrash.report.terminal
======================

Terminal rendering of :mod:`kcrash.model` with rich: :func:`render_report` (the one-screen
``kcrash report``) and the pieces the crash-like commands print (:func:`render_system`,
:func:`render_trace`, :func:`render_tasks`, :func:`render_modules`, :func:`render_log`). Renderers
take a model and a :class:`rich.console.Console` only; styles are dropped by rich when the console
is not a terminal, and tables have no box drawing, so piped output is plain text. Backtraces look
like the kernel's: ``#N [sp] func+0x12/0x40 [mod]``, unreliable frames prefixed with ``?``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import IO

from rich.console import Console, Group, NewLine, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kcrash.model import (
    CrashingContext,
    CrashReport,
    Disassembly,
    DumpMetadata,
    ExceptionFrame,
    Frame,
    LockAnalysis,
    LogLine,
    MemorySummary,
    ModuleRow,
    OopsHeader,
    SourceLine,
    StackWord,
    SystemInfo,
    TaskMemory,
    TaskRow,
    TaskTraceDetail,
    Trace,
)

__all__ = [
    "make_console",
    "render_backtrace",
    "render_disassembly",
    "render_dump",
    "render_log",
    "render_memory",
    "render_modules",
    "render_regions",
    "render_report",
    "render_system",
    "render_tasks",
    "render_trace",
    "visible",
]

_REG_ORDER = (
    "rip",
    "rsp",
    "eflags",
    "rax",
    "rbx",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "rbp",
    "r8",
    "r9",
    "r10",
    "r11",
    "r12",
    "r13",
    "r14",
    "r15",
    "orig_rax",
    "cs",
    "ss",
)
_MAX_FRAMES = 40
# Output that is not a terminal (a pipe, a file, CliRunner) is never wrapped: a page this wide holds
# any line the kernel can log (printk's LOG_LINE_MAX is 1024 bytes) and any table row, so
# ``kcrash log DUMP > f`` has one line per record for grep, diff and ``kcrash oops parse``.
_PLAIN_WIDTH = 1 << 20


def make_console(file: IO[str] | None = None, *, width: int | None = None, color: bool | None = None) -> Console:
    """The one console every command prints through: ``color`` None colours only a terminal;
    output that is not a terminal (``width`` None) is never wrapped nor cropped, whatever its
    length. Emoji codes are not replaced (a task named ``:fire:`` is printed as such)."""
    console = Console(
        file=file, width=width, force_terminal=color, no_color=color is False, highlight=False, emoji=False
    )
    if width is None and not console.is_terminal:
        console.width = _PLAIN_WIDTH
    if width is not None or not console.is_terminal:
        # a fixed page: its height measured once (rich asks the terminal on every print otherwise)
        console.height = console.height
    return console


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def visible(text: str) -> str:
    """``text`` with control characters shown as ``\\xNN`` (kernel strings may hold any byte, and
    an escape sequence in a task name must not drive the terminal)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


# Renderers build lists of renderables and print them as one Group: rich's work per print (the
# render buffer, hooks, options) is then done once per command instead of once per line.
_Lines = list[RenderableType]


def _print(console: Console, lines: _Lines) -> None:
    if lines:
        console.print(Group(*lines))


def _section(title: str) -> _Lines:
    return [NewLine(), Text(title, style="bold underline")]


def _uptime(ns: int | None) -> str:
    if ns is None:
        return "unknown"
    seconds = ns // 1_000_000_000
    days, rest = divmod(seconds, 86400)
    return (f"{days} days, " if days else "") + f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def _time(seconds: int | None) -> str:
    if seconds is None:
        return "unknown"
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%a %b %e %H:%M:%S UTC %Y")


def _pairs(rows: Sequence[tuple[str, str]]) -> _Lines:
    width = max(len(key) for key, _ in rows)
    return [Text(f"{key:>{width}}: ", style="bold") + Text(value) for key, value in rows]


def render_system(info: SystemInfo, console: Console) -> None:
    """crash's ``sys`` block."""
    _print(console, _system(info))


def _system(info: SystemInfo) -> _Lines:
    memory = "unknown" if info.memory_bytes is None else f"{info.memory_bytes / (1 << 20):.1f} MB"
    return _pairs(
        [
            ("DUMPFILE", info.dump),
            ("CPUS", str(info.cpus)),
            ("RELEASE", info.release),
            ("VERSION", info.version),
            ("MACHINE", info.machine),
            ("NODENAME", info.nodename),
            ("MEMORY", memory),
            ("UPTIME", _uptime(info.uptime_ns)),
            ("DATE", _time(info.crash_time)),
            ("PANIC CPU", "none" if info.panic_cpu is None else str(info.panic_cpu)),
            ("TAINTED", _taint_text(info)),
        ]
    )


def _taint_text(info: SystemInfo) -> str:
    if info.taint_mask is None:
        return "unknown (tainted_mask is not among the dump's symbols)"
    return f"{info.tainted.strip() or 'no'} ({info.taint_mask:#x})"


def render_trace(trace: Trace, console: Console, *, limit: int | None = None) -> None:
    """Frames as ``#N [sp] func+off/size [mod]``; ``?`` marks unreliable frames; the kind of a
    register frame (an exception or interrupt's ``pt_regs``) is shown after it."""
    _print(console, _trace(trace, limit))


def _trace(trace: Trace, limit: int | None) -> _Lines:
    out: _Lines = []
    for f in trace.frames if limit is None else trace.frames[:limit]:
        out += [_frame_line(f), *_sources(f.source, indent=6)]
    if limit is not None and len(trace.frames) > limit:
        out.append(Text(f" ... {len(trace.frames) - limit} more frames"))
    return out + _truncated(trace)


def _frame_line(f: Frame) -> Text:
    mark = "? " if not f.reliable else ""
    line = Text(f" #{f.index:<2} [{f.sp:016x}] ")
    line.append(mark + f.text, style="dim" if not f.reliable else ("bold" if f.kind == "regs" else ""))
    if f.kind == "regs" and f.index:
        line.append("  <- pt_regs", style="cyan")
    return line


def _truncated(trace: Trace) -> _Lines:
    return [Text(f" (stack walk stopped: {trace.truncated})", style="yellow")] if trace.truncated else []


def render_backtrace(entry: TaskTraceDetail, console: Console) -> None:
    """crash's ``bt``: the task line, the frames, the registers of every exception frame, a
    ``--- <IRQ stack> ---`` mark where the walk leaves an IRQ or exception stack, each frame's
    stack words when present (``bt -f``; with ``-F`` a word's symbol, or ``[cache]`` for a slab
    object, replaces its value) and the user-mode registers where the stack ends."""
    row = entry.task
    out: _Lines = [Text(f'PID: {row.pid:<7} TASK: {row.task:016x}  CPU: {row.cpu:<3} COMMAND: "{visible(row.comm)}"')]
    details = {d.index: d for d in entry.frames}
    for f in entry.trace.frames:
        out += [_frame_line(f), *_sources(f.source, indent=6)]
        detail = details.get(f.index)
        if detail is None:
            continue
        if detail.exception is not None:
            out += _exception_frame(detail.exception)
        out += _stack_words(detail.words)
        if detail.leaves:
            out.append(Text(f"--- <{detail.leaves}> ---", style="cyan"))
    if entry.user_registers is not None:
        out += _exception_frame(entry.user_registers)
    _print(console, out + _truncated(entry.trace))


# crash's register block (x86_64_exception_frame): three registers a line, then ORIG_RAX, CS, SS
_EXCEPTION_ROWS = (
    ("rip", "rsp", "eflags"),
    ("rax", "rbx", "rcx"),
    ("rdx", "rsi", "rdi"),
    ("rbp", "r8", "r9"),
    ("r10", "r11", "r12"),
    ("r13", "r14", "r15"),
)
# crash's arm64 exception frame (arm64_print_exception_frame): PC, LR, SP, then x29 down to x0, PSTATE
_AARCH64_EXCEPTION_ROWS = (
    ("pc", "x30", "sp"),
    *((f"x{i}", f"x{i - 1}", f"x{i - 2}") for i in range(29, 1, -3)),
    ("pstate",),
)
_CRASH_NAMES = {"eflags": "RFLAGS", "x30": "LR"}
_WIDTHS = {"eflags": 8, "cs": 4, "ss": 4}


def _exception_frame(frame: ExceptionFrame) -> _Lines:
    regs = dict(frame.registers)
    arm64 = "pstate" in regs
    label = "PC" if arm64 else "RIP"
    out: _Lines = [] if frame.user else [Text(f"    [exception {label}: {frame.rip_text}]", style="bold")]
    for names in _AARCH64_EXCEPTION_ROWS if arm64 else _EXCEPTION_ROWS:
        known = [n for n in names if n in regs]
        if known:
            out.append(
                Text(
                    "    "
                    + "  ".join(f"{_CRASH_NAMES.get(n, n.upper()):>3}: {regs[n]:0{_WIDTHS.get(n, 16)}x}" for n in known)
                )
            )
    last = [f"{n.upper()}: {regs[n]:0{_WIDTHS.get(n, 16)}x}" for n in ("orig_rax", "cs", "ss") if n in regs]
    if last:
        out.append(Text("    " + "  ".join(last)))
    return out


def _stack_words(words: Sequence[StackWord]) -> _Lines:
    # two words a line, as crash's bt -f on a 64-bit kernel
    cells = [w.symbol or (f"[{w.slab_cache}]" if w.slab_cache else f"{w.value:016x}") for w in words]
    return [
        Text(f"    {words[i].address:016x}: " + " ".join(f"{c:<16}" for c in cells[i : i + 2]).rstrip(), style="dim")
        for i in range(0, len(words), 2)
    ]


def _sources(lines: Sequence[SourceLine], *, indent: int) -> _Lines:
    return [
        Text(
            " " * indent + f"{s.function} at {s.file}:{s.line}" + (" (inlined)" if s.inlined else ""),
            style="cyan" if s.inlined else "dim",
        )
        for s in lines
    ]


def _task_line(row: TaskRow) -> str:
    return (
        f'PID: {row.pid:<7} TASK: {row.task:016x}  CPU: {row.cpu:<3} COMMAND: "{visible(row.comm)}"  STATE: {row.state}'
    )


def render_tasks(rows: Sequence[TaskRow], console: Console) -> None:
    """crash's ``ps``: ``>`` marks the tasks running on a CPU."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("", "left"),
        ("PID", "right"),
        ("PPID", "right"),
        ("CPU", "right"),
        ("TASK", "left"),
        ("ST", "left"),
        ("COMM", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            ">" if r.active else "",
            str(r.pid),
            str(r.ppid),
            str(r.cpu),
            f"{r.task:016x}",
            r.state,
            escape(visible(r.comm)),
        )
    console.print(table)


def render_modules(rows: Sequence[ModuleRow], console: Console) -> None:
    """crash's ``mod``: name, base, size, taints and the in-memory debug information found."""
    console.print(_modules(rows))


def _modules(rows: Sequence[ModuleRow]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("NAME", "BASE", "SIZE", "TAINTS", "SYMBOLS", "BTF", "NOTE"):
        table.add_column(name, justify="right" if name in ("SIZE", "SYMBOLS", "BTF") else "left")
    for m in rows:
        table.add_row(
            escape(m.name),
            f"{m.base:016x}",
            str(m.size),
            m.taints or "-",
            str(m.num_symbols),
            str(m.btf_size),
            escape(m.error or ""),
        )
    return table


def render_log(lines: Sequence[LogLine], console: Console, *, caller: bool = False) -> None:
    """Log lines as dmesg prints them. Output that is not a terminal gets the kernel's text as is,
    one line per record: rich would expand its tabs (``rcu: \\tRCU restricting CPUs``), so
    ``kcrash log DUMP`` would differ from ``dmesg``, ``kcrash dump dmesg`` and the serial console."""
    if console.is_terminal:
        _print(console, _log(lines, caller))
    else:
        console.file.write("".join(f"{line.formatted(caller=caller)}\n" for line in lines))


def _log(lines: Sequence[LogLine], caller: bool) -> _Lines:
    return [Text(line.formatted(caller=caller)) for line in lines]


def _context(ctx: CrashingContext) -> _Lines:
    pc, sp = ("PC", "SP") if "pstate" in dict(ctx.registers) else ("RIP", "RSP")  # arm64 or x86-64
    out: _Lines = [
        Text(f'CPU {ctx.cpu}  PID {ctx.pid}  COMM "{visible(ctx.comm)}"  TASK {ctx.task:016x}'),
        Text(f"{pc}: {ctx.ip_text}   {sp}: {ctx.sp:016x}   (registers from {ctx.registers_from})"),
        *_sources(ctx.ip_source, indent=2),
    ]
    if ctx.snippet is not None:
        out += [
            Text(
                f"  {'>' if n == ctx.snippet.line else ' '}{n:5d}  {visible(text)}",
                style="bold" if n == ctx.snippet.line else "dim",
            )
            for n, text in enumerate(ctx.snippet.lines, ctx.snippet.first)
        ]
    regs = dict(ctx.registers)
    order = [n for row in _AARCH64_EXCEPTION_ROWS for n in row] if "pstate" in regs else _REG_ORDER
    names = [n for n in order if n in regs and n not in ("rip", "rsp", "pc", "sp")]
    out += [
        Text("  " + "  ".join(f"{n.upper():>3}: {regs[n]:016x}" for n in names[i : i + 3]))
        for i in range(0, len(names), 3)
    ]
    return out


def render_disassembly(dis: Disassembly, console: Console) -> None:
    """Instructions around the faulting IP; ``=>`` marks the one at the IP."""
    _print(console, _disassembly(dis))


def _disassembly(dis: Disassembly) -> _Lines:
    out: _Lines = [Text(f"{dis.function or 'unknown function'}, IP {dis.ip:016x}", style="dim")]
    out += [
        Text(
            f"{'=> ' if i.faulting else '   '}{i.address:016x}  {i.hex:<22} {i.text}",
            style="bold yellow" if i.faulting else "",
        )
        for i in dis.instructions
    ]
    if dis.error:
        out.append(Text(f" ({dis.error})", style="yellow"))
    return out


def _mb(value: int | None) -> str:
    return "unknown" if value is None else f"{value / (1 << 20):.1f} MB"


def render_memory(mem: MemorySummary, console: Console) -> None:
    """Memory totals and the top slab caches."""
    _print(console, _memory(mem))


def _memory(mem: MemorySummary) -> _Lines:
    out = _pairs(
        [
            ("Total", _mb(mem.total_bytes)),
            ("Free", _mb(mem.free_bytes)),
            ("Page cache", _mb(mem.file_bytes)),
            ("Anonymous", _mb(mem.anon_bytes)),
            ("Slab reclaimable", _mb(mem.slab_reclaimable_bytes)),
            ("Slab unreclaimable", _mb(mem.slab_unreclaimable_bytes)),
        ]
    )
    table = Table(
        box=None,
        pad_edge=False,
        header_style="bold",
        title=f"Top slab caches (of {mem.slab_caches})",
        title_justify="left",
    )
    for name in ("NAME", "OBJSIZE", "OBJECTS", "SLABS", "TOTAL"):
        table.add_column(name, justify="left" if name == "NAME" else "right")
    for s in mem.top_slabs:
        table.add_row(escape(visible(s.name)), str(s.object_size), str(s.objects), str(s.slabs), _mb(s.total_bytes))
    out.append(table)
    if mem.error:
        out.append(Text(f" ({mem.error})", style="yellow"))
    return out


def render_regions(regions: TaskMemory, console: Console) -> None:
    """A task's VMAs as ``/proc/PID/maps`` lines."""
    _print(console, _regions(regions))


def _regions(regions: TaskMemory) -> _Lines:
    out: _Lines = []
    if regions.kernel_thread:
        out.append(Text(f'PID {regions.pid} "{visible(regions.comm)}" is a kernel thread: no user memory'))
    out += [Text(f"{v.start:016x}-{v.end:016x} {v.perms} {v.offset:08x} {visible(v.backing)}") for v in regions.regions]
    if regions.truncated:
        out.append(Text(f" (walk stopped: {regions.truncated})", style="yellow"))
    return out


def render_dump(meta: DumpMetadata, console: Console) -> None:
    """The dump file's format, level, size and collection time."""
    _print(console, _dump(meta))


def _dump(meta: DumpMetadata) -> _Lines:
    return _pairs(
        [
            ("File", meta.path),
            ("Format", f"{meta.format} ({', '.join(meta.codecs)})"),
            ("Dump level", "n/a" if meta.dump_level is None else str(meta.dump_level)),
            ("Size", f"{meta.size} bytes"),
            ("Collected", f"{_time(meta.collected)} ({meta.collected_from})"),
            ("Pages", f"{meta.pages_dumped} of {meta.pages_total}" + (" INCOMPLETE" if meta.incomplete else "")),
        ]
    )


def _verdict(report: CrashReport) -> _Lines:
    v = report.verdict
    out: _Lines = [Text("PANIC: ", style="bold red") + Text(v.panic_message or "no panic message in the log")]
    if v.title:
        kind = f"  ({v.crash_type})" if v.crash_type else ""
        out.append(Text("TITLE: ", style="bold") + Text(v.title + kind))
    if v.signature:
        out.append(Text("SIGNATURE: ", style="bold") + Text(v.signature + ("  (corrupted)" if v.corrupted else "")))
    where = f"{v.crashing_function}  (from the {v.source})" if v.crashing_function else "unknown"
    out.append(Text("CRASHING FUNCTION: ", style="bold") + Text(where, style="bold yellow"))
    return out


def render_report(report: CrashReport, console: Console, *, blocked_frames: int = 12) -> None:
    """The whole report: verdict, system, crashing context, backtrace, disassembly, log tail, tasks
    by state, blocked tasks, modules and taints, memory, the crashing task's regions, the dump, notes."""
    gone = _unavailable(report)
    out = [
        *_verdict(report),
        *_why(report.locks, blocked_frames),
        *_oops(report.oops),
        *_section("System"),
        *gone("system"),
        *_system(report.system),
    ]
    if report.context is not None or gone("context"):
        out += [*_section("Crashing context"), *gone("context")]
        out += _context(report.context) if report.context is not None else []
    out += [*_section("Backtrace of the crashed thread"), *gone("backtrace"), *_trace(report.backtrace, _MAX_FRAMES)]
    out += _cpus(report, blocked_frames)
    if report.disassembly is not None or gone("disassembly"):
        out += [*_section("Disassembly around the faulting IP"), *gone("disassembly")]
        out += _disassembly(report.disassembly) if report.disassembly is not None else []
    out += [
        *_section(f"Log (last {len(report.log_tail)} lines)"),
        *gone("log"),
        *_log(report.log_tail, False),
        *_tasks_sections(report, blocked_frames),
        *_section(f"Modules: {len(report.modules)}  Tainted: {report.system.tainted.strip() or 'no'}"),
        *gone("modules"),
        *(Text(f"  {t.letter}  {t.name}") for t in report.taints),
        _modules(report.modules),
        *_memory_sections(report),
    ]
    if report.notes:
        out += [*_section("Notes"), *(Text(f"- {note}", style="yellow") for note in report.notes)]
    _print(console, out)


def _why(locks: LockAnalysis | None, frames: int) -> _Lines:
    # "Why it hung": one line per culprit, then the deadlocked tasks' and stuck CPUs' stacks.
    if locks is None:
        return []
    out = [*_section("Why it hung"), *(Text(f"  {line}", style="bold yellow") for line in locks.why)]
    if not locks.why:
        out.append(Text("  no deadlock, lock-up or blocked task found"))
    for number, deadlock in enumerate(locks.deadlocks, 1):
        for wait in deadlock.waits:
            out += [Text(f"Deadlock #{number}: {_task_line(wait.task)}"), *_trace(wait.trace, frames)]
    for lockup in locks.lockups:
        out += [Text(f"CPU {lockup.cpu}: {_task_line(lockup.task)}"), *_trace(lockup.trace, frames)]
    return out


def _oops(oops: OopsHeader | None) -> _Lines:
    # The oops header and Code: line as the console printed them.
    if oops is None:
        return []
    lines = [*oops.lines, *([oops.code] if oops.code is not None else [])]
    return [*_section("Oops"), *(Text(visible(line.formatted()), style="bold") for line in lines)]


def _cpus(report: CrashReport, frames: int) -> _Lines:
    # What every possible CPU was doing, the panic CPU first.
    if not report.cpus and not _unavailable(report)("cpus"):
        return []
    out: _Lines = [*_section(f"Backtraces of every CPU: {len(report.cpus)}"), *_unavailable(report)("cpus")]
    for c in report.cpus:
        head = f"CPU {c.cpu}{' (panic)' if c.panic else ''}: {_task_line(c.task)}  (from {c.registers_from})"
        out += [Text(head, style="bold" if c.panic else ""), *_trace(c.trace, frames)]
    return out


def _unavailable(report: CrashReport) -> Callable[[str], _Lines]:
    # The one-line notes of the sections that could not be read (a damaged dump).
    def lines(section: str) -> _Lines:
        return [
            Text(f"  not available: {n.reason}", style="yellow") for n in report.unavailable if n.section == section
        ]

    return lines


def _tasks_sections(report: CrashReport, blocked_frames: int) -> _Lines:
    out: _Lines = []
    gone = _unavailable(report)
    if report.task_states or gone("tasks"):
        states = "  ".join(f"{s.state}: {s.count}" for s in report.task_states)
        out += [*_section(f"Tasks: {len(report.tasks)}"), *gone("tasks"), Text(f"  {states}")]
    out += [*_section(f"Blocked (D state) tasks: {len(report.blocked)}"), *gone("blocked")]
    for b in report.blocked:
        out += [Text(_task_line(b.task)), *_trace(b.trace, blocked_frames)]
    return out


def _memory_sections(report: CrashReport) -> _Lines:
    out: _Lines = []
    gone = _unavailable(report)
    if report.memory is not None or gone("memory"):
        out += [*_section("Memory"), *gone("memory"), *(_memory(report.memory) if report.memory else [])]
    if report.regions is not None:
        out += [
            *_section(f"Memory regions of PID {report.regions.pid}: {len(report.regions.regions)}"),
            *_regions(report.regions),
        ]
    if report.dump is not None:
        out += [*_section("Dump"), *_dump(report.dump)]
    return out
