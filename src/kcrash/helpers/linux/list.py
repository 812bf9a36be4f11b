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
    """An iterable, bounded walk of a kernel list; :attr:`truncated` says whether it was complete.

    After (or during) iteration, ``truncated`` is None if the walk reached its end, else the reason
    it stopped early (a cycle, a NULL or unreadable ``next``, the limit). Iterating again restarts
    the walk. The list helpers return one; build your own only for a new kind of chain.

    :param nodes: called with the walk at each iteration; yields the nodes and sets ``truncated``

    >>> walk = list_for_each_entry("struct module", prog["modules"].address_of_(), "list")
    >>> names = [mod.name.string_() for mod in walk]
    >>> walk.truncated is None
    True
    """

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
    """Iterate over the nodes of a ``struct list_head`` list, following ``next``.

    The head itself is not yielded. The walk stops at the head, a cycle, a NULL or unreadable
    ``next`` pointer or ``limit`` nodes, and says why in :attr:`ListWalk.truncated`.

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param limit: the most nodes to yield
    :return: a :class:`ListWalk` of ``struct list_head *`` objects
    :raises FaultError: if ``head`` itself cannot be read

    >>> sum(1 for _ in list_for_each(prog["modules"].address_of_()))
    4
    """
    return _list_nodes(head, "next", limit)


def list_for_each_reverse(head: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the nodes of a ``struct list_head`` list last first, following ``prev``.

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param limit: the most nodes to yield
    :return: a :class:`ListWalk` of ``struct list_head *`` objects, bounded as :func:`list_for_each`
    :raises FaultError: if ``head`` itself cannot be read

    >>> last = next(iter(list_for_each_reverse(prog["init_task"].tasks)))
    """
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
    """Iterate over the entries of a list, like the kernel's ``list_for_each_entry(pos, head, member)``.

    Each ``struct list_head`` node is turned into its containing ``type`` with ``container_of``.

    :param type: the entry type (``"struct task_struct"``) or a :class:`~kcrash.types.model.Type`
    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param member: the name of the ``struct list_head`` member of ``type`` that links the entries
    :param limit: the most entries to yield
    :return: a :class:`ListWalk` of ``type *`` objects, bounded as :func:`list_for_each`
    :raises FaultError: if ``head`` itself cannot be read
    :raises TypeLookupError: if ``type`` or ``member`` is unknown

    >>> tasks = list_for_each_entry("struct task_struct", prog["init_task"].tasks, "tasks")
    >>> [(int(task.pid), task.comm.string_()) for task in tasks][:2]
    [(1, b'init'), (2, b'kthreadd')]
    """
    return _entries(head.prog_, _list_addresses(head, "next", limit), type, member)


def list_for_each_entry_reverse(type: Type | str, head: Object, member: str, *,
                                limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the entries of a list last first, like ``list_for_each_entry_reverse()``.

    :param type: the entry type (``"struct module"``) or a :class:`~kcrash.types.model.Type`
    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param member: the name of the ``struct list_head`` member of ``type`` that links the entries
    :param limit: the most entries to yield
    :return: a :class:`ListWalk` of ``type *`` objects, bounded as :func:`list_for_each`
    :raises FaultError: if ``head`` itself cannot be read

    >>> newest_last = list(list_for_each_entry_reverse("struct module", prog["modules"], "list"))
    """
    return _entries(head.prog_, _list_addresses(head, "prev", limit), type, member)


def list_empty(head: Object) -> bool:
    """Return whether a list is empty, like the kernel's ``list_empty(head)``: ``head->next == head``.

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :return: True if the list has no entries
    :raises FaultError: if ``head`` cannot be read

    >>> list_empty(prog["modules"])
    False
    """
    ptr = _pointer(head, "list_head")
    return int(ptr.next) == int(ptr)


def list_is_singular(head: Object) -> bool:
    """Return whether a list has exactly one entry, like the kernel's ``list_is_singular(head)``.

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :return: True if ``head->next`` and ``head->prev`` are the same entry and not ``head``
    :raises FaultError: if ``head`` cannot be read

    >>> list_is_singular(prog["init_task"].children)
    False
    """
    ptr = _pointer(head, "list_head")
    return not list_empty(ptr) and int(ptr.next) == int(ptr.prev)


def list_first_entry(head: Object, type: Type | str, member: str) -> Object:
    """Return the first entry of a list, like ``list_first_entry(head, type, member)``.

    Meaningless on an empty list (it returns the container of the head), like the macro.

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param type: the entry type (``"struct module"``) or a :class:`~kcrash.types.model.Type`
    :param member: the name of the ``struct list_head`` member of ``type`` that links the entries
    :return: a ``type *`` object
    :raises FaultError: if ``head`` cannot be read

    >>> list_first_entry(prog["modules"], "struct module", "list").name.string_()
    b'kcrash_test'
    """
    return container_of(_pointer(head, "list_head").next, type, member)


def hlist_empty(head: Object) -> bool:
    """Return whether a hash list is empty, like the kernel's ``hlist_empty(head)``: ``head->first`` is NULL.

    :param head: ``struct hlist_head *`` (or a ``struct hlist_head``)
    :return: True if the list has no entries
    :raises FaultError: if ``head`` cannot be read

    >>> hlist_empty(prog["init_task"].thread_pid.tasks[0])
    True
    """
    return not int(_pointer(head, "hlist_head").first)


def _hlist_addresses(head: Object, limit: int) -> Callable[[ListWalk], Iterator[int]]:
    ptr = _pointer(head, "hlist_head")
    next_of = _link_reader(head, "hlist_node", "next")

    def addresses(walk: ListWalk) -> Iterator[int]:
        return _chain(walk, int(ptr.first), 0, next_of, limit)

    return addresses


def hlist_for_each(head: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the nodes of a ``struct hlist_head`` hash list, following ``first`` then ``next``.

    :param head: ``struct hlist_head *`` (or a ``struct hlist_head``)
    :param limit: the most nodes to yield
    :return: a :class:`ListWalk` of ``struct hlist_node *`` objects, bounded as :func:`list_for_each`
    :raises FaultError: if ``head`` itself cannot be read

    >>> sum(1 for _ in hlist_for_each(prog["init_task"].thread_pid.tasks[0]))
    0
    """
    prog = head.prog_
    return _nodes(prog, prog.pointer_type("struct hlist_node"), _hlist_addresses(head, limit))


def hlist_for_each_entry(type: Type | str, head: Object, member: str, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the entries of a hash list, like the kernel's ``hlist_for_each_entry(pos, head, member)``.

    :param type: the entry type (``"struct task_struct"``) or a :class:`~kcrash.types.model.Type`
    :param head: ``struct hlist_head *`` (or a ``struct hlist_head``)
    :param member: the name of the ``struct hlist_node`` member of ``type`` that links the entries
    :param limit: the most entries to yield
    :return: a :class:`ListWalk` of ``type *`` objects, bounded as :func:`list_for_each`
    :raises FaultError: if ``head`` itself cannot be read

    >>> for task in hlist_for_each_entry("struct task_struct", prog["init_task"].thread_pid.tasks[0], "pid_links[0]"):
    ...     print(task.comm.string_())
    """
    return _entries(head.prog_, _hlist_addresses(head, limit), type, member)


def validate_list(head: Object, *, limit: int = DEFAULT_LIMIT) -> int:
    """Check a ``struct list_head`` list's links and count its entries.

    Every ``next->prev`` must point back to the node before it and the walk must come back to
    ``head`` (no cycle, NULL or unreadable node, fewer than ``limit`` nodes).

    :param head: ``struct list_head *`` (or a ``struct list_head``)
    :param limit: the most entries to accept
    :return: the number of entries (the head not counted)
    :raises ValidationError: naming the first bad node, or why the walk stopped early

    >>> validate_list(prog["modules"])
    4
    """
    walk = list_for_each(head, limit=limit)
    prev, count = int(_pointer(head, "list_head")), 0
    for node in walk:
        if int(node.prev) != prev:
            raise ValidationError(f"list node {int(node):#x}: prev is {int(node.prev):#x}, expected {prev:#x}")
        prev, count = int(node), count + 1
    if walk.truncated is not None:
        raise ValidationError(f"list at {int(_pointer(head, 'list_head')):#x}: {walk.truncated}")
    return count
