"""kcrash.live.breakpoints.BreakpointTable against a recording stub client: numbering, watchpoints
split into aligned 1/2/4/8-byte debug-register pieces, the hardware-slot limit refused before the
stub is asked, rollback of a half-inserted watchpoint, enable/disable/delete, and the lookups a
stop report uses (breakpoints at a pc, watchpoints covering an address by watch kind)."""

from __future__ import annotations

from typing import cast

import pytest

from kcrash.errors import LiveTargetError
from kcrash.live.breakpoints import BreakpointTable
from kcrash.live.gdbremote.client import GdbRemoteClient

A = 0xFFFFFFFF81000000


class _Client:
    """Records Z/z requests; ``refuse`` kinds answer unsupported, ``fail_at`` addresses error."""

    def __init__(self, refuse: tuple[str, ...] = (), fail_at: tuple[int, ...] = ()) -> None:
        self.inserted: list[tuple[str, int, int]] = []
        self.removed: list[tuple[str, int, int]] = []
        self.refuse = refuse
        self.fail_at = fail_at

    def insert_point(self, kind: str, address: int, length: int) -> bool:
        if address in self.fail_at:
            raise LiveTargetError("E22")
        if kind in self.refuse:
            return False
        self.inserted.append((kind, address, length))
        return True

    def remove_point(self, kind: str, address: int, length: int) -> bool:
        self.removed.append((kind, address, length))
        return True


def _table(client: _Client, hw_slots: int | None = 4) -> BreakpointTable:
    return BreakpointTable(cast(GdbRemoteClient, client), hw_slots)


def test_numbering_and_insertion() -> None:
    client = _Client()
    table = _table(client)
    sw = table.add("software", A + 0x10, 1, "schedule+16")
    hw = table.add("hardware", A + 0x20, 1, "panic")
    assert (sw.number, hw.number, len(table)) == (1, 2, 2)
    assert client.inserted == [("software", A + 0x10, 1), ("hardware", A + 0x20, 1)]
    assert sw.inserted and not sw.uses_hw_slot and hw.uses_hw_slot
    assert table.hw_in_use() == 1
    assert table.get(2) is hw
    with pytest.raises(LiveTargetError, match="no breakpoint or watchpoint number 7"):
        table.get(7)


def test_watchpoints_take_one_slot_per_aligned_piece() -> None:
    with pytest.raises(LiveTargetError, match=r"needs 5 hardware debug register\(s\) but 0 of the target's 4"):
        _table(_Client()).add("write", A + 0x101, 10, "jiffies")  # more than KVM's 4 debug registers
    client = _Client()
    table = _table(client, hw_slots=None)  # TCG emulates as many as asked for
    wp = table.add("write", A + 0x101, 10, "jiffies")  # 0x101..0x10b: 1 + 2 + 4 + 2 + 1 bytes
    pieces = [(A + 0x101, 1), (A + 0x102, 2), (A + 0x104, 4), (A + 0x108, 2), (A + 0x10A, 1)]
    assert table.stub_pieces(wp) == pieces
    assert client.inserted == [("write", a, n) for a, n in pieces]
    assert table.hw_in_use() == 5
    assert wp.covers(A + 0x10A) and not wp.covers(A + 0x10B)


def test_slot_limit_refused_before_the_stub_is_asked() -> None:
    client = _Client()
    table = _table(client, hw_slots=2)
    table.add("hardware", A, 1, "a")
    table.add("write", A + 8, 8, "b")
    with pytest.raises(LiveTargetError, match=r"needs 1 hardware debug register\(s\) but 2 of the target's 2"):
        table.add("hardware", A + 0x40, 1, "c")
    assert len(table) == 2 and len(client.inserted) == 2
    table.add("software", A + 0x40, 1, "d")  # software breakpoints need no slot
    table.disable(1)  # frees its slot
    assert table.hw_in_use() == 1
    table.add("read", A + 0x80, 4, "e")
    with pytest.raises(LiveTargetError, match="needs 1"):
        table.enable(1)
    assert not table.get(1).enabled


def test_failed_insertion_rolls_back() -> None:
    client = _Client(fail_at=(A + 0x108,))
    table = _table(client)
    with pytest.raises(LiveTargetError, match=r"cannot insert write point #1 at x .*out of hardware debug registers"):
        table.add("write", A + 0x100, 16, "x")  # pieces at 0x100 and 0x108; the second fails
    assert client.removed == [("write", A + 0x100, 8)]
    assert len(table) == 0
    client = _Client(refuse=("access",))
    table = _table(client)
    with pytest.raises(LiveTargetError, match="does not support access points"):
        table.add("access", A, 4, "y")


def test_bad_kinds_and_lengths() -> None:
    table = _table(_Client())
    with pytest.raises(LiveTargetError, match="unknown breakpoint kind 'exec'"):
        table.add("exec", A, 1, "z")
    with pytest.raises(LiveTargetError, match="length must be positive"):
        table.add("write", A, 0, "z")


def test_disable_enable_delete_remove_all() -> None:
    client = _Client()
    table = _table(client)
    bp = table.add("software", A, 1, "a")
    table.add("write", A + 8, 8, "b")
    table.disable(bp.number)
    assert not bp.inserted and client.removed == [("software", A, 1)]
    assert table.at_pc(A) == []
    table.enable(bp.number)
    assert bp.inserted and table.at_pc(A) == [bp]
    assert table.remove_all() == []
    assert all(not p.inserted for p in table)
    assert table.delete(bp.number) is bp and len(table) == 1


def test_watching_matches_the_reported_kind() -> None:
    table = _table(_Client(), hw_slots=None)  # TCG: unlimited
    write = table.add("write", A, 8, "w")
    read = table.add("read", A, 8, "r")
    access = table.add("access", A, 8, "a")
    assert table.watching(A + 4, "watch") == [write, access]
    assert table.watching(A + 4, "rwatch") == [read, access]
    assert table.watching(A + 4, None) == [write, read, access]
    assert table.watching(A + 8, None) == []
