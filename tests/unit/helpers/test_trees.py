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
    XA_ZERO_ENTRY,
    xa_for_each,
    xa_for_each_range,
    xa_is_node,
    xa_is_sibling,
    xa_is_value,
    xa_load,
    xa_to_value,
)
from support.tree_kernel import (
    BASE,
    E1,
    E2,
    E3,
    ENTRIES,
    ITEM,
    MAPLE_NODES,
    MT,
    NODES,
    PTR,
    ROOT,
    SIZE,
    XA,
    Kernel,
    build_maple,
    build_rbtree,
    build_xarray,
    value,
)

# -- rbtree ---------------------------------------------------------------------------------------

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


def test_maple_children_encoded_as_the_kernel_does() -> None:
    # lib/maple_tree.c: a child is mt_mk_node() = node | type << 3 | MAPLE_ENODE_NULL (4), with no
    # XArray internal tag; only the root (mte_mk_root) adds 2. sparse_irqs on 6.12 is such a tree.
    k = Kernel()
    full = build_maple(k)
    root = MAPLE_NODES + 3 * 0x100
    for slot in range(3):
        child = int.from_bytes(k.memory[root + 80 + 8 * slot - BASE:][:8], "little")
        k.u64(root + 80 + 8 * slot, child & ~0xFF | 1 << 3 | 4)
    k.u64(MT + 8, root | 3 << 3 | 4 | 2)
    mt = k.prog.object("struct maple_tree", MT)
    items = list(mt_for_each_range(mt))
    assert items[:3] == [(0x1000, 0x1FFF, E1), (0x2000, 0x2FFF, E2), (0x3000, 0x4FFF, E3)] and len(items) == 19
    assert [int(mtree_load(mt, i)) for i in (0x1000, 0x3500, 0x10105)] == [E1, E3, full[1]]


def test_maple_single_entry_and_corrupt_nodes() -> None:
    k = Kernel()
    k.u64(MT + 8, E1)
    mt = k.prog.object("struct maple_tree", MT)
    assert list(mt_for_each_range(mt)) == [(0, 0, E1)] and int(mtree_load(mt, 0)) == E1
    k = Kernel()
    build_maple(k)
    k.u64(MAPLE_NODES + 3 * 0x100 + 88, MAPLE_NODES + 0x100 | 5 << 3 | 2)  # the root's second child: unknown type 5
    walk = mt_for_each_range(k.prog.object("struct maple_tree", MT))
    assert [a for a, _, _ in walk] == [0x1000] and walk.truncated is not None
    assert "unexpected type 5" in walk.truncated
    k = Kernel()
    build_maple(k)
    k.u8(MAPLE_NODES + 0x100 + 248, 40)  # meta.end past the node's slots
    walk = mt_for_each_range(k.prog.object("struct maple_tree", MT))
    list(walk)
    assert walk.truncated is not None and "ends at slot 40" in walk.truncated
