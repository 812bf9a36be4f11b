"""
kcrash.unwind.arch.x86_64
=========================

The x86-64 ORC unwinder, following ``unwind_next_frame()`` in ``arch/x86/kernel/unwind_orc.c``.
:func:`unwind` walks one kernel stack from a register set: the registers of a CPU
(``NT_PRSTATUS``), a ``struct pt_regs``, or the saved context of a sleeping task
(:func:`inactive_task_frame_registers`). Per frame it finds the ORC entry of the pc (of ``pc - 1``
for a return address, since a call may be the last instruction of its function), computes the
caller's stack pointer (the CFA) from the entry's ``sp_reg``/``sp_offset``, and then reads the
return address at CFA − 8 (``call``), a whole ``struct pt_regs`` at the CFA (``regs``: exception and
interrupt entry, which may switch from an IRQ or exception stack back to the task stack) or an IRET
frame (``regs_partial``), and restores rbp per ``bp_reg``.

The walk ends normally at an end-of-stack entry or at a ``pt_regs`` saved in user mode
(``cs & 3``). It stops early, with the reason in :attr:`~kcrash.unwind.frame.Trace.truncated`, on
an undefined entry, unreadable or off-stack memory, a pc outside kernel text, a stack pointer that
does not grow within one stack, a stack entered twice, a repeated frame, or ``max_frames``; it
never loops. Code without ORC data is walked with the frame-pointer guess (frames then
unreliable), and after an early stop the rest of the stack can be scanned for text addresses
(``"scan"`` frames, unreliable), as the kernel's oops printer does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from kcrash.debuginfo.symbols import lookup_address
from kcrash.errors import FaultError
from kcrash.metrics import COUNTERS
from kcrash.unwind.context import UnwindContext
from kcrash.unwind.frame import PT_REGS_SIZE, Frame, Registers, Trace
from kcrash.unwind.frame import WalkStop as _Stop
from kcrash.unwind.frame_pointer import FRAME_POINTER_ENTRY, NULL_ENTRY, scan_stack
from kcrash.unwind.orc import (
    ORC_REG_BP,
    ORC_REG_BP_INDIRECT,
    ORC_REG_DI,
    ORC_REG_DX,
    ORC_REG_PREV_SP,
    ORC_REG_R10,
    ORC_REG_R13,
    ORC_REG_SP,
    ORC_REG_SP_INDIRECT,
    ORC_REG_UNDEFINED,
    OrcEntry,
)

__all__ = [
    "INACTIVE_TASK_FRAME_MEMBERS",
    "INACTIVE_TASK_FRAME_SIZE",
    "inactive_task_frame_registers",
    "unwind",
]

#: ``struct inactive_task_frame`` member offsets on x86-64 since v4.9 (commit 0100301bfdf5) without
#: the ``flags`` member some versions had; callers should probe the real layout from types.
INACTIVE_TASK_FRAME_MEMBERS: Mapping[str, int] = {
    "r15": 0, "r14": 8, "r13": 16, "r12": 24, "bx": 32, "bp": 40, "ret_addr": 48}
INACTIVE_TASK_FRAME_SIZE = 56
_FRAME_TO_REG = {"r15": "r15", "r14": "r14", "r13": "r13", "r12": "r12", "bx": "rbx", "bp": "rbp",
                 "ret_addr": "rip"}
_SP_BASE_REGS = {ORC_REG_R10: "r10", ORC_REG_R13: "r13", ORC_REG_DI: "rdi", ORC_REG_DX: "rdx"}
# Registers an IRET frame leaves as they were (kernel commit 81b67439d147; drgn does the same).
_PARTIAL_KEPT = ("r10", "r13", "rdi", "rdx")
_IRET = ("rip", "cs", "eflags", "rsp", "ss")
# How far before an undefined first pc the recovery looks for its function's entries and call target.
_RECOVER_WINDOW = 0x1000


@dataclass(slots=True)
class _State:
    regs: dict[str, int]
    signal: bool
    reliable: bool = True
    first: bool = True
    recovered: bool = False  # the first frame's caller was found by _recover_first_entry: a guess
    stack: tuple[int, int, str] | None = None
    visited: set[tuple[int, int, str]] = field(default_factory=set)

    @property
    def pc(self) -> int:
        return self.regs["rip"]

    @property
    def sp(self) -> int:
        return self.regs["rsp"]


def inactive_task_frame_registers(frame: bytes, thread_sp: int,
                                  members: Mapping[str, int] = INACTIVE_TASK_FRAME_MEMBERS,
                                  size: int = INACTIVE_TASK_FRAME_SIZE) -> Registers:
    """Return the starting registers of a sleeping task, as ``__unwind_start()`` and drgn do.

    :param frame: the ``struct inactive_task_frame`` that ``task->thread.sp`` points at
        (``size`` bytes), pushed by ``__switch_to_asm``.
    :param thread_sp: ``task->thread.sp``.
    :param members: byte offsets of its members (``ret_addr``, ``bp``, ``bx``, ``r12``–``r15``).

    ``rip`` is ``ret_addr`` (the return address into ``__schedule()``), ``rsp`` is
    ``thread.sp + sizeof(struct inactive_task_frame)`` (the stack pointer after
    ``__switch_to_asm`` returns), ``rbp``/``rbx``/``r12``–``r15`` the saved values. Unwind the result
    with ``interrupted=False`` (the pc is a return address) unless it is ``ret_from_fork``, the
    start of a task that has never run.
    """
    values = {reg: int.from_bytes(frame[members[m]:members[m] + 8], "little")
              for m, reg in _FRAME_TO_REG.items() if m in members and members[m] + 8 <= len(frame)}
    if "rip" not in values:
        raise ValueError("inactive_task_frame without ret_addr")
    values["rsp"] = thread_sp + size
    return Registers.from_mapping(values)


def unwind(regs: Registers, ctx: UnwindContext, *, interrupted: bool = True, max_frames: int = 192,
           scan: bool = False) -> Trace:
    """Unwind the kernel stack whose innermost frame has registers ``regs``.

    :param regs: at least ``rip`` and ``rsp``; ``rbp`` and (for entry code) ``r10``/``r13``/
        ``rdi``/``rdx`` when known; ``cs`` decides user mode.
    :param interrupted: ``regs`` were saved by an interrupt/exception or are a CPU's state (look up
        ``rip`` itself); False when ``rip`` is a return address (a sleeping task).
    :param scan: after an early stop, append ``"scan"`` frames for the text addresses left on the
        current stack.
    """
    start = regs.as_dict()
    COUNTERS.stack_traces_captured += 1
    if regs.user_mode:
        return Trace((), None, regs)
    if "rip" not in start or "rsp" not in start:
        return Trace((), "the registers have no rip/rsp")
    state = _State(start, interrupted, stack=ctx.stack_bounds(start["rsp"]))
    first_kind = "regs" if interrupted else "call"
    frames = [Frame(state.pc, state.sp, True, regs if interrupted else None, first_kind)]
    return _walk(ctx, state, frames, max_frames, scan)


def _walk(ctx: UnwindContext, state: _State, frames: list[Frame], max_frames: int, scan: bool) -> Trace:
    seen = {(state.pc, state.sp)}
    try:
        while True:
            if len(frames) >= max_frames:
                raise _Stop(f"stopped after {max_frames} frames")
            frame = _step(ctx, state)
            if (frame.pc, frame.sp) in seen:
                raise _Stop(f"frame {frame.pc:#x} sp {frame.sp:#x} repeats (loop)")
            seen.add((frame.pc, frame.sp))
            frames.append(frame)
    except _Stop as stop:
        if stop.reason is not None and scan:
            _scan_rest(ctx, frames)
        COUNTERS.stack_frames_unwound += len(frames)
        return Trace(_on_stacks(ctx, frames), stop.reason, stop.user_regs, stop.user_regs_address)


def _on_stacks(ctx: UnwindContext, frames: list[Frame]) -> tuple[Frame, ...]:
    # Each frame with the known stack holding its sp (for bt's stack-switch marks and frame words).
    return tuple(dataclasses.replace(f, stack=ctx.stack_bounds(f.sp)) for f in frames)


def _scan_rest(ctx: UnwindContext, frames: list[Frame]) -> None:
    # Only the rest of the stack that holds the last frame's sp is scanned: the stack the walk was
    # on may differ (the stop came after a switch), and an sp on no known stack has no end to scan
    # to (a value from the dump never bounds the scan).
    sp = frames[-1].sp
    stack = ctx.stack_bounds(sp)
    if stack is not None:
        frames.extend(scan_stack(ctx, sp, stack[1]))


def _find_entry(ctx: UnwindContext, state: _State) -> OrcEntry:
    pc = state.pc
    if pc == 0:
        return NULL_ENTRY
    if not ctx.is_kernel_text(pc):
        raise _Stop(f"pc {pc:#x} is not kernel text")
    entry = ctx.orc_lookup(lookup_address(pc, interrupted=state.signal))
    if entry is None:
        state.reliable = False  # the kernel's orc_fp_entry guess; nothing after it is trusted
        return FRAME_POINTER_ENTRY
    if entry.type == "end_of_stack":
        raise _Stop(None)
    if entry.type == "undefined" and state.first and state.signal:
        recovered = _recover_first_entry(ctx, state)
        if recovered is not None:
            state.recovered = True
            return recovered
    if entry.type not in ("call", "regs", "regs_partial"):
        raise _Stop(f"ORC entry for {pc:#x} is {entry.type}")
    return entry


def _recover_first_entry(ctx: UnwindContext, state: _State) -> OrcEntry | None:
    # crash_setup_regs() (arch/x86/include/asm/kexec.h) saves ip = _THIS_IP_ inside __crash_kexec(),
    # which objtool leaves without ORC (the whole function is undefined on Debian's 6.12): the capture
    # kernel's registers of a panic start there. Find the caller's return address as the first word
    # above sp that follows a direct call of the function pc is in (its target at most
    # _RECOVER_WINDOW bytes before pc, with only undefined ORC from there to pc), and resume from it
    # as a call frame.
    sp = state.sp
    stack = ctx.stack_bounds(sp)
    if stack is None:
        return None
    for slot in range(sp, min(stack[1], sp + _RECOVER_WINDOW) - 7, 8):
        if _calls_function_of(ctx, slot, state.pc):
            return OrcEntry(slot + 8 - sp, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "call", False)
    return None


def _calls_function_of(ctx: UnwindContext, slot: int, pc: int) -> bool:
    try:
        ret = ctx.read_u64(slot)
        call = ctx.read(ret - 5, 5) if ctx.is_kernel_text(ret) else b""
    except FaultError:
        return False
    if len(call) != 5 or call[0] != 0xE8:
        return False
    target = (ret + int.from_bytes(call[1:], "little", signed=True)) & (1 << 64) - 1
    if not target <= pc < target + _RECOVER_WINDOW:
        return False
    # the called function is the one pc is in: no ORC-described code lies between its start and pc
    return all(_undefined(ctx.orc_lookup(ip)) for ip in range(target, pc + 1))


def _undefined(entry: OrcEntry | None) -> bool:
    return entry is not None and entry.type == "undefined"


def _step(ctx: UnwindContext, state: _State) -> Frame:
    entry = _find_entry(ctx, state)
    cfa = _cfa(ctx, state, entry)
    old_bp, old_sp, old_stack = state.regs.get("rbp"), state.sp, state.stack
    frame = _restore(ctx, state, entry, cfa)
    if state.recovered:
        frame = dataclasses.replace(frame, reliable=False)
        state.recovered = False
    state.first = False
    if frame.kind in ("regs", "partial") and state.regs.get("cs", 0) & 3:
        raise _Stop(None, frame.regs or Registers.from_mapping(state.regs), frame.regs_address)
    _restore_bp(ctx, state, entry, cfa, old_bp, frame.kind == "regs")
    state.signal = entry.signal
    _check_progress(ctx, state, old_sp, old_stack)
    if frame.pc != 0 and not ctx.is_kernel_text(frame.pc):
        raise _Stop(f"return address {frame.pc:#x} (at sp {frame.sp:#x}) is not kernel text")
    return frame


def _cfa(ctx: UnwindContext, state: _State, entry: OrcEntry) -> int:
    reg = entry.sp_reg
    if reg == ORC_REG_SP:
        return state.sp + entry.sp_offset
    if reg in (ORC_REG_BP, ORC_REG_BP_INDIRECT):
        bp = _known(state, "rbp")
        return bp + entry.sp_offset if reg == ORC_REG_BP else _deref(ctx, state, bp + entry.sp_offset)
    if reg == ORC_REG_SP_INDIRECT:
        # Since kernel commit "x86/unwind/orc: Change REG_SP_INDIRECT" (v5.12) the offset is added
        # after the dereference: CFA = *sp + sp_offset.
        return _deref(ctx, state, state.sp) + entry.sp_offset
    if reg in _SP_BASE_REGS:
        return _known(state, _SP_BASE_REGS[reg])
    raise _Stop(f"unknown ORC sp_reg {reg} at {state.pc:#x}")


def _known(state: _State, name: str) -> int:
    value = state.regs.get(name)
    if value is None:
        raise _Stop(f"{name} is not known at {state.pc:#x}")
    return value


def _deref(ctx: UnwindContext, state: _State, address: int, size: int = 8) -> int:
    # deref_stack_reg(): only stack memory is trusted
    if ctx.stack_bounds(address) is None or ctx.stack_bounds(address + size - 1) is None:
        raise _Stop(f"{address:#x} is on no known stack (at pc {state.pc:#x})")
    try:
        return ctx.read_u64(address)
    except FaultError as exc:
        raise _Stop(f"cannot read the stack at {address:#x}: {exc.reason}") from exc


def _read_block(ctx: UnwindContext, state: _State, address: int, size: int) -> bytes:
    _deref(ctx, state, address, size)
    try:
        return ctx.read(address, size)
    except FaultError as exc:
        raise _Stop(f"cannot read registers at {address:#x}: {exc.reason}") from exc


def _restore(ctx: UnwindContext, state: _State, entry: OrcEntry, cfa: int) -> Frame:
    reliable = state.reliable
    if entry.type == "call":
        pc = _deref(ctx, state, cfa - 8)
        state.regs = {"rip": pc, "rsp": cfa}
        return Frame(pc, cfa, reliable, None, "call")
    if entry.type == "regs":
        regs = Registers.from_pt_regs(_read_block(ctx, state, cfa, PT_REGS_SIZE))
        state.regs = regs.as_dict()
        return Frame(state.pc, state.sp, reliable, regs, "regs", cfa)
    iret = dict(zip(_IRET, _words(_read_block(ctx, state, cfa, 8 * len(_IRET))), strict=True))
    kept = {r: state.regs[r] for r in _PARTIAL_KEPT if r in state.regs}
    state.regs = {**kept, **iret}
    return Frame(state.pc, state.sp, reliable, Registers.from_mapping(iret), "partial", cfa)


def _words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]


def _restore_bp(ctx: UnwindContext, state: _State, entry: OrcEntry, cfa: int, old_bp: int | None,
                full_regs: bool) -> None:
    if entry.bp_reg == ORC_REG_UNDEFINED:
        if not full_regs and old_bp is not None:
            state.regs["rbp"] = old_bp  # unchanged; a full pt_regs brought its own bp
    elif entry.bp_reg == ORC_REG_PREV_SP:
        state.regs["rbp"] = _deref(ctx, state, cfa + entry.bp_offset)
    elif entry.bp_reg == ORC_REG_BP:
        if old_bp is None:
            raise _Stop(f"rbp is not known at {state.pc:#x}")
        state.regs["rbp"] = _deref(ctx, state, old_bp + entry.bp_offset)
    else:
        raise _Stop(f"unknown ORC bp_reg {entry.bp_reg}")


def _check_progress(ctx: UnwindContext, state: _State, old_sp: int, old_stack: tuple[int, int, str] | None) -> None:
    # The kernel compares stack pointers only within one stack; a new sp off every known stack (a
    # double fault's sp in a guard page) is allowed, since each read is checked on its own.
    new_stack = ctx.stack_bounds(state.sp)
    if new_stack == old_stack:
        if state.sp <= old_sp:
            raise _Stop(f"stack going in the wrong direction at sp {state.sp:#x}")
        return
    if old_stack is not None:
        state.visited.add(old_stack)
    if new_stack is not None and new_stack in state.visited:
        raise _Stop(f"stack {new_stack[2]} entered twice")
    state.stack = new_stack
