"""
kcrash.dumps._bitmap
====================

A kdump bitmap (bit ``p`` = ``byte[p >> 3] >> (p & 7)``, LSB first) with a rank index: the
number of set bits before any position, from cumulative counts per 512-bit block. Pure Python on
``bytes``; the index costs 8 bytes per 512 bits.
"""

from __future__ import annotations

import re
from array import array

__all__ = ["Bitmap"]

_BLOCK_BYTES = 64
_BLOCK_SHIFT = 9  # 512 bits per block


class Bitmap:
    """``nbits`` bits of ``data`` (bits past ``nbits`` are ignored; bits past a short ``data`` are 0)."""

    def __init__(self, data: bytes, nbits: int) -> None:
        nbytes = (nbits + 7) // 8
        data = data[:nbytes]
        if nbits % 8 and len(data) == nbytes:  # a short ``data`` has no last byte to mask
            data = data[:-1] + bytes([data[-1] & ((1 << (nbits % 8)) - 1)])
        self.data = data
        self.nbits = nbits
        self._cumulative = self._index(data)

    @staticmethod
    def _index(data: bytes) -> array[int]:
        cumulative = array("Q", [0])
        total = 0
        for pos in range(0, len(data), _BLOCK_BYTES):
            total += int.from_bytes(data[pos:pos + _BLOCK_BYTES], "little").bit_count()
            cumulative.append(total)
        return cumulative

    def test(self, bit: int) -> bool:
        """Return True if ``bit`` is set (False outside the bitmap)."""
        if not 0 <= bit < self.nbits or bit >> 3 >= len(self.data):
            return False
        return bool(self.data[bit >> 3] >> (bit & 7) & 1)

    def rank(self, bit: int) -> int:
        """Return the number of set bits before ``bit``."""
        bit = min(max(bit, 0), 8 * len(self.data))  # no bits before 0 or past the data
        block = bit >> _BLOCK_SHIFT
        start = block * _BLOCK_BYTES
        partial = int.from_bytes(self.data[start:bit >> 3], "little").bit_count()
        if bit & 7:
            partial += (self.data[bit >> 3] & ((1 << (bit & 7)) - 1)).bit_count()
        return self._cumulative[block] + partial

    def count(self) -> int:
        """Return the number of set bits."""
        return self._cumulative[-1]

    def bits(self, start: int, count: int) -> int:
        """Return bits ``[start, start + count)`` as an int (bit 0 = ``start``)."""
        first, last = start >> 3, (start + count + 7) >> 3
        value = int.from_bytes(self.data[first:last], "little") >> (start & 7)
        return value & ((1 << count) - 1)

    def all_set(self, start: int, count: int) -> bool:
        """Return True if every bit of ``[start, start + count)`` is set."""
        if start < 0 or start + count > self.nbits:
            return False
        return self.bits(start, count) == (1 << count) - 1

    def count_range(self, start: int, end: int) -> int:
        """Return the number of set bits in ``[start, end)``."""
        end = min(end, self.nbits)
        return self.rank(end) - self.rank(start) if end > start else 0

    def as_int(self) -> int:
        """Return the whole bitmap as one int (bit 0 = bit 0)."""
        return int.from_bytes(self.data, "little")

    def runs(self) -> list[tuple[int, int]]:
        """Return the ``[start, end)`` runs of set bits, in order."""
        out: list[tuple[int, int]] = []
        for match in re.finditer(rb"[^\x00]+", self.data):
            base, chunk = match.start() * 8, match.group()
            if chunk.count(0xFF) == len(chunk):
                _append_run(out, base, base + 8 * len(chunk))
                continue
            value, bit = int.from_bytes(chunk, "little"), 0
            while value:
                zeros = (value & -value).bit_length() - 1
                value >>= zeros
                ones = (value ^ (value + 1)).bit_length() - 1
                _append_run(out, base + bit + zeros, base + bit + zeros + ones)
                value >>= ones
                bit += zeros + ones
        return [(s, min(e, self.nbits)) for s, e in out if s < self.nbits]


def _append_run(runs: list[tuple[int, int]], start: int, end: int) -> None:
    if runs and runs[-1][1] == start:
        runs[-1] = (runs[-1][0], end)
    else:
        runs.append((start, end))
