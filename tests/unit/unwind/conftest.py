"""Synthetic kernels for the unwinder tests: fake memory, ORC tables built in-test, hand-made stacks."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from kcrash.errors import FaultError
from kcrash.unwind.orc import OrcEntry, OrcTable, encode_orc_entry

TEXT = 0xFFFFFFFF81000000
STACK = 0xFFFFC90000010000  # a 16 KiB task stack
IRQ = 0xFFFFC90000100000  # a 16 KiB IRQ stack
SIZE = 0x4000


class FakeMemory:
    """Sparse byte-addressed memory: ``mem[addr] = bytes``; reads elsewhere fault."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytearray] = {}

    def map(self, base: int, size: int) -> None:
        self.blocks[base] = bytearray(size)

    def write(self, address: int, data: bytes) -> None:
        for base, block in self.blocks.items():
            if base <= address and address + len(data) <= base + len(block):
                block[address - base:address - base + len(data)] = data
                return
        raise AssertionError(f"write outside mapped memory at {address:#x}")

    def write_u64(self, address: int, *values: int) -> None:
        self.write(address, struct.pack(f"<{len(values)}Q", *(v & (2**64 - 1) for v in values)))

    def read(self, address: int, size: int) -> bytes:
        for base, block in self.blocks.items():
            if base <= address and address + size <= base + len(block):
                return bytes(block[address - base:address - base + size])
        raise FaultError(address, False, "not in the fake memory")


def build_table(mem: FakeMemory, at: int, rows: Sequence[tuple[int, OrcEntry]], fmt: str) -> tuple[int, int, int]:
    """Write an ORC table for ``rows`` ((ip, entry), sorted) at ``at``: return (ip_table, entries, num)."""
    n = len(rows)
    ip_table, entries = at, at + 4 * n + 16
    mem.map(at, 16 * n + 64)
    for i, (ip, _) in enumerate(rows):
        mem.write(ip_table + 4 * i, struct.pack("<i", ip - (ip_table + 4 * i)))
    mem.write(entries, b"".join(encode_orc_entry(entry, fmt) for _, entry in rows))
    return ip_table, entries, n


def table_from_rows(rows: Sequence[tuple[int, OrcEntry]], fmt: str) -> OrcTable:
    raw = np.frombuffer(b"".join(encode_orc_entry(e, fmt) for _, e in rows),
                        dtype=[("sp_offset", "<i2"), ("bp_offset", "<i2"), ("word", "<u2")])
    return OrcTable(np.array([ip for ip, _ in rows], dtype=np.uint64), raw, fmt, "test")
