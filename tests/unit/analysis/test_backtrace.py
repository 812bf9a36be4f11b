"""bt's frame details on synthetic frames over a fake stack: the words of each frame run from its sp
to the next frame's return address or saved registers (the last one on a stack to that stack's top,
or to the user-mode pt_regs), exception frames carry their saved registers and address, leaving an
IRQ/exception stack is marked the way crash prints it, -F names words by symbol or slab cache, and
unreadable words are left out rather than failing the frame."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from kcrash.analysis import backtrace
from kcrash.analysis.backtrace import BacktraceOptions, frame_details, stack_mark
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.model import FrameDetail
from kcrash.types.program import Program
from kcrash.unwind import Frame, Registers, Trace
from kcrash.unwind.frame import PT_REGS_NAMES

TEXT = 0xFFFFFFFF81000000
IRQ = 0xFFFFC90000100000
IRQ_SIZE = 0x40
TASK = 0xFFFFC90000200000
TASK_SIZE = 0x200
SLAB = 0xFFFF888000100000
IRQ_STACK = (IRQ, IRQ + IRQ_SIZE, "IRQ 0")
TASK_STACK = (TASK, TASK + TASK_SIZE, "task 1")
WORDS = BacktraceOptions(words=True)


class _Stack:
    """A program whose memory is an IRQ stack and a task stack (each word = its own address, unless
    written), one unreadable hole in the task stack, and two text symbols."""

    def __init__(self) -> None:
        self.data = {
            IRQ: bytearray(struct.pack(f"<{IRQ_SIZE // 8}Q", *range(IRQ, IRQ + IRQ_SIZE, 8))),
            TASK: bytearray(struct.pack(f"<{TASK_SIZE // 8}Q", *range(TASK, TASK + TASK_SIZE, 8))),
        }
        segments = SegmentMap()
        segments.add_segment(IRQ, IRQ_SIZE, self._reader(IRQ), physical=False)
        # [TASK + 0x180, TASK + 0x190) is missing
        segments.add_segment(TASK, 0x180, self._reader(TASK), physical=False)
        segments.add_segment(TASK + 0x190, TASK_SIZE - 0x190, self._reader(TASK), physical=False)
        symbols = SymbolTable(
            ["_stext", "do_work", "handler", "_etext"], [TEXT, TEXT + 0x100, TEXT + 0x200, TEXT + 0x300], "TTTT"
        )
        self.prog = Program(MemoryReader(segments), symbols)

    def _reader(self, base: int) -> Callable[[int, int], bytes]:
        return lambda address, size: bytes(self.data[base][address - base : address - base + size])

    def put(self, address: int, *values: int) -> None:
        base = IRQ if IRQ <= address < IRQ + IRQ_SIZE else TASK
        self.data[base][address - base : address - base + 8 * len(values)] = struct.pack(f"<{len(values)}Q", *values)


def _pt_regs(**values: int) -> Registers:
    full = {name: 0 for name in PT_REGS_NAMES} | {"cs": 0x10, "ss": 0x18} | values
    return Registers.from_mapping({name: full[name] for name in PT_REGS_NAMES})


def _trace(user_regs_address: int | None = None) -> Trace:
    # 0, 1 on the IRQ stack; 2 on the task stack; 3 interrupted there (its pt_regs at TASK + 0x30)
    regs = _pt_regs(rip=TEXT + 0x105, rsp=TASK + 0x30 + 168, rax=0x2A)
    return Trace(
        (
            Frame(
                TEXT + 0x210,
                IRQ + 0x08,
                True,
                Registers.from_mapping({"rip": TEXT + 0x210, "rsp": IRQ + 8}),
                "regs",
                None,
                IRQ_STACK,
            ),
            Frame(TEXT + 0x220, IRQ + 0x20, True, None, "call", None, IRQ_STACK),
            Frame(TEXT + 0x230, TASK + 0x10, True, None, "call", None, TASK_STACK),
            Frame(TEXT + 0x105, TASK + 0x30 + 168, True, regs, "regs", TASK + 0x30, TASK_STACK),
        ),
        None,
        _pt_regs(cs=0x33) if user_regs_address else None,
        user_regs_address,
    )


def _addresses(detail: FrameDetail) -> list[int]:
    return [w.address for w in detail.words]


def test_words_run_to_the_next_frames_return_address_or_saved_registers() -> None:
    stack = _Stack()
    details = frame_details(stack.prog, _trace(TASK + 0x100), WORDS)
    assert _addresses(details[0]) == [IRQ + 0x08, IRQ + 0x10]  # up to frame 1's return address at IRQ + 0x18
    assert _addresses(details[1]) == list(range(IRQ + 0x20, IRQ + IRQ_SIZE, 8))  # the IRQ stack's top
    assert _addresses(details[2]) == list(range(TASK + 0x10, TASK + 0x30, 8))  # up to frame 3's pt_regs
    assert _addresses(details[3]) == list(range(TASK + 0x30 + 168, TASK + 0x100, 8))  # up to the user pt_regs
    assert all(w.value == w.address and w.symbol is None for d in details for w in d.words)


def test_exception_frames_and_the_irq_stack_mark() -> None:
    details = frame_details(_Stack().prog, _trace(), BacktraceOptions())
    assert [d.stack for d in details] == ["IRQ 0", "IRQ 0", "task 1", "task 1"]
    assert [d.leaves for d in details] == [None, "IRQ stack", None, None]
    assert details[0].exception is None  # the starting registers are no exception frame
    exception = details[3].exception
    assert exception is not None and exception.address == TASK + 0x30 and exception.kind == "pt_regs"
    assert dict(exception.registers)["rax"] == 0x2A and exception.rip_text == "do_work+0x5/0x100"
    assert not exception.user
    assert all(d.words == () for d in details)  # words only with -f/-F
    # the last frame on the task stack runs to its top when no user registers end it
    assert _addresses(frame_details(_Stack().prog, _trace(), WORDS)[3])[-1] == TASK + TASK_SIZE - 8


def test_unreadable_words_are_left_out() -> None:
    trace = Trace(
        (
            Frame(TEXT + 0x210, TASK + 0x170, True, None, "regs", None, TASK_STACK),
            Frame(TEXT + 0x220, TASK + 0x1A8, True, None, "call", None, TASK_STACK),
        ),
        None,
    )
    words = frame_details(_Stack().prog, trace, WORDS)[0].words
    assert [w.address for w in words] == [TASK + 0x170, TASK + 0x178, TASK + 0x190, TASK + 0x198]


def test_symbolic_words_name_symbols_and_slab_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = _Stack()
    stack.put(IRQ + 0x08, TEXT + 0x20A, SLAB + 0x48)
    stack.put(IRQ + 0x20, 0x7FFF0000, SLAB + 0x1000)
    seen: list[int] = []

    def namer(prog: Program) -> object:
        def name(value: int) -> str | None:
            seen.append(value)
            return "kmalloc-64" if value == SLAB + 0x48 else None

        return name

    monkeypatch.setattr(backtrace, "_slab_cache_namer", namer)
    details = frame_details(stack.prog, _trace(), BacktraceOptions(symbolic=True))
    first, second = details[0].words, details[1].words
    assert (first[0].symbol, first[0].slab_cache) == ("handler+0xa/0x100", None)
    assert (first[1].symbol, first[1].slab_cache) == (None, "kmalloc-64")
    assert (second[0].symbol, second[0].slab_cache) == (None, None)  # a user address: not looked up
    assert (second[1].symbol, second[1].slab_cache) == (None, None)
    assert 0x7FFF0000 not in seen and TEXT + 0x20A not in seen  # symbols first; slabs only for the rest


@pytest.mark.parametrize(
    ("name", "mark"),
    [
        ("IRQ 1", "IRQ stack"),
        ("NMI 0", "NMI exception stack"),
        ("DF 1", "DOUBLEFAULT exception stack"),
        ("DB 0", "DEBUG exception stack"),
        ("MCE 0", "MCE exception stack"),
        ("task 7", None),
        (None, None),
    ],
)
def test_stack_marks_are_crashs(name: str | None, mark: str | None) -> None:
    assert stack_mark(name) == mark


def test_arm64_frames_words_exception_and_pac(monkeypatch: pytest.MonkeyPatch) -> None:
    # arm64: a frame's words run up to the next frame's sp (the return address lies in the callee's
    # frame record, not below the caller's sp); a pt_regs frame shows its pc; -F strips PAC bits
    from kcrash.unwind.arch import Aarch64Unwinder
    from kcrash.unwind.arch.arm64 import Aarch64Kernel

    pac = 0xFF7F800000000000
    stack = _Stack()
    signed = (TEXT + 0x20A) & ~pac | 0x0012_0000_0000_0000
    stack.put(TASK + 0x18, signed)
    monkeypatch.setattr(Program, "machine", property(lambda self: "aarch64"))
    monkeypatch.setattr(backtrace, "kernel_unwinder", lambda prog: type("U", (), {
        "arch": Aarch64Unwinder(Aarch64Kernel(pac_mask=pac))})())
    monkeypatch.setattr(backtrace, "_slab_cache_namer", lambda prog: lambda value: None)
    regs = Registers.from_mapping({"x29": TASK + 0x40, "sp": TASK + 0x40, "pc": TEXT + 0x105, "pstate": 0x3C5})
    trace = Trace((
        Frame(TEXT + 0x210, TASK + 0x10, True, None, "call", None, TASK_STACK),
        Frame(TEXT + 0x220, TASK + 0x20, True, None, "call", None, TASK_STACK),
        Frame(TEXT + 0x105, TASK + 0x40, True, regs, "regs", TASK + 0x28, TASK_STACK),
    ), None)
    details = frame_details(stack.prog, trace, BacktraceOptions(symbolic=True))
    assert _addresses(details[0]) == [TASK + 0x10, TASK + 0x18]
    assert details[0].words[1].symbol == "handler+0xa/0x100"  # the signed return address, stripped
    exception = details[2].exception
    assert exception is not None and exception.kind == "pt_regs" and exception.rip_text == "do_work+0x5/0x100"
