"""
kcrash.helpers.linux.list
=========================

Doubly linked lists (``include/linux/list.h``: ``struct list_head``, ``struct hlist_head``/
``hlist_node``) walked the kernel's way: :func:`list_for_each_entry` and friends take the same
arguments as the kernel macros and yield pointers. A dump can hold a corrupted list, so every walk
is bounded: it stops at a cycle, a NULL or unreadable ``next`` pointer or ``limit`` entries, and
records why in :attr:`ListWalk.truncated` instead of hanging or failing half-way (an unreadable
head still raises :class:`~kcrash.errors.FaultError`). :func:`validate_list` checks the ``prev``
links too. RCU and ``llist`` variants are not here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from kcrash.errors import FaultError, ValidationError
from kcrash.types.model import Type, TypeKind, pointer_type
from kcrash.types.object import Object, container_of, offsetof

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = [
    "ListWalk",
    "hlist_empty",
    "hlist_for_each",
    "hlist_for_each_entry",
    "list_empty",
    "list_first_entry",
    "list_for_each",
    "list_for_each_entry",
    "list_for_each_entry_reverse",
    "list_for_each_reverse",
    "list_is_singular",
    "validate_list",
]

#: default bound on the number of entries one walk yields
DEFAULT_LIMIT = 1_000_000


class ListWalk:
    """An iterable walk; after (or during) iteration, ``truncated`` is None if the walk reached
    its end, else the reason it stopped early. Iterating again restarts the walk."""

    def __init__(self, nodes: Callable[[ListWalk], Iterator[Object]]) -> None:
        self._nodes = nodes
        self.truncated: str | None = None

    def __iter__(self) -> Iterator[Object]:
        self.truncated = None
        return self._nodes(self)


def _pointer(obj: Object, struct: str) -> Object:
    # Accept ``struct X *`` or a ``struct X`` reference; return the pointer.
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER:
        return obj
    if t.tag == struct:
        return obj.address_of_()
    raise TypeError(f"expected struct {struct} or a pointer to it, not {obj.type_.type_name()}")


def _chain(walk: ListWalk, first: int, stop: int, next_of: Callable[[int], int], limit: int) -> Iterator[int]:
    # Node addresses from ``first`` until ``stop``, bounded against cycles, NULLs and faults.
    seen: set[int] = set()
    pos = first
    while pos != stop:
        if pos == 0:
            walk.truncated = f"NULL next pointer after {len(seen)} entries"
            return
        if pos in seen:
            walk.truncated = f"cycle: node {pos:#x} seen twice after {len(seen)} entries"
            return
        if len(seen) >= limit:
            walk.truncated = f"stopped at the limit of {limit} entries"
            return
        seen.add(pos)
        yield pos
        try:
            pos = next_of(pos)
        except FaultError as exc:
            walk.truncated = f"unreadable node at {exc.address:#x} after {len(seen)} entries"
            return


def _link_reader(head: Object, struct: str, link: str) -> Callable[[int], int]:
    prog = head.prog_
    off = offsetof(prog.type(f"struct {struct}"), link)
    return lambda pos: prog.read_u64(pos + off)


def _list_addresses(head: Object, link: str, limit: int) -> Callable[[ListWalk], Iterator[int]]:
    # The node addresses of a list_head list, following ``link`` (next or prev).
    ptr = _pointer(head, "list_head")
    next_of = _link_reader(head, "list_head", link)

    def addresses(walk: ListWalk) -> Iterator[int]:
        start = int(ptr)
        return _chain(walk, next_of(start), start, next_of, limit)

    return addresses


def _nodes(prog: Program, node_type: Type, addresses: Callable[[ListWalk], Iterator[int]]) -> ListWalk:
    def nodes(walk: ListWalk) -> Iterator[Object]:
        for pos in addresses(walk):
            yield Object(prog, node_type, pos)

    return ListWalk(nodes)


def _list_nodes(head: Object, link: str, limit: int) -> ListWalk:
    return _nodes(head.prog_, _pointer(head, "list_head").type_, _list_addresses(head, link, limit))


def list_for_each(head: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Each node of a list, as ``struct list_head *``.

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    """
    return _list_nodes(head, "next", limit)


def list_for_each_reverse(head: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Each node of a list, last first (following ``prev``)."""
    return _list_nodes(head, "prev", limit)


def _entries(prog: Program, addresses: Callable[[ListWalk], Iterator[int]], type: Type | str,
             member: str) -> ListWalk:
    # container_of(node, type, member) of each node, the entry type and offset found once per walk
    # (at its first node, so an empty list needs neither).
    def entries(walk: ListWalk) -> Iterator[Object]:
        entry: tuple[Type, int] | None = None
        for pos in addresses(walk):
            if entry is None:
                t = prog.type(type)
                entry = pointer_type(t), offsetof(t, member)
            yield Object(prog, entry[0], pos - entry[1])

    return ListWalk(entries)


def list_for_each_entry(type: Type | str, head: Object, member: str, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Each entry of a list, as a ``type *``.

    :param type: the entry type (``"struct task_struct"``)
    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param member: the ``struct list_head`` member of ``type`` that links the entries
    """
    return _entries(head.prog_, _list_addresses(head, "next", limit), type, member)


def list_for_each_entry_reverse(type: Type | str, head: Object, member: str, *,
                                limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Each entry of a list, last first."""
    return _entries(head.prog_, _list_addresses(head, "prev", limit), type, member)


def list_empty(head: Object) -> bool:
    """``list_empty(head)``: True if ``head->next == head``."""
    ptr = _pointer(head, "list_head")
    return int(ptr.next) == int(ptr)


def list_is_singular(head: Object) -> bool:
    """``list_is_singular(head)``: exactly one entry."""
    ptr = _pointer(head, "list_head")
    return not list_empty(ptr) and int(ptr.next) == int(ptr.prev)


def list_first_entry(head: Object, type: Type | str, member: str) -> Object:
    """``list_first_entry(head, type, member)`` (meaningless on an empty list, like the macro)."""
    return container_of(_pointer(head, "list_head").next, type, member)


def hlist_empty(head: Object) -> bool:
    """``hlist_empty(head)``: True if ``head->first`` is NULL."""
    return not int(_pointer(head, "hlist_head").first)


def _hlist_addresses(head: Object, limit: int) -> Callable[[ListWalk], Iterator[int]]:
    ptr = _pointer(head, "hlist_head")
    next_of = _link_reader(head, "hlist_node", "next")

    def addresses(walk: ListWalk) -> Iterator[int]:
        return _chain(walk, int(ptr.first), 0, next_of, limit)

    return addresses


def hlist_for_each(head: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Each node of a hash list, as ``struct hlist_node *``.

    :param head: ``struct hlist_head *`` (or a ``struct hlist_head``)
    """
    prog = head.prog_
    return _nodes(prog, prog.pointer_type("struct hlist_node"), _hlist_addresses(head, limit))


def hlist_for_each_entry(type: Type | str, head: Object, member: str, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Each entry of a hash list, as a ``type *`` (``member`` is its ``struct hlist_node``)."""
    return _entries(head.prog_, _hlist_addresses(head, limit), type, member)


def validate_list(head: Object, *, limit: int = DEFAULT_LIMIT) -> int:
    """Check that every ``next->prev`` points back and the walk ends at ``head``; return the
    number of entries, or raise ValidationError naming the first bad node."""
    walk = list_for_each(head, limit=limit)
    prev, count = int(_pointer(head, "list_head")), 0
    for node in walk:
        if int(node.prev) != prev:
            raise ValidationError(f"list node {int(node):#x}: prev is {int(node.prev):#x}, expected {prev:#x}")
        prev, count = int(node), count + 1
    if walk.truncated is not None:
        raise ValidationError(f"list at {int(_pointer(head, 'list_head')):#x}: {walk.truncated}")
    return count
