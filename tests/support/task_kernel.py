"""A synthetic kernel with tasks (``init_task`` and its lists, thread groups, the state letters of
``task_state_array``) and taint flags, for the sched/panic helpers and the ps rows built on them."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF81000000
TASK_SIZE = 0x60
INIT_TASK = BASE + 0x1000
STATES = BASE + 0x100  # task_state_array: 9 pointers
STATE_TEXT = BASE + 0x200
TAINTS = BASE + 0x300
TAINTED_MASK = BASE + 0x400
END = BASE + 0x4000


class Kernel(SyntheticMemory):
    """task_struct {pid, tgid, __state, exit_state, comm[16], tasks, thread_node, signal, real_parent,
    cpu}; signal_struct {thread_head, nr_threads}; struct taint_flag {c_true, c_false, module}; the
    kernel's task_state_array."""

    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        u = w.add_int("unsigned int", 4)
        c = w.add_int("char", 1, signed=True, char=True)
        b = w.add_int("_Bool", 1, bool_=True)
        lp = w.add_ptr(w.next_id + 1)
        lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
        comm = w.add_array(c, 16, i)
        sig_ptr = w.add_ptr(w.next_id + 2)
        task_ptr = w.add_ptr(w.next_id + 2)
        w.add_struct("signal_struct", 24, [("thread_head", lh, 0, 0), ("nr_threads", i, 128, 0)])
        w.add_struct("task_struct", TASK_SIZE, [
            ("pid", i, 0, 0), ("tgid", i, 32, 0), ("__state", u, 64, 0), ("exit_state", i, 96, 0),
            ("comm", comm, 128, 0), ("tasks", lh, 256, 0), ("thread_node", lh, 384, 0),
            ("signal", sig_ptr, 512, 0), ("real_parent", task_ptr, 576, 0), ("cpu", u, 640, 0)])
        w.add_struct("taint_flag", 3, [("c_true", c, 0, 0), ("c_false", c, 8, 0), ("module", b, 16, 0)])
        super().__init__({BASE: END - BASE})
        self.memory = self.regions[BASE]
        segments = self.segments()
        names = ["_stext", "task_state_array", "taint_flags", "tainted_mask", "init_task", "_end"]
        addrs = [BASE, STATES, TAINTS, TAINTED_MASK, INIT_TASK, END]
        self.symbols = SymbolTable(names, addrs, "TrrDDD")
        self.prog = Program(MemoryReader(segments), self.symbols, parse_btf(w.to_bytes()))
        for k, letter in enumerate(b"RSDTtXZPI"):
            self.u64(STATES + 8 * k, STATE_TEXT + 16 * k)
            self.memory[STATE_TEXT + 16 * k - BASE] = letter
        self.put(TAINTS, b"PGxF xS xR xD x")  # P/G, F, S, R, D; then a non-letter entry ends the table
        self.put(TAINTS + 15, b"\x01\x02\x00")
        self.next_task = INIT_TASK + TASK_SIZE

    def task(self, pid: int, tgid: int, comm: bytes, state: int = 0, exit_state: int = 0, *, parent: int = 0,
             cpu: int = 0) -> int:
        addr = self.next_task
        self.next_task += TASK_SIZE + 0x20  # signal_struct right after the task
        for off, value in ((0, pid), (4, tgid), (8, state), (12, exit_state), (80, cpu)):
            self.put(addr + off, value.to_bytes(4, "little"))
        self.put(addr + 16, comm.ljust(16, b"\0"))
        self.u64(addr + 72, parent)
        return addr

    def ring(self, head: int, nodes: list[int]) -> None:
        ring = [head, *nodes]
        for k, node in enumerate(ring):
            self.u64(node, ring[(k + 1) % len(ring)])
            self.u64(node + 8, ring[k - 1])

    def group(self, tasks: list[int]) -> None:
        signal = tasks[0] + TASK_SIZE
        self.ring(signal, [t + 48 for t in tasks])
        for t in tasks:
            self.u64(t + 64, signal)

    def obj(self, addr: int) -> Object:
        return Object(self.prog, self.prog.pointer_type("struct task_struct"), addr)
