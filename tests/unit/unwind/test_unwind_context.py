"""kcrash.unwind.context.MemoryUnwindContext: memory reads and u64s through the reader, ORC lookups,
the stack holding a stack pointer (half-open ranges, gaps between stacks), kernel text from merged
ranges or, without any, from the ORC tables' coverage."""

from __future__ import annotations

import struct

import pytest

from kcrash.errors import FaultError
from kcrash.unwind.context import MemoryUnwindContext, StackRange, UnwindContext
from kcrash.unwind.orc import ORC_REG_SP, ORC_REG_UNDEFINED, OrcEntry, OrcTables

from .conftest import IRQ, SIZE, STACK, TEXT, FakeMemory, table_from_rows

CALL = OrcEntry(8, 0, ORC_REG_SP, ORC_REG_UNDEFINED, "call", False)
END = OrcEntry(0, 0, ORC_REG_UNDEFINED, ORC_REG_UNDEFINED, "end_of_stack", False)


def _context(text: list[tuple[int, int]] | None = None) -> tuple[MemoryUnwindContext, FakeMemory]:
    mem = FakeMemory()
    mem.map(STACK, SIZE)
    mem.write_u64(STACK + 0x10, 0x1122334455667788)
    orc = OrcTables([table_from_rows([(TEXT, CALL), (TEXT + 0x100, END), (TEXT + 0x1000, CALL)], "type3")])
    stacks = [StackRange(IRQ, IRQ + SIZE, "IRQ 0"), StackRange(STACK, STACK + SIZE, "task 1")]  # any order
    return MemoryUnwindContext(mem, orc, stacks, text or ()), mem


def test_is_an_unwind_context() -> None:
    ctx, _ = _context()
    assert isinstance(ctx, MemoryUnwindContext)
    as_protocol: UnwindContext = ctx  # mypy checks the protocol; the test checks the behaviour
    assert as_protocol.read_u64(STACK + 0x10) == 0x1122334455667788


def test_reads() -> None:
    ctx, _ = _context()
    assert ctx.read(STACK + 0x10, 8) == struct.pack("<Q", 0x1122334455667788)
    with pytest.raises(FaultError):
        ctx.read_u64(STACK + SIZE)


def test_orc_lookup() -> None:
    ctx, _ = _context()
    assert ctx.orc_lookup(TEXT + 0x80) == CALL
    assert ctx.orc_lookup(TEXT + 0x180) == END
    assert ctx.orc_lookup(TEXT - 1) is None


def test_stack_bounds_are_half_open() -> None:
    ctx, _ = _context()
    assert ctx.stack_bounds(STACK) == (STACK, STACK + SIZE, "task 1")
    assert ctx.stack_bounds(STACK + SIZE - 8) == (STACK, STACK + SIZE, "task 1")
    assert ctx.stack_bounds(STACK + SIZE) is None
    assert ctx.stack_bounds(IRQ + 0x100) == (IRQ, IRQ + SIZE, "IRQ 0")
    assert ctx.stack_bounds(STACK - 8) is None
    assert ctx.stack_bounds(0) is None


def test_kernel_text_from_ranges_merged() -> None:
    ctx, _ = _context([(TEXT + 0x2000, TEXT + 0x3000), (TEXT, TEXT + 0x1000), (TEXT + 0x800, TEXT + 0x2000)])
    assert all(ctx.is_kernel_text(ip) for ip in (TEXT, TEXT + 0x1800, TEXT + 0x2FFF))
    assert not ctx.is_kernel_text(TEXT + 0x3000)
    assert not ctx.is_kernel_text(TEXT - 1)


def test_kernel_text_without_ranges_is_orc_coverage() -> None:
    ctx, _ = _context()
    assert ctx.is_kernel_text(TEXT) and ctx.is_kernel_text(TEXT + 0x1000)
    assert not ctx.is_kernel_text(TEXT - 1)
    assert not ctx.is_kernel_text(STACK)
