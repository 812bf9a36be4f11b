"""rbtree.h, xarray.h and maple_tree.h walks on synthetic kernels: in-order/index order, ranges of
multi-index and maple entries, loads, and bounded walks of corrupt trees (cycles, bad shifts,
unreadable nodes) that end with a reason instead of hanging."""

from __future__ import annotations

import itertools

import pytest

from kcrash.helpers.linux import rbtree, xarray
from kcrash.helpers.linux.mapletree import mt_for_each, mt_for_each_range, mtree_load
from kcrash.helpers.linux.rbtree import (
    rb_first,
    rb_last,
    rb_next,
    rb_parent,
    rb_prev,
    rbtree_inorder_for_each,
    rbtree_inorder_for_each_entry,
)
from kcrash.helpers.linux.xarray import (
    XA_RETRY_ENTRY,
    XA_ZERO_ENTRY,
    xa_for_each,
    xa_for_each_range,
    xa_is_node,
    xa_is_sibling,
    xa_is_value,
    xa_load,
    xa_to_value,
)
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.btf_write import BtfWriter
from kcrash.types.program import Program

BASE = 0xFFFF888000000000
SIZE = 0x10000
ROOT = BASE + 0x10
ENTRIES = BASE + 0x1000
NODES = BASE + 0x4000


class Kernel:
    """rb_node/rb_root and struct item {rb_node rb; u64 key}; xarray/xa_node (slots at +40);
    maple_tree/maple_node (range_64: pivots +8, slots +128, meta +248; arange_64: pivots +8,
    slots +80, meta +240)."""

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
        self.memory = bytearray(SIZE)
        segments = SegmentMap()
        segments.add_segment(BASE, SIZE, lambda a, n: bytes(self.memory[a - BASE:a - BASE + n]), physical=False)
        self.prog = Program(MemoryReader(segments), None, parse_btf(w.to_bytes()))

    def u64(self, address: int, value: int) -> None:
        self.memory[address - BASE:address - BASE + 8] = value.to_bytes(8, "little")

    def u8(self, address: int, value: int) -> None:
        self.memory[address - BASE] = value


# -- rbtree ---------------------------------------------------------------------------------------

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


def test_rbtree_inorder_and_navigation() -> None:
    k = Kernel()
    keys = list(range(0, 218, 7))
    nodes = build_rbtree(k, keys)
    root = k.prog.object("struct rb_root", ROOT)
    walk = rbtree_inorder_for_each_entry("struct item", root, "rb")
    assert [int(e.key) for e in walk] == keys and walk.truncated is None
    assert [int(n) for n in rbtree_inorder_for_each(root.address_of_())] == nodes
    assert int(rb_first(root)) == nodes[0] and int(rb_last(root)) == nodes[-1]
    forward, node = [], rb_first(root)
    while int(node):
        forward.append(int(node))
        node = rb_next(node)
    assert forward == nodes
    assert int(rb_prev(rb_first(root))) == 0 and int(rb_prev(rb_last(root))) == nodes[-2]
    assert int(rb_next(rb_last(root))) == 0
    assert int(rb_parent(rb_first(root))) != 0


def test_empty_rbtree() -> None:
    k = Kernel()
    root = k.prog.object("struct rb_root", ROOT)
    assert list(rbtree_inorder_for_each(root)) == [] and int(rb_first(root)) == 0


def test_rbtree_cycle_fault_and_limit_end_the_walk() -> None:
    k = Kernel()
    nodes = build_rbtree(k, list(range(7)))
    root = k.prog.object("struct rb_root", ROOT)
    k.u64(nodes[0] + 16, k.prog.read_u64(ROOT))  # the leftmost node's left child is the root
    walk = rbtree_inorder_for_each(root)
    assert list(walk) == [] and walk.truncated is not None and walk.truncated.startswith("cycle")
    k = Kernel()
    nodes = build_rbtree(k, list(range(7)))
    k.u64(nodes[6] + 8, BASE + SIZE + 0x1000)  # the rightmost node's right child is outside memory
    walk = rbtree_inorder_for_each(k.prog.object("struct rb_root", ROOT))
    assert [int(n) for n in walk] == nodes and walk.truncated is not None and "unreadable" in walk.truncated
    walk = rbtree_inorder_for_each(k.prog.object("struct rb_root", ROOT), limit=3)
    assert len(list(walk)) == 3 and walk.truncated == "stopped at the limit of 3 nodes"


def test_rbtree_depth_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    k = Kernel()
    nodes = [ENTRIES + n * ITEM for n in range(10)]
    for a, b in itertools.pairwise(nodes):
        k.u64(a + 16, b)  # a left-leaning chain 10 deep
    k.u64(ROOT, nodes[0])
    monkeypatch.setattr(rbtree, "_MAX_DEPTH", 4)
    walk = rbtree_inorder_for_each(k.prog.object("struct rb_root", ROOT))
    assert list(walk) == [] and walk.truncated is not None and "deeper than 4" in walk.truncated


# -- xarray ---------------------------------------------------------------------------------------

XA = BASE + 0x20
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


def test_xarray_walk_ranges_and_values() -> None:
    k = Kernel()
    build_xarray(k)
    xa = k.prog.object("struct xarray", XA)
    walk = xa_for_each_range(xa)
    assert list(walk) == [(0, 0, value(0)), (5, 5, value(5)), (8, 11, PTR), (63, 63, value(63)),
                          (64, 64, value(64)), (4096, 4096, value(4096))]
    assert walk.truncated is None
    assert [(i, xa_to_value(e)) for i, e in xa_for_each(xa) if xa_is_value(e)] == \
        [(0, 0), (5, 5), (63, 63), (64, 64), (4096, 4096)]
    assert (20, 20, XA_ZERO_ENTRY) in list(xa_for_each_range(xa, advanced=True))


def test_xa_load() -> None:
    k = Kernel()
    build_xarray(k)
    xa = k.prog.object("struct xarray", XA)
    assert [int(xa_load(xa, i)) for i in (0, 5, 9, 11, 12, 64, 4096, 4097, 20, 1 << 20)] == \
        [value(0), value(5), PTR, PTR, 0, value(64), value(4096), 0, 0, 0]
    assert int(xa_load(xa, 20, advanced=True)) == XA_ZERO_ENTRY


def test_xarray_single_entry_head_and_entry_tests() -> None:
    k = Kernel()
    k.u64(XA + 8, value(42))
    xa = k.prog.object("struct xarray", XA)
    assert list(xa_for_each_range(xa)) == [(0, 0, value(42))]
    assert int(xa_load(xa, 0)) == value(42) and int(xa_load(xa, 1)) == 0
    assert xa_is_node(NODES | 2) and not xa_is_node(value(3)) and xa_is_sibling(8 << 2 | 2)
    assert not xa_is_sibling(XA_ZERO_ENTRY)


def test_xarray_corrupt_shift_and_cycle_end_the_walk() -> None:
    k = Kernel()
    build_xarray(k)
    k.u8(NODES + 2 * 0x400, 5)  # a child whose shift is not its parent's minus 6
    walk = xa_for_each_range(k.prog.object("struct xarray", XA))
    assert list(walk) == [] and walk.truncated is not None and "shift 5 under shift 12" in walk.truncated
    k = Kernel()
    build_xarray(k)
    k.u64(NODES + 4 * 0x400 + 40 + 8, NODES + 3 * 0x400 | 2)  # two parents share a leaf (slot 1 of mid1)
    walk = xa_for_each_range(k.prog.object("struct xarray", XA))
    assert list(walk)[-1] == (4096, 4096, value(4096))
    assert walk.truncated is not None and "reached twice" in walk.truncated


def test_xarray_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    k = Kernel()
    build_xarray(k)
    walk = xa_for_each_range(k.prog.object("struct xarray", XA), limit=2)
    assert len(list(walk)) == 2 and walk.truncated == "stopped at the limit of 2 entries"
    monkeypatch.setattr(xarray, "_MAX_NODES", 2)
    walk = xa_for_each_range(k.prog.object("struct xarray", XA))
    list(walk)
    assert walk.truncated is not None and "more than 2 nodes" in walk.truncated


# -- maple tree -----------------------------------------------------------------------------------

MT = BASE + 0x40
E1, E2, E3 = BASE + 0x3100, BASE + 0x3200, BASE + 0x3300


def maple_node(k: Kernel, n: int, kind: int, pivots: list[int], slots: list[int], end: int | None) -> int:
    # kind 1 leaf_64, 3 arange_64 (pivots +8, slots +128 or +80, meta.end +248 or +240)
    address = NODES + n * 0x100
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


def test_maple_ranges_in_index_order() -> None:
    k = Kernel()
    full = build_maple(k)
    walk = mt_for_each_range(k.prog.object("struct maple_tree", MT))
    items = list(walk)
    assert walk.truncated is None
    assert items[:3] == [(0x1000, 0x1FFF, E1), (0x2000, 0x2FFF, E2), (0x3000, 0x4FFF, E3)]
    assert items[3:] == [(0x10000 if i == 0 else 0x10000 + 0x100 * i, 0x10000 + 0x100 * i + 0xFF if i < 15
                          else 0x1FFFF, full[i]) for i in range(16)]
    assert [(a, b, int(e)) for a, b, e in mt_for_each(k.prog.object("struct maple_tree", MT))] == items


def test_mtree_load() -> None:
    k = Kernel()
    full = build_maple(k)
    mt = k.prog.object("struct maple_tree", MT)
    assert [int(mtree_load(mt, i)) for i in (0x500, 0x1000, 0x1FFF, 0x3500, 0x9000, 0x10105, 0x1FFFF, 0x20000)] == \
        [0, E1, E1, E3, 0, full[1], full[15], 0]


def test_maple_single_entry_and_corrupt_nodes() -> None:
    k = Kernel()
    k.u64(MT + 8, E1)
    mt = k.prog.object("struct maple_tree", MT)
    assert list(mt_for_each_range(mt)) == [(0, 0, E1)] and int(mtree_load(mt, 0)) == E1
    k = Kernel()
    build_maple(k)
    k.u64(NODES + 3 * 0x100 + 88, NODES + 0x100 | 5 << 3 | 2)  # the root's second child: unknown type 5
    walk = mt_for_each_range(k.prog.object("struct maple_tree", MT))
    assert [a for a, _, _ in walk] == [0x1000] and walk.truncated is not None
    assert "unexpected type 5" in walk.truncated
    k = Kernel()
    build_maple(k)
    k.u8(NODES + 0x100 + 248, 40)  # meta.end past the node's slots
    walk = mt_for_each_range(k.prog.object("struct maple_tree", MT))
    list(walk)
    assert walk.truncated is not None and "ends at slot 40" in walk.truncated
