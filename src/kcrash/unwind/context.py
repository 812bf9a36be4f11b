"""
kcrash.unwind.context
=====================

What an unwinder needs from a target, as a small :class:`UnwindContext` protocol (memory reads,
ORC lookup, stack bounds, kernel-text test), and :class:`MemoryUnwindContext`, the plain
implementation over a memory reader, :class:`~kcrash.unwind.orc.OrcTables` and explicit lists of
stack and text ranges. Finding those ranges (task stacks, per-CPU IRQ stacks, the exception stacks
in ``cpu_entry_area``, vmlinux and module text) needs symbols and types and is the caller's job
(see :mod:`kcrash.unwind.program`).
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from kcrash.unwind.orc import OrcEntry, OrcReader, OrcTables

__all__ = ["MemoryUnwindContext", "StackRange", "UnwindContext"]

_U64 = struct.Struct("<Q")


@dataclass(frozen=True, slots=True)
class StackRange:
    """One kernel stack: ``[lo, hi)`` and a name (``"task 1"``, ``"IRQ 0"``, ``"NMI 1"`` …)."""

    lo: int
    hi: int
    name: str


class UnwindContext(Protocol):
    """The target as the unwinder sees it. Reads raise :class:`~kcrash.errors.FaultError`."""

    def read(self, address: int, size: int) -> bytes:
        """Read ``size`` bytes of kernel virtual memory."""
        ...

    def read_u64(self, address: int) -> int:
        """Read one little-endian u64."""
        ...

    def orc_lookup(self, ip: int) -> OrcEntry | None:
        """Return the ORC entry covering ``ip`` or None (no table covers it)."""
        ...

    def stack_bounds(self, sp: int) -> tuple[int, int, str] | None:
        """Return ``(lo, hi, name)`` of the stack holding ``sp`` or None when it is on no known stack."""
        ...

    def is_kernel_text(self, ip: int) -> bool:
        """Whether ``ip`` is in vmlinux or module text."""
        ...


class MemoryUnwindContext:
    """An :class:`UnwindContext` from a reader, ORC tables, stacks and text ranges.

    Stacks must not overlap. With no text ranges, "kernel text" means "covered by an ORC table".
    """

    def __init__(self, mem: OrcReader, orc: OrcTables, stacks: Iterable[StackRange] = (),
                 text: Iterable[tuple[int, int]] = ()) -> None:
        self.mem = mem
        self.orc = orc
        self._stacks = sorted(stacks, key=lambda s: s.lo)
        self._stack_los = [s.lo for s in self._stacks]
        self._text = _merge(text)
        self._text_los = [lo for lo, _ in self._text]

    def read(self, address: int, size: int) -> bytes:
        """Read ``size`` bytes of kernel virtual memory."""
        return self.mem.read(address, size)

    def read_u64(self, address: int) -> int:
        """Read one little-endian u64."""
        return int(_U64.unpack(self.mem.read(address, 8))[0])

    def orc_lookup(self, ip: int) -> OrcEntry | None:
        """Return the ORC entry covering ``ip`` or None."""
        return self.orc.lookup(ip)

    def stack_bounds(self, sp: int) -> tuple[int, int, str] | None:
        """Return the known stack holding ``sp`` or None."""
        index = bisect.bisect_right(self._stack_los, sp) - 1
        if index >= 0 and sp < self._stacks[index].hi:
            stack = self._stacks[index]
            return stack.lo, stack.hi, stack.name
        return None

    def is_kernel_text(self, ip: int) -> bool:
        """Whether ``ip`` is in one of the text ranges (or an ORC table's range, with none given)."""
        if not self._text:
            return self.orc.find_table_or_none(ip) is not None
        index = bisect.bisect_right(self._text_los, ip) - 1
        return index >= 0 and ip < self._text[index][1]


def _merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged
