"""
kcrash.analysis.triage
======================

Triage of a crashed kernel opened by :func:`~kcrash.analysis.target.open_target`: builds the
:mod:`kcrash.model` pieces (system facts, tasks, modules, log, symbolized traces) and the
whole :class:`~kcrash.model.CrashReport`. The crashing function is derived from the crashed
thread's own trace, by the same rules as the oops parser's ``guilty_function``
(:mod:`kcrash.oops.patterns`): for an oops, a warning under ``panic_on_warn`` or a lockup, the
function where the exception/interrupt ``pt_regs`` frame was taken (spinlock slow paths skipped);
for a hung-task panic, the function the blocked tasks sleep in (below the scheduler and the sleeping
primitives); for any other panic, the caller of ``panic()``/``nmi_panic()`` (panic machinery
skipped). The oops parser also runs on the dump's own log; both answers are kept and the trace's
wins. Nothing here prints.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

from kcrash import model
from kcrash.analysis.dumpinfo import crash_time_or_none, dump_metadata
from kcrash.analysis.target import module_debuginfo
from kcrash.debuginfo.symbols import lookup_address
from kcrash.dumps.cpustate import cpu_states
from kcrash.errors import FaultError, KcrashError, MissingDebugInfoError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.cpumask import num_online_cpus
from kcrash.helpers.linux.module import for_each_module, module_base, module_name, module_size, module_taints
from kcrash.helpers.linux.panic import (
    crash_context,
    panic_cpu_or_none,
    panic_message_or_none,
    taint_flags,
    tainted,
    uptime_ns_or_none,
)
from kcrash.helpers.linux.printk import PrintkLog, PrintkRecord, format_dmesg, get_printk_log
from kcrash.helpers.linux.sched import (
    cpu_curr,
    find_task_or_none,
    for_each_task,
    task_ps_layout,
    task_state_char,
    validate_task,
)
from kcrash.helpers.linux.stack import kernel_unwinder, stack_trace
from kcrash.memory.kernel import open_kernel_memory
from kcrash.metrics import phase
from kcrash.types.object import Object
from kcrash.types.program import Program
from kcrash.unwind import Trace as UnwindTrace

if TYPE_CHECKING:
    from kcrash.debuginfo.symbolizer import KernelSymbolizer
    from kcrash.dumps.base import DumpFormat
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.oops import OopsReport
    from kcrash.oops.lazyre import Alternation

# The oops parser (kcrash.oops), capstone (analysis.disasm), the debug-info symbolizer
# (analysis.sources) and the dump-file reader (analysis.dumpinfo) are imported where they are used:
# ``sys``/``ps``/``bt`` never need them, and ``report`` without --vmlinux never needs the symbolizer.

__all__ = [
    "blocked_tasks",
    "build_report",
    "cpu_backtrace",
    "cpu_backtraces",
    "crashed_trace",
    "crashing_context",
    "log_lines",
    "module_rows",
    "symbolize_trace",
    "system_info",
    "taint_rows",
    "task_backtrace",
    "task_by_pid_or_address_or_none",
    "task_row",
    "task_rows",
    "task_state_counts",
    "task_trace",
    "verdict",
]

#: Panic messages raised on behalf of code a trap or interrupt stopped: blame that code. arm64's
#: stack overflow panics from handle_bad_stack() with "kernel stack overflow" (arch/arm64/kernel/traps.c).
_INTERRUPTED = re.compile(
    r"Fatal exception|panic_on_warn set|softlockup: hung tasks|Hard LOCKUP|stack guard page|kernel stack overflow")
#: Hung-task panics: blame what the blocked tasks sleep in.
_BLOCKED = re.compile(r"hung_task: blocked tasks")
#: Lockups: a CPU stopper spinning for another CPU is a victim (as the oops parser's running rule).
_RUNNING_SKIP = (
    "^stop_machine_yield$",
    "^multi_cpu_stop$",
    "^cpu_stopper_thread$",
    "^smpboot_thread_fn$",
    "^kthread$",
    "^ret_from_fork",
)
#: panic() and the plumbing it calls (notifiers, stack dumps, the pvpanic device, console flushes)
_PANIC_FUNCS = re.compile(r"^(?:v?panic|nmi_panic|__panic)$")
_PANIC_SKIP = ("^v?panic$", "^nmi_panic", "^dump_stack", "^show_stack", "^_?printk", "^vprintk", "^__pfx_")
_BLOCKED_SKIP = (
    "^__switch_to",  # an arm64 sleeping task's frame #0 (its cpu_context pc)
    "^context_switch",
    "^__schedule",
    "^schedule",
    "^io_schedule",
    "^preempt_schedule",
    "^__mutex_lock",
    "^mutex_lock",
    "^rt_mutex",
    "^__rt_mutex",
    "^rwsem_down",
    "^__rwsem",
    "^__down",
    "^down",
    "^percpu_(?:down|rwsem)",
    "^__wait_for_common",
    "^wait_for_common",
    "^wait_for_completion",
    "^__wait_on_bit",
    "^out_of_line_wait_on_bit",
    "^bit_wait",
    "^folio_wait",
    "^__folio_lock",
    "^__lock_page",
    "^wait_on_page",
    "^msleep",
    "^usleep_range",
    "^schedule_timeout",
    "^synchronize_(?:rcu|srcu|net|sched)",
    "^__synchronize_srcu",
    "^wait_rcu_gp",
    "^__wait_rcu_gp",
    "^rcu_barrier",
)
_HUNG_LINE = re.compile(rb"INFO: task .*:(\d+) blocked for more than")
_LOG_TAIL = 30
_T = TypeVar("_T")


def _skip(patterns: tuple[str, ...], global_skip: bool = True) -> Alternation:
    # The oops parser's skip list (its global list added unless ``global_skip`` is False), tried
    # entry by entry where it can match instead of compiled whole (skip_alternation caches it).
    # lazy: +71 ms CPU to import it after this module (measured, loaded host)
    from kcrash.oops.patterns import skip_alternation

    return skip_alternation(patterns, global_skip=global_skip)


# -- traces -------------------------------------------------------------------------------------


def symbolize_trace(prog: Program, trace: UnwindTrace) -> model.Trace:
    """The model of an unwound trace, every frame named the kernel's ``%pS`` way (a return
    address is looked up one byte back, so a call at a function's very end names that function)."""
    return model.Trace(
        tuple(_frame(prog, i, f.pc, f.sp, f.reliable, f.kind) for i, f in enumerate(trace.frames)), trace.truncated
    )


def _frame(prog: Program, index: int, pc: int, sp: int, reliable: bool, kind: str) -> model.Frame:
    found = prog.symbolize_or_none(lookup_address(pc, interrupted=kind not in ("call", "scan")))
    if found is None:
        return model.Frame(index, pc, sp, None, 0, None, f"{pc:#x}", reliable, kind)
    symbol, _ = found
    offset = pc - symbol.address
    text = f"{symbol.name}+{offset:#x}/{symbol.size:#x}" + (f" [{symbol.module}]" if symbol.module else "")
    return model.Frame(index, pc, sp, symbol.name, offset, symbol.module, text, reliable, kind)


def task_trace(prog: Program, task: Object) -> model.Trace:
    """The symbolized stack of ``task`` (``struct task_struct *``), scanning past an early stop."""
    try:
        return symbolize_trace(prog, stack_trace(prog, task, scan=True))
    except KcrashError as exc:
        return model.Trace((), f"cannot unwind: {exc}")


def crashed_trace(prog: Program, cpu: int) -> model.Trace:
    """The symbolized stack of CPU ``cpu`` from its dump registers."""
    try:
        return symbolize_trace(prog, stack_trace(prog, cpu, scan=True))
    except KcrashError as exc:
        return model.Trace((), f"cannot unwind CPU {cpu}: {exc}")


# -- tasks, modules, log, system ----------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "backslashreplace")


def _running(prog: Program) -> dict[int, int]:
    try:
        return {int(cpu_curr(prog, cpu)): cpu for cpu in range(kernel_unwinder(prog).num_cpus())}
    except KcrashError:
        return {}


def task_row(task: Object, running: dict[int, int]) -> model.TaskRow:
    """One ``ps`` row of ``task``; ``running`` maps active task addresses to their CPU."""
    return _task_row(task.prog_, task_ps_layout(task.prog_), int(task), running)


def _task_row(prog: Program, layout: StructLayout, address: int, running: dict[int, int]) -> model.TaskRow:
    # The members in the order ps used to read them one by one (a fault in an unreadable task
    # names the same member).
    task = layout.read(prog, address)
    cpu = running.get(address)
    pid, parent = task.value("pid"), task.value("real_parent")
    ppid = layout.read_value(prog, parent, "pid") if parent else 0
    tgid = task.value("tgid")
    return model.TaskRow(
        pid=pid,
        ppid=ppid,
        tgid=tgid,
        cpu=task.value("cpu") if cpu is None else cpu,
        task=address,
        state=task_state_char(prog, task.value("state"), task.value("exit_state")),
        comm=_text(task.string("comm")),
        active=cpu is not None,
    )


def task_rows(prog: Program) -> tuple[tuple[model.TaskRow, ...], str | None]:
    """Every task, idle tasks first, then the task list order; and why the walk stopped early."""
    running = _running(prog)
    walk = for_each_task(prog, idle=True)
    layout = task_ps_layout(prog)
    rows = []
    unreadable: list[FaultError] = []
    for task in walk:  # an unreadable task is skipped; the walk itself stops where its links fail
        try:
            address = int(task)  # may itself be read from memory (a CPU's idle task)
            rows.append(_task_row(prog, layout, address, running))
        except FaultError as exc:
            unreadable.append(exc)
    reasons = [walk.truncated] if walk.truncated else []
    if unreadable:
        first = unreadable[0]
        reasons.append(f"{len(unreadable)} task(s) unreadable, the first at {first.address:#x} ({first.reason})")
    return tuple(rows), "; ".join(reasons) or None


def task_backtrace(prog: Program, task: Object) -> model.TaskTrace:
    """``bt`` of one task."""
    return model.TaskTrace(task_backtrace_row(prog, task), task_trace(prog, task))


def task_backtrace_row(prog: Program, task: Object) -> model.TaskRow:
    """The ``ps`` row heading ``bt`` of ``task`` (``struct task_struct *``)."""
    return task_row(task, _running(prog))


def cpu_backtrace(prog: Program, cpu: int) -> model.TaskTrace:
    """``bt`` of the task running on ``cpu``, unwound from the CPU's dump registers."""
    return model.TaskTrace(cpu_task_row(prog, cpu), crashed_trace(prog, cpu))


def cpu_task_row(prog: Program, cpu: int) -> model.TaskRow:
    """The row of the task running on ``cpu``; when its per-CPU run queue or task_struct is
    missing from the dump, a row that says so (the CPU's registers still give the backtrace)."""
    try:
        return task_row(cpu_curr(prog, cpu), _running(prog))
    except FaultError as exc:
        return model.TaskRow(
            pid=-1, ppid=-1, tgid=-1, cpu=cpu, task=0, state="?", comm=f"(unreadable at {exc.address:#x})", active=True
        )


def cpu_backtraces(prog: Program) -> tuple[model.TaskTrace, ...]:
    """``bt -a``: the active task of every CPU in the dump."""
    return tuple(cpu_backtrace(prog, cpu) for cpu in range(kernel_unwinder(prog).num_cpus()))


def task_by_pid_or_address_or_none(prog: Program, value: int) -> Object | None:
    """The task with pid ``value`` (None if there is none), or the ``struct task_struct`` at
    address ``value``.

    :raises ValidationError: the address is not a task's.
    """
    if value >= 1 << 47:
        return validate_task(prog, value)
    return find_task_or_none(prog, value)


def blocked_tasks(prog: Program, rows: Iterable[model.TaskRow]) -> tuple[model.TaskTrace, ...]:
    """The D-state tasks of ``rows`` with their stacks."""
    task_type = prog.pointer_type("struct task_struct")
    return tuple(
        model.TaskTrace(row, task_trace(prog, Object(prog, task_type, row.task))) for row in rows if row.state == "D"
    )


def module_rows(prog: Program) -> tuple[model.ModuleRow, ...]:
    """Every loaded module with what was loaded for it (see :func:`~kcrash.analysis.target.load_modules`)."""
    loaded = {info.name: info for info in module_debuginfo(prog)[0]}
    rows = []
    for mod in for_each_module(prog):
        name = module_name(mod)
        info = loaded.get(name)
        rows.append(
            model.ModuleRow(
                name,
                module_base(mod),
                module_size(mod),
                module_taints(mod),
                info.num_symbols if info else 0,
                info.btf_size if info else 0,
                info.error if info else "not loaded",
            )
        )
    return tuple(rows)


def printk_records(prog: Program) -> list[PrintkRecord]:
    """The kernel log records (MissingDebugInfoError without VMCOREINFO)."""
    return printk_log(prog).records


def printk_log(prog: Program) -> PrintkLog:
    """The kernel log records and how many were lost to missing pages (MissingDebugInfoError without
    VMCOREINFO)."""
    if prog.vmcoreinfo is None:
        raise MissingDebugInfoError(
            "the dump has no VMCOREINFO, so the printk ring buffer cannot be found; "
            "a dump taken by kdump or with QEMU '-device vmcoreinfo' has it"
        )
    return get_printk_log(prog.memory, prog.vmcoreinfo)


def dump_log(dump: DumpFormat) -> PrintkLog:
    """The kernel log of ``dump`` from VMCOREINFO alone (no symbols, types or vmlinux needed), as
    ``makedumpfile --dump-dmesg`` reads it; records lost to missing pages are counted, and on a damaged
    dump whose ring itself is gone the log is empty with the reason in ``unreadable``."""
    info = dump.vmcoreinfo_or_none()
    if info is None:
        raise MissingDebugInfoError(f"{dump.path}: the dump has no VMCOREINFO; the log cannot be found without it")
    try:
        return get_printk_log(open_kernel_memory(dump), info)
    except FaultError as exc:
        if not dump.describe().incomplete:  # an intact dump that cannot be read is an error
            raise
        # a damaged dump whose ring lies in its missing pages: no record survives, and that is the answer
        return PrintkLog([], 0, f"the printk ring lies in pages missing from the dump ({exc})")


def log_lines(records: Sequence[PrintkRecord]) -> tuple[model.LogLine, ...]:
    """Records as log lines (a multi-line record stays one line with its newlines)."""
    return tuple(model.LogLine(r.seq, r.ts_nsec, r.caller, _text(r.text), r.level, r.facility) for r in records)


def _online_cpus_or_zero(prog: Program) -> int:
    # A running kernel (/proc/kcore, a live target) has no saved CPUs: its online mask is current.
    # (After a panic the mask is not: stop_this_cpu() took the other CPUs out of it.)
    try:
        return num_online_cpus(prog)
    except KcrashError:
        return 0


def system_info(prog: Program, dump: str) -> model.SystemInfo:
    """crash's ``sys``: release, machine, CPUs, uptime, time and taint at the crash."""
    uts = prog["init_uts_ns"].name
    return model.SystemInfo(
        release=_text(uts.release.string_()),
        version=_text(uts.version.string_()),
        machine=_text(uts.machine.string_()),
        nodename=_text(uts.nodename.string_()),
        cpus=len(prog.cpus) or _online_cpus_or_zero(prog),
        panic_cpu=panic_cpu_or_none(prog),
        uptime_ns=uptime_ns_or_none(prog),
        crash_time=crash_time_or_none(prog.vmcoreinfo, prog),
        tainted=_tainted_or_empty(prog),
        taint_mask=_taint_mask_or_none(prog),
        memory_bytes=_memory_bytes(prog),
        dump=dump,
    )


def _taint_mask_or_none(prog: Program) -> int | None:
    # tainted_mask is a static variable: absent from a text-only kallsyms (no CONFIG_KALLSYMS_ALL)
    try:
        return int(prog["tainted_mask"])
    except KcrashError:
        return None


def _tainted_or_empty(prog: Program) -> str:
    try:
        return tainted(prog)
    except KcrashError:
        return ""


def _memory_bytes(prog: Program) -> int | None:
    try:
        return int(prog["_totalram_pages"].counter) * 4096
    except KcrashError:
        return None


# -- the verdict --------------------------------------------------------------------------------


def first_oops_or_none(records: Sequence[PrintkRecord]) -> OopsReport | None:
    """The first crash report the oops parser finds in the dump's own log."""
    # lazy: +76 ms CPU to import it after this module (measured, loaded host)
    from kcrash.oops import iter_reports

    return next(iter_reports(io.BytesIO(format_dmesg(records).encode("latin-1", "replace"))), None)


def _panic_index(frames: Sequence[model.Frame]) -> int | None:
    return next((i for i, f in enumerate(frames) if f.function and _PANIC_FUNCS.match(f.function)), None)


def interrupted_function(frames: Sequence[model.Frame]) -> str | None:
    """The function a trap or interrupt stopped: the first ``pt_regs`` frame after ``panic()`` (after
    the first frame when there is no ``panic()``), spinlock slow paths and stopper loops skipped."""
    start = (_panic_index(frames) or 0) + 1
    regs = next((i for i in range(start, len(frames)) if frames[i].kind == "regs"), None)
    if regs is None:
        return None
    return _first_unskipped(frames[regs:], _skip(_RUNNING_SKIP))


def panic_caller(frames: Sequence[model.Frame]) -> str | None:
    """The caller of ``panic()``/``nmi_panic()``, panic plumbing skipped."""
    index = _panic_index(frames)
    return None if index is None else _first_unskipped(frames[index + 1 :], _skip(_PANIC_SKIP, global_skip=False))


def blocked_function(traces: Iterable[model.Trace]) -> str | None:
    """The first function below the scheduler and the sleeping primitives, in the first trace with one."""
    for trace in traces:
        found = _first_unskipped(trace.frames, _skip(_BLOCKED_SKIP))
        if found is not None:
            return found
    return None


def _first_unskipped(frames: Iterable[model.Frame], skip: Alternation) -> str | None:
    for frame in frames:
        if frame.reliable and frame.function and not skip.found_in(frame.function):
            return frame.function
    return None


def _hung_pids(records: Sequence[PrintkRecord]) -> list[int]:
    pids: list[int] = []
    for record in records:
        m = _HUNG_LINE.search(record.text)
        if m is not None and int(m.group(1)) not in pids:
            pids.append(int(m.group(1)))
    return pids


def _blocked_traces(records: Sequence[PrintkRecord], blocked: Sequence[model.TaskTrace]) -> list[model.Trace]:
    # The tasks the hung-task detector named first, then the other D-state tasks.
    named = _hung_pids(records)
    ordered = sorted(blocked, key=lambda b: named.index(b.task.pid) if b.task.pid in named else len(named))
    return [b.trace for b in ordered]


def verdict(
    panic_message: str | None,
    frames: Sequence[model.Frame],
    records: Sequence[PrintkRecord],
    blocked: Sequence[model.TaskTrace],
) -> model.Verdict:
    """The verdict from the panic message, the crashed thread's frames and the log."""
    oops = first_oops_or_none(records)
    message = panic_message or ""
    if _BLOCKED.search(message):
        from_trace = blocked_function(_blocked_traces(records, blocked))
    elif _INTERRUPTED.search(message):
        from_trace = interrupted_function(frames)
    else:
        from_trace = panic_caller(frames) or interrupted_function(frames)
    from_log = (oops.guilty_function or None) if oops is not None else None
    chosen, source = (from_trace, "backtrace") if from_trace else (from_log, "log" if from_log else None)
    return model.Verdict(
        panic_message,
        oops.title if oops else None,
        (oops.crash_type or None) if oops else None,
        chosen,
        source,
        from_trace,
        from_log,
        oops.signature if oops else None,
        oops.corrupted if oops else False,
    )


# -- the crashing context and the report --------------------------------------------------------


def crashing_context(prog: Program, cpu: int, frames: Sequence[model.Frame]) -> model.CrashingContext:
    """The crashing CPU's task, and the registers of the exception that led to the panic when the
    trace has one (else the CPU's dump registers)."""
    ctx = crash_context(prog, cpu)
    trace = stack_trace(prog, cpu)
    start = (_panic_index(frames) or 0) + 1
    regs_frame = next((f for f in trace.frames[start:] if f.kind == "regs" and f.regs is not None), None)
    registers = regs_frame.regs.as_dict() if regs_frame is not None and regs_frame.regs is not None else ctx.registers
    # x86-64 names the pc and sp rip and rsp; arm64 pc and sp
    ip, sp = registers.get("rip", registers.get("pc", ctx.ip)), registers.get("rsp", registers.get("sp", ctx.sp))
    return model.CrashingContext(
        cpu,
        ctx.pid,
        _text(ctx.comm),
        ctx.task,
        ip,
        prog.format_address(ip),
        sp,
        tuple(registers.items()),
        "pt_regs" if regs_frame is not None else "NT_PRSTATUS",
    )


class _Sections:
    # Each report section is computed on its own: one that fails becomes a note in that section
    # (SectionNote), and the rest of the report is still built.

    def __init__(self) -> None:
        self.unavailable: list[model.SectionNote] = []

    def get(self, section: str, compute: Callable[[], _T], default: _T) -> _T:
        try:
            return compute()
        except KcrashError as exc:
            self.note(section, str(exc))
            return default

    def note(self, section: str, reason: str) -> None:
        self.unavailable.append(model.SectionNote(section, reason))


def build_report(
    prog: Program,
    dump: str,
    *,
    log_tail: int = _LOG_TAIL,
    symbolizer: KernelSymbolizer | None = None,
    source_dirs: Sequence[str] = (),
) -> model.CrashReport:
    """The whole report of a crashed kernel; with ``symbolizer`` (debug information), the frames
    and the IP get source locations and the IP a source snippet (files looked up in ``source_dirs``
    too). A section that cannot be read (a damaged dump) is listed in ``unavailable`` with the
    reason, and the other sections are still reported."""
    notes: list[str] = []
    sections = _Sections()
    records = _log_section(sections, lambda: printk_log(prog))
    cpu = sections.get("system", lambda: panic_cpu_or_none(prog), None)
    if cpu is None:
        notes.append("no CPU panicked (panic_cpu unset): the backtrace is CPU 0's")
    with phase("unwind"):
        trace = crashed_trace(prog, 0 if cpu is None else cpu)
        no_rows: tuple[tuple[model.TaskRow, ...], str | None] = ((), None)
        rows, truncated = sections.get("tasks", lambda: task_rows(prog), no_rows)
        if truncated:
            sections.note("tasks", f"task list truncated: {truncated}")
        no_blocked: tuple[model.TaskTrace, ...] = ()
        blocked = sections.get("blocked", lambda: blocked_tasks(prog, rows), no_blocked)
    message = panic_message_or_none(records)
    context = _context_or_note(prog, cpu, trace.frames, notes)
    modules = _module_section(prog, sections)
    if symbolizer is not None:
        with phase("source"):
            trace, context = _with_sources(trace, context, symbolizer, source_dirs)
    cpus = len(prog.cpus)
    system = sections.get("system", lambda: system_info(prog, dump), _bare_system_info(prog.vmcoreinfo, cpus, dump))
    report = model.CrashReport(
        system,
        verdict(message, trace.frames, records, blocked),
        context,
        trace,
        log_lines(records[-log_tail:] if log_tail else ()),
        blocked,
        modules,
        (),
        tasks=rows,
        task_states=task_state_counts(rows),
        taints=taint_rows(prog),
    )
    report = _with_memory_sections(prog, dump, report, notes, sections)
    report = _with_every_cpu(prog, report, records, cpu, sections, symbolizer)
    report = _with_locks(prog, report, records, message, sections)
    report = _with_snippet(report, source_dirs, sections)
    return dataclasses.replace(report, unavailable=tuple(sections.unavailable))


def _with_snippet(report: model.CrashReport, source_dirs: Sequence[str], sections: _Sections) -> model.CrashReport:
    # Asked for with source_dirs: the IP's source snippet (from the debug information's file, else the
    # log's "kernel BUG at FILE:LINE!"), or a context note saying why there is none.
    ctx = report.context
    if not source_dirs or (ctx is not None and ctx.snippet is not None):
        return report
    # lazy: +130 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import SNIPPET_NOTE, find_snippet

    if ctx is None:
        sections.note("context", f"{SNIPPET_NOTE}: no crashing context")
        return report
    snippet, reason = find_snippet(ctx, report.oops, source_dirs)
    if snippet is None:
        sections.note("context", reason)
        return report
    return dataclasses.replace(report, context=dataclasses.replace(ctx, snippet=snippet))


def _with_locks(
    prog: Program, report: model.CrashReport, records: Sequence[PrintkRecord], message: str | None, sections: _Sections
) -> model.CrashReport:
    # "Why it hung" (analysis.locks) for hung-task and lock-up panics, and whenever a wait-for
    # cycle makes tasks hang without a panic of their own.
    # lazy: +27 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.locks import analyze_locks, is_hang

    if not report.tasks:
        return report
    with phase("locks"):
        traces = {t.task.task: t.trace for t in report.task_traces}  # unwound once, for every task
        locks = sections.get("locks", lambda: analyze_locks(prog, report.tasks, records, traces), None)
    if locks is None or not (is_hang(message) or locks.deadlocks or locks.lockups):
        return report
    return dataclasses.replace(report, locks=locks)


#: the log tail is widened back to the oops's first line when that is at most this many records back
_OOPS_TAIL_MAX = 200


def _with_every_cpu(
    prog: Program,
    report: model.CrashReport,
    records: Sequence[PrintkRecord],
    cpu: int | None,
    sections: _Sections,
    symbolizer: KernelSymbolizer | None,
) -> model.CrashReport:
    # The oops header from the log (the log tail then opens with it), every possible CPU's
    # backtrace, every task's (with source lines when there is debug information), and the
    # disassembly of every frame of these.
    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.cpu_traces import every_cpu_backtrace, every_task_backtrace

    # lazy: +60 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.disasm import frame_disassemblies

    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.oops_header import oops_header

    oops = oops_header(records)
    tail = report.log_tail
    first = next((i for i, r in enumerate(records) if oops and r.seq == oops.first_seq), None)
    if tail and first is not None and len(records) - _OOPS_TAIL_MAX <= first < len(records) - len(tail):
        tail = log_lines(records[first:])
    no_cpus: tuple[model.CpuBacktrace, ...] = ()
    with phase("unwind"):
        cpus = sections.get("cpus", lambda: every_cpu_backtrace(prog, cpu), no_cpus)
        tasks = every_task_backtrace(prog, report.tasks, cpus)
    if symbolizer is not None:
        cpus, tasks = _traces_with_sources(cpus, tasks, symbolizer)
    traces = [report.backtrace, *(c.trace for c in cpus), *(t.trace for t in tasks), *(b.trace for b in report.blocked)]
    with phase("disassembly"):
        disassembly = frame_disassemblies(prog, traces)
    faulting, blocked = report.disassembly, report.blocked
    if symbolizer is not None:
        disassembly = _disassembly_with_sources(disassembly, symbolizer)
        faulting = _disassembly_with_sources((faulting,), symbolizer)[0] if faulting is not None else None
        annotated = {t.task.task: t.trace for t in tasks}  # the blocked tasks' traces with their sources
        blocked = tuple(dataclasses.replace(b, trace=annotated.get(b.task.task, b.trace)) for b in blocked)
    return dataclasses.replace(
        report,
        disassembly=faulting,
        blocked=blocked,
        oops=oops,
        log_tail=tail,
        cpus=cpus,
        task_traces=tasks,
        frame_disassembly=disassembly,
    )


def _traces_with_sources(
    cpus: tuple[model.CpuBacktrace, ...], tasks: tuple[model.TaskTrace, ...], symbolizer: KernelSymbolizer
) -> tuple[tuple[model.CpuBacktrace, ...], tuple[model.TaskTrace, ...]]:
    # Source lines of every CPU's and every task's frames; a task on a CPU takes its CPU's trace.
    # lazy: +130 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import annotate_trace

    with phase("source"):
        cpus = tuple(dataclasses.replace(c, trace=annotate_trace(c.trace, symbolizer)) for c in cpus)
        on_cpu = {c.task.task: c.trace for c in cpus if c.task.task}
        tasks = tuple(
            dataclasses.replace(
                t, trace=on_cpu[t.task.task] if t.task.task in on_cpu else annotate_trace(t.trace, symbolizer)
            )
            for t in tasks
        )
    return cpus, tasks


def _disassembly_with_sources(
    blocks: tuple[model.Disassembly, ...], symbolizer: KernelSymbolizer
) -> tuple[model.Disassembly, ...]:
    # lazy: +130 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import annotate_disassembly

    with phase("source"):
        return tuple(annotate_disassembly(block, symbolizer) for block in blocks)


def build_bare_report(dump: DumpFormat, path: str, reason: str, *, log_tail: int = _LOG_TAIL) -> model.CrashReport:
    """The report of a dump whose kernel symbols cannot be read (``reason``; the kernel image's
    pages are missing, say): what VMCOREINFO, the CPU notes and the log still tell, every other
    section listed as unavailable."""
    sections = _Sections()
    records = _log_section(sections, lambda: dump_log(dump))
    cpus = sections.get("system", lambda: len(cpu_states(dump.notes())), 0)
    system = _bare_system_info(dump.vmcoreinfo_or_none(), cpus, path)
    gone = f"the kernel's symbols cannot be read: {reason}"
    for section in ("system", "context", "backtrace", "tasks", "blocked", "modules", "memory"):
        sections.note(section, gone)
    metadata = sections.get("dump", lambda: dump_metadata(path, opened=dump), None)
    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.oops_header import oops_header

    return model.CrashReport(
        system,
        verdict(panic_message_or_none(records), (), records, ()),
        None,
        model.Trace((), gone),
        log_lines(records[-log_tail:] if log_tail else ()),
        (),
        (),
        (),
        dump=metadata,
        unavailable=tuple(sections.unavailable),
        oops=oops_header(records),
    )


def _log_section(sections: _Sections, read: Callable[[], PrintkLog]) -> list[PrintkRecord]:
    # The records ``read`` gives; what it could not read is noted in the log section.
    log = sections.get("log", read, None)
    if log is None:
        return []
    if log.missing:
        sections.note("log", f"{log.missing} record(s) lie in pages missing from the dump")
    if log.unreadable:
        sections.note("log", log.unreadable)
    return log.records


def _module_section(prog: Program, sections: _Sections) -> tuple[model.ModuleRow, ...]:
    module_truncated = sections.get("modules", lambda: module_debuginfo(prog)[1], None)
    if module_truncated:
        sections.note("modules", f"module list truncated: {module_truncated}")
    return sections.get("modules", lambda: module_rows(prog), ())


def _bare_system_info(info: VmcoreInfo | None, cpus: int, dump: str) -> model.SystemInfo:
    # What VMCOREINFO and the CPU notes say when the kernel's own structures cannot be read.
    return model.SystemInfo(
        release=(info.osrelease or "") if info else "",
        version="",
        machine="",
        nodename="",
        cpus=cpus,
        panic_cpu=None,
        uptime_ns=None,
        crash_time=crash_time_or_none(info),
        tainted="",
        taint_mask=0,
        memory_bytes=None,
        dump=dump,
    )


def _with_sources(
    trace: model.Trace, context: model.CrashingContext | None, symbolizer: KernelSymbolizer, source_dirs: Sequence[str]
) -> tuple[model.Trace, model.CrashingContext | None]:
    # lazy: +130 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.sources import annotate_context, annotate_trace

    trace = annotate_trace(trace, symbolizer)
    return trace, annotate_context(context, symbolizer, source_dirs) if context is not None else None


def task_state_counts(rows: Iterable[model.TaskRow]) -> tuple[model.TaskStateCount, ...]:
    """How many tasks are in each state, most common first."""
    counts = Counter(row.state for row in rows)
    return tuple(model.TaskStateCount(state, n) for state, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


#: Documentation/admin-guide/tainted-kernels.rst, by bit
_TAINT_NAMES = (
    "proprietary module",
    "module force loaded",
    "out-of-spec system (SMP/CPU)",
    "module force unloaded",
    "machine check",
    "bad page",
    "user requested taint",
    "kernel died (oops or BUG)",
    "ACPI table overridden",
    "kernel issued warning",
    "staging driver",
    "firmware workaround",
    "out-of-tree module",
    "unsigned module",
    "soft lockup",
    "live patched",
    "auxiliary taint",
    "built with struct randomization",
    "in-kernel test",
)


def taint_rows(prog: Program) -> tuple[model.Taint, ...]:
    """The taint flags set at the crash, letters from the kernel's own ``taint_flags[]``."""
    try:
        mask, flags = int(prog["tainted_mask"]), taint_flags(prog)
    except KcrashError:
        return ()
    return tuple(
        model.Taint(letter, _TAINT_NAMES[bit] if bit < len(_TAINT_NAMES) else f"taint bit {bit}")
        for bit, (letter, _) in enumerate(flags)
        if mask >> bit & 1
    )


def _with_memory_sections(
    prog: Program, dump: str, report: model.CrashReport, notes: list[str], sections: _Sections
) -> model.CrashReport:
    # The sections that read more of the dump: disassembly, memory, the crashing task's VMAs, the file's metadata.
    # lazy: +60 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.disasm import disassemble_around

    # lazy: +50 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.memory_summary import memory_summary

    ctx = report.context
    disassembly = sections.get("disassembly", lambda: disassemble_around(prog, ctx.ip), None) if ctx else None
    with phase("memory"):
        memory = sections.get("memory", lambda: memory_summary(prog), None)
    regions = None
    if ctx is not None:
        with phase("vmas"):
            regions = _regions_or_note(prog, ctx.task, notes)
    # the program's own open dump when it is this file (a flattened kdump is indexed once)
    same = prog.dump is not None and os.path.realpath(prog.dump.path) == os.path.realpath(dump)
    metadata = _dump_metadata_or_note(dump, notes, prog.dump if same else None)
    return dataclasses.replace(
        report, disassembly=disassembly, memory=memory, regions=regions, dump=metadata, notes=tuple(notes)
    )


def _regions_or_note(prog: Program, task: int, notes: list[str]) -> model.TaskMemory | None:
    # lazy: +37 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.vmas import task_memory

    try:
        return task_memory(prog, Object(prog, prog.pointer_type("struct task_struct"), task))
    except KcrashError as exc:
        notes.append(f"no memory regions of the crashing task: {exc}")
        return None


def _dump_metadata_or_note(dump: str, notes: list[str], opened: DumpFormat | None) -> model.DumpMetadata | None:
    try:
        return dump_metadata(dump, opened=opened)
    except (KcrashError, OSError) as exc:
        notes.append(f"no dump metadata: {exc}")
        return None


def _context_or_note(
    prog: Program, cpu: int | None, frames: Sequence[model.Frame], notes: list[str]
) -> model.CrashingContext | None:
    if cpu is None:
        return None
    try:
        return crashing_context(prog, cpu, frames)
    except KcrashError as exc:
        notes.append(f"no crashing context: {exc}")
        return None
