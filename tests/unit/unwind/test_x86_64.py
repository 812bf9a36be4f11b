"""The x86-64 ORC unwinder on synthetic tables and hand-made stacks (every sp_reg kind, pt_regs and
IRET frames, stack switches, sleeping tasks) and on corrupted stacks (truncation, never a hang)."""

from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.unwind import MemoryUnwindContext, OrcTables, Registers, StackRange
from kcrash.unwind.arch.x86_64 import inactive_task_frame_registers, unwind
from kcrash.unwind.frame import PT_REGS_NAMES
from kcrash.unwind.orc import (
    ORC_FORMATS,
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

from .conftest import IRQ, SIZE, STACK, TEXT, FakeMemory, table_from_rows

# one "function" per 0x100 bytes of text
LEAF, BPF, INDIRECT, REGSF, PARTIALF, R10F, ENDF, BPIND, DIF, UNDEFF, NOORC = (TEXT + 0x100 * i for i in range(11))
ROWS = [
    (LEAF, OrcEntry(8, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "call", False)),
    (BPF, OrcEntry(16, -16, ORC_REG_BP, ORC_REG_PREV_SP, "call", False)),
    (INDIRECT, OrcEntry(8, 0, ORC_REG_SP_INDIRECT, ORC_REG_UNDEFINED, "call", False)),
    (REGSF, OrcEntry(0, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "regs", True)),
    (PARTIALF, OrcEntry(0, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "regs_partial", True)),
    (R10F, OrcEntry(0, 0, ORC_REG_R10, ORC_REG_UNDEFINED, "call", False)),
    (ENDF, OrcEntry(0, 0, ORC_REG_UNDEFINED, ORC_REG_UNDEFINED, "end_of_stack", False)),
    (BPIND, OrcEntry(8, 0, ORC_REG_BP_INDIRECT, ORC_REG_BP, "call", False)),
    (DIF, OrcEntry(0, 0, ORC_REG_DI, ORC_REG_UNDEFINED, "call", False)),
    (UNDEFF, OrcEntry(0, 0, ORC_REG_UNDEFINED, ORC_REG_UNDEFINED, "undefined", False)),
    (NOORC + 0x100, OrcEntry(0, 0, ORC_REG_UNDEFINED, ORC_REG_UNDEFINED, "undefined", False)),
]
S = STACK + 0x2000
KERNEL_CS, USER_CS = 0x10, 0x33


def _ctx(mem: FakeMemory, fmt: str = "type3", *, table_end: int = NOORC) -> MemoryUnwindContext:
    rows = [r for r in ROWS if r[0] < table_end] + [(table_end, ROWS[-1][1])]
    table = table_from_rows(rows, fmt)
    stacks = [StackRange(STACK, STACK + SIZE, "task"), StackRange(IRQ, IRQ + SIZE, "IRQ 0")]
    return MemoryUnwindContext(mem, OrcTables([table]), stacks, [(TEXT, TEXT + 0x1000)])


def _mem() -> FakeMemory:
    mem = FakeMemory()
    mem.map(STACK, SIZE)
    mem.map(IRQ, SIZE)
    return mem


def _regs(**values: int) -> Registers:
    return Registers.from_mapping({"cs": KERNEL_CS, **values})


def _pt_regs(**values: int) -> bytes:
    full = {name: 0 for name in PT_REGS_NAMES} | {"cs": KERNEL_CS, "ss": 0x18} | values
    return struct.pack("<21Q", *(full[n] for n in PT_REGS_NAMES))


@pytest.mark.parametrize("fmt", ORC_FORMATS)
def test_call_frames_sp_and_bp_based(fmt: str) -> None:
    mem = _mem()
    mem.write_u64(S, BPF + 0x10)  # leaf's return address, CFA = sp + 8
    mem.write_u64(S + 0x40, S + 0x80, ENDF + 0x10)  # BPF's frame: saved bp, return address
    trace = unwind(_regs(rip=LEAF + 0x10, rsp=S, rbp=S + 0x40), _ctx(mem, fmt))
    assert trace.truncated is None
    assert trace.pcs == (LEAF + 0x10, BPF + 0x10, ENDF + 0x10)
    assert [f.sp for f in trace.frames] == [S, S + 8, S + 0x50]
    assert [f.kind for f in trace.frames] == ["regs", "call", "call"]
    assert all(f.reliable for f in trace.frames)
    assert trace.frames[0].regs is not None and trace.frames[1].regs is None


@pytest.mark.parametrize("fmt", ORC_FORMATS)
def test_full_pt_regs_frame_and_interrupted_lookup(fmt: str) -> None:
    mem = _mem()
    # interrupted at the first instruction of BPF: its own entry applies, not the previous function's
    mem.write(S, _pt_regs(rip=BPF, rsp=S + 0x300, rbp=S + 0x400))
    mem.write_u64(S + 0x400, S + 0x500, ENDF + 0x20)
    trace = unwind(_regs(rip=REGSF + 0x10, rsp=S), _ctx(mem, fmt))
    assert trace.truncated is None
    assert trace.pcs == (REGSF + 0x10, BPF, ENDF + 0x20)
    assert [f.kind for f in trace.frames] == ["regs", "regs", "call"]
    regs = trace.frames[1].regs
    assert regs is not None and regs["rsp"] == S + 0x300 and regs["cs"] == KERNEL_CS
    # where the pt_regs lies (bt prints it as an exception frame), and the stack of every frame
    assert [f.regs_address for f in trace.frames] == [None, S, None]
    assert {f.stack for f in trace.frames} == {(STACK, STACK + SIZE, "task")}


def test_user_mode_pt_regs_ends_the_trace() -> None:
    mem = _mem()
    mem.write_u64(S, REGSF + 0x10)
    mem.write(S + 8, _pt_regs(rip=0x401000, rsp=0x7FFF0000, cs=USER_CS))
    trace = unwind(_regs(rip=LEAF + 0x10, rsp=S), _ctx(mem))
    assert trace.truncated is None
    assert trace.pcs == (LEAF + 0x10, REGSF + 0x10)
    assert trace.user_regs is not None and trace.user_regs["rip"] == 0x401000
    assert trace.user_regs_address == S + 8


def test_user_mode_start_has_no_kernel_frames() -> None:
    trace = unwind(Registers.from_mapping({"rip": 0x401000, "rsp": 0x7FFF0000, "cs": USER_CS}), _ctx(_mem()))
    assert trace.frames == () and trace.truncated is None and trace.user_regs is not None


@pytest.mark.parametrize("fmt", ORC_FORMATS)
def test_iret_frame_keeps_entry_registers(fmt: str) -> None:
    mem = _mem()
    mem.write_u64(S, R10F + 0x10, KERNEL_CS, 0x246, S + 0x100, 0x18)  # ip cs flags sp ss
    mem.write_u64(S + 0x2F8, ENDF + 0x30)
    trace = unwind(_regs(rip=PARTIALF + 0x8, rsp=S, r10=S + 0x300), _ctx(mem, fmt))
    assert trace.truncated is None
    assert trace.pcs == (PARTIALF + 0x8, R10F + 0x10, ENDF + 0x30)
    assert [f.kind for f in trace.frames] == ["regs", "partial", "call"]
    assert trace.frames[2].sp == S + 0x300
    partial = trace.frames[1]
    assert partial.regs_address == S and partial.regs is not None
    assert partial.regs.as_dict() == {"rip": R10F + 0x10, "cs": KERNEL_CS, "eflags": 0x246, "rsp": S + 0x100,
                                      "ss": 0x18}


def test_entry_register_missing_after_a_call_frame() -> None:
    mem = _mem()
    mem.write_u64(S, DIF + 0x10)
    trace = unwind(_regs(rip=LEAF, rsp=S, rdi=S + 0x100), _ctx(mem))
    assert trace.pcs == (LEAF, DIF + 0x10)
    assert trace.truncated is not None and "rdi is not known" in trace.truncated


@pytest.mark.parametrize(("reg", "name"), [(ORC_REG_R13, "r13"), (ORC_REG_DX, "rdx"), (ORC_REG_DI, "rdi")])
def test_entry_register_bases(reg: int, name: str) -> None:
    mem = _mem()
    mem.write_u64(S + 0x1F8, ENDF + 0x8)
    rows = [(LEAF, OrcEntry(0, 0, reg, ORC_REG_UNDEFINED, "call", False)), *ROWS[1:]]
    ctx = MemoryUnwindContext(mem, OrcTables([table_from_rows(rows, "type3")]),
                              [StackRange(STACK, STACK + SIZE, "task")], [(TEXT, TEXT + 0x1000)])
    trace = unwind(_regs(rip=LEAF + 4, rsp=S, **{name: S + 0x200}), ctx)
    assert trace.pcs == (LEAF + 4, ENDF + 0x8) and trace.truncated is None


def test_sp_indirect_switches_from_the_irq_stack() -> None:
    mem = _mem()
    irq_sp = IRQ + SIZE - 0x10
    mem.write_u64(irq_sp, S + 0x100)  # the task's sp saved at the IRQ stack's top
    mem.write_u64(S + 0x100, ENDF + 0x40)
    trace = unwind(_regs(rip=INDIRECT + 0x10, rsp=irq_sp), _ctx(mem))
    assert trace.truncated is None
    assert trace.pcs == (INDIRECT + 0x10, ENDF + 0x40)
    assert trace.frames[1].sp == S + 0x108  # CFA = *sp + sp_offset (since v5.12)
    assert [f.stack[2] if f.stack else None for f in trace.frames] == ["IRQ 0", "task"]


def test_bp_indirect() -> None:
    mem = _mem()
    mem.write_u64(S + 0x48, S + 0x208)  # *(bp + 8) = CFA
    mem.write_u64(S + 0x200, ENDF + 0x50)
    mem.write_u64(S + 0x40, S + 0x600)  # bp_reg BP: new bp = *(bp + 0)
    trace = unwind(_regs(rip=BPIND + 0x10, rsp=S, rbp=S + 0x40), _ctx(mem))
    assert trace.pcs == (BPIND + 0x10, ENDF + 0x50) and trace.truncated is None


def test_sleeping_task_starts_from_its_inactive_task_frame() -> None:
    mem = _mem()
    thread_sp = S
    # r15 r14 r13 r12 bx bp ret_addr; ret_addr is the first byte of BPF, so pc - 1 (LEAF) is looked up
    frame = struct.pack("<7Q", 15, 14, 13, 12, 11, S + 0x500, BPF)
    mem.write(thread_sp, frame)
    mem.write_u64(S + 56, ENDF + 0x60)
    regs = inactive_task_frame_registers(frame, thread_sp)
    assert (regs["rip"], regs["rsp"], regs["rbp"], regs["rbx"]) == (BPF, S + 56, S + 0x500, 11)
    trace = unwind(regs, _ctx(mem), interrupted=False)
    assert trace.pcs == (BPF, ENDF + 0x60) and trace.truncated is None
    assert trace.frames[0].kind == "call" and trace.frames[0].regs is None


def test_null_pc_is_a_call_through_a_null_pointer() -> None:
    mem = _mem()
    mem.write_u64(S, ENDF + 0x70)
    trace = unwind(_regs(rip=0, rsp=S), _ctx(mem))
    assert trace.pcs == (0, ENDF + 0x70) and trace.truncated is None


def test_code_without_orc_uses_the_frame_pointer_and_is_unreliable() -> None:
    mem = _mem()
    mem.write_u64(S + 0x40, S + 0x80, ENDF + 0x10)
    trace = unwind(_regs(rip=NOORC + 0x200, rsp=S, rbp=S + 0x40), _ctx(mem, table_end=NOORC + 0x100))
    assert trace.pcs == (NOORC + 0x200, ENDF + 0x10)
    assert [f.reliable for f in trace.frames] == [True, False]


@pytest.mark.parametrize(
    ("setup", "start", "reason"),
    [
        (lambda m: m.write_u64(S, 0xDEADBEEF), {"rip": LEAF, "rsp": S}, "not kernel text"),
        (lambda m: None, {"rip": UNDEFF + 1, "rsp": S}, "undefined"),
        (lambda m: None, {"rip": LEAF, "rsp": STACK + SIZE - 4}, "no known stack"),
        (lambda m: m.write_u64(S + 0x40, S + 0x40, BPF + 0x10), {"rip": BPF + 1, "rsp": S, "rbp": S + 0x40},
         "wrong direction"),
        (lambda m: None, {"rip": BPF + 1, "rsp": S}, "rbp is not known"),
        (lambda m: None, {"rip": 0xFFFFFFFFA0000000, "rsp": S}, "not kernel text"),
    ],
)
def test_corruption_truncates(setup: object, start: dict[str, int], reason: str) -> None:
    mem = _mem()
    assert callable(setup)
    setup(mem)
    trace = unwind(_regs(**start), _ctx(mem))
    assert trace.truncated is not None and reason in trace.truncated
    assert trace.frames[0].pc == start["rip"]


def test_depth_is_bounded() -> None:
    mem = _mem()
    mem.write_u64(S, *([LEAF + 0x10] * 400))  # endless "recursion" of the leaf
    trace = unwind(_regs(rip=LEAF + 0x10, rsp=S), _ctx(mem), max_frames=50)
    assert len(trace) == 50 and trace.truncated == "stopped after 50 frames"


def test_scan_fallback_marks_guesses_unreliable() -> None:
    mem = _mem()
    mem.write_u64(S, 0x1234, LEAF + 0x10, 0x5678, BPF + 0x20)
    trace = unwind(_regs(rip=LEAF, rsp=S), _ctx(mem), scan=True)
    assert trace.truncated is not None and "not kernel text" in trace.truncated
    scanned = [f for f in trace.frames if f.kind == "scan"]
    assert [f.pc for f in scanned] == [LEAF + 0x10, BPF + 0x20]
    assert not any(f.reliable for f in scanned)
    assert scanned[0].sp == S + 16


def test_stack_entered_twice_is_a_loop() -> None:
    mem = _mem()
    irq_sp = IRQ + 0x100
    mem.write_u64(irq_sp, S)  # IRQ -> task: CFA = S + 8, return address at S
    mem.write_u64(S, INDIRECT + 0x10, IRQ + 0x78)  # task -> IRQ again: CFA = IRQ + 0x80
    mem.write_u64(IRQ + 0x78, LEAF + 0x10)
    trace = unwind(_regs(rip=INDIRECT + 0x10, rsp=irq_sp), _ctx(mem))
    assert trace.pcs == (INDIRECT + 0x10, INDIRECT + 0x10)
    assert trace.truncated == "stack IRQ 0 entered twice"


def test_scan_after_an_off_stack_frame_is_bounded() -> None:
    # A pt_regs from a damaged dump puts sp at 0x1000 (on no stack); the next frame reaches the IRQ
    # stack through r10 and ends on a non-text return address. The scan must not run from 0x1000 to
    # the end of the IRQ stack (~2**64 bytes of faulting reads, once a hang of the suite).
    mem = _mem()
    mem.write(S, _pt_regs(rip=R10F + 0x10, rsp=0x1000, r10=IRQ + 0x300))
    mem.write_u64(IRQ + 0x2F8, 0x1234)
    began = time.monotonic()
    trace = unwind(_regs(rip=REGSF + 0x10, rsp=S), _ctx(mem), scan=True)
    assert time.monotonic() - began < 1.0
    assert trace.pcs == (REGSF + 0x10, R10F + 0x10)
    assert trace.frames[-1].sp == 0x1000
    assert trace.truncated is not None and "0x1234" in trace.truncated


@settings(max_examples=150, deadline=None)
@given(words=st.lists(st.one_of(st.sampled_from([r[0] + 0x10 for r in ROWS] + [0, S, S + 0x100, IRQ + 0x40]),
                                st.integers(0, 2**64 - 1)), min_size=16, max_size=200),
       start=st.sampled_from([r[0] + 0x10 for r in ROWS]), fmt=st.sampled_from(ORC_FORMATS))
def test_garbage_stacks_never_raise_or_hang(words: list[int], start: int, fmt: str) -> None:
    mem = _mem()
    mem.write_u64(S, *words)
    mem.write_u64(IRQ + 0x40, *words[:16])
    trace = unwind(_regs(rip=start, rsp=S, rbp=S + 0x40, r10=S + 0x80, rdi=IRQ + 0x40), _ctx(mem, fmt),
                   max_frames=64, scan=True)
    reliable = [f for f in trace.frames if f.kind != "scan"]
    assert 1 <= len(reliable) <= 64
    assert trace.frames[0].pc == start


def _text_mem() -> FakeMemory:
    mem = _mem()
    mem.map(TEXT, 0x1000)
    return mem


def test_undefined_first_pc_resumes_at_a_verified_caller() -> None:
    # crash_setup_regs()'s ip in __crash_kexec, which has no ORC: the caller's return address is the
    # first word above sp that follows a direct call of the function holding pc
    mem = _text_mem()
    call_at = LEAF + 0x20
    mem.write(call_at, b"\xe8" + (UNDEFF - (call_at + 5)).to_bytes(4, "little", signed=True))
    mem.write_u64(S + 0x8, LEAF + 0x40)  # text, but no call before it: skipped
    mem.write_u64(S + 0x10, call_at + 5, ENDF + 0x10)
    trace = unwind(_regs(rip=UNDEFF + 0x30, rsp=S), _ctx(mem))
    assert trace.pcs == (UNDEFF + 0x30, call_at + 5, ENDF + 0x10) and trace.truncated is None
    assert [f.reliable for f in trace.frames] == [True, False, True]
    assert [f.sp for f in trace.frames[1:]] == [S + 0x18, S + 0x20]


def test_undefined_first_pc_without_a_caller_of_its_function_stops() -> None:
    mem = _text_mem()
    call_at = LEAF + 0x20
    # a direct call of another function (LEAF) does not vouch for a pc in UNDEFF
    mem.write(call_at, b"\xe8" + (LEAF - (call_at + 5)).to_bytes(4, "little", signed=True))
    mem.write_u64(S + 0x10, call_at + 5, ENDF + 0x10)
    trace = unwind(_regs(rip=UNDEFF + 0x30, rsp=S), _ctx(mem))
    assert trace.truncated is not None and "undefined" in trace.truncated
    # a sleeping task's pc is a return address: no recovery there either
    mem.write(call_at, b"\xe8" + (UNDEFF - (call_at + 5)).to_bytes(4, "little", signed=True))
    trace = unwind(_regs(rip=UNDEFF + 0x30, rsp=S), _ctx(mem), interrupted=False)
    assert trace.truncated is not None and "undefined" in trace.truncated
