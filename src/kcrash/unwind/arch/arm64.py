"""
kcrash.unwind.arch.arm64
========================

The arm64 frame-record unwinder, following ``arch/arm64/kernel/stacktrace.c``: every kernel
function built with frame pointers stores a frame record ``{x29, x30}`` (the caller's record and
the return address) and points x29 at it, so the records form a chain through the stacks (task,
per-CPU IRQ, overflow, SDEI; ``call_on_irq_stack`` links the IRQ stack back to the task stack).
:func:`unwind` walks that chain from a register set: a CPU's ``NT_PRSTATUS`` registers, a
``struct pt_regs``, or a sleeping task's ``thread.cpu_context`` (:func:`cpu_context_registers`).

Return addresses lose their pointer-authentication code (``ptrauth_strip_kernel_insn_pac()``: the
``KERNELPACMASK`` bits are set for kernel addresses, cleared for others). Exception entries
(``el1h_64_irq``, ``el1h_64_sync`` …, ``arch/arm64/kernel/entry.S``) save a ``struct pt_regs`` and
link the record in its ``stackframe`` member into the chain; the walk reports the interrupted
context as a ``"regs"`` frame (pc = ``regs->pc``, with its registers) and goes on from its x29/x30.
Such a record is recognised by the ``frame_record_meta`` type ``FRAME_META_TYPE_PT_REGS`` (since
v6.13), or before that by the record matching the ``pt_regs`` around it (x29 and pc) when the
return address before it is entry text. The walk ends normally at the final record (zeroed, in the
task's ``pt_regs`` at the top of its stack, or typed ``FRAME_META_TYPE_FINAL``); user registers
found there are returned as :attr:`~kcrash.unwind.frame.Trace.user_regs`.

A frame record says nothing of the stack pointer. Each frame's sp (the caller's sp is the CFA of
the callee) is computed by reading the callee's prologue from kernel text (``stp x29, x30, [sp,
#-N]!``, ``sub sp, sp, #N``, ``add x29, sp, #M``); the same analysis tells, for an interrupted
pc, whether its function has set up its record yet (a leaf function, or a pc in the prologue): then
the caller is x30, as a DWARF-CFI unwinder (drgn with vmlinux) finds it. The walk stops early, with
the reason in :attr:`~kcrash.unwind.frame.Trace.truncated`, on an unaligned, unreadable or
off-stack record, a return address outside kernel text, a record that does not move up its stack,
a stack entered twice, or ``max_frames``; it never loops.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kcrash.errors import FaultError
from kcrash.metrics import COUNTERS
from kcrash.unwind.context import UnwindContext
from kcrash.unwind.frame import Frame, Registers, Trace
from kcrash.unwind.frame import WalkStop as _Stop
from kcrash.unwind.frame_pointer import scan_stack

__all__ = [
    "CPU_CONTEXT_REGISTERS",
    "FRAME_META_TYPE_FINAL",
    "FRAME_META_TYPE_PT_REGS",
    "PT_REGS_NAMES_AARCH64",
    "Aarch64Kernel",
    "cpu_context_registers",
    "strip_pac",
    "unwind",
    "user_mode",
]

#: ``struct user_pt_regs`` (the head of ``struct pt_regs`` and ``NT_PRSTATUS`` ``pr_reg``)
PT_REGS_NAMES_AARCH64: tuple[str, ...] = (*(f"x{i}" for i in range(31)), "sp", "pc", "pstate")
#: ``struct cpu_context`` (``arch/arm64/include/asm/processor.h``) in memory order, as register names
CPU_CONTEXT_REGISTERS: tuple[str, ...] = (*(f"x{i}" for i in range(19, 29)), "x29", "sp", "pc")
#: ``enum frame_meta_type`` values (``arch/arm64/include/asm/stacktrace/frame.h``, since v6.13)
FRAME_META_TYPE_FINAL = 1
FRAME_META_TYPE_PT_REGS = 2
_PSR_MODE_MASK = 0xF
_PSR_MODE32_BIT = 0x10
_USER_REGS = struct.Struct(f"<{len(PT_REGS_NAMES_AARCH64)}Q")
_RECORD = struct.Struct("<QQ")
# How many instructions of a function's start the prologue analysis reads at most.
_PROLOGUE_INSNS = 64


@dataclass(frozen=True, slots=True)
class Aarch64Kernel:
    """What the arm64 unwinder knows of the kernel (from VMCOREINFO, BTF and kallsyms).

    ``pac_mask``: ``KERNELPACMASK`` (or the bits above ``VA_BITS``); ``stackframe_offset`` and
    ``pt_regs_size``: ``offsetof(struct pt_regs, stackframe)`` and ``sizeof(struct pt_regs)``;
    ``meta_type_offset``: the offset of ``type`` in ``struct frame_record_meta`` (None before
    v6.13, where the member is a plain record); ``entry_text``: the ``.entry.text`` range(s) (no
    range: any return address may precede a ``pt_regs``); ``function_start``: the start of the
    function holding an address (kallsyms), None when unknown (no prologue analysis then: a call
    frame's sp is then the record's end, a guess).
    """

    pac_mask: int = 0
    stackframe_offset: int = 304
    pt_regs_size: int = 336
    meta_type_offset: int | None = None
    entry_text: tuple[tuple[int, int], ...] = ()
    function_start: Callable[[int], int | None] | None = field(default=None, compare=False)

    def in_entry_text(self, pc: int) -> bool:
        """Whether ``pc`` is exception-entry code (true for everything when the range is unknown)."""
        return not self.entry_text or any(lo <= pc < hi for lo, hi in self.entry_text)


def strip_pac(address: int, mask: int) -> int:
    """Remove a pointer-authentication code from a return address.

    :param address: the signed address
    :param mask: ``KERNELPACMASK``
    :return: ``address`` with the ``mask`` bits set (bit 55 set: a kernel address) or cleared

    >>> hex(strip_pac(0x3fd780008010a2c4, 0xff7f800000000000))
    '0xffff80008010a2c4'
    """
    if address & (1 << 55):
        return address | mask
    return address & ~mask & (1 << 64) - 1


def cpu_context_registers(data: bytes, members: Mapping[str, int] | None = None) -> Registers:
    """Return the starting registers of a sleeping task from its ``thread.cpu_context``.

    ``cpu_switch_to()`` (``arch/arm64/kernel/entry.S``) saved x19–x28, fp (x29), sp and lr as
    ``pc``: the return address into ``__switch_to()``, drgn's frame #0. Unwind the result with
    ``interrupted=False``.

    :param data: the ``struct cpu_context`` bytes
    :param members: byte offsets of ``x19`` … ``x28``, ``fp``, ``sp``, ``pc`` (default: packed)
    :return: x19–x29, sp, pc (and x30 = pc)
    """
    offsets = members or {name: 8 * i for i, name in enumerate(CPU_CONTEXT_REGISTERS)}
    values = {}
    for name in CPU_CONTEXT_REGISTERS:
        key = "fp" if name == "x29" and "fp" in offsets else name
        at = offsets.get(key)
        if at is not None and at + 8 <= len(data):
            values[name] = int.from_bytes(data[at:at + 8], "little")
    if "pc" not in values or "sp" not in values:
        raise ValueError("cpu_context without pc/sp")
    values["x30"] = values["pc"]
    return Registers.from_mapping(values)


def user_mode(regs: Registers) -> bool:
    """Whether ``pstate`` says the registers were saved at EL0 (``user_mode(regs)``)."""
    pstate = regs.get_or_none("pstate")
    return pstate is not None and (pstate & _PSR_MODE32_BIT != 0 or pstate & _PSR_MODE_MASK == 0)


@dataclass(slots=True)
class _State:
    pc: int
    sp: int | None
    fp: int
    lr: int | None  # x30, known for interrupted contexts only
    interrupted: bool  # pc is the interrupted instruction, not a return address
    reliable: bool = True
    last_record: int | None = None
    stack: tuple[int, int, str] | None = None
    visited: set[tuple[int, int, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Prologue:
    depth: int  # CFA - sp at the analysed point
    fp_offset: int | None  # CFA - x29 once x29 points at the record; None when not yet set


def unwind(regs: Registers, ctx: UnwindContext, kernel: Aarch64Kernel | None = None, *,
           interrupted: bool = True, max_frames: int = 192, scan: bool = False) -> Trace:
    """Unwind the kernel stack whose innermost frame has registers ``regs``.

    :param regs: at least ``pc`` and ``x29``; ``sp`` and ``x30`` when known; ``pstate`` decides user mode
    :param ctx: memory, stack bounds and kernel text
    :param kernel: what the unwinder knows of the kernel (PAC mask, ``pt_regs`` layout, entry text)
    :param interrupted: ``regs`` are a CPU's state or saved by an exception (``pc`` itself is
        executing); False when ``pc`` is a return address (a sleeping task's ``cpu_context``)
    :param max_frames: stop after this many frames
    :param scan: after an early stop, append ``"scan"`` frames for the text addresses left on the
        current stack
    :return: the frames, innermost first
    """
    COUNTERS.stack_traces_captured += 1
    kernel = kernel or Aarch64Kernel()
    if interrupted and user_mode(regs):
        return Trace((), None, regs)
    values = regs.as_dict()
    if "pc" not in values or "x29" not in values:
        return Trace((), "the registers have no pc/x29")
    sp = values.get("sp")
    state = _State(values["pc"], sp, values["x29"], values.get("x30") if interrupted else None, interrupted,
                   stack=ctx.stack_bounds(sp) if sp is not None else None)
    frames = [Frame(state.pc, sp if sp is not None else 0, True, regs if interrupted else None,
                    "regs" if interrupted else "call")]
    return _walk(ctx, kernel, state, frames, max_frames, scan)


def _walk(ctx: UnwindContext, kernel: Aarch64Kernel, state: _State, frames: list[Frame], max_frames: int,
          scan: bool) -> Trace:
    seen = {(state.pc, state.fp)}
    try:
        while True:
            if len(frames) >= max_frames:
                raise _Stop(f"stopped after {max_frames} frames")
            frame = _step(ctx, kernel, state)
            if (state.pc, state.fp) in seen:
                raise _Stop(f"frame {frame.pc:#x} fp {state.fp:#x} repeats (loop)")
            seen.add((state.pc, state.fp))
            frames.append(frame)
    except _Stop as stop:
        if stop.reason is not None and scan:
            _scan_rest(ctx, frames, state)
        COUNTERS.stack_frames_unwound += len(frames)
        out = tuple(dataclasses.replace(f, stack=ctx.stack_bounds(f.sp)) for f in frames)
        return Trace(out, stop.reason, stop.user_regs, stop.user_regs_address)


def _scan_rest(ctx: UnwindContext, frames: list[Frame], state: _State) -> None:
    # The rest of the stack holding the last record (or sp): a value from the dump never bounds it.
    at = state.last_record if state.last_record is not None else frames[-1].sp
    stack = ctx.stack_bounds(at)
    if stack is not None:
        frames.extend(scan_stack(ctx, at, stack[1]))


def _step(ctx: UnwindContext, kernel: Aarch64Kernel, state: _State) -> Frame:
    prologue = _analyse(ctx, kernel, state.pc, state.interrupted)
    if state.interrupted and state.lr is not None and prologue is not None and prologue.fp_offset is None:
        return _from_lr(ctx, kernel, state, prologue)
    return _from_record(ctx, kernel, state, prologue)


def _from_lr(ctx: UnwindContext, kernel: Aarch64Kernel, state: _State, prologue: _Prologue) -> Frame:
    # A leaf function, or a pc before its function stored its record: the caller is x30, its sp
    # the CFA; x29 is still the caller's.
    assert state.lr is not None
    pc = strip_pac(state.lr, kernel.pac_mask)
    sp = state.sp + prologue.depth if state.sp is not None else None
    _check_text(ctx, pc, sp)
    state.pc, state.sp, state.lr, state.interrupted = pc, sp, None, False
    return Frame(pc, sp if sp is not None else state.fp, state.reliable, None, "call")


def _from_record(ctx: UnwindContext, kernel: Aarch64Kernel, state: _State, prologue: _Prologue | None) -> Frame:
    fp = state.fp
    if fp == 0:
        raise _Stop(None)
    record = _read_record(ctx, state, fp)
    regs_address = fp - kernel.stackframe_offset
    if record == (0, 0):
        return _zero_record(ctx, kernel, state, fp, regs_address)
    if not state.interrupted and kernel.meta_type_offset is None and kernel.in_entry_text(state.pc):
        regs = _pt_regs_or_none(ctx, kernel, regs_address)
        if regs is not None and regs["x29"] == record[0] and regs["pc"] == record[1]:
            return _regs_frame(ctx, kernel, state, regs, regs_address)
    pc = strip_pac(record[1], kernel.pac_mask)
    cfa = fp + prologue.fp_offset if prologue is not None and prologue.fp_offset is not None else fp + 16
    _check_text(ctx, pc, cfa)
    _advance(ctx, state, record[0], fp)
    state.pc, state.sp, state.lr, state.interrupted = pc, cfa, None, False
    return Frame(pc, cfa, state.reliable, None, "call")


def _zero_record(ctx: UnwindContext, kernel: Aarch64Kernel, state: _State, fp: int, regs_address: int) -> Frame:
    # The final record (the task's pt_regs at the top of its stack) or, since v6.13, a typed one.
    if kernel.meta_type_offset is not None:
        try:
            kind = ctx.read_u64(fp + kernel.meta_type_offset)
        except FaultError as exc:
            raise _Stop(f"cannot read the frame record type at {fp:#x}: {exc.reason}") from exc
        if kind == FRAME_META_TYPE_PT_REGS:
            regs = _pt_regs_or_none(ctx, kernel, regs_address)
            if regs is None:
                raise _Stop(f"cannot read the pt_regs at {regs_address:#x}")
            return _regs_frame(ctx, kernel, state, regs, regs_address)
        if kind != FRAME_META_TYPE_FINAL:
            raise _Stop(f"frame record at {fp:#x} has unknown type {kind}")
    stack = ctx.stack_bounds(fp)
    if stack is not None and regs_address + kernel.pt_regs_size == stack[1]:
        regs = _pt_regs_or_none(ctx, kernel, regs_address)
        if regs is not None and user_mode(regs) and (regs["pc"] or regs["sp"]):
            raise _Stop(None, regs, regs_address)
    raise _Stop(None)


def _regs_frame(ctx: UnwindContext, kernel: Aarch64Kernel, state: _State, regs: Registers,
                regs_address: int) -> Frame:
    if user_mode(regs):
        raise _Stop(None, regs, regs_address)
    _advance(ctx, state, regs["x29"], state.fp, check_up=False)
    state.last_record = regs_address
    state.pc, state.sp, state.lr, state.interrupted = regs["pc"], regs["sp"], regs["x30"], True
    if not ctx.is_kernel_text(state.pc):
        raise _Stop(f"interrupted pc {state.pc:#x} (pt_regs at {regs_address:#x}) is not kernel text")
    return Frame(state.pc, state.sp, state.reliable, regs, "regs", regs_address)


def _pt_regs_or_none(ctx: UnwindContext, kernel: Aarch64Kernel, address: int) -> Registers | None:
    if ctx.stack_bounds(address) is None or ctx.stack_bounds(address + _USER_REGS.size - 1) is None:
        return None
    try:
        data = ctx.read(address, _USER_REGS.size)
    except FaultError:
        return None
    return Registers(tuple(zip(PT_REGS_NAMES_AARCH64, _USER_REGS.unpack(data), strict=True)))


def _read_record(ctx: UnwindContext, state: _State, fp: int) -> tuple[int, int]:
    if fp & 0x7:
        raise _Stop(f"frame record at {fp:#x} is not aligned")
    if ctx.stack_bounds(fp) is None or ctx.stack_bounds(fp + 15) is None:
        raise _Stop(f"frame record at {fp:#x} is on no known stack (at pc {state.pc:#x})")
    try:
        data = ctx.read(fp, 16)
    except FaultError as exc:
        raise _Stop(f"cannot read the frame record at {fp:#x}: {exc.reason}") from exc
    first, second = _RECORD.unpack(data)
    return int(first), int(second)


def _check_text(ctx: UnwindContext, pc: int, sp: int | None) -> None:
    if not ctx.is_kernel_text(pc):
        where = f" (sp {sp:#x})" if sp is not None else ""
        raise _Stop(f"return address {pc:#x}{where} is not kernel text")


def _advance(ctx: UnwindContext, state: _State, next_fp: int, record: int, *, check_up: bool = True) -> None:
    # The next record must lie above this one on the same stack, or on a stack not yet visited
    # (the kernel's unwind_next_frame_record()/stackinfo checks); fp 0 ends the walk at the next step.
    state.last_record = record
    old = ctx.stack_bounds(record)
    state.fp = next_fp
    if next_fp == 0:
        return
    new = ctx.stack_bounds(next_fp)
    if new == old:
        if check_up and next_fp <= record:
            raise _Stop(f"frame record at {next_fp:#x} does not move up the stack (from {record:#x})")
        return
    if old is not None:
        state.visited.add(old)
    if new is not None and new in state.visited:
        raise _Stop(f"stack {new[2]} entered twice")


# -- prologue analysis --------------------------------------------------------------------------


def _analyse(ctx: UnwindContext, kernel: Aarch64Kernel, pc: int, interrupted: bool) -> _Prologue | None:
    # Run the function's first instructions up to pc (a return address: up to the call; an
    # interrupted pc: the instructions before it), tracking CFA - sp and where x29 is set.
    start = kernel.function_start(pc if interrupted else pc - 4) if kernel.function_start is not None else None
    if start is None and not interrupted:
        start = _guess_start(ctx, pc)
    if start is None or not start <= pc or pc - start > 1 << 20:
        return None
    end = min(pc, start + 4 * _PROLOGUE_INSNS)
    try:
        code = ctx.read(start, end - start) if end > start else b""
    except FaultError:
        return None
    depth, fp_offset = 0, None
    for (insn,) in struct.iter_unpack("<I", code[: len(code) & ~3]):
        if interrupted and _ends_prologue(insn):
            # control left the straight line before x29 was set: what ran before an interrupted
            # pc is unknown (an exception vector's stubs, a shrink-wrapped path); follow the
            # records only. Below a return address the record is surely set up: scan on to it.
            return None
        depth, fp_offset, done = _simulate(insn, depth, fp_offset)
        if done:
            break
    return _Prologue(depth, fp_offset)


def _guess_start(ctx: UnwindContext, pc: int) -> int | None:
    # No symbol (a module whose symbols are not loaded): the prologue is taken to start after the
    # last ret/b before the nearest "add x29, sp, #imm" below pc, at most _PROLOGUE_INSNS back.
    lo = max(pc - 4 * 4 * _PROLOGUE_INSNS, pc & ~0xFFF)
    try:
        code = ctx.read(lo, pc - lo)
    except FaultError:
        return None
    words = [w for (w,) in struct.iter_unpack("<I", code[: len(code) & ~3])]
    sets_fp = [i for i, w in enumerate(words) if w & 0xFF8003FF == 0x910003FD]
    if not sets_fp:
        return None
    at = sets_fp[-1]
    first = max(0, at - _PROLOGUE_INSNS // 4)
    for i in range(at - 1, first - 1, -1):
        if _ends_prologue(words[i]):
            return lo + 4 * (i + 1)
    return lo + 4 * first


def _simulate(insn: int, depth: int, fp_offset: int | None) -> tuple[int, int | None, bool]:
    rd, rn = insn & 0x1F, (insn >> 5) & 0x1F
    if insn & 0xFFC00000 == 0xA9800000 and rn == 31:  # stp xA, xB, [sp, #imm]!
        depth -= _signed(insn >> 15 & 0x7F, 7) * 8
    elif insn & 0xFFE00C00 == 0xF8000C00 and rn == 31:  # str xA, [sp, #imm]!
        depth -= _signed(insn >> 12 & 0x1FF, 9)
    elif insn & 0xFF800000 == 0xD1000000 and rd == 31 and rn == 31:  # sub sp, sp, #imm
        depth += (insn >> 10 & 0xFFF) << (12 if insn & 1 << 22 else 0)
    elif insn & 0xFF800000 == 0x91000000 and rd == 29 and rn == 31:  # add x29, sp, #imm (mov x29, sp)
        fp_offset = depth - ((insn >> 10 & 0xFFF) << (12 if insn & 1 << 22 else 0))
        return depth, fp_offset, True
    return depth, fp_offset, False


def _ends_prologue(insn: int) -> bool:
    # ret, br, b: control leaves the straight-line prologue (a bl returns to it)
    return insn & 0xFFFFFC1F == 0xD65F0000 or insn & 0xFFFFFC1F == 0xD61F0000 or insn & 0xFC000000 == 0x14000000


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & 1 << (bits - 1) else value
