"""kcrash.helpers.linux.locking on a synthetic kernel (tests/support/lock_kernel.py): owners with
their flag bits masked, reader-owned rwsems, wait lists in queue order (a cycle ends the walk), the
lock a waiter on a stack is linked into (and None for a waiter whose list has no single head), and
spinlock holders only where CONFIG_DEBUG_SPINLOCK records them."""

from __future__ import annotations

import pytest

from kcrash.helpers.linux import locking
from kcrash.helpers.linux.locking import (
    lock_of_waiter,
    lock_waiters,
    mutex_owner,
    rwsem_owner,
    rwsem_reader_count,
    spinlock_holder_or_none,
    task_blocker_or_none,
)
from support.lock_kernel import LAYOUT, LockKernel


def test_all_is_exported() -> None:
    public = {n for n in vars(locking) if not n.startswith("_") and callable(getattr(locking, n))
              and getattr(getattr(locking, n), "__module__", "") == locking.__name__}
    assert public <= set(locking.__all__)


def test_mutex_owner_masks_the_flag_bits() -> None:
    k = LockKernel()
    owner = k.task(1)
    assert mutex_owner(k.prog, k.lock("mutex", [], owner=owner | 0x3)) == owner
    assert mutex_owner(k.prog, k.lock("mutex", [])) == 0


def test_rwsem_owner_and_count() -> None:
    k = LockKernel()
    writer = k.task(1)
    sem = k.lock("rwsem", [], owner=writer | 0x2, count=0x1)
    assert rwsem_owner(k.prog, sem) == (writer, False)
    assert rwsem_reader_count(k.prog, sem) == (0, True)
    readers = k.lock("rwsem", [], owner=writer | 0x1, count=3 << 8)
    assert rwsem_owner(k.prog, readers) == (writer, True)
    assert rwsem_reader_count(k.prog, readers) == (3, False)


@pytest.mark.parametrize("kind", sorted(LAYOUT))
def test_waiters_in_queue_order_and_back_to_their_lock(kind: str) -> None:
    k = LockKernel()
    a, b = k.task(10), k.task(11)
    lock = k.lock(kind, [a, b])
    walk = lock_waiters(k.prog, kind, lock)
    assert walk.truncated is None
    assert [w.task for w in walk.waiters] == [a, b]
    for w in walk.waiters:
        assert lock_of_waiter(k.prog, kind, w.waiter, k.is_waiter) == lock
    assert lock_waiters(k.prog, kind, k.lock(kind, [])).waiters == ()


def test_a_cycle_in_a_wait_list_ends_the_walk() -> None:
    k = LockKernel()
    a, b = k.task(10), k.task(11)
    lock = k.lock("mutex", [a, b])
    first = lock_waiters(k.prog, "mutex", lock).waiters[0].waiter
    second = lock_waiters(k.prog, "mutex", lock).waiters[1].waiter
    k.u64(second, first)  # the second waiter's next points back at the first: the head is never reached
    walk = lock_waiters(k.prog, "mutex", lock)
    assert walk.truncated is not None and "cycle" in walk.truncated
    assert [w.task for w in walk.waiters] == [a, b]
    assert lock_of_waiter(k.prog, "mutex", first, k.is_waiter) is None


def test_a_waiter_not_on_its_tasks_stack_is_not_a_waiter() -> None:
    k = LockKernel()
    a, b = k.task(10), k.task(11)
    lock = k.lock("semaphore", [a, b])
    waiter = lock_waiters(k.prog, "semaphore", lock).waiters[0].waiter
    assert lock_of_waiter(k.prog, "semaphore", waiter, k.is_waiter) == lock
    # when the other waiter is not on its task's stack, it looks like a second head: no single lock
    assert lock_of_waiter(k.prog, "semaphore", waiter, lambda w, t: False) is None
    # a word that is not linked into a list (next->prev does not come back)
    assert lock_of_waiter(k.prog, "semaphore", k.stack_of(a)[0], k.is_waiter) is None


def test_spinlock_holder_only_with_debug_spinlock() -> None:
    plain = LockKernel()
    lock = plain.next_lock
    plain.u32(lock, 1)
    assert spinlock_holder_or_none(plain.prog, lock) is None
    debug = LockKernel(debug_spinlock=True)
    holder = debug.task(5)
    lock = debug.next_lock
    debug.u32(lock, 1)
    debug.u32(lock + 8, 1)
    debug.u64(lock + 16, holder)
    assert spinlock_holder_or_none(debug.prog, lock) == (holder, 1)
    debug.u64(lock + 16, (1 << 64) - 1)  # SPINLOCK_OWNER_INIT: not held
    assert spinlock_holder_or_none(debug.prog, lock) is None


@pytest.mark.parametrize("kind", ["mutex", "rwsem", "semaphore"])
def test_first_waiter_layout(kind: str) -> None:
    # 7.x kernels: no wait_list head, the lock points at its first waiter; the lock of a waiter is
    # the candidate whose first_waiter is on the waiters' ring
    k = LockKernel(first_waiter=True)
    a, b = k.task(10), k.task(11)
    other = k.lock(kind, [k.task(12)])
    lock = k.lock(kind, [a, b])
    walk = lock_waiters(k.prog, kind, lock)
    assert walk.truncated is None and [w.task for w in walk.waiters] == [a, b]
    assert lock_waiters(k.prog, kind, k.lock(kind, [])).waiters == ()
    second = walk.waiters[1].waiter
    assert lock_of_waiter(k.prog, kind, second, k.is_waiter, candidates=[other, 0x1234, lock]) == lock
    assert lock_of_waiter(k.prog, kind, second, k.is_waiter, candidates=[other]) is None


def test_task_blocker() -> None:
    k = LockKernel(first_waiter=True)
    t = k.task(10)
    assert task_blocker_or_none(k.prog, t) is None
    k.u64(t + 32, 0xFFFFFFFFC0001000 | 3)
    assert task_blocker_or_none(k.prog, t) == ("rwsem", "write", 0xFFFFFFFFC0001000)
    k.u64(t + 32, 0xFFFFFFFFC0001000 | 1)
    assert task_blocker_or_none(k.prog, t) == ("semaphore", None, 0xFFFFFFFFC0001000)
    assert task_blocker_or_none(LockKernel().prog, t) is None  # no blocker member
