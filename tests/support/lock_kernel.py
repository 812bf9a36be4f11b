"""A synthetic kernel with sleeping locks (``struct mutex``, ``struct rw_semaphore``, ``struct
semaphore``, ``struct completion``) and their waiters (``struct mutex_waiter``, ``struct
rwsem_waiter``, ``struct semaphore_waiter``, ``struct swait_queue``) laid out as on x86-64 v6.x,
and a ``spinlock_t`` (with ``CONFIG_DEBUG_SPINLOCK``'s ``owner``/``owner_cpu`` when asked), for the
locking helpers. Each task has a 16 KiB stack area; waiters are put on their task's stack. With
``first_waiter``, the mutex, rwsem and semaphore keep a ``first_waiter`` pointer where the
``wait_list`` head was (as 7.x kernels do) and tasks have the hung-task detector's ``blocker``."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF81000000
WAKE_PAGE_FUNCTION = BASE + 0x100
LOCKS = BASE + 0x1000  # the locks (one per 0x40)
TASKS = BASE + 0x4000  # task_structs (one per 0x100)
STACKS = BASE + 0x10000  # one THREAD_SIZE stack per task
THREAD_SIZE = 0x4000
END = STACKS + 8 * THREAD_SIZE
#: (lock type size, wait_list offset), waiter (size, task offset) per kind
LAYOUT = {"mutex": (16, 16), "rwsem": (24, 16), "semaphore": (8, 16), "completion": (16, 0)}


class LockKernel(SyntheticMemory):
    """Locks at :data:`LOCKS`, tasks at :data:`TASKS`, waiters on the tasks' stacks."""

    def __init__(self, *, debug_spinlock: bool = False, first_waiter: bool = False) -> None:
        self.first_waiter = first_waiter
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        u = w.add_int("unsigned int", 4)
        long_ = w.add_int("long int", 8, signed=True)
        c = w.add_int("char", 1, signed=True, char=True)
        lp = w.add_ptr(w.next_id + 1)
        lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
        task_ptr = w.add_ptr(w.next_id + 1)
        ulong = w.next_id + 2  # after the comm array
        w.add_struct("task_struct", 0x100, [("pid", i, 0, 0), ("comm", ulong - 1, 32, 0), ("stack", ulong + 1, 192, 0),
                                            *([("blocker", ulong, 256, 0)] if first_waiter else [])])
        w.add_array(c, 16, i)
        w.add_int("long unsigned int", 8)
        w.add_ptr(0)
        atomic = w.add_typedef("atomic_long_t", w.add_struct("", 8, [("counter", long_, 0, 0)]))
        waiters = {n: w.next_id + k for k, n in enumerate(("mutex", "rwsem", "semaphore"))}
        w.add_struct("mutex_waiter", 32, [("list", lh, 0, 0), ("task", task_ptr, 128, 0), ("ww_ctx", lp, 192, 0)])
        w.add_struct("rwsem_waiter", 32, [("list", lh, 0, 0), ("task", task_ptr, 128, 0), ("type", u, 192, 0)])
        w.add_struct("semaphore_waiter", 32, [("list", lh, 0, 0), ("task", task_ptr, 128, 0), ("up", u, 192, 0)])

        def wait(kind: str) -> tuple[str, int]:
            return ("first_waiter", w.add_ptr(waiters[kind])) if first_waiter else ("wait_list", lh)

        w.add_struct("mutex", 32, [("owner", atomic, 0, 0), ("wait_lock", u, 64, 0), ("osq", u, 96, 0),
                                   (*wait("mutex"), 128, 0)])
        w.add_struct("rw_semaphore", 40, [("count", atomic, 0, 0), ("owner", atomic, 64, 0), ("osq", u, 128, 0),
                                          ("wait_lock", u, 160, 0), (*wait("rwsem"), 192, 0)])
        w.add_struct("semaphore", 24, [("lock", u, 0, 0), ("count", u, 32, 0), (*wait("semaphore"), 64, 0)])
        swqh = w.add_struct("swait_queue_head", 24, [("lock", u, 0, 0), ("task_list", lh, 64, 0)])
        w.add_struct("swait_queue", 24, [("task", task_ptr, 0, 0), ("task_list", lh, 64, 0)])
        w.add_struct("completion", 32, [("done", u, 0, 0), ("wait", swqh, 64, 0)])
        vp = w.add_ptr(0)
        wqe = w.add_struct("wait_queue_entry", 40, [("flags", u, 0, 0), ("private", vp, 64, 0), ("func", vp, 128, 0),
                                                    ("entry", lh, 192, 0)])
        w.add_struct("wait_page_queue", 56, [("folio", vp, 0, 0), ("bit_nr", i, 64, 0), ("wait", wqe, 128, 0)])
        qspinlock = w.add_struct("qspinlock", 4, [("val", u, 0, 0)])
        raw_members = [("raw_lock", qspinlock, 0, 0)]
        if debug_spinlock:
            raw_members += [("magic", u, 32, 0), ("owner_cpu", i, 64, 0), ("owner", w.add_ptr(0), 128, 0)]
        raw = w.add_struct("raw_spinlock", 24 if debug_spinlock else 4, raw_members)
        w.add_typedef("raw_spinlock_t", raw)
        w.add_typedef("spinlock_t", w.add_struct("spinlock", 24 if debug_spinlock else 4, [("rlock", raw, 0, 0)]))
        super().__init__({BASE: END - BASE})
        self.memory = self.regions[BASE]
        segments = self.segments()
        self.prog = Program(MemoryReader(segments), SymbolTable(["_stext", "wake_page_function", "_end"],
                                                                    [BASE, WAKE_PAGE_FUNCTION, END], "TTD"),
                            parse_btf(w.to_bytes()))
        self.tasks: list[int] = []
        self.next_lock = LOCKS
        self.stack_top: dict[int, int] = {}

    def ring(self, head: int, nodes: list[int]) -> None:
        ring = [head, *nodes]
        for k, node in enumerate(ring):
            self.u64(node, ring[(k + 1) % len(ring)])
            self.u64(node + 8, ring[k - 1])

    def task(self, pid: int) -> int:
        addr = TASKS + 0x100 * len(self.tasks)
        stack = STACKS + THREAD_SIZE * len(self.tasks)
        self.tasks.append(addr)
        self.u32(addr, pid)
        self.u64(addr + 24, stack)
        self.stack_top[addr] = stack + THREAD_SIZE - 0x100
        return addr

    def stack_of(self, task: int) -> tuple[int, int]:
        base = STACKS + THREAD_SIZE * self.tasks.index(task)
        return base, base + THREAD_SIZE

    def is_waiter(self, waiter: int, task: int) -> bool:
        return task in self.tasks and self.stack_of(task)[0] <= waiter < self.stack_of(task)[1]

    def page_wait(self, task: int, folio: int) -> int:
        """A ``struct wait_page_queue`` on ``task``'s stack waiting for ``folio``'s lock bit; returns it."""
        self.stack_top[task] -= 0x40
        queue = self.stack_top[task]
        self.u64(queue, folio)
        self.u64(queue + 16 + 8, task)
        self.u64(queue + 16 + 16, WAKE_PAGE_FUNCTION)
        return queue

    def lock(self, kind: str, waiters: list[int], *, owner: int = 0, count: int = 0, waiter_type: int = 1) -> int:
        """A lock of ``kind`` whose wait list holds a waiter on each of ``waiters``' stacks (in order);
        ``owner`` is the raw owner word (flags included), ``count`` the rwsem count / semaphore count /
        completion done. Returns the lock's address."""
        lock = self.next_lock
        self.next_lock += 0x40
        head_offset, task_offset = LAYOUT[kind]
        link = 8 if kind == "completion" else 0
        nodes = []
        for task in waiters:
            self.stack_top[task] -= 0x40
            waiter = self.stack_top[task]
            self.u64(waiter + task_offset, task)
            if kind == "rwsem":
                self.u32(waiter + 24, waiter_type)
            nodes.append(waiter + link)
        if self.first_waiter and kind != "completion":
            self.u64(lock + head_offset, nodes[0] - link if nodes else 0)
            if nodes:
                self.ring(nodes[0], nodes[1:])
        else:
            self.ring(lock + head_offset, nodes)
        if kind == "mutex":
            self.u64(lock, owner)
        elif kind == "rwsem":
            self.u64(lock, count)
            self.u64(lock + 8, owner)
        elif kind == "semaphore":
            self.u32(lock + 4, count)
        else:
            self.u32(lock, count)
        return lock
