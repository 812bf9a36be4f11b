"""
kcrash.helpers.linux.wait
=========================

Wait queues (``include/linux/wait.h``: ``wait_queue_head_t`` and its ``wait_queue_entry_t``
entries) and simple wait queues (``include/linux/swait.h``: ``struct swait_queue_head`` and its
``struct swait_queue`` entries, which ``struct completion`` waits on since v5.7), walked with the
bounded walks of :mod:`~kcrash.helpers.linux.list` (``truncated`` of the returned walk says why a
damaged queue ended early). Named and called as drgn's ``drgn.helpers.linux.wait`` and
``drgn.helpers.linux.swait``. Which task an entry stands for is ``private`` for the kernel's
default wake functions; other wake functions may keep something else there (the caller judges).
"""

from __future__ import annotations

from collections.abc import Iterator

from kcrash.errors import TypeLookupError
from kcrash.helpers.linux.list import DEFAULT_LIMIT, ListWalk, list_empty, list_for_each_entry
from kcrash.types.object import Object, cast

__all__ = [
    "swait_active",
    "swait_for_each_task",
    "waitqueue_active",
    "waitqueue_for_each_entry",
    "waitqueue_for_each_task",
]


def _head(wq: Object) -> Object:
    # Linux kernel commit 2055da97389a (v4.13) renamed wait_queue_head.task_list to head.
    try:
        return wq.head
    except (AttributeError, TypeLookupError):
        return wq.task_list


def _entry_type(wq: Object) -> tuple[str, str]:
    # Linux kernel commits ac6424b981bc and 2055da97389a (v4.13) renamed wait_queue_t to
    # wait_queue_entry_t and its link task_list to entry.
    prog = wq.prog_
    if prog.find_type_or_none("struct wait_queue_entry") is not None:
        return "struct wait_queue_entry", "entry"
    return "wait_queue_t", "task_list"


def waitqueue_active(wq: Object) -> bool:
    """Return whether a wait queue has waiters, like the kernel's ``waitqueue_active(wq_head)``.

    :param wq: ``wait_queue_head_t *`` (``struct wait_queue_head *``)
    :return: True if its ``head`` list is not empty
    :raises FaultError: if ``wq`` cannot be read

    >>> waitqueue_active(prog.object("wait_queue_head_t", prog.symbol_address("oom_reaper_wait")).address_of_())
    True
    """
    return not list_empty(_head(wq).address_of_())


def waitqueue_for_each_entry(wq: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the entries of a wait queue (``wq->head``, linked by ``entry``).

    :param wq: ``wait_queue_head_t *`` (``struct wait_queue_head *``)
    :param limit: the most entries to yield
    :return: a bounded :class:`~kcrash.helpers.linux.list.ListWalk` of ``wait_queue_entry_t *``
        (``truncated`` names a damaged list)
    :raises FaultError: if ``wq`` itself cannot be read

    >>> wq = prog.object("wait_queue_head_t", prog.symbol_address("oom_reaper_wait")).address_of_()
    >>> [hex(e.private) for e in waitqueue_for_each_entry(wq)]
    ['0xffff8880043c9840']
    """
    type_name, link = _entry_type(wq)
    return list_for_each_entry(type_name, _head(wq).address_of_(), link, limit=limit)


def waitqueue_for_each_task(wq: Object, *, limit: int = DEFAULT_LIMIT) -> Iterator[Object]:
    """Iterate over the tasks waiting on a wait queue: ``private`` of every entry as ``struct task_struct *``.

    That is a task for the kernel's default wake functions, anything for others (as drgn warns).

    :param wq: ``wait_queue_head_t *`` (``struct wait_queue_head *``)
    :param limit: the most entries to yield
    :return: an iterator of ``struct task_struct *`` objects
    :raises FaultError: if ``wq`` itself cannot be read

    >>> wq = prog.object("wait_queue_head_t", prog.symbol_address("oom_reaper_wait")).address_of_()
    >>> [t.comm.string_() for t in waitqueue_for_each_task(wq)]
    [b'oom_reaper']
    """
    task_type = wq.prog_.pointer_type("struct task_struct")
    for entry in waitqueue_for_each_entry(wq, limit=limit):
        yield cast(task_type, entry.private)


def swait_active(wq: Object) -> bool:
    """Return whether a simple wait queue has waiters, like the kernel's ``swait_active(wq)``.

    :param wq: ``struct swait_queue_head *``
    :return: True if its ``task_list`` is not empty
    :raises FaultError: if ``wq`` cannot be read

    >>> wq = prog.object("struct completion", prog.symbol_address("kcrash_test_completion")).wait.address_of_()
    >>> swait_active(wq)
    True
    """
    return not list_empty(wq.task_list.address_of_())


def swait_for_each_task(wq: Object, *, limit: int = DEFAULT_LIMIT) -> Iterator[Object]:
    """Iterate over the tasks of a simple wait queue (``struct swait_queue`` entries on ``task_list``).

    :param wq: ``struct swait_queue_head *``
    :param limit: the most entries to yield
    :return: an iterator of ``struct task_struct *`` objects
    :raises FaultError: if ``wq`` itself cannot be read

    >>> wq = prog.object("struct completion", prog.symbol_address("kcrash_test_completion")).wait.address_of_()
    >>> [int(t.pid) for t in swait_for_each_task(wq)]
    [154]
    """
    for entry in list_for_each_entry("struct swait_queue", wq.task_list.address_of_(), "task_list", limit=limit):
        yield entry.task
