"""list.h walks on synthetic memory: order, entries, hlists, and bounded walks of corrupt lists."""

from __future__ import annotations

import pytest

from kcrash.errors import FaultError, ValidationError
from kcrash.helpers.linux import list as list_helpers
from kcrash.helpers.linux.list import (
    hlist_empty,
    hlist_for_each_entry,
    list_empty,
    list_first_entry,
    list_for_each,
    list_for_each_entry,
    list_for_each_entry_reverse,
    list_is_singular,
    validate_list,
)
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000000000
HEAD = BASE + 0x10
HHEAD = BASE + 0x40
ENTRY_SIZE = 0x40


class Kernel:
    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        lp = w.add_ptr(3)
        w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
        hp = w.add_ptr(6)
        hpp = w.add_ptr(hp)
        w.add_struct("hlist_node", 16, [("next", hp, 0, 0), ("pprev", hpp, 64, 0)])
        w.add_struct("hlist_head", 8, [("first", hp, 0, 0)])
        w.add_struct("entry", ENTRY_SIZE, [("id", i, 0, 0), ("node", 3, 64, 0), ("hnode", 6, 192, 0)])
        self.memory = bytearray(0x4000)
        segments = SegmentMap()
        segments.add_segment(BASE, len(self.memory), lambda a, n: bytes(self.memory[a - BASE:a - BASE + n]),
                             physical=False)
        self.prog = Program(MemoryReader(segments), None, parse_btf(w.to_bytes()))

    def u64(self, addr: int, value: int) -> None:
        self.memory[addr - BASE:addr - BASE + 8] = value.to_bytes(8, "little")

    def entry(self, i: int) -> int:
        addr = BASE + 0x100 + i * ENTRY_SIZE
        self.memory[addr - BASE:addr - BASE + 4] = i.to_bytes(4, "little")
        return addr

    def make_list(self, n: int) -> list[int]:
        nodes = [self.entry(i) + 8 for i in range(n)]
        ring = [HEAD, *nodes]
        for k, node in enumerate(ring):
            self.u64(node, ring[(k + 1) % len(ring)])
            self.u64(node + 8, ring[k - 1])
        return nodes

    def head(self) -> Object:
        return self.prog.object("struct list_head", HEAD)


def ids(walk: list_helpers.ListWalk) -> list[int]:
    return [e.id.value_() for e in walk]


def test_walk_order_and_entries() -> None:
    k = Kernel()
    nodes = k.make_list(5)
    walk = list_for_each_entry("struct entry", k.head().address_of_(), "node")
    assert ids(walk) == [0, 1, 2, 3, 4] and walk.truncated is None
    assert ids(list_for_each_entry("struct entry", k.head(), "node")) == [0, 1, 2, 3, 4]  # struct, not pointer
    assert ids(list_for_each_entry_reverse("struct entry", k.head(), "node")) == [4, 3, 2, 1, 0]
    assert [int(n) for n in list_for_each(k.head())] == nodes
    assert validate_list(k.head()) == 5
    assert not list_empty(k.head()) and not list_is_singular(k.head())
    assert list_first_entry(k.head(), "struct entry", "node").id.value_() == 0
    assert ids(walk) == [0, 1, 2, 3, 4]  # a walk restarts


def test_empty_and_singular() -> None:
    k = Kernel()
    k.make_list(0)
    assert list_empty(k.head()) and list(list_for_each(k.head())) == []
    k.make_list(1)
    assert list_is_singular(k.head())


def test_cycle_not_through_head_is_truncated() -> None:
    k = Kernel()
    nodes = k.make_list(4)
    k.u64(nodes[3], nodes[1])  # 3 -> 1: never returns to the head
    walk = list_for_each_entry("struct entry", k.head(), "node")
    assert ids(walk) == [0, 1, 2, 3]
    assert walk.truncated is not None and "cycle" in walk.truncated
    with pytest.raises(ValidationError):
        validate_list(k.head())


def test_null_unreadable_and_limit() -> None:
    k = Kernel()
    nodes = k.make_list(3)
    k.u64(nodes[1], 0)
    walk = list_for_each(k.head())
    assert len(list(walk)) == 2 and walk.truncated is not None and "NULL" in walk.truncated
    k.u64(nodes[1], 0xDEAD0000)
    walk = list_for_each(k.head())
    assert len(list(walk)) == 3 and walk.truncated is not None and "unreadable" in walk.truncated
    k.make_list(10)
    walk = list_for_each(k.head(), limit=4)
    assert len(list(walk)) == 4 and walk.truncated is not None and "limit" in walk.truncated
    k.u64(HEAD, 0xDEAD0000)
    with pytest.raises(FaultError):
        list(list_for_each(k.prog.object("struct list_head", 0xDEAD0000)))


def test_bad_prev_fails_validation() -> None:
    k = Kernel()
    nodes = k.make_list(3)
    k.u64(nodes[2] + 8, nodes[0])
    with pytest.raises(ValidationError, match="prev"):
        validate_list(k.head())


def test_hlist() -> None:
    k = Kernel()
    head = k.prog.object("struct hlist_head", HHEAD)
    assert hlist_empty(head)
    entries = [k.entry(i) for i in range(3)]
    k.u64(HHEAD, entries[0] + 24)
    for a, b in zip(entries, [*entries[1:], None], strict=True):
        k.u64(a + 24, (b + 24) if b else 0)
    walk = hlist_for_each_entry("struct entry", head, "hnode")
    assert ids(walk) == [0, 1, 2] and walk.truncated is None and not hlist_empty(head)
    k.u64(entries[2] + 24, entries[0] + 24)
    walk = hlist_for_each_entry("struct entry", head.address_of_(), "hnode")
    assert ids(walk) == [0, 1, 2] and walk.truncated is not None


def test_exports_documented() -> None:
    for name in list_helpers.__all__:
        assert getattr(list_helpers, name).__doc__, name
