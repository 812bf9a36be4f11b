"""kcrash.memory.segments.SegmentMap: separate physical and virtual spaces, the first segment added
wins where segments overlap, reads spanning segments are stitched, holes raise FaultError at the
first missing address, segments past 2^64 are clipped."""

from __future__ import annotations

import pytest

from kcrash.dumps.base import MemorySegment, ReadFn
from kcrash.errors import FaultError
from kcrash.memory.segments import SegmentMap


def _filled(byte: int, calls: list[tuple[int, int]] | None = None) -> ReadFn:
    def read(address: int, size: int) -> bytes:
        if calls is not None:
            calls.append((address, size))
        return bytes([byte]) * size
    return read


def test_physical_and_virtual_are_separate() -> None:
    m = SegmentMap([MemorySegment(0x1000, 0x1000, _filled(1), physical=True)])
    assert m.has_segments(physical=True) and not m.has_segments(physical=False)
    assert m.read(0x1800, 4, physical=True) == b"\1" * 4
    with pytest.raises(FaultError) as info:
        m.read(0x1800, 4, physical=False)
    assert info.value.address == 0x1800 and not info.value.physical


def test_first_segment_added_wins_on_overlap() -> None:
    m = SegmentMap()
    m.add_segment(0x2000, 0x2000, _filled(0xA), physical=True)  # [0x2000, 0x4000)
    m.add_segment(0x1000, 0x4000, _filled(0xB), physical=True)  # only [0x1000,0x2000) and [0x4000,0x5000) are new
    assert m.ranges(physical=True) == [(0x1000, 0x2000), (0x2000, 0x4000), (0x4000, 0x5000)]
    data = m.read(0x1FFE, 0x2004, physical=True)  # B B | A * 0x2000 | B B
    assert data == b"\x0b\x0b" + b"\x0a" * 0x2000 + b"\x0b\x0b"


def test_stitched_read_calls_each_segment_once() -> None:
    calls: list[tuple[int, int]] = []
    m = SegmentMap()
    m.add_segment(0, 0x1000, _filled(1, calls), physical=True)
    m.add_segment(0x1000, 0x1000, _filled(2, calls), physical=True)
    assert m.read(0xFF0, 0x20, physical=True) == b"\1" * 0x10 + b"\2" * 0x10
    assert calls == [(0xFF0, 0x10), (0x1000, 0x10)]
    calls.clear()
    assert m.read(0x10, 8, physical=True) == b"\1" * 8 and calls == [(0x10, 8)]  # the one-segment fast path
    assert m.read(0x10, 0, physical=True) == b""


def test_hole_faults_at_first_missing_address() -> None:
    m = SegmentMap()
    m.add_segment(0, 0x1000, _filled(1), physical=True)
    m.add_segment(0x2000, 0x1000, _filled(2), physical=True)
    assert m.covers(0xFFF, physical=True) and not m.covers(0x1000, physical=True)
    with pytest.raises(FaultError, match="not in the dump") as info:
        m.read(0xF00, 0x1200, physical=True)
    assert info.value.address == 0x1000 and info.value.physical


def test_degenerate_segments() -> None:
    m = SegmentMap()
    m.add_segment(0x1000, 0, _filled(1), physical=False)  # empty: ignored
    m.add_segment(-0x1000, 0x2000, _filled(1), physical=False)  # negative start: ignored
    assert not m.has_segments(physical=False)
    top = (1 << 64) - 0x1000
    m.add_segment(top, 0x10000, _filled(7), physical=False)  # clipped at the end of the address space
    assert m.ranges(physical=False) == [(top, 1 << 64)]
    assert m.read((1 << 64) - 2, 2, physical=False) == b"\7\7"
