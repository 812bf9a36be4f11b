"""
kcrash.helpers.linux.locking
============================

Sleeping locks and what waits on them (``include/linux/mutex.h``, ``kernel/locking/mutex.h``,
``include/linux/rwsem.h``, ``kernel/locking/rwsem.c``, ``include/linux/semaphore.h``,
``kernel/locking/semaphore.c``, ``include/linux/completion.h``, ``include/linux/swait.h``): the
owner a ``struct mutex`` or ``struct rw_semaphore`` records (:func:`mutex_owner`,
:func:`rwsem_owner`), the waiters linked into a lock's ``wait_list`` (:func:`lock_waiters`: every
waiter structure lives on its task's stack), and :func:`lock_of_waiter`, which goes the other way:
from a waiter structure on a task's stack to the lock whose list it is linked into. Lists are walked
with bounded raw reads (a cycle or an unreadable link ends the walk with a reason). Spinlocks
(:func:`spinlock_holder_or_none`) record a holder only with ``CONFIG_DEBUG_SPINLOCK``; a plain
``qspinlock`` records none. Which task waits on what, the wait-for graph and deadlocks are
:mod:`kcrash.analysis.locks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kcrash.errors import FaultError, TypeLookupError
from kcrash.types.program import Program

__all__ = [
    "LOCK_KINDS",
    "LockKind",
    "LockWaiter",
    "WaiterList",
    "lock_of_waiter",
    "lock_waiters",
    "mutex_owner",
    "rwsem_owner",
    "rwsem_reader_count",
    "spinlock_holder_or_none",
    "task_blocker_or_none",
]

#: ``MUTEX_FLAGS`` (``kernel/locking/mutex.c``, since Linux kernel commit 3ca0ff571b09, v4.10): the
#: low bits of ``mutex->owner`` are flags, the rest the owning task
MUTEX_FLAGS = 0x07
#: ``RWSEM_READER_OWNED`` (``kernel/locking/rwsem.c``): ``owner`` bit 0, the lock is reader-owned and
#: the rest of ``owner`` only the last reader (a hint); the low bits are flags
#: (``RWSEM_OWNER_FLAGS_MASK``)
RWSEM_READER_OWNED = 0x1
_RWSEM_OWNER_FLAGS = 0x07
#: ``RWSEM_WRITER_LOCKED`` and ``RWSEM_READER_SHIFT`` (``kernel/locking/rwsem.c``): ``count`` bit 0 is
#: a writer holding the lock, the readers are counted from bit 8
RWSEM_WRITER_LOCKED = 0x1
RWSEM_READER_SHIFT = 8
#: the most waiters read from one list (a damaged list ends there)
WAITER_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class LockKind:
    """Where a kind of sleeping lock keeps its waiters (a row of :data:`LOCK_KINDS`).

    :param name: the kind's name (``"mutex"``)
    :param lock_type: the lock's type (``"struct mutex"``)
    :param head: the path of the waiter list head in the lock (``"wait_list"``)
    :param waiter_type: the waiter structure's type (``"struct mutex_waiter"``)
    :param link: the waiter's list link member (``"list"``)
    :param task: the waiter's task pointer member (``"task"``)

    >>> LOCK_KINDS["rwsem"].waiter_type
    'struct rwsem_waiter'
    """

    name: str
    lock_type: str
    head: str
    waiter_type: str
    link: str
    task: str


#: the sleeping locks with a list of waiters, by name
LOCK_KINDS = {
    "mutex": LockKind("mutex", "struct mutex", "wait_list", "struct mutex_waiter", "list", "task"),
    "rwsem": LockKind("rwsem", "struct rw_semaphore", "wait_list", "struct rwsem_waiter", "list", "task"),
    "semaphore": LockKind("semaphore", "struct semaphore", "wait_list", "struct semaphore_waiter", "list", "task"),
    # struct completion waits on a simple wait queue since Linux kernel commit a5c6234e1028 (v5.7);
    # DECLARE_SWAITQUEUE puts the struct swait_queue on the waiter's stack.
    "completion": LockKind("completion", "struct completion", "wait.task_list", "struct swait_queue",
                           "task_list", "task"),
}


@dataclass(frozen=True, slots=True)
class LockWaiter:
    """One waiter of a lock, as :func:`lock_waiters` finds it.

    :param waiter: the address of its waiter structure (on the waiting task's stack)
    :param task: its ``struct task_struct *``, as an address

    >>> first = lock_waiters(prog, "mutex", prog.symbol_address("kcrash_test_mutex_a")).waiters[0]
    >>> hex(first.task)
    '0xffff88800544e100'
    """

    waiter: int
    task: int


@dataclass(frozen=True, slots=True)
class WaiterList:
    """The waiters of a lock in queue order, as :func:`lock_waiters` finds them.

    :param waiters: the waiters, first to be woken first
    :param truncated: why the walk ended early, None if it did not

    >>> found = lock_waiters(prog, "rwsem", prog.symbol_address("kcrash_test_held_rwsem"))
    >>> len(found.waiters), found.truncated
    (1, None)
    """

    waiters: tuple[LockWaiter, ...]
    truncated: str | None


#: ``BLOCKER_TYPE_*`` (``include/linux/hung_task.h``, v6.16): the low bits of ``task->blocker``
_BLOCKER_KINDS = {0: ("mutex", None), 1: ("semaphore", None), 2: ("rwsem", "read"), 3: ("rwsem", "write")}
_BLOCKER_TYPE_MASK = 0x3


def task_blocker_or_none(prog: Program, task: int) -> tuple[str, str | None, int] | None:
    """Return the lock a task is blocked on, where the kernel records it.

    That is ``task->blocker`` (``CONFIG_DETECT_HUNG_TASK_BLOCKER``, v6.16): a mutex, semaphore or rwsem
    address with its type in the low bits.

    :param prog: the program
    :param task: ``struct task_struct *``, as an address
    :return: ``(kind, mode, lock address)`` (mode ``"read"``/``"write"`` for an rwsem, else None);
        None when the kernel has no ``blocker`` or the task is not blocked on such a lock
    :raises FaultError: if the task cannot be read

    >>> task_blocker_or_none(prog, int(task)) is None
    True
    """
    task_type = prog.type("struct task_struct")
    if not task_type.has_member("blocker"):
        return None
    raw = _word(prog, task + _offset(prog, "struct task_struct", "blocker"))
    if not raw:
        return None
    kind, mode = _BLOCKER_KINDS[raw & _BLOCKER_TYPE_MASK]
    return kind, mode, raw & ~_BLOCKER_TYPE_MASK


def _offset(prog: Program, type_name: str, path: str) -> int:
    bits = prog.type(type_name).walk_path(path)[0]
    return int(bits) // 8


def _word(prog: Program, address: int) -> int:
    return int.from_bytes(prog.read(address, 8), "little")


def mutex_owner(prog: Program, mutex: int) -> int:
    """Return the task owning a mutex: ``mutex->owner`` without its ``MUTEX_FLAGS`` bits.

    :param prog: the program
    :param mutex: ``struct mutex *``, as an address
    :return: ``struct task_struct *`` as an address, 0 when unlocked
    :raises FaultError: if the mutex cannot be read

    >>> hex(mutex_owner(prog, prog.symbol_address("kcrash_test_mutex_a")))
    '0xffff88800544c8c0'
    """
    # Before v4.10 owner was a plain struct task_struct *; its low bits are zero, so masking is
    # right for both layouts.
    return _word(prog, mutex + _offset(prog, "struct mutex", "owner")) & ~MUTEX_FLAGS


def rwsem_owner(prog: Program, sem: int) -> tuple[int, bool]:
    """Return the task recorded in ``sem->owner`` and whether the rwsem is reader-owned.

    With ``RWSEM_READER_OWNED`` the task is only the last reader to take it, a hint, and no single task
    owns it.

    :param prog: the program
    :param sem: ``struct rw_semaphore *``, as an address
    :return: ``(struct task_struct * as an address, reader-owned)``
    :raises FaultError: if the rwsem cannot be read

    >>> rwsem_owner(prog, prog.symbol_address("kcrash_test_held_rwsem"))
    (18446612682157424640, False)
    """
    # owner became an atomic_long_t with flag bits in Linux kernel commit 94a9717b3c40 (v5.3);
    # before it was a task pointer with the same RWSEM_READER_OWNED bit.
    raw = _word(prog, sem + _offset(prog, "struct rw_semaphore", "owner"))
    return raw & ~_RWSEM_OWNER_FLAGS, bool(raw & RWSEM_READER_OWNED)


def rwsem_reader_count(prog: Program, sem: int) -> tuple[int, bool]:
    """Return the readers and the writer bit of an rwsem, from ``sem->count``.

    Decoded with ``RWSEM_READER_SHIFT`` and ``RWSEM_WRITER_LOCKED``.

    :param prog: the program
    :param sem: ``struct rw_semaphore *``, as an address
    :return: ``(readers, writer_locked)``
    :raises FaultError: if the rwsem cannot be read

    >>> rwsem_reader_count(prog, prog.symbol_address("kcrash_test_held_rwsem"))
    (0, True)
    """
    count = int.from_bytes(prog.read(sem + _offset(prog, "struct rw_semaphore", "count"), 8), "little", signed=True)
    return max(count, 0) >> RWSEM_READER_SHIFT, bool(count & RWSEM_WRITER_LOCKED)


def _ring(prog: Program, start: int, limit: int) -> tuple[list[int], str | None]:
    # The nodes of a circular list from start (included) until start comes round again.
    nodes, seen, pos = [start], {start}, start
    while True:
        try:
            pos = _word(prog, pos)
        except FaultError as exc:
            return nodes, f"unreadable next pointer at {exc.address:#x}"
        if pos == start:
            return nodes, None
        if pos == 0:
            return nodes, f"NULL next pointer after {len(nodes)} entries"
        if pos in seen:
            return nodes, f"cycle: node {pos:#x} seen twice after {len(nodes)} entries"
        if len(nodes) > limit:
            return nodes, f"stopped at the limit of {limit} entries"
        nodes.append(pos)
        seen.add(pos)


# Newer kernels (seen in 7.2's BTF) replaced the lock's wait_list head with a first_waiter pointer:
# the waiters are linked only among themselves, and the lock points at the first one.
def _has_head(prog: Program, k: LockKind) -> bool:
    return prog.type(k.lock_type).has_member(k.head.split(".")[0]) or k.name == "completion"


def lock_waiters(prog: Program, kind: str, lock: int, *, limit: int = WAITER_LIMIT) -> WaiterList:
    """Return the waiters queued on a lock, in queue order.

    From the lock's ``wait_list`` or, where the kernel keeps a ``first_waiter`` pointer instead, from
    the first waiter round their ring; bounded by ``limit`` and cycles.

    :param prog: the program
    :param kind: a name of :data:`LOCK_KINDS` (``"mutex"``, ``"rwsem"``, ``"semaphore"``, ``"completion"``)
    :param lock: ``struct mutex *``, ``struct rw_semaphore *``, ``struct semaphore *`` or ``struct
        completion *``, as an address
    :param limit: the most waiters to read
    :return: the waiters and why the walk ended early
    :raises KeyError: if ``kind`` is not in :data:`LOCK_KINDS`
    :raises FaultError: if the lock cannot be read

    >>> [hex(w.task) for w in lock_waiters(prog, "mutex", prog.symbol_address("kcrash_test_mutex_a")).waiters]
    ['0xffff88800544e100']
    """
    k = LOCK_KINDS[kind]
    link, task = _offset(prog, k.waiter_type, k.link), _offset(prog, k.waiter_type, k.task)
    if _has_head(prog, k):
        nodes, truncated = _ring(prog, lock + _offset(prog, k.lock_type, k.head), limit)
        nodes = nodes[1:]
    else:
        first = _word(prog, lock + _offset(prog, k.lock_type, "first_waiter"))
        nodes, truncated = _ring(prog, first + link, limit) if first else ([], None)
    waiters = []
    for node in nodes:
        try:
            waiters.append(LockWaiter(node - link, _word(prog, node - link + task)))
        except FaultError as exc:
            return WaiterList(tuple(waiters), f"unreadable waiter at {exc.address:#x}")
    return WaiterList(tuple(waiters), truncated)


def lock_of_waiter(prog: Program, kind: str, waiter: int, is_waiter: Callable[[int, int], bool], *,
                   candidates: Iterable[int] = (), limit: int = WAITER_LIMIT) -> int | None:
    """Return the lock whose wait list the waiter structure at ``waiter`` is linked into.

    With a ``wait_list`` head in the lock, the list holds the head and the waiters;
    ``is_waiter(node_waiter, task)`` tells a waiter (a waiter structure at ``node_waiter`` whose
    task member is ``task``: the caller checks the structure lies on that task's stack) from the
    head. Where the lock keeps a ``first_waiter`` pointer instead, the ring holds only waiters, and
    the lock is the first of ``candidates`` (addresses found on the waiter's stack, say) whose
    ``first_waiter`` is one of them.

    :param prog: the program
    :param kind: a name of :data:`LOCK_KINDS`
    :param waiter: ``struct mutex_waiter *`` (or the kind's waiter type), as an address
    :param is_waiter: tells a waiter structure from the lock's list head
    :param candidates: lock addresses to try where the lock has no list head
    :param limit: the most list nodes to follow
    :return: the lock's address, None when ``waiter`` is not linked into a well-formed list with
        exactly one lock

    >>> waiter = lock_waiters(prog, "mutex", prog.symbol_address("kcrash_test_mutex_a")).waiters[0]
    >>> lock_of_waiter(prog, "mutex", waiter.waiter, lambda node, task: task == waiter.task)
    18446744072638005728
    """
    k = LOCK_KINDS[kind]
    link, task = _offset(prog, k.waiter_type, k.link), _offset(prog, k.waiter_type, k.task)
    start = waiter + link
    try:
        if _word(prog, _word(prog, start) + 8) != start:  # next->prev must come back
            return None
    except FaultError:
        return None
    nodes, truncated = _ring(prog, start, limit)
    if truncated is not None:
        return None
    if not _has_head(prog, k):
        return _first_waiter_lock(prog, k, {node - link for node in nodes}, candidates)
    heads = [node for node in nodes[1:] if not _waiter_node(prog, node - link, task, is_waiter)]
    if len(heads) != 1:
        return None
    return heads[0] - _offset(prog, k.lock_type, k.head)


def _first_waiter_lock(prog: Program, k: LockKind, waiters: set[int], candidates: Iterable[int]) -> int | None:
    first = _offset(prog, k.lock_type, "first_waiter")
    for lock in candidates:
        try:
            if _word(prog, lock + first) in waiters:
                return lock
        except FaultError:
            continue
    return None


def _waiter_node(prog: Program, node_waiter: int, task_offset: int, is_waiter: Callable[[int, int], bool]) -> bool:
    try:
        return is_waiter(node_waiter, _word(prog, node_waiter + task_offset))
    except FaultError:
        return False


def spinlock_holder_or_none(prog: Program, lock: int) -> tuple[int, int] | None:
    """Return the holder of a ``spinlock_t`` when the kernel records it.

    ``CONFIG_DEBUG_SPINLOCK`` keeps ``raw_spinlock.owner``/``owner_cpu`` (``SPINLOCK_OWNER_INIT``,
    -1, meaning none); a plain ``qspinlock`` records no holder.

    :param prog: the program
    :param lock: ``spinlock_t *``, as an address
    :return: ``(struct task_struct * as an address, owner_cpu)``, or None
    :raises FaultError: if the lock cannot be read

    >>> spinlock_holder_or_none(prog, prog.symbol_address("kcrash_test_lock")) is None  # no CONFIG_DEBUG_SPINLOCK
    True
    """
    try:
        owner = _offset(prog, "raw_spinlock_t", "owner")
        owner_cpu = _offset(prog, "raw_spinlock_t", "owner_cpu")
        base = lock + _offset(prog, "spinlock_t", "rlock")
    except TypeLookupError:
        return None
    task = _word(prog, base + owner)
    if task in (0, (1 << 64) - 1):
        return None
    return task, int.from_bytes(prog.read(base + owner_cpu, 4), "little", signed=True)
