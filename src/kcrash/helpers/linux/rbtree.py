"""
kcrash.helpers.linux.rbtree
===========================

Red-black trees (``include/linux/rbtree.h``, ``include/linux/rbtree_types.h``: ``struct rb_root``,
``struct rb_node`` with ``__rb_parent_color``, ``rb_right``, ``rb_left``): :func:`rb_first`,
:func:`rb_last`, :func:`rb_next`, :func:`rb_prev` and :func:`rb_parent` as the kernel defines them,
and the in-order walks :func:`rbtree_inorder_for_each` / :func:`rbtree_inorder_for_each_entry`.
The walks read the child links only (one read of each node's 24 bytes), are bounded like the list
walks (a node reached twice, an unreadable node, a tree deeper than a red-black tree of 2**64 nodes
can be, or ``limit`` entries stop the walk) and record why in
:attr:`~kcrash.helpers.linux.list.ListWalk.truncated`. Colours are not checked; augmented and
cached roots (``struct rb_root_cached``) are walked through their ``rb_root``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from kcrash.errors import FaultError
from kcrash.helpers.linux.list import ListWalk
from kcrash.types.model import Type, TypeKind, pointer_type
from kcrash.types.object import Object, offsetof

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = [
    "rb_first",
    "rb_last",
    "rb_next",
    "rb_parent",
    "rb_prev",
    "rbtree_inorder_for_each",
    "rbtree_inorder_for_each_entry",
]

#: default bound on the number of nodes one walk yields
DEFAULT_LIMIT = 1_000_000
# A red-black tree of n nodes is at most 2*log2(n+1) high: 128 covers any tree that fits in memory.
_MAX_DEPTH = 128


def _root_address(root: Object) -> int:
    # ``struct rb_root *``/``struct rb_root``, or an ``rb_root_cached`` (its ``rb_root`` comes first).
    t = root.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER:
        target = t.type.strip_typedefs()
        if target.tag == "rb_root_cached":
            return int(root) + offsetof(target, "rb_root")
        return int(root)
    address = root.address_
    if address is None:
        raise TypeError("an rb_root value that is not in memory")
    return address + (offsetof(t, "rb_root") if t.tag == "rb_root_cached" else 0)


def _offsets(prog: Program) -> tuple[int, int, int]:
    # (rb_left, rb_right, __rb_parent_color) offsets in struct rb_node, once per program.
    t = prog.type("struct rb_node")
    return offsetof(t, "rb_left"), offsetof(t, "rb_right"), offsetof(t, "__rb_parent_color")


def _node_type(prog: Program) -> Type:
    return prog.pointer_type("struct rb_node")


def _node(prog: Program, address: int) -> Object:
    return Object(prog, _node_type(prog), address)


def _descend(prog: Program, node: int, offset: int) -> int:
    # Follow one link (rb_left or rb_right) down to its end; bounded by the red-black height.
    for _ in range(_MAX_DEPTH):
        child = prog.read_u64(node + offset)
        if not child:
            return node
        node = child
    raise FaultError(node, physical=False)


def rb_first(root: Object) -> Object:
    """Return the leftmost node of a red-black tree, like the kernel's ``rb_first(root)``.

    :param root: ``struct rb_root *`` (or a ``struct rb_root``)
    :return: ``struct rb_node *``, NULL for an empty tree
    :raises FaultError: if a node on the way down cannot be read

    >>> from kcrash.types.object import container_of
    >>> node = rb_first(prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree")))
    >>> int(container_of(node, "struct kcrash_test_rb", "rb").key)
    0
    """
    prog, top = root.prog_, root.prog_.read_u64(_root_address(root))
    return _node(prog, _descend(prog, top, _offsets(prog)[0]) if top else 0)


def rb_last(root: Object) -> Object:
    """Return the rightmost node of a red-black tree, like the kernel's ``rb_last(root)``.

    :param root: ``struct rb_root *`` (or a ``struct rb_root``)
    :return: ``struct rb_node *``, NULL for an empty tree
    :raises FaultError: if a node on the way down cannot be read

    >>> from kcrash.types.object import container_of
    >>> root = prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree"))
    >>> int(container_of(rb_last(root), "struct kcrash_test_rb", "rb").key)
    217
    """
    prog, top = root.prog_, root.prog_.read_u64(_root_address(root))
    return _node(prog, _descend(prog, top, _offsets(prog)[1]) if top else 0)


def rb_parent(node: Object) -> Object:
    """Return the parent of a red-black tree node, like ``rb_parent(node)``.

    That is ``__rb_parent_color`` without its colour bits.

    :param node: ``struct rb_node *``
    :return: ``struct rb_node *``, NULL for the root node
    :raises FaultError: if ``node`` cannot be read

    >>> rb_parent(rb_first(prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree"))))
    Object(prog, 'struct rb_node *', value=0xffff888005302c00)
    """
    prog = node.prog_
    return _node(prog, prog.read_u64(int(node) + _offsets(prog)[2]) & ~3)


def _step(node: Object, down: int, up: int) -> Object:
    # rb_next() (down = rb_right, up = rb_left) and rb_prev() (mirrored), lib/rbtree.c.
    prog, address = node.prog_, int(node)
    child = prog.read_u64(address + down)
    if child:
        return _node(prog, _descend(prog, child, up))
    parent_at = _offsets(prog)[2]
    for _ in range(_MAX_DEPTH):
        parent = prog.read_u64(address + parent_at) & ~3
        if not parent or prog.read_u64(parent + down) != address:
            return _node(prog, parent)
        address = parent
    raise FaultError(address, physical=False)


def rb_next(node: Object) -> Object:
    """Return the next node of a red-black tree in order, like the kernel's ``rb_next(node)``.

    :param node: ``struct rb_node *``
    :return: ``struct rb_node *``, NULL after the last node
    :raises FaultError: if a node on the way cannot be read

    >>> second = rb_next(rb_first(prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree"))))
    """
    left, right, _ = _offsets(node.prog_)
    return _step(node, right, left)


def rb_prev(node: Object) -> Object:
    """Return the previous node of a red-black tree in order, like the kernel's ``rb_prev(node)``.

    :param node: ``struct rb_node *``
    :return: ``struct rb_node *``, NULL before the first node
    :raises FaultError: if a node on the way cannot be read

    >>> before_last = rb_prev(rb_last(prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree"))))
    """
    left, right, _ = _offsets(node.prog_)
    return _step(node, left, right)


def _inorder(prog: Program, walk: ListWalk, top: int, limit: int) -> Iterator[int]:
    # In-order node addresses by an explicit stack of the path (reads rb_left/rb_right only).
    left, right, _ = _offsets(prog)
    span = max(left, right) + 8 - min(left, right)
    base = min(left, right)
    seen: set[int] = set()
    stack: list[tuple[int, int]] = []  # (node, its right child)
    pos, yielded = top, 0
    while pos or stack:
        while pos:
            if pos in seen:
                walk.truncated = f"cycle: node {pos:#x} reached twice after {len(seen)} nodes"
                return
            if len(stack) >= _MAX_DEPTH:
                walk.truncated = f"deeper than {_MAX_DEPTH} levels at node {pos:#x} (corrupt tree?)"
                return
            seen.add(pos)
            try:
                raw = prog.read(pos + base, span)
            except FaultError as exc:
                walk.truncated = f"unreadable node at {exc.address:#x} after {len(seen) - 1} nodes"
                return
            stack.append((pos, int.from_bytes(raw[right - base:right - base + 8], "little")))
            pos = int.from_bytes(raw[left - base:left - base + 8], "little")
        node, pos = stack.pop()
        if yielded >= limit:
            walk.truncated = f"stopped at the limit of {limit} nodes"
            return
        yielded += 1
        yield node


def _walk(root: Object, limit: int, make: Callable[[Program, int], Object]) -> ListWalk:
    prog, at = root.prog_, _root_address(root)

    def nodes(walk: ListWalk) -> Iterator[Object]:
        for address in _inorder(prog, walk, prog.read_u64(at), limit):
            yield make(prog, address)

    return ListWalk(nodes)


def rbtree_inorder_for_each(root: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the nodes of a red-black tree in order (``rb_first()`` then ``rb_next()``).

    The walk is bounded: it stops at a cycle, an unreadable node or ``limit`` nodes and says why
    in :attr:`~kcrash.helpers.linux.list.ListWalk.truncated`.

    :param root: ``struct rb_root *`` (or a ``struct rb_root``, or ``struct rb_root_cached``)
    :param limit: the most nodes to yield
    :return: a :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct rb_node *`` objects
    :raises FaultError: if ``root`` itself cannot be read

    >>> root = prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree"))
    >>> sum(1 for _ in rbtree_inorder_for_each(root))
    32
    """
    node_type = _node_type(root.prog_)
    return _walk(root, limit, lambda prog, address: Object(prog, node_type, address))


def rbtree_inorder_for_each_entry(type: Type | str, root: Object, member: str, *,
                                  limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the entries of a red-black tree in order, ``rb_entry(node, type, member)`` of each node.

    :param type: the entry type (``"struct vmap_area"``, ``"struct kcrash_test_rb"``) or a
        :class:`~kcrash.types.model.Type`
    :param root: ``struct rb_root *`` (or a ``struct rb_root``, or ``struct rb_root_cached``)
    :param member: the name of the ``struct rb_node`` member of ``type``
    :param limit: the most entries to yield
    :return: a :class:`~kcrash.helpers.linux.list.ListWalk` of ``type *`` objects, bounded as
        :func:`rbtree_inorder_for_each`
    :raises FaultError: if ``root`` itself cannot be read
    :raises TypeLookupError: if ``type`` or ``member`` is unknown

    >>> root = prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree"))
    >>> [int(entry.key) for entry in rbtree_inorder_for_each_entry("struct kcrash_test_rb", root, "rb")][:4]
    [0, 7, 14, 21]
    """
    prog = root.prog_
    t = prog.type(type)
    entry_type, offset = pointer_type(t), offsetof(t, member)
    return _walk(root, limit, lambda p, address: Object(p, entry_type, address - offset))
