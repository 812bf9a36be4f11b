"""The arm64 frame-record unwinder on hand-made stacks and text: a chain of records with each
frame's sp from the callee's prologue, a leaf or prologue pc (the caller from x30), PAC stripping,
exception frames (pt_regs found by matching record or by the v6.13 frame_record_meta type), the
final record with user registers, stack switches, and corrupted chains (loops, off-stack, unaligned,
truncated: never a hang)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.errors import UnwindError
from kcrash.unwind import MemoryUnwindContext, OrcTables, Registers, StackRange
from kcrash.unwind.arch import ARCH_UNWINDERS, arch_unwinder
from kcrash.unwind.arch.arm64 import (
    CPU_CONTEXT_REGISTERS,
    FRAME_META_TYPE_FINAL,
    FRAME_META_TYPE_PT_REGS,
    PT_REGS_NAMES_AARCH64,
    Aarch64Kernel,
    cpu_context_registers,
    strip_pac,
    unwind,
)

from .conftest import FakeMemory

TEXT = 0xFFFF800080010000
STACK = 0xFFFF800082000000  # a 16 KiB task stack
IRQ = 0xFFFF800080100000  # a 16 KiB IRQ stack
SIZE = 0x4000
PAC = 0xFF7F800000000000
NOP, PACIASP, MOV_FP, BL, RET = 0xD503201F, 0xD503233F, 0x910003FD, 0x94000000, 0xD65F03C0
# one function per 0x100 bytes of text
LEAF, PRE, POST, BIG, ENTRY, IRQF, USERENTRY = (TEXT + 0x100 * i for i in range(7))
PT_REGS_SIZE, STACKFRAME = 336, 304


def _stp_pre(n: int) -> int:  # stp x29, x30, [sp, #-n]!
    return 0xA9800000 | ((-n // 8) & 0x7F) << 15 | 30 << 10 | 31 << 5 | 29


def _stp_off(m: int) -> int:  # stp x29, x30, [sp, #m]
    return 0xA9000000 | ((m // 8) & 0x7F) << 15 | 30 << 10 | 31 << 5 | 29


def _add_fp(m: int) -> int:  # add x29, sp, #m
    return 0x91000000 | m << 10 | 31 << 5 | 29


def _sub_sp(n: int) -> int:  # sub sp, sp, #n
    return 0xD1000000 | n << 10 | 31 << 5 | 31


CODE = {
    LEAF: [NOP, NOP, 0xD2800000, RET],  # mov x0, #0; ret
    PRE: [NOP, NOP, PACIASP, _stp_pre(48), MOV_FP, BL, BL, RET],  # record at the bottom of a 48-byte frame
    POST: [NOP, NOP, PACIASP, _stp_pre(32), MOV_FP, BL, BL, RET],
    BIG: [PACIASP, _sub_sp(128), _stp_off(112), _add_fp(112), BL, BL, RET],  # record at the top
    ENTRY: [_add_fp(STACKFRAME), BL, NOP],  # kernel_entry: x29 = &regs->stackframe; bl handler
    IRQF: [PACIASP, _stp_pre(16), MOV_FP, BL, RET],
    USERENTRY: [_add_fp(STACKFRAME), BL, NOP],
}


def _kernel(*, meta: bool = False, entry: bool = True) -> Aarch64Kernel:
    return Aarch64Kernel(PAC, STACKFRAME, PT_REGS_SIZE + (16 if meta else 0), 16 if meta else None,
                         ((ENTRY, ENTRY + 0x100), (USERENTRY, USERENTRY + 0x100)) if entry else (),
                         lambda pc: pc & ~0xFF if TEXT <= pc < TEXT + 0x1000 else None)


def _mem() -> FakeMemory:
    mem = FakeMemory()
    mem.map(STACK, SIZE)
    mem.map(IRQ, SIZE)
    mem.map(TEXT, 0x1000)
    for start, words in CODE.items():
        mem.write(start, struct.pack(f"<{len(words)}I", *words))
    return mem


def _ctx(mem: FakeMemory) -> MemoryUnwindContext:
    stacks = [StackRange(STACK, STACK + SIZE, "task 1"), StackRange(IRQ, IRQ + SIZE, "IRQ 0")]
    return MemoryUnwindContext(mem, OrcTables([]), stacks, [(TEXT, TEXT + 0x1000)])


def _signed(address: int) -> int:
    return (address & ~PAC) | 0x0012_0000_0000_0000  # a PAC in the masked bits, bit 55 cleared


def _pt_regs(**values: int) -> bytes:
    full = dict.fromkeys(PT_REGS_NAMES_AARCH64, 0) | {"pstate": 0x3C5} | values  # EL1h
    return struct.pack(f"<{len(PT_REGS_NAMES_AARCH64)}Q", *(full[n] for n in PT_REGS_NAMES_AARCH64))


def _regs(**values: int) -> Registers:
    return Registers.from_mapping({"pstate": 0x3C5, **values})


def _chain(mem: FakeMemory, *, meta: bool = False) -> int:
    # POST (frame 48 bytes at S+0x100 … ) called by BIG called by PRE; the final record of the task
    # stack's pt_regs ends the chain. Returns POST's fp.
    top_regs = STACK + SIZE - PT_REGS_SIZE - (16 if meta else 0)
    pre_fp = STACK + 0xA00  # PRE: record at its frame's bottom, CFA = fp + 48
    big_fp = STACK + 0x900 + 112  # BIG: record at the top, CFA = fp + 16
    post_fp = STACK + 0x800  # POST: CFA = fp + 32
    mem.write_u64(top_regs + STACKFRAME, 0, 0, *([FRAME_META_TYPE_FINAL] if meta else []))
    mem.write_u64(pre_fp, top_regs + STACKFRAME, _signed(ENTRY + 8))
    mem.write_u64(big_fp, pre_fp, _signed(PRE + 0x18))
    mem.write_u64(post_fp, big_fp, _signed(BIG + 0x14))
    return post_fp


def test_frame_chain_sp_from_prologues_and_pac_stripped() -> None:
    mem = _mem()
    post_fp = _chain(mem)
    regs = _regs(pc=POST + 0x18, sp=STACK + 0x800, x29=post_fp, x30=_signed(BIG + 0x14))
    trace = unwind(regs, _ctx(mem), _kernel())
    assert trace.truncated is None
    assert [f.pc for f in trace.frames] == [POST + 0x18, BIG + 0x14, PRE + 0x18, ENTRY + 8]
    assert [f.sp for f in trace.frames] == [STACK + 0x800, post_fp + 32, STACK + 0x900 + 128, STACK + 0xA00 + 48]
    assert [f.kind for f in trace.frames] == ["regs", "call", "call", "call"]
    assert all(f.reliable and f.stack == (STACK, STACK + SIZE, "task 1") for f in trace.frames)


def test_leaf_and_prologue_pc_take_the_caller_from_x30() -> None:
    mem = _mem()
    post_fp = _chain(mem)
    # in LEAF (no record): caller is x30 (POST), x29 is still POST's
    trace = unwind(_regs(pc=LEAF + 8, sp=STACK + 0x800, x29=post_fp, x30=_signed(POST + 0x18)), _ctx(mem), _kernel())
    assert [f.pc for f in trace.frames][:3] == [LEAF + 8, POST + 0x18, BIG + 0x14]
    assert trace.frames[1].sp == STACK + 0x800
    # in POST after its stp but before mov x29, sp: CFA = sp + 32, x29 still BIG's
    big_fp = STACK + 0x900 + 112
    trace = unwind(_regs(pc=POST + 0x10, sp=STACK + 0x7E0, x29=big_fp, x30=_signed(BIG + 0x14)), _ctx(mem), _kernel())
    assert [f.pc for f in trace.frames][:3] == [POST + 0x10, BIG + 0x14, PRE + 0x18]
    assert trace.frames[1].sp == STACK + 0x800
    # without function starts the walk follows records only, as the kernel does (the leaf's caller is lost)
    plain = Aarch64Kernel(PAC, STACKFRAME, PT_REGS_SIZE)
    trace = unwind(_regs(pc=LEAF + 8, sp=STACK + 0x800, x29=post_fp, x30=POST + 0x18), _ctx(mem), plain)
    assert [f.pc for f in trace.frames][:2] == [LEAF + 8, BIG + 0x14]


def test_sleeping_task_from_cpu_context() -> None:
    mem = _mem()
    post_fp = _chain(mem)
    saved = struct.pack("<13Q", *range(19, 29), post_fp, STACK + 0x7F0, POST + 0x18)
    regs = cpu_context_registers(saved)
    assert regs["x29"] == post_fp and regs["pc"] == regs["x30"] == POST + 0x18 and regs["sp"] == STACK + 0x7F0
    assert regs["x19"] == 19 and len(CPU_CONTEXT_REGISTERS) == 13
    trace = unwind(regs, _ctx(mem), _kernel(), interrupted=False)
    assert [f.pc for f in trace.frames] == [POST + 0x18, BIG + 0x14, PRE + 0x18, ENTRY + 8]
    assert trace.frames[0].kind == "call" and trace.frames[0].regs is None
    with pytest.raises(ValueError, match="pc/sp"):
        cpu_context_registers(b"\0" * 16)


def _irq(mem: FakeMemory, *, meta: bool) -> tuple[Registers, int]:
    # IRQF on the IRQ stack, called (via call_on_irq_stack) from the entry code, whose pt_regs on the
    # task stack holds the interrupted POST (pc POST+0x18, x29 = POST's record)
    post_fp = _chain(mem, meta=meta)
    regs_at = STACK + 0x400
    frame = regs_at + STACKFRAME
    mem.write(regs_at, _pt_regs(pc=POST + 0x18, sp=STACK + 0x800, x29=post_fp, x30=_signed(BIG + 0x14)))
    if meta:
        mem.write_u64(frame, 0, 0, FRAME_META_TYPE_PT_REGS)
    else:
        mem.write_u64(frame, post_fp, POST + 0x18)
    irq_fp = IRQ + SIZE - 0x100
    mem.write_u64(irq_fp, frame, _signed(ENTRY + 8))
    return _regs(pc=IRQF + 0xC, sp=irq_fp, x29=irq_fp, x30=ENTRY + 8), regs_at


@pytest.mark.parametrize("meta", [False, True])
def test_exception_frame_continues_in_the_interrupted_context(meta: bool) -> None:
    mem = _mem()
    start, regs_at = _irq(mem, meta=meta)
    trace = unwind(start, _ctx(mem), _kernel(meta=meta))
    assert trace.truncated is None
    assert [f.pc for f in trace.frames] == [IRQF + 0xC, ENTRY + 8, POST + 0x18, BIG + 0x14, PRE + 0x18, ENTRY + 8]
    exc = trace.frames[2]
    assert exc.kind == "regs" and exc.regs_address == regs_at and exc.sp == STACK + 0x800
    assert exc.regs is not None and exc.regs["x29"] == STACK + 0x800
    assert [f.stack[2] if f.stack else None for f in trace.frames][:3] == ["IRQ 0", "IRQ 0", "task 1"]


def test_record_matching_pt_regs_outside_entry_text_is_a_call() -> None:
    mem = _mem()
    start, _ = _irq(mem, meta=False)
    # the return address before the record is not entry text: no pt_regs is looked for
    kernel = Aarch64Kernel(PAC, STACKFRAME, PT_REGS_SIZE, None, ((USERENTRY, USERENTRY + 0x100),),
                           lambda pc: pc & ~0xFF)
    trace = unwind(start, _ctx(mem), kernel)
    assert [f.kind for f in trace.frames][:3] == ["regs", "call", "call"], trace.truncated


@pytest.mark.parametrize("meta", [False, True])
def test_final_record_with_user_registers(meta: bool) -> None:
    mem = _mem()
    size = PT_REGS_SIZE + (16 if meta else 0)
    top_regs = STACK + SIZE - size
    mem.write(top_regs, _pt_regs(pc=0x400000, sp=0x7FFF0000, pstate=0))
    mem.write_u64(top_regs + STACKFRAME, 0, 0, *([FRAME_META_TYPE_FINAL] if meta else []))
    fp = STACK + 0x800
    mem.write_u64(fp, top_regs + STACKFRAME, _signed(USERENTRY + 4))
    trace = unwind(_regs(pc=IRQF + 0xC, sp=fp, x29=fp), _ctx(mem), _kernel(meta=meta))
    assert trace.truncated is None and [f.pc for f in trace.frames] == [IRQF + 0xC, USERENTRY + 4]
    assert trace.user_regs is not None and trace.user_regs["pc"] == 0x400000 and trace.user_regs.user_mode
    assert trace.user_regs_address == top_regs


def test_user_mode_registers_have_no_kernel_frames() -> None:
    trace = unwind(Registers.from_mapping({"pc": 0x400000, "sp": 0x7FFF0000, "x29": 0, "pstate": 0}),
                   _ctx(_mem()), _kernel())
    assert trace.frames == () and trace.truncated is None and trace.user_regs is not None


@pytest.mark.parametrize("case", ["loop", "down", "off_stack", "unaligned", "unreadable", "not_text", "no_fp"])
def test_corrupted_chains_stop_with_a_reason(case: str) -> None:
    mem = _mem()
    fp = STACK + 0x800
    regs = {"pc": IRQF + 0xC, "sp": fp, "x29": fp}
    if case == "loop":
        mem.write_u64(fp, fp, IRQF + 0xC)
    elif case == "down":
        mem.write_u64(fp, fp - 0x40, IRQF + 0xC)
        mem.write_u64(fp - 0x40, fp, IRQF + 0xC)
    elif case == "off_stack":
        mem.write_u64(fp, 0xFFFF000012345670, IRQF + 0xC)
    elif case == "unaligned":
        mem.write_u64(fp, fp + 0x43, IRQF + 0xC)
    elif case == "unreadable":
        regs["x29"] = STACK + SIZE - 8  # the record would run past the stack's end
    elif case == "not_text":
        mem.write_u64(fp, fp + 0x40, 0xFFFF000000001000)
    else:
        del regs["x29"]
    trace = unwind(Registers.from_mapping({"pstate": 0x3C5, **regs}), _ctx(mem), _kernel(), scan=True)
    assert trace.truncated
    assert len(trace.frames) <= 64


def test_stack_entered_twice_stops() -> None:
    mem = _mem()
    irq_fp, task_fp = IRQ + 0x100, STACK + 0x800
    mem.write_u64(irq_fp, task_fp, IRQF + 0xC)
    mem.write_u64(task_fp, irq_fp + 0x100, IRQF + 0xC)
    mem.write_u64(irq_fp + 0x100, task_fp + 0x100, IRQF + 0xC)
    trace = unwind(_regs(pc=IRQF + 0xC, sp=irq_fp, x29=irq_fp), _ctx(mem), _kernel())
    assert trace.truncated is not None and "entered twice" in trace.truncated


def test_max_frames() -> None:
    mem = _mem()
    for i in range(40):
        mem.write_u64(STACK + 0x10 * i, STACK + 0x10 * (i + 1), _signed(IRQF + 0xC))
    trace = unwind(_regs(pc=IRQF + 0xC, sp=STACK, x29=STACK), _ctx(mem), _kernel(), max_frames=10)
    assert len(trace.frames) == 10 and trace.truncated == "stopped after 10 frames"


def test_strip_pac() -> None:
    assert strip_pac(_signed(TEXT + 4), PAC) == TEXT + 4
    assert strip_pac(0x0012_0000_0040_0000, PAC) == 0x400000  # a user address: the bits cleared
    assert strip_pac(TEXT, 0) == TEXT


def test_registry() -> None:
    assert arch_unwinder("aarch64").pc_register == "pc" and arch_unwinder("x86_64").sp_register == "rsp"
    assert set(ARCH_UNWINDERS) == {"x86_64", "aarch64"}
    with pytest.raises(UnwindError, match="riscv64"):
        arch_unwinder("riscv64")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=64, max_size=64), st.integers(0, 63), st.integers(0, 2**64 - 1),
       st.booleans())
def test_random_stacks_never_raise_or_loop(words: list[int], at: int, x30: int, interrupted: bool) -> None:
    # any stack contents and registers: a Trace with a bounded number of frames, never an exception;
    # half the words point into the stack itself (records that chain) and some into the text
    mem = _mem()
    base = STACK + SIZE - 8 * 64
    values = [STACK + SIZE - 8 * 64 + (w % 512) if w % 3 == 0 else TEXT + (w % 0x700) if w % 3 == 1 else w
              for w in words]
    mem.write_u64(base, *values)
    regs = _regs(pc=TEXT + (x30 % 0x700), sp=base + 8 * at, x29=base + 8 * at, x30=x30)
    trace = unwind(regs, _ctx(mem), _kernel(meta=interrupted), interrupted=interrupted, scan=True)
    assert 1 <= len(trace.frames) <= 192 + 64
