"""The stack scan fallback: kernel-text words on a stack, bounded by a byte budget whatever range it is given."""

from __future__ import annotations

import time

from kcrash.unwind import MemoryUnwindContext, OrcTables, StackRange
from kcrash.unwind.frame_pointer import SCAN_BUDGET, scan_stack

from .conftest import SIZE, STACK, TEXT, FakeMemory


class _CountingMemory(FakeMemory):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def read(self, address: int, size: int) -> bytes:
        self.reads += 1
        return super().read(address, size)


def _ctx(mem: FakeMemory) -> MemoryUnwindContext:
    return MemoryUnwindContext(mem, OrcTables([]), [StackRange(STACK, STACK + SIZE, "task")], [(TEXT, TEXT + 0x1000)])


def test_scan_finds_text_words_and_skips_faulting_pages() -> None:
    mem = FakeMemory()
    mem.map(STACK, SIZE)
    mem.write_u64(STACK + 0x18, 0x1234, TEXT + 0x10, TEXT + 0x2000, TEXT + 0x20)
    frames = scan_stack(_ctx(mem), STACK - 0x3000, STACK + SIZE)
    assert [(f.pc, f.sp) for f in frames] == [(TEXT + 0x10, STACK + 0x28), (TEXT + 0x20, STACK + 0x38)]
    assert all(f.kind == "scan" and not f.reliable for f in frames)


def test_scan_of_the_whole_address_space_is_bounded() -> None:
    # registers from a corrupted dump: the range spans 2**64 bytes of unmapped memory
    mem = _CountingMemory()
    began = time.monotonic()
    frames = scan_stack(_ctx(mem), 0, 2**64)
    elapsed = time.monotonic() - began
    assert frames == []
    assert mem.reads == SCAN_BUDGET // 4096
    assert elapsed < 1.0


def test_scan_near_the_top_of_the_address_space_stops_at_its_end() -> None:
    mem = _CountingMemory()
    assert scan_stack(_ctx(mem), 2**64 - 0x1800, 2**64 + 0x10000) == []
    assert mem.reads == 2


def test_budget_counts_readable_bytes_too() -> None:
    mem = FakeMemory()
    mem.map(STACK, SIZE)
    mem.write_u64(STACK + SIZE - 8, TEXT + 0x10)
    ctx = _ctx(mem)
    assert scan_stack(ctx, STACK, STACK + SIZE, budget=SIZE - 8) == []
    assert [f.pc for f in scan_stack(ctx, STACK, STACK + SIZE, budget=SIZE)] == [TEXT + 0x10]


