"""
kcrash.helpers.linux.xarray
===========================

XArrays (``include/linux/xarray.h``, ``lib/xarray.c``) and the radix trees built on them since
Linux kernel commit f8d5d0cc145c (v4.20, ``#define radix_tree_root xarray``): :func:`xa_load`,
:func:`xa_for_each` (index, entry) and :func:`xa_for_each_range` (first index, last index, entry:
a multi-index entry covers its sibling slots), and the entry tests of the header (value, internal,
node, sibling, zero and retry entries). Walks read each ``struct xa_node`` header and its slots in
one read, check that every child's ``shift`` is its parent's minus ``XA_CHUNK_SHIFT``, read each
node at most once, and stop at ``limit`` entries, recording why they stopped in
:attr:`IndexedWalk.truncated`. The radix tree of kernels before v4.20 (``rnode``, exceptional
entries) is not handled: every kernel kcrash reads BTF from is newer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from kcrash.errors import FaultError
from kcrash.types.model import TypeKind
from kcrash.types.object import Object, offsetof

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = [
    "IndexedWalk",
    "root_entry",
    "xa_for_each",
    "xa_for_each_range",
    "xa_is_internal",
    "xa_is_node",
    "xa_is_retry",
    "xa_is_sibling",
    "xa_is_value",
    "xa_is_zero",
    "xa_load",
    "xa_to_internal",
    "xa_to_value",
]

T = TypeVar("T")

#: default bound on the number of entries one walk yields
DEFAULT_LIMIT = 10_000_000
#: ``xa_mk_internal(256)`` and ``xa_mk_internal(257)`` (include/linux/xarray.h)
XA_RETRY_ENTRY, XA_ZERO_ENTRY = 256 << 2 | 2, 257 << 2 | 2
_MAX_NODES = 1 << 22
_ULONG_BITS = 64


class IndexedWalk(Generic[T]):
    """An iterable, bounded walk of a tree's entries (XArray, maple tree).

    :attr:`truncated` says why it stopped early.

    After (or during) iteration, ``truncated`` is None if the walk reached its end, else why it
    stopped early (a cycle, an unreadable node, the limit). Iterating again restarts the walk.

    :param items: called with the walk at each iteration; yields the entries and sets ``truncated``

    >>> walk = xa_for_each(prog["init_pid_ns"].idr.idr_rt)
    >>> pids = [index for index, _ in walk]
    >>> walk.truncated is None
    True
    """

    def __init__(self, items: Callable[[IndexedWalk[T]], Iterator[T]]) -> None:
        self._items = items
        self.truncated: str | None = None

    def __iter__(self) -> Iterator[T]:
        self.truncated = None
        return self._items(self)


def _value(entry: Object | int) -> int:
    return entry if isinstance(entry, int) else int(entry)


def xa_is_value(entry: Object | int) -> bool:
    """Return whether an XArray entry is an integer stored with ``xa_mk_value()``.

    That is bit 0 set, like the kernel's ``xa_is_value(entry)``.

    :param entry: the entry, ``void *`` or its value
    :return: True for a value entry

    >>> xa_is_value(0xb5)
    True
    """
    return bool(_value(entry) & 1)


def xa_to_value(entry: Object | int) -> int:
    """Return the integer in an XArray value entry, like the kernel's ``xa_to_value(entry)``.

    :param entry: a value entry (see :func:`xa_is_value`), ``void *`` or its value
    :return: the entry shifted right by one

    >>> xa_to_value(0xb5)
    90
    """
    return _value(entry) >> 1


def xa_is_internal(entry: Object | int) -> bool:
    """Return whether an XArray entry is internal (low two bits ``10``), like ``xa_is_internal(entry)``.

    :param entry: the entry, ``void *`` or its value
    :return: True for a node, sibling, retry or zero entry

    >>> xa_is_internal(0x406)
    True
    """
    return _value(entry) & 3 == 2


def xa_to_internal(entry: Object | int) -> int:
    """Return the number in an internal XArray entry, like the kernel's ``xa_to_internal(entry)``.

    :param entry: an internal entry, ``void *`` or its value
    :return: the entry shifted right by two

    >>> xa_to_internal(0x406)
    257
    """
    return _value(entry) >> 2


def xa_is_node(entry: Object | int) -> bool:
    """Return whether an XArray entry points to a ``struct xa_node``.

    That is internal and above 4096, like the kernel's ``xa_is_node(entry)``.

    :param entry: the entry, ``void *`` or its value
    :return: True for a node pointer

    >>> xa_is_node(0xffff888003a1c002)
    True
    """
    value = _value(entry)
    return value & 3 == 2 and value > 4096


def xa_is_sibling(entry: Object | int) -> bool:
    """Return whether an XArray entry is a sibling slot of a multi-index entry.

    That is internal and below ``xa_mk_sibling(63)``, like the kernel's ``xa_is_sibling(entry)``.

    :param entry: the entry, ``void *`` or its value
    :return: True for a sibling entry

    >>> xa_is_sibling(0x6)
    True
    """
    value = _value(entry)
    return value & 3 == 2 and value < (63 << 2 | 2)


def xa_is_zero(entry: Object | int) -> bool:
    """Return whether an XArray entry is a reserved slot (``XA_ZERO_ENTRY``), like ``xa_is_zero(entry)``.

    :param entry: the entry, ``void *`` or its value
    :return: True for the zero entry

    >>> xa_is_zero(0x406)
    True
    """
    return _value(entry) == XA_ZERO_ENTRY


def xa_is_retry(entry: Object | int) -> bool:
    """Return whether an XArray entry is ``XA_RETRY_ENTRY``, left while a node is being freed.

    Like the kernel's ``xa_is_retry(entry)``.

    :param entry: the entry, ``void *`` or its value
    :return: True for the retry entry

    >>> xa_is_retry(0x402)
    True
    """
    return _value(entry) == XA_RETRY_ENTRY


class _Nodes:
    # struct xa_node: where shift and slots are, and how many slots (XA_CHUNK_SIZE).
    def __init__(self, prog: Program) -> None:
        t = prog.type("struct xa_node")
        self.prog = prog
        self.shift_at = offsetof(t, "shift")
        self.slots_at = offsetof(t, "slots")
        self.chunk = t.member("slots")[0].type.strip_typedefs().length or 64
        self.size = self.slots_at + 8 * self.chunk

    def read(self, entry: int) -> tuple[int, list[int]]:
        # (shift, slots) of the node an entry points to (xa_to_node: entry - 2)
        raw = self.prog.read(entry - 2, self.size)
        slots = raw[self.slots_at:]
        return raw[self.shift_at], [int.from_bytes(slots[i:i + 8], "little") for i in range(0, len(slots), 8)]


def root_entry(root: Object, struct: str, member: str) -> tuple[Program, int]:
    """Return the root entry of an XArray or maple tree, with its program.

    ``xa->xa_head`` of a ``struct xarray`` (also a ``struct radix_tree_root``), ``mt->ma_root`` of
    a ``struct maple_tree`` (whose root entries are encoded as the xarray's).

    :param root: ``struct <struct> *``, or a ``struct <struct>`` in memory
    :param struct: the structure's tag (``"xarray"``, ``"maple_tree"``)
    :param member: the root member (``"xa_head"``, ``"ma_root"``)
    :return: ``(program, root entry)``
    :raises TypeError: if ``root`` is a value that is not in memory
    :raises FaultError: if the root member cannot be read

    >>> _, head = root_entry(prog["init_pid_ns"].idr.idr_rt, "xarray", "xa_head")
    """
    t = root.type_.strip_typedefs()
    address = int(root) if t.kind is TypeKind.POINTER else root.address_
    if address is None:
        raise TypeError(f"a struct {struct} value that is not in memory")
    prog = root.prog_
    return prog, prog.read_u64(address + offsetof(prog.type(f"struct {struct}"), member))


def _head(xa: Object) -> tuple[Program, int]:
    return root_entry(xa, "xarray", "xa_head")


def xa_load(xa: Object, index: int, *, advanced: bool = False) -> Object:
    """Return the entry at ``index`` of an XArray, like the kernel's ``xa_load(xa, index)``.

    For a sibling slot, the canonical entry of the multi-index entry is returned.

    :param xa: ``struct xarray *`` (or a ``struct xarray``; radix trees too)
    :param index: the index to look up
    :param advanced: return a zero entry as itself rather than NULL (``xas_load()``)
    :return: ``void *``, NULL if there is no entry
    :raises FaultError: if a node on the way cannot be read

    >>> entry = xa_load(prog["init_pid_ns"].idr.idr_rt, 1)
    """
    prog, entry = _head(xa)
    nodes = _Nodes(prog) if xa_is_node(entry) else None
    for _ in range(_ULONG_BITS):
        if nodes is None or not xa_is_node(entry):
            break
        shift, slots = nodes.read(entry)
        offset = index >> shift
        if offset >= nodes.chunk:  # beyond what this tree's height covers (only at the top)
            entry = 0
            break
        index &= (1 << shift) - 1 if shift < _ULONG_BITS else ~0
        entry = slots[offset]
        if xa_is_sibling(entry):
            entry = slots[xa_to_internal(entry)]
    else:
        entry = 0
    if nodes is None and index:
        entry = 0
    if xa_is_zero(entry) and not advanced:
        entry = 0
    return Object(prog, prog.pointer_type("void"), entry)


def _visible(entry: int, advanced: bool) -> bool:
    return bool(entry) and not xa_is_retry(entry) and (advanced or not xa_is_zero(entry))


def _slots(walk: IndexedWalk[tuple[int, int, int]], nodes: _Nodes, entry: int, base: int, parent_shift: int | None,
           seen: set[int], advanced: bool) -> Iterator[tuple[int, int, int]]:
    # (first, last, entry) below node ``entry``, whose first index is ``base``.
    if entry in seen or len(seen) >= _MAX_NODES:
        walk.truncated = f"node {entry - 2:#x} reached twice (corrupt tree?)" if entry in seen \
            else f"more than {_MAX_NODES} nodes (corrupt tree?)"
        return
    seen.add(entry)
    try:
        shift, slots = nodes.read(entry)
    except FaultError as exc:
        walk.truncated = f"unreadable node at {exc.address:#x}"
        return
    chunk_shift = nodes.chunk.bit_length() - 1
    if (parent_shift is not None and shift != parent_shift - chunk_shift) or shift >= _ULONG_BITS:
        walk.truncated = f"node {entry - 2:#x} has shift {shift} under shift {parent_shift} (corrupt tree?)"
        return
    for offset, slot in enumerate(slots):
        if walk.truncated is not None:
            return
        first = base + (offset << shift)
        if xa_is_node(slot):
            yield from _slots(walk, nodes, slot, first, shift, seen, advanced)
        elif not xa_is_sibling(slot) and _visible(slot, advanced):
            siblings = 0
            while offset + siblings + 1 < len(slots) and slots[offset + siblings + 1] == (offset << 2 | 2):
                siblings += 1
            yield first, first + ((siblings + 1) << shift) - 1, slot


def xa_for_each_range(xa: Object, *, advanced: bool = False,
                      limit: int = DEFAULT_LIMIT) -> IndexedWalk[tuple[int, int, int]]:
    """Iterate over the entries of an XArray in index order as ``(first index, last index, entry)``.

    A multi-index entry spans its sibling slots; retry entries are skipped, zero entries too unless
    ``advanced``. The walk stops at a cycle, an unreadable ``struct xa_node`` or ``limit`` entries
    and says why in :attr:`IndexedWalk.truncated`.

    :param xa: ``struct xarray *`` (or a ``struct xarray``)
    :param advanced: yield zero entries too
    :param limit: the most entries to yield
    :return: an :class:`IndexedWalk` of ``(int, int, int)`` tuples
    :raises FaultError: if ``xa`` itself cannot be read

    >>> [(first, last) for first, last, _ in xa_for_each_range(prog["init_pid_ns"].idr.idr_rt)][:2]
    [(1, 1), (2, 2)]
    """
    def items(walk: IndexedWalk[tuple[int, int, int]]) -> Iterator[tuple[int, int, int]]:
        prog, head = _head(xa)
        if not xa_is_node(head):
            if _visible(head, advanced) and not xa_is_internal(head):
                yield 0, 0, head
            return
        for count, item in enumerate(_slots(walk, _Nodes(prog), head, 0, None, set(), advanced)):
            if count >= limit:
                walk.truncated = f"stopped at the limit of {limit} entries"
                return
            yield item

    return IndexedWalk(items)


def xa_for_each(xa: Object, *, advanced: bool = False,
                limit: int = DEFAULT_LIMIT) -> IndexedWalk[tuple[int, Object]]:
    """Iterate over the entries of an XArray in index order as ``(index, void *)``.

    Like the kernel's ``xa_for_each(xa, index, entry)``.

    Bounded and filtered as :func:`xa_for_each_range`, of which it yields each entry's first index.

    :param xa: ``struct xarray *`` (or a ``struct xarray``; ``struct address_space.i_pages``, an
        ``idr``'s ``idr_rt``)
    :param advanced: yield zero entries too
    :param limit: the most entries to yield
    :return: an :class:`IndexedWalk` of ``(int, void *)`` tuples
    :raises FaultError: if ``xa`` itself cannot be read

    >>> [(index, hex(entry)) for index, entry in xa_for_each(prog["init_pid_ns"].idr.idr_rt)][:2]
    [(1, '0xffff88800423ee00'), (2, '0xffff88800423ed80')]
    """
    ranged = xa_for_each_range(xa, advanced=advanced, limit=limit)
    void_p = xa.prog_.pointer_type("void")

    def items(walk: IndexedWalk[tuple[int, Object]]) -> Iterator[tuple[int, Object]]:
        for first, _, entry in ranged:
            yield first, Object(xa.prog_, void_p, entry)
        walk.truncated = ranged.truncated

    return IndexedWalk(items)
