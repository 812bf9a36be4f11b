"""
kcrash.helpers.linux.mapletree
==============================

Maple trees (``include/linux/maple_tree.h``, ``lib/maple_tree.c``; since Linux kernel commit
54a611b60590, v6.1): :func:`mt_for_each` yields ``(first index, last index, entry)`` in index
order, the ranges coming from each node's pivots as ``mas_next()`` computes them, and
:func:`mtree_load` looks one index up. A node entry carries its type in bits 3-6
(``maple_leaf_64`` 1, ``maple_range_64`` 2, ``maple_arange_64`` 3); a node's last used slot is
found as ``ma_data_end()`` finds it (the last pivot, else the node's ``meta.end``). Each node is
read whole, once; a node reached twice, a tree deeper than ``MAPLE_HEIGHT_MAX``, an unknown node
type or an unreadable node ends the walk with the reason in
:attr:`~kcrash.helpers.linux.xarray.IndexedWalk.truncated`. Dense nodes (``maple_dense``, unused
by the kernel's own trees) are not handled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kcrash.errors import FaultError, KcrashError
from kcrash.helpers.linux.xarray import IndexedWalk, root_entry, xa_is_node, xa_is_zero
from kcrash.types.model import Type
from kcrash.types.object import Object, offsetof

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["mt_for_each", "mt_for_each_range", "mtree_load"]

#: default bound on the number of entries one walk yields
DEFAULT_LIMIT = 10_000_000
_ULONG_MAX = (1 << 64) - 1
#: ``MAPLE_HEIGHT_MAX`` (include/linux/maple_tree.h)
_MAX_HEIGHT = 31
_MAX_NODES = 1 << 20
# include/linux/maple_tree.h: MAPLE_NODE_MASK, MAPLE_NODE_TYPE_SHIFT/MASK, enum maple_type
_NODE_MASK, _TYPE_SHIFT, _TYPE_MASK = 0xFF, 3, 0xF
_LEAF_64, _RANGE_64, _ARANGE_64 = 1, 2, 3


@dataclass(frozen=True, slots=True)
class _Kind:
    # One node layout: offsets of pivot[], slot[] and meta.end, and how many pivots.
    pivots_at: int
    npivots: int
    slots_at: int
    end_at: int


def _kind(node: Type, member: str) -> _Kind:
    pivot, _ = node.member(f"{member}")
    inner = pivot.type.strip_typedefs()
    npivots = inner.member("pivot")[0].type.strip_typedefs().length or 0
    return _Kind(offsetof(node, f"{member}.pivot"), npivots, offsetof(node, f"{member}.slot"),
                 offsetof(node, f"{member}.meta.end"))


class _Nodes:
    # struct maple_node read whole; the range_64 and arange_64 layouts found in BTF.
    def __init__(self, prog: Program) -> None:
        t = prog.type("struct maple_node")
        self.prog = prog
        self.size = t.sizeof()
        self.range64 = _kind(t, "mr64")
        self.arange64 = _kind(t, "ma64")

    def read(self, entry: int, limit: int) -> tuple[bool, list[int], list[int]]:
        # (leaf?, pivots up to the node's end, slots up to and including it), as ma_data_end()
        kind = (entry >> _TYPE_SHIFT) & _TYPE_MASK
        if kind not in (_LEAF_64, _RANGE_64, _ARANGE_64):
            raise KcrashError(f"maple node {entry:#x} has unexpected type {kind}")
        layout = self.arange64 if kind == _ARANGE_64 else self.range64
        raw = self.prog.read(entry & ~_NODE_MASK, self.size)
        pivots = _words(raw, layout.pivots_at, layout.npivots)
        end = raw[layout.end_at]
        if kind != _ARANGE_64 and pivots[-1]:
            end = layout.npivots - 1 if pivots[-1] == limit else layout.npivots
        if end > layout.npivots:
            raise KcrashError(f"maple node {entry:#x} ends at slot {end} of {layout.npivots + 1} (corrupt tree?)")
        return kind == _LEAF_64, pivots[:end], _words(raw, layout.slots_at, end + 1)


def _words(raw: bytes, at: int, count: int) -> list[int]:
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(at, at + 8 * count, 8)]


def _root(mt: Object) -> tuple[Program, int]:
    return root_entry(mt, "maple_tree", "ma_root")


def _walk(walk: IndexedWalk[tuple[int, int, int]], nodes: _Nodes, entry: int, low: int, high: int, depth: int,
          seen: set[int]) -> Iterator[tuple[int, int, int]]:
    # (first, last, slot) of the leaves below node ``entry``, which covers [low, high].
    address = entry & ~_NODE_MASK
    if address in seen or depth > _MAX_HEIGHT or len(seen) >= _MAX_NODES:
        walk.truncated = (f"maple node {address:#x} reached twice after {len(seen)} nodes" if address in seen
                          else f"maple tree deeper than {_MAX_HEIGHT} levels or over {_MAX_NODES} nodes") \
            + " (corrupt tree?)"
        return
    seen.add(address)
    try:
        leaf, pivots, slots = nodes.read(entry, high)
    except FaultError as exc:
        walk.truncated = f"unreadable maple node at {exc.address:#x}"
        return
    except KcrashError as exc:
        walk.truncated = str(exc)
        return
    for offset, slot in enumerate(slots):
        last = pivots[offset] if offset < len(pivots) else high
        if walk.truncated is not None or low > high:
            return
        if not leaf:
            # A child is mt_mk_node(): node | type << 3 | MAPLE_ENODE_NULL (lib/maple_tree.c), not
            # tagged as an XArray internal entry the way the root (mte_mk_root) is.
            if slot:
                yield from _walk(walk, nodes, slot, low, last, depth + 1, seen)
        elif slot:
            yield low, last, slot
        low = last + 1


def mt_for_each_range(mt: Object, *, advanced: bool = False,
                      limit: int = DEFAULT_LIMIT) -> IndexedWalk[tuple[int, int, int]]:
    """Iterate over the entries of a maple tree in index order as ``(first, last, entry)``.

    Both indices are inclusive and the entry is an integer (``struct maple_node`` pivots and slots
    read per node); zero entries are skipped unless ``advanced``. The walk stops at a cycle, an
    unreadable node or ``limit`` entries and says why in
    :attr:`~kcrash.helpers.linux.xarray.IndexedWalk.truncated`.

    :param mt: ``struct maple_tree *`` (or a ``struct maple_tree``, e.g. ``mm->mm_mt``)
    :param advanced: yield zero entries too
    :param limit: the most entries to yield
    :return: an :class:`~kcrash.helpers.linux.xarray.IndexedWalk` of ``(int, int, int)`` tuples
    :raises FaultError: if ``mt`` itself cannot be read

    >>> [(hex(a), hex(b)) for a, b, _ in mt_for_each_range(prog["init_mm"].mm_mt)]
    []
    """
    def items(walk: IndexedWalk[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
        prog, root = _root(mt)
        if not xa_is_node(root):
            if root:
                yield 0, 0, root
            return
        count = 0
        for first, last, entry in _walk(walk, _Nodes(prog), root, 0, _ULONG_MAX, 0, set()):
            if xa_is_zero(entry) and not advanced:
                continue
            if count >= limit:
                walk.truncated = f"stopped at the limit of {limit} entries"
                return
            count += 1
            yield first, last, entry

    return IndexedWalk(items)


def mt_for_each(mt: Object, *, advanced: bool = False,
                limit: int = DEFAULT_LIMIT) -> IndexedWalk[tuple[int, int, Object]]:
    """Iterate over the entries of a maple tree as ``(first, last, void *)``, like drgn's ``mt_for_each``.

    Bounded and filtered as :func:`mt_for_each_range`.

    :param mt: ``struct maple_tree *`` (or a ``struct maple_tree``)
    :param advanced: yield zero entries too
    :param limit: the most entries to yield
    :return: an :class:`~kcrash.helpers.linux.xarray.IndexedWalk` of ``(int, int, void *)`` tuples
    :raises FaultError: if ``mt`` itself cannot be read

    >>> [(hex(first), hex(last), hex(entry)) for first, last, entry in mt_for_each(task.mm.mm_mt)][:1]
    [('0x400000', '0x400fff', '0xffff8880050f8dc0')]
    """
    ranged = mt_for_each_range(mt, advanced=advanced, limit=limit)
    void_p = mt.prog_.pointer_type("void")

    def items(walk: IndexedWalk[tuple[int, int, Object]]) -> Iterator[tuple[int, int, Object]]:
        for first, last, entry in ranged:
            yield first, last, Object(mt.prog_, void_p, entry)
        walk.truncated = ranged.truncated

    return IndexedWalk(items)


def mtree_load(mt: Object, index: int, *, advanced: bool = False) -> Object:
    """Return the entry whose range holds ``index``, like the kernel's ``mtree_load(mt, index)``.

    :param mt: ``struct maple_tree *`` (or a ``struct maple_tree``)
    :param index: the index (for ``mm->mm_mt``, a user address)
    :param advanced: return a zero entry as itself rather than NULL
    :return: ``void *``, NULL if no range holds ``index``
    :raises FaultError: if a node on the way cannot be read

    >>> vma = mtree_load(task.mm.mm_mt, 0x400000)
    """
    prog, entry = _root(mt)
    void_p = prog.pointer_type("void")
    if not xa_is_node(entry):
        return Object(prog, void_p, entry if index == 0 else 0)
    nodes, high = _Nodes(prog), _ULONG_MAX
    for _ in range(_MAX_HEIGHT + 1):
        leaf, pivots, slots = nodes.read(entry, high)
        offset = next((i for i, pivot in enumerate(pivots) if pivot >= index), len(pivots))
        high = pivots[offset] if offset < len(pivots) else high
        entry = slots[offset]
        if leaf or not entry:
            break
    if xa_is_zero(entry) and not advanced:
        entry = 0
    return Object(prog, void_p, entry if leaf else 0)
