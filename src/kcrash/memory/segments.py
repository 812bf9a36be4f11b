"""
kcrash.memory.segments
======================

:class:`SegmentMap`, the one hook through which memory enters kcrash: dump files, a live target or
a test register ``(start, size, read_fn, physical)`` segments (like drgn's
``add_memory_segment``). Physical and virtual segments live in separate address spaces; where
segments overlap, the first one added wins. Reads spanning segments are stitched together; an
address no segment covers raises :class:`~kcrash.errors.FaultError`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from kcrash.dumps.base import MemorySegment, ReadFn
from kcrash.errors import FaultError

__all__ = ["SegmentMap"]

_ADDRESS_END = 1 << 64


class _Space:
    # Sorted, non-overlapping [start, end) ranges with their read functions.

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.fns: list[ReadFn] = []

    def add(self, start: int, end: int, fn: ReadFn) -> None:
        for lo, hi in self._uncovered(start, end):
            i = bisect.bisect_left(self.starts, lo)
            self.starts.insert(i, lo)
            self.ends.insert(i, hi)
            self.fns.insert(i, fn)

    def _uncovered(self, start: int, end: int) -> list[tuple[int, int]]:
        pieces = []
        pos = start
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while pos < end and i < len(self.starts):
            if self.ends[i] <= pos:
                i += 1
                continue
            if self.starts[i] >= end:
                break
            if self.starts[i] > pos:
                pieces.append((pos, self.starts[i]))
            pos = max(pos, self.ends[i])
            i += 1
        if pos < end:
            pieces.append((pos, end))
        return pieces

    def find(self, address: int) -> int:
        i = bisect.bisect_right(self.starts, address) - 1
        return i if i >= 0 and address < self.ends[i] else -1


class SegmentMap:
    """Physical and virtual memory segments with ``read(address, size, physical=)``."""

    def __init__(self, segments: Iterable[MemorySegment] = ()) -> None:
        self._spaces = {True: _Space(), False: _Space()}
        for seg in segments:
            self.add_segment(seg.start, seg.size, seg.read_fn, physical=seg.physical)

    def add_segment(self, start: int, size: int, read_fn: ReadFn, *, physical: bool) -> None:
        """Register ``size`` bytes at ``start`` read by ``read_fn(address, size)``."""
        end = min(start + size, _ADDRESS_END)
        if size > 0 and 0 <= start < end:
            self._spaces[physical].add(start, end, read_fn)

    def has_segments(self, *, physical: bool) -> bool:
        """Return True if any segment of that kind exists."""
        return bool(self._spaces[physical].starts)

    def ranges(self, *, physical: bool) -> list[tuple[int, int]]:
        """Return the covered ``[start, end)`` ranges, sorted (adjacent ones are not merged)."""
        space = self._spaces[physical]
        return list(zip(space.starts, space.ends, strict=True))

    def covers(self, address: int, *, physical: bool) -> bool:
        """Return True if a segment covers ``address``."""
        return self._spaces[physical].find(address) >= 0

    def read(self, address: int, size: int, *, physical: bool) -> bytes:
        """Read ``size`` bytes at ``address``; raise FaultError where no segment covers it."""
        space = self._spaces[physical]
        i = space.find(address)
        if i >= 0 and address + size <= space.ends[i]:
            return space.fns[i](address, size) if size else b""
        parts: list[bytes] = []
        pos, end = address, address + size
        while pos < end:
            i = space.find(pos)
            if i < 0:
                raise FaultError(pos, physical, "not in the dump")
            stop = min(end, space.ends[i])
            parts.append(space.fns[i](pos, stop - pos))
            pos = stop
        return b"".join(parts)
