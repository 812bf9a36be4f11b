"""A synthetic kernel with tasks (parents, children, times, flags, prio, ``sched_info``) and wait
queues (``wait_queue_head_t`` with ``wait_queue_entry_t`` entries, ``struct swait_queue_head`` with
``struct swait_queue`` entries, ``struct completion``), for the wait helpers and the task analysis."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF81000000
TEXT = BASE + 0x100  # default_wake_function, autoremove_wake_function (0x40 each)
DATA = BASE + 0x1000
INIT_TASK = DATA
TASK_STRIDE = 0x100
SIGNAL_OFFSET = 0xB0
QUEUES = BASE + 0x8000  # wait queue heads and entries
END = BASE + 0x10000
# task_struct member offsets
PID, TGID, STATE, EXIT_STATE, COMM, TASKS, THREAD_NODE, SIGNAL, REAL_PARENT = 0, 4, 8, 12, 16, 32, 48, 64, 72
CPU, FLAGS, PRIO, CHILDREN, SIBLING = 80, 84, 88, 96, 112
START_TIME, START_BOOTTIME, UTIME, STIME, LAST_ARRIVAL = 128, 136, 144, 152, 160


class Kernel(SyntheticMemory):
    """``task_struct`` {pid, tgid, __state, exit_state, comm, tasks, thread_node, signal, real_parent,
    cpu, flags, prio, children, sibling, start_time, start_boottime, utime, stime, sched_info};
    ``init_task`` is the first task; every task is its own thread group."""

    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        u = w.add_int("unsigned int", 4)
        u64 = w.add_int("long long unsigned int", 8)
        c = w.add_int("char", 1, signed=True, char=True)
        lp = w.add_ptr(w.next_id + 1)
        lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
        comm = w.add_array(c, 16, i)
        si = w.add_struct("sched_info", 8, [("last_arrival", u64, 0, 0)])
        sig_ptr = w.add_ptr(w.next_id + 2)
        task_ptr = w.add_ptr(w.next_id + 2)
        w.add_struct("signal_struct", 24, [("thread_head", lh, 0, 0), ("nr_threads", i, 128, 0)])
        w.add_struct("task_struct", SIGNAL_OFFSET, [
            ("pid", i, 0, 0), ("tgid", i, 32, 0), ("__state", u, 64, 0), ("exit_state", i, 96, 0),
            ("comm", comm, 128, 0), ("tasks", lh, 256, 0), ("thread_node", lh, 384, 0), ("signal", sig_ptr, 512, 0),
            ("real_parent", task_ptr, 576, 0), ("cpu", u, 640, 0), ("flags", u, 672, 0), ("prio", i, 704, 0),
            ("children", lh, 768, 0), ("sibling", lh, 896, 0), ("start_time", u64, 1024, 0),
            ("start_boottime", u64, 1088, 0), ("utime", u64, 1152, 0), ("stime", u64, 1216, 0),
            ("sched_info", si, 1280, 0)])
        void_ptr = w.add_ptr(0)
        wqh = w.add_struct("wait_queue_head", 24, [("lock", u, 0, 0), ("head", lh, 64, 0)])
        w.add_typedef("wait_queue_head_t", wqh)
        wqe = w.add_struct("wait_queue_entry", 40, [("flags", u, 0, 0), ("private", void_ptr, 64, 0),
                                                    ("func", void_ptr, 128, 0), ("entry", lh, 192, 0)])
        w.add_typedef("wait_queue_entry_t", wqe)
        swqh = w.add_struct("swait_queue_head", 24, [("lock", u, 0, 0), ("task_list", lh, 64, 0)])
        w.add_struct("swait_queue", 24, [("task", task_ptr, 0, 0), ("task_list", lh, 64, 0)])
        w.add_struct("completion", 32, [("done", u, 0, 0), ("wait", swqh, 64, 0)])
        super().__init__({BASE: END - BASE})
        self.memory = self.regions[BASE]
        segments = self.segments()
        names = ["_stext", "default_wake_function", "autoremove_wake_function", "init_task", "_end"]
        addrs = [BASE, TEXT, TEXT + 0x40, INIT_TASK, END]
        self.prog = Program(MemoryReader(segments), SymbolTable(names, addrs, "TTTDD"), parse_btf(w.to_bytes()))
        self.tasks: list[int] = []
        self.next_queue = QUEUES
        self.task(0, b"swapper/0", parent=0)
        self.u64(INIT_TASK + REAL_PARENT, INIT_TASK)  # init_task is its own parent

    # -- memory ---------------------------------------------------------------------------------

    def ring(self, head: int, nodes: list[int]) -> None:
        ring = [head, *nodes]
        for k, node in enumerate(ring):
            self.u64(node, ring[(k + 1) % len(ring)])
            self.u64(node + 8, ring[k - 1])

    def obj(self, addr: int) -> Object:
        return Object(self.prog, self.prog.pointer_type("struct task_struct"), addr)

    # -- tasks ----------------------------------------------------------------------------------

    def task(self, pid: int, comm: bytes, *, parent: int | None = None, state: int = 0, flags: int = 0,
             prio: int = 120, times: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)) -> int:
        """A task (its own thread group) linked after the others on ``init_task.tasks`` and on its
        parent's ``children`` (``parent`` defaults to ``init_task``)."""
        addr = INIT_TASK + TASK_STRIDE * len(self.tasks)
        self.tasks.append(addr)
        for off, value in ((PID, pid), (TGID, pid), (STATE, state), (FLAGS, flags), (PRIO, prio)):
            self.u32(addr + off, value)
        self.put(addr + COMM, comm.ljust(16, b"\0"))
        for off, value in zip((START_TIME, START_BOOTTIME, UTIME, STIME, LAST_ARRIVAL), times, strict=True):
            self.u64(addr + off, value)
        self.u64(addr + SIGNAL, addr + SIGNAL_OFFSET)
        self.ring(addr + SIGNAL_OFFSET, [addr + THREAD_NODE])
        self.ring(INIT_TASK + TASKS, [t + TASKS for t in self.tasks[1:]])
        self.ring(addr + CHILDREN, [])
        if parent != 0:
            parent = INIT_TASK if parent is None else parent
            self.u64(addr + REAL_PARENT, parent)
            kids = [t for t in self.tasks[1:] if int.from_bytes(self.memory[t + REAL_PARENT - BASE:][:8], "little")
                    == parent]
            self.ring(parent + CHILDREN, [t + SIBLING for t in kids])
        return addr

    # -- wait queues ----------------------------------------------------------------------------

    def alloc(self, size: int) -> int:
        addr = self.next_queue
        self.next_queue += (size + 15) // 16 * 16
        return addr

    def wait_queue(self, waiters: list[tuple[int, int]]) -> int:
        """A ``wait_queue_head_t`` whose entries hold ``(private, func)``; returns the head."""
        head = self.alloc(24)
        entries = []
        for private, func in waiters:
            entry = self.alloc(40)
            self.u64(entry + 8, private)
            self.u64(entry + 16, func)
            entries.append(entry + 24)
        self.ring(head + 8, entries)
        return head

    def swait_queue(self, tasks: list[int], *, completion: bool = False) -> int:
        """A ``struct swait_queue_head`` (or a ``struct completion`` around one) waited on by ``tasks``."""
        start = self.alloc(32 if completion else 24)
        head = start + 8 if completion else start
        entries = []
        for task in tasks:
            entry = self.alloc(24)
            self.u64(entry, task)
            entries.append(entry + 8)
        self.ring(head + 8, entries)
        return start
