"""
kcrash.analysis.backtrace
=========================

What crash's ``bt`` shows beyond the frame lines (``bt -f``, ``-F``; exception frames and stack
switches always): the registers an exception, interrupt or system call saved on the stack (a
``struct pt_regs``, ``arch/x86/include/asm/ptrace.h``, or its IRET frame), the crash-style mark where
the walk leaves an IRQ or exception stack for the stack below (``--- <IRQ stack> ---``,
``--- <NMI exception stack> ---``), and each frame's stack words, from the frame's stack pointer up to
the next frame's return address (or saved registers), optionally with what each word points at: a
kernel or module symbol, or an object of a slab cache. Built as :class:`~kcrash.model.TaskTraceDetail`
models from the unwinder's frames (:func:`kcrash.helpers.linux.stack.stack_trace`); source lines
(``bt -l``) are added by :mod:`kcrash.analysis.sources`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from kcrash import model
from kcrash.analysis import triage
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import FaultError, KcrashError
from kcrash.helpers.linux.slab import slab_object_info
from kcrash.helpers.linux.stack import kernel_unwinder, stack_trace
from kcrash.types.object import Object
from kcrash.types.program import Program
from kcrash.unwind import Frame as UnwindFrame
from kcrash.unwind import Registers
from kcrash.unwind import Trace as UnwindTrace
from kcrash.unwind.arch import Aarch64Unwinder
from kcrash.unwind.arch.arm64 import strip_pac

__all__ = [
    "BacktraceOptions",
    "cpu_backtrace_detail",
    "cpu_backtrace_details",
    "frame_details",
    "stack_mark",
    "task_backtrace_detail",
]

#: the most words shown for one frame (a kernel stack is 16 KiB: 2048 words)
MAX_FRAME_WORDS = 2048
# crash's names of the stacks it marks when a trace leaves them (x86_64.c: x86_64_exception_stacks);
# our stack names are the members of struct cea_exception_stacks without "_stack", and "IRQ"
_MARKS = {
    "IRQ": "IRQ stack",
    "NMI": "NMI exception stack",
    "DF": "DOUBLEFAULT exception stack",
    "DB": "DEBUG exception stack",
    "MCE": "MCE exception stack",
    "VC": "VC exception stack",
    "VC2": "VC exception stack",
}
_WORD = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class BacktraceOptions:
    """What to add to each frame: ``words`` its stack words (``bt -f``), ``symbolic`` what they
    point at (``bt -F``, implies ``words``)."""

    words: bool = False
    symbolic: bool = False


def stack_mark(name: str | None) -> str | None:
    """crash's mark for leaving the stack called ``name`` (``"IRQ 0"`` → ``"IRQ stack"``,
    ``"NMI 1"`` → ``"NMI exception stack"``), None for a task stack or an unknown one.

    >>> stack_mark("NMI 1")
    'NMI exception stack'
    """
    return _MARKS.get(name.split(" ", 1)[0]) if name else None


def task_backtrace_detail(prog: Program, task: Object, options: BacktraceOptions) -> model.TaskTraceDetail:
    """``bt`` of ``task`` (``struct task_struct *``) with its frames' details."""
    raw, trace = _unwound(prog, task)
    return _detail(prog, triage.task_backtrace_row(prog, task), raw, trace, options)


def cpu_backtrace_detail(prog: Program, cpu: int, options: BacktraceOptions) -> model.TaskTraceDetail:
    """``bt`` of the task running on ``cpu`` (from the CPU's dump registers) with its frames' details."""
    raw, trace = _unwound(prog, cpu)
    return _detail(prog, triage.cpu_task_row(prog, cpu), raw, trace, options)


def cpu_backtrace_details(prog: Program, options: BacktraceOptions) -> tuple[model.TaskTraceDetail, ...]:
    """``bt -a``: every CPU's active task with its frames' details."""
    return tuple(cpu_backtrace_detail(prog, cpu, options) for cpu in range(kernel_unwinder(prog).num_cpus()))


def _unwound(prog: Program, task_or_cpu: Object | int) -> tuple[UnwindTrace | None, model.Trace]:
    # the same trace triage's task_trace/crashed_trace give, and the unwinder's frames behind it
    try:
        raw = stack_trace(prog, task_or_cpu, scan=True)
    except KcrashError as exc:
        what = f" CPU {task_or_cpu}" if isinstance(task_or_cpu, int) else ""
        return None, model.Trace((), f"cannot unwind{what}: {exc}")
    return raw, triage.symbolize_trace(prog, raw)


def _detail(
    prog: Program, row: model.TaskRow, raw: UnwindTrace | None, trace: model.Trace, options: BacktraceOptions
) -> model.TaskTraceDetail:
    if raw is None:
        return model.TaskTraceDetail(row, trace, (), None)
    user = None
    if raw.user_regs is not None:
        user = _exception(prog, raw.user_regs, raw.user_regs_address, user=True)
    return model.TaskTraceDetail(row, trace, frame_details(prog, raw, options), user)


def frame_details(prog: Program, trace: UnwindTrace, options: BacktraceOptions) -> tuple[model.FrameDetail, ...]:
    """One :class:`~kcrash.model.FrameDetail` per frame of ``trace``."""
    frames = trace.frames
    describe = _describer(prog) if options.symbolic else None
    # x86-64 pushes a return address just below the caller's sp; an arm64 caller's sp is the
    # callee's CFA, the return address lies in the callee's frame record (inside the frame)
    ret_slot = 8 if prog.machine == "x86_64" else 0
    out = []
    for i, frame in enumerate(frames):
        following = frames[i + 1] if i + 1 < len(frames) else None
        words: tuple[model.StackWord, ...] = ()
        if options.words or options.symbolic:
            words = _words(prog, frame.sp, _frame_end(frame, following, trace.user_regs_address, ret_slot), describe)
        out.append(
            model.FrameDetail(
                i,
                frame.stack[2] if frame.stack else None,
                _frame_exception(prog, i, frame),
                words,
                _leaves(frame, following),
            )
        )
    return tuple(out)


def _leaves(frame: UnwindFrame, following: UnwindFrame | None) -> str | None:
    # marked after the last frame on an IRQ/exception stack when the next one is on another stack
    if following is None or frame.stack is None or following.stack == frame.stack:
        return None
    return stack_mark(frame.stack[2])


def _frame_exception(prog: Program, index: int, frame: UnwindFrame) -> model.ExceptionFrame | None:
    # The starting registers (a CPU's NT_PRSTATUS, a sleeping task's saved frame) are not an
    # exception frame: only registers found on the stack are.
    if index == 0 or frame.regs is None or frame.kind not in ("regs", "partial"):
        return None
    return _exception(prog, frame.regs, frame.regs_address, user=False)


def _exception(prog: Program, regs: Registers, address: int | None, *, user: bool) -> model.ExceptionFrame:
    values = regs.as_dict()
    rip = values.get("rip", values.get("pc", 0))  # arm64 registers name it pc
    text = f"{rip:#x}" if user else prog.format_address(rip)
    kind = "pt_regs" if "orig_rax" in values or "pstate" in values else "iret"
    return model.ExceptionFrame(address, kind, regs.values, text, user or regs.user_mode)


def _frame_end(frame: UnwindFrame, following: UnwindFrame | None, user_regs_address: int | None,
               ret_slot: int = 8) -> int:
    # Up to the next frame's return address (a call/scan frame's sp is just above it) or saved
    # registers; the last frame on a stack runs to that stack's top (or to the user pt_regs).
    top = frame.stack[1] if frame.stack else frame.sp
    if following is None or following.stack != frame.stack:
        if user_regs_address is not None and frame.sp <= user_regs_address <= top:
            return user_regs_address
        return top
    if following.regs_address is not None:
        return following.regs_address
    return following.sp - ret_slot


def _words(
    prog: Program, start: int, end: int, describe: Callable[[int], tuple[str | None, str | None]] | None
) -> tuple[model.StackWord, ...]:
    start = (start + 7) & ~7
    count = max(0, min((end - start) // 8, MAX_FRAME_WORDS))
    values = _read_words(prog, start, count)
    if describe is None:
        return tuple(model.StackWord(a, v) for a, v in values)
    return tuple(model.StackWord(a, v, *describe(v)) for a, v in values)


def _read_words(prog: Program, start: int, count: int) -> list[tuple[int, int]]:
    # one read for the frame; word by word (skipping unreadable ones) only when that fails
    try:
        data = prog.memory.read(start, 8 * count)
    except FaultError:
        return [(a, v) for a in range(start, start + 8 * count, 8) if (v := _word_or_none(prog, a)) is not None]
    return [(start + 8 * i, v) for i, (v,) in enumerate(_WORD.iter_unpack(data))]


def _word_or_none(prog: Program, address: int) -> int | None:
    try:
        return int(_WORD.unpack(prog.memory.read(address, 8))[0])
    except FaultError:
        return None


def _describer(prog: Program) -> Callable[[int], tuple[str | None, str | None]]:
    # (symbol text, slab cache name) of a word's value, cached: stacks repeat values
    table = prog.symbol_table
    slab = _slab_cache_namer(prog)
    seen: dict[int, tuple[str | None, str | None]] = {}
    # arm64 return addresses on the stack carry a pointer-authentication code: described stripped
    arch = kernel_unwinder(prog).arch if prog.machine == "aarch64" else None
    pac_mask = arch.kernel.pac_mask if isinstance(arch, Aarch64Unwinder) else 0

    def describe(value: int) -> tuple[str | None, str | None]:
        found = seen.get(value)
        if found is None:
            plain = strip_pac(value, pac_mask) if pac_mask and value & 1 << 55 else value
            found = seen[value] = _describe(table, slab, plain)
        return found

    return describe


def _describe(
    table: SymbolTable | None, slab: Callable[[int], str | None], value: int
) -> tuple[str | None, str | None]:
    if value < 1 << 63:  # user addresses and small numbers point at nothing of the kernel
        return None, None
    if table is not None and table.symbolize_or_none(value) is not None:
        return table.format_address(value), None
    return None, slab(value)


def _slab_cache_namer(prog: Program) -> Callable[[int], str | None]:
    # the cache of the slab object holding a value (crash's kmem ADDR); None for anything else

    def name(value: int) -> str | None:
        try:
            info = slab_object_info(prog, value)
        except KcrashError:  # a value the page tables or struct pages of the dump cannot place
            return None
        return info.cache_name if info is not None else None

    return name
