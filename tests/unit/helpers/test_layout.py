"""StructLayout on synthetic memory: each member decodes as Object member access does (signed and
unsigned integers, pointers, nested members, array elements, char arrays, char pointers), with one
memory read per structure; probed member names; member-by-member reads when the span is unreadable."""

from __future__ import annotations

import pytest

from kcrash.errors import ExpressionError, FaultError, TypeLookupError
from kcrash.helpers.layout import StructLayout
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000000000
SIZE = 0x1000
ITEM = 0x40
STRING = BASE + 0x800


class Memory:
    """struct item {int id; unsigned int flags; struct {long counter;} count; struct item *next;
    char tag[8]; const char *name; unsigned short slots[4]; unsigned int bits:3;}"""

    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        u = w.add_int("unsigned int", 4)
        lg = w.add_int("long", 8, signed=True)
        c = w.add_int("char", 1, signed=True, char=True)
        us = w.add_int("unsigned short", 2)
        counter = w.add_struct("", 8, [("counter", lg, 0, 0)])
        atomic = w.add_typedef("atomic_long_t", counter)
        item_ptr = w.add_ptr(w.next_id + 5)
        tag = w.add_array(c, 8, i)
        name = w.add_ptr(w.add_qualifier("CONST", c))
        slots = w.add_array(us, 4, i)
        w.add_struct("item", ITEM, [
            ("id", i, 0, 0), ("flags", u, 32, 0), ("count", atomic, 64, 0), ("next", item_ptr, 128, 0),
            ("tag", tag, 192, 0), ("name", name, 256, 0), ("slots", slots, 320, 0), ("bits", u, 384, 3)])
        self.memory = bytearray(SIZE)
        self.reads: list[tuple[int, int]] = []
        segments = SegmentMap()
        segments.add_segment(BASE, SIZE, self._read, physical=False)
        self.prog = Program(MemoryReader(segments), None, parse_btf(w.to_bytes()))
        self.type = self.prog.type("struct item")

    def _read(self, address: int, size: int) -> bytes:
        self.reads.append((address, size))
        return bytes(self.memory[address - BASE:address - BASE + size])

    def put(self, address: int, data: bytes) -> None:
        self.memory[address - BASE:address - BASE + len(data)] = data

    def item(self, k: int, id: int, flags: int, count: int, tag: bytes) -> int:
        address = BASE + k * ITEM
        self.put(address, id.to_bytes(4, "little", signed=True) + flags.to_bytes(4, "little")
                 + count.to_bytes(8, "little", signed=True) + (address + ITEM).to_bytes(8, "little")
                 + tag.ljust(8, b"\0") + STRING.to_bytes(8, "little")
                 + b"".join(n.to_bytes(2, "little") for n in (7, 8, 9, 0xFFFF)))
        return address


@pytest.fixture
def mem() -> Memory:
    m = Memory()
    m.put(STRING, b"cache-name\0")
    return m


PATHS = ["id", "flags", "count.counter", "next", "slots[1]", "slots[3]"]


@pytest.mark.parametrize(("id", "flags", "count"), [(5, 0x1234, 42), (-3, 0xFFFFFFFF, -7)])
def test_members_decode_like_object_members(mem: Memory, id: int, flags: int, count: int) -> None:
    address = mem.item(1, id, flags, count, b"tag-one")
    layout = StructLayout(mem.type, [*PATHS, "tag", "name"])
    got = layout.read(mem.prog, address)
    obj = Object(mem.prog, mem.prog.pointer_type("struct item"), address)
    expected = [obj.id, obj.flags, obj.count.counter, obj.next, obj.slots[1], obj.slots[3]]
    assert [got.value(p) for p in PATHS] == [int(e) for e in expected] == [id, flags, count, address + ITEM, 8,
                                                                          0xFFFF]
    assert got.string("tag") == obj.tag.string_() == b"tag-one"
    assert got.object("name").string_() == obj.name.string_() == b"cache-name"
    assert layout.offsetof("slots[1]") == 42
    assert layout.read_value(mem.prog, address, "count.counter") == count


def test_one_read_per_structure(mem: Memory) -> None:
    addresses = [mem.item(k, k, 0, 0, b"") for k in range(1, 4)]
    layout = StructLayout(mem.type, ["flags", "next", "tag"])
    mem.reads.clear()
    values = [(s.value("flags"), s.value("next"), s.string("tag")) for s in (layout.read(mem.prog, a)
                                                                               for a in addresses)]
    assert values == [(0, a + ITEM, b"") for a in addresses]
    # flags at 4 .. the end of tag at 32: one read of 28 bytes each
    assert mem.reads == [(a + 4, 28) for a in addresses]


def test_candidate_names_take_the_first_the_type_has(mem: Memory) -> None:
    address = mem.item(1, 9, 3, 0, b"")
    layout = StructLayout(mem.type, {"state": ("__state", "flags"), "pid": "id"})
    got = layout.read(mem.prog, address)
    assert (got.value("state"), got.value("pid")) == (3, 9)
    assert StructLayout(mem.type, "id").read(mem.prog, address).value("id") == 9
    with pytest.raises(TypeLookupError):
        StructLayout(mem.type, {"state": ("__state", "state")})
    with pytest.raises(ExpressionError):
        StructLayout(mem.type, ["bits"])
    with pytest.raises(ExpressionError):
        StructLayout(mem.type, ["id[1]"])


def test_unreadable_span_reads_member_by_member(mem: Memory) -> None:
    # The last item's name pointer lies past the end of memory; its id is still readable, and
    # the fault names the name member's own address.
    last = BASE + SIZE - 0x20
    mem.put(last, (77).to_bytes(4, "little"))
    got = StructLayout(mem.type, ["id", "name"]).read(mem.prog, last)
    assert got.value("id") == 77
    with pytest.raises(FaultError) as exc:
        got.value("name")
    assert exc.value.address == last + 0x20
