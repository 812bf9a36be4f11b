"""A synthetic typed kernel: BTF built in-test with BtfWriter, objects laid out in a bytearray."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from kcrash.errors import SymbolNotFoundError
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import Btf, parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000000000
SIZE = 0x10000


class Symbols:
    """A name -> address table (the SymbolSource protocol)."""

    def __init__(self, table: dict[str, int]) -> None:
        self.table = table

    def address_of(self, name: str) -> int:
        try:
            return self.table[name]
        except KeyError:
            raise SymbolNotFoundError(name) from None


@dataclass
class Kernel:
    writer: BtfWriter
    ids: dict[str, int]
    btf: Btf
    memory: bytearray
    symbols: Symbols
    prog: Program
    notes: dict[str, int] = field(default_factory=dict)

    def put(self, address: int, data: bytes) -> None:
        self.memory[address - BASE:address - BASE + len(data)] = data

    def put_u64(self, address: int, value: int) -> None:
        self.put(address, (value & (1 << 64) - 1).to_bytes(8, "little"))


def build_types() -> tuple[BtfWriter, dict[str, int]]:
    w, t = BtfWriter(), {}
    t["int"] = w.add_int("int", 4, signed=True)
    t["uint"] = w.add_int("unsigned int", 4)
    t["long"] = w.add_int("long int", 8, signed=True)
    t["ulong"] = w.add_int("long unsigned int", 8)
    t["char"] = w.add_int("char", 1, signed=True, char=True)
    t["bool"] = w.add_int("_Bool", 1, bool_=True)
    t["u32"] = w.add_typedef("u32", t["uint"])
    t["u64"] = w.add_typedef("u64", t["ulong"])
    t["double"] = w.add_float("double", 8)
    lh = w.next_id + 1
    t["lh_ptr"] = w.add_ptr(lh)
    assert w.add_struct("list_head", 16, [("next", t["lh_ptr"], 0, 0), ("prev", t["lh_ptr"], 64, 0)]) == lh
    t["list_head"] = lh
    hn = w.next_id + 2
    t["hn_ptr"] = w.add_ptr(hn)
    t["hn_pptr"] = w.add_ptr(t["hn_ptr"])
    assert w.add_struct("hlist_node", 16, [("next", t["hn_ptr"], 0, 0), ("pprev", t["hn_pptr"], 64, 0)]) == hn
    t["hlist_node"] = hn
    t["hlist_head"] = w.add_struct("hlist_head", 8, [("first", t["hn_ptr"], 0, 0)])
    t["color"] = w.add_enum("color", 4, [("RED", 0), ("GREEN", 1), ("BLUE", -1)], signed=True)
    t["huge"] = w.add_enum("huge", 8, [("HUGE_A", 1 << 40), ("HUGE_B", (1 << 64) - 2)], wide=True)
    t["opaque"] = w.add_fwd("opaque")
    t["opaque_u"] = w.add_fwd("opaque_union", union=True)
    t["char16"] = w.add_array(t["char"], 16, t["int"])
    t["const_char"] = w.add_qualifier("CONST", t["char"])
    t["const_char_ptr"] = w.add_ptr(t["const_char"])
    t["anon_union"] = w.add_struct("", 8, [("x", t["long"], 0, 0), ("y", t["int"], 0, 0)], union=True)
    t["item"] = w.add_struct("item", 104, [
        ("magic", t["u32"], 0, 0), ("id", t["int"], 32, 0), ("tag", t["char16"], 64, 0),
        ("node", t["list_head"], 192, 0),
        ("a", t["uint"], 320, 1), ("b", t["uint"], 321, 3), ("c", t["uint"], 324, 4), ("neg", t["int"], 328, 5),
        ("hnode", t["hlist_node"], 384, 0), ("", t["anon_union"], 512, 0), ("col", t["color"], 576, 0),
        ("name", t["const_char_ptr"], 640, 0), ("big", t["huge"], 704, 0), ("ratio", t["double"], 768, 0),
    ])
    t["item_t"] = w.add_typedef("item_t", t["item"])
    t["item_ptr"] = w.add_ptr(t["item"])
    t["proto"] = w.add_func_proto(t["int"], [("fmt", t["const_char_ptr"])], variadic=True)
    t["fn_ptr"] = w.add_ptr(t["proto"])
    t["func"] = w.add_func("printk", t["proto"])
    t["vol_ulong"] = w.add_qualifier("VOLATILE", t["ulong"])
    t["restrict_ptr"] = w.add_qualifier("RESTRICT", t["const_char_ptr"])
    t["task"] = w.add_struct("task_struct", 48, [
        ("pid", t["int"], 0, 0), ("comm", t["char16"], 32, 0), ("tasks", t["list_head"], 192, 0),
        ("fn", t["fn_ptr"], 320, 0)])
    t["var_rq"] = w.add_var("runqueues", t["item"])
    t["datasec"] = w.add_datasec(".data..percpu", 104, [(t["var_rq"], 0, 104)])
    t["ulong4"] = w.add_array(t["ulong"], 4, t["int"])
    t["decl_tag"] = w.add_decl_tag("user", t["task"], 0)
    return w, t


def _item(k: Kernel, addr: int, ident: int, nxt: int, prev: int, name_addr: int) -> None:
    data = bytearray(104)
    data[0:4] = (0xC0FFEE01).to_bytes(4, "little")
    data[4:8] = ident.to_bytes(4, "little", signed=True)
    tag = f"obj-{ident}".encode()
    data[8:8 + len(tag)] = tag
    data[24:32] = nxt.to_bytes(8, "little")
    data[32:40] = prev.to_bytes(8, "little")
    # a=1, b=5, c=9 in bits 320.. (byte 40); neg=-3 (5 bits) at bit 328 (byte 41)
    data[40] = 1 | 5 << 1 | 9 << 4
    data[41] = (-3) & 0x1F
    data[64:72] = (-12345).to_bytes(8, "little", signed=True)
    data[72:76] = (-1).to_bytes(4, "little", signed=True)
    data[80:88] = name_addr.to_bytes(8, "little")
    data[88:96] = (1 << 40).to_bytes(8, "little")
    data[96:104] = bytes.fromhex("000000000000f83f")  # 1.5
    k.put(addr, bytes(data))


def layout_objects(k: Kernel) -> None:
    """Three items on list ``item_list`` (head at BASE+0x100), a task, per-CPU offsets."""
    head, items = BASE + 0x100, [BASE + 0x1000 + 0x100 * i for i in range(3)]
    name_addr = BASE + 0x800
    k.put(name_addr, b"hello, kernel\0")
    nodes = [a + 24 for a in items]
    ring = [head, *nodes]
    for i in range(len(ring)):
        nxt, prev = ring[(i + 1) % len(ring)], ring[i - 1]
        if i == 0:
            k.put_u64(head, nxt)
            k.put_u64(head + 8, prev)
        else:
            _item(k, items[i - 1], i - 1, nxt, prev, name_addr)
    task = BASE + 0x2000
    k.put(task, (7).to_bytes(4, "little"))
    k.put(task + 4, b"swapper/0".ljust(16, b"\0"))
    k.put_u64(task + 24, task + 24)
    k.put_u64(task + 32, task + 24)
    k.put_u64(BASE + 0x3000, 0x100)  # __per_cpu_offset[0]
    k.put_u64(BASE + 0x3008, 0x200)  # __per_cpu_offset[1]
    k.notes.update(head=head, task=task, name=name_addr, **{f"item{i}": a for i, a in enumerate(items)})


def make_kernel() -> Kernel:
    w, ids = build_types()
    btf = parse_btf(w.to_bytes())
    memory = bytearray(SIZE)
    segments = SegmentMap()
    segments.add_segment(BASE, SIZE, lambda a, n: bytes(memory[a - BASE:a - BASE + n]), physical=False)
    symbols = Symbols({"item_list": BASE + 0x100, "init_task": BASE + 0x2000, "__per_cpu_offset": BASE + 0x3000,
                       "runqueues": BASE + 0xF00, "jiffies": BASE + 0x3100, "unmapped": 0x1000})
    prog = Program(MemoryReader(segments), symbols, btf)
    k = Kernel(w, ids, btf, memory, symbols, prog)
    layout_objects(k)
    prog.declare("item_list", "struct list_head")
    return k


@pytest.fixture
def kernel() -> Kernel:
    return make_kernel()
