"""A synthetic kernel with the tree types (``rb_node``/``rb_root`` and ``struct item {rb_node rb;
u64 key}``, ``xarray``/``xa_node``, ``maple_tree``/``maple_node``) and ``list_head``, with builders
of a balanced rbtree, a three-level xarray (values, a multi-index entry, zero and retry entries) and
a maple tree (an arange_64 root over two leaves and a full leaf), for the helper and CLI tests."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.helpers.linux.xarray import XA_RETRY_ENTRY, XA_ZERO_ENTRY
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFF888000000000
SIZE = 0x10000
ROOT = BASE + 0x10
ENTRIES = BASE + 0x1000
NODES = BASE + 0x4000
MAPLE_NODES = BASE + 0x6000


XA = BASE + 0x20
MT = BASE + 0x40
LIST = BASE + 0x60
OBJS = BASE + 0x8000
OBJ = 24


class Kernel(SyntheticMemory):
    """rb_node/rb_root and struct item {rb_node rb; u64 key}; xarray/xa_node (slots at +40);
    maple_tree/maple_node (range_64: pivots +8, slots +128, meta +248; arange_64: pivots +8,
    slots +80, meta +240); list_head and struct obj {int id; list_head node at +8}. Symbols:
    tree_root, tree_xa, tree_mt, obj_list."""

    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        ul = w.add_int("unsigned long", 8)
        uc = w.add_int("unsigned char", 1)
        vp = w.add_ptr(0)
        node_ptr = w.add_ptr(w.next_id + 1)
        rb_node = w.add_struct("rb_node", 24, [("__rb_parent_color", ul, 0, 0), ("rb_right", node_ptr, 64, 0),
                                               ("rb_left", node_ptr, 128, 0)])
        w.add_struct("rb_root", 8, [("rb_node", node_ptr, 0, 0)])
        w.add_struct("item", 32, [("rb", rb_node, 0, 0), ("key", ul, 192, 0)])
        w.add_struct("xarray", 16, [("xa_lock", i, 0, 0), ("xa_flags", i, 32, 0), ("xa_head", vp, 64, 0)])
        w.add_struct("xa_node", 40 + 8 * 64, [
            ("shift", uc, 0, 0), ("offset", uc, 8, 0), ("count", uc, 16, 0), ("nr_values", uc, 24, 0),
            ("parent", vp, 64, 0), ("array", vp, 128, 0), ("slots", w.add_array(vp, 64, i), 320, 0)])
        meta = w.add_struct("maple_metadata", 2, [("end", uc, 0, 0), ("gap", uc, 8, 0)])
        mr64 = w.add_struct("maple_range_64", 256, [
            ("parent", vp, 0, 0), ("pivot", w.add_array(ul, 15, i), 64, 0), ("slot", w.add_array(vp, 16, i), 1024, 0),
            ("meta", meta, 1984, 0)])
        ma64 = w.add_struct("maple_arange_64", 256, [
            ("parent", vp, 0, 0), ("pivot", w.add_array(ul, 9, i), 64, 0), ("slot", w.add_array(vp, 10, i), 640, 0),
            ("gap", w.add_array(ul, 10, i), 1280, 0), ("meta", meta, 1920, 0)])
        union = w.add_struct("", 256, [("mr64", mr64, 0, 0), ("ma64", ma64, 0, 0)], union=True)
        w.add_struct("maple_node", 256, [("", union, 0, 0)])
        w.add_struct("maple_tree", 16, [("ma_flags", i, 32, 0), ("ma_root", vp, 64, 0)])
        lp = w.add_ptr(w.next_id + 1)
        lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
        w.add_struct("obj", OBJ, [("id", i, 0, 0), ("node", lh, 64, 0)])
        self.symbols = SymbolTable(["_stext", "tree_root", "tree_xa", "tree_mt", "obj_list", "_end"],
                                   [BASE, ROOT, XA, MT, LIST, BASE + SIZE], "TDDDDD")
        super().__init__({BASE: SIZE})
        self.memory = self.regions[BASE]
        segments = self.segments()
        self.prog = Program(MemoryReader(segments), self.symbols, parse_btf(w.to_bytes()))

    def u8(self, address: int, value: int) -> None:
        self.memory[address - BASE] = value


ITEM = 32


def build_rbtree(k: Kernel, keys: list[int]) -> list[int]:
    # A balanced search tree of items (rb first, so node == item); returns node addresses by key.
    nodes = [ENTRIES + n * ITEM for n in range(len(keys))]
    for node, key in zip(nodes, keys, strict=True):
        k.u64(node + 24, key)

    def place(lo: int, hi: int, parent: int) -> int:
        if lo >= hi:
            return 0
        mid = (lo + hi) // 2
        node = nodes[mid]
        k.u64(node, parent)  # colour bits 0: red, which the walk does not check
        k.u64(node + 16, place(lo, mid, node))
        k.u64(node + 8, place(mid + 1, hi, node))
        return node

    k.u64(ROOT, place(0, len(keys), 0))
    return nodes


PTR = BASE + 0x3000  # pointer entries (aligned, so not internal)


def xa_node(k: Kernel, n: int, shift: int, slots: dict[int, int]) -> int:
    address = NODES + n * 0x400
    k.u8(address, shift)
    for slot, entry in slots.items():
        k.u64(address + 40 + 8 * slot, entry)
    return address | 2  # xa_mk_node()


def value(v: int) -> int:
    return v << 1 | 1


def build_xarray(k: Kernel) -> None:
    # three levels: indices 0, 5, 63, 8..11 (one order-2 entry), 64, 4096; a zero and a retry entry
    leaf0 = xa_node(k, 0, 0, {0: value(0), 5: value(5), 63: value(63), 8: PTR, 9: 8 << 2 | 2, 10: 8 << 2 | 2,
                              11: 8 << 2 | 2, 20: XA_ZERO_ENTRY, 21: XA_RETRY_ENTRY})
    leaf1 = xa_node(k, 1, 0, {0: value(64)})
    mid0 = xa_node(k, 2, 6, {0: leaf0, 1: leaf1})
    leaf2 = xa_node(k, 3, 0, {0: value(4096)})
    mid1 = xa_node(k, 4, 6, {0: leaf2})
    k.u64(XA + 8, xa_node(k, 5, 12, {0: mid0, 1: mid1}))


E1, E2, E3 = BASE + 0x3100, BASE + 0x3200, BASE + 0x3300


def maple_node(k: Kernel, n: int, kind: int, pivots: list[int], slots: list[int], end: int | None) -> int:
    # kind 1 leaf_64, 3 arange_64 (pivots +8, slots +128 or +80, meta.end +248 or +240)
    address = MAPLE_NODES + n * 0x100
    slots_at, end_at = (80, 240) if kind == 3 else (128, 248)
    for i, pivot in enumerate(pivots):
        k.u64(address + 8 + 8 * i, pivot)
    for i, slot in enumerate(slots):
        k.u64(address + slots_at + 8 * i, slot)
    if end is not None:
        k.u8(address + end_at, end)
    return address | kind << 3 | 2


def build_maple(k: Kernel) -> list[int]:
    leaf_a = maple_node(k, 0, 1, [0xFFF, 0x1FFF], [0, E1], 1)
    leaf_b = maple_node(k, 1, 1, [0x2FFF, 0x4FFF], [E2, E3, 0], 2)
    # a full leaf: 15 pivots, the 16th slot runs to the parent's limit
    full = maple_node(k, 2, 1, [0x10000 + 0x100 * i + 0xFF for i in range(15)],
                      [BASE + 0x3400 + 8 * i for i in range(16)], None)
    root = maple_node(k, 3, 3, [0x1FFF, 0xFFFF, 0x1FFFF], [leaf_a, leaf_b, full, 0], 3)
    k.u64(MT + 8, root)
    return [BASE + 0x3400 + 8 * i for i in range(16)]


def build_list(k: Kernel, n: int) -> list[int]:
    """Objects 0..n-1 on the list headed at ``obj_list``; returns their addresses."""
    objs = [OBJS + j * OBJ for j in range(n)]
    ring = [LIST, *(o + 8 for o in objs)]
    for j, o in enumerate(objs):
        k.memory[o - BASE:o - BASE + 4] = j.to_bytes(4, "little")
    for j, node in enumerate(ring):
        k.u64(node, ring[(j + 1) % len(ring)])
        k.u64(node + 8, ring[j - 1])
    return objs
