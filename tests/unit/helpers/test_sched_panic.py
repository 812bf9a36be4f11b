"""sched.h / panic.h helpers on a synthetic kernel: every thread (not only leaders), ps state letters
from the kernel's own task_state_array, a corrupted thread list ends in a marked truncation, taint
letters from taint_flags[], and the panic-line ranking. Also pins each helper module's __all__."""

from __future__ import annotations

import importlib
import inspect

import pytest

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.helpers.linux.panic import panic_message_or_none, taint_flags, tainted
from kcrash.helpers.linux.printk import PrintkRecord
from kcrash.helpers.linux.sched import for_each_task, task_state_to_char
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.btf_write import BtfWriter
from kcrash.types.object import Object
from kcrash.types.program import Program

BASE = 0xFFFFFFFF81000000
TASK_SIZE = 0x60
INIT_TASK = BASE + 0x1000
STATES = BASE + 0x100  # task_state_array: 9 pointers
STATE_TEXT = BASE + 0x200
TAINTS = BASE + 0x300
TAINTED_MASK = BASE + 0x400
END = BASE + 0x4000


class Kernel:
    """task_struct {pid, tgid, __state, exit_state, comm[16], tasks, thread_node, signal, real_parent};
    signal_struct {thread_head, nr_threads}; struct taint_flag {c_true, c_false, module}."""

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
            ("signal", sig_ptr, 512, 0), ("real_parent", task_ptr, 576, 0)])
        w.add_struct("taint_flag", 3, [("c_true", c, 0, 0), ("c_false", c, 8, 0), ("module", b, 16, 0)])
        self.memory = bytearray(END - BASE)
        segments = SegmentMap()
        segments.add_segment(BASE, len(self.memory), lambda a, n: bytes(self.memory[a - BASE:a - BASE + n]),
                             physical=False)
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

    def put(self, addr: int, data: bytes) -> None:
        self.memory[addr - BASE:addr - BASE + len(data)] = data

    def u64(self, addr: int, value: int) -> None:
        self.put(addr, value.to_bytes(8, "little"))

    def task(self, pid: int, tgid: int, comm: bytes, state: int = 0, exit_state: int = 0) -> int:
        addr = self.next_task
        self.next_task += TASK_SIZE + 0x20  # signal_struct right after the task
        for off, value in ((0, pid), (4, tgid), (8, state), (12, exit_state)):
            self.put(addr + off, value.to_bytes(4, "little"))
        self.put(addr + 16, comm.ljust(16, b"\0"))
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


@pytest.fixture
def kernel() -> Kernel:
    k = Kernel()
    a1, a2 = k.task(1, 1, b"init"), k.task(2, 1, b"init-thread", state=2)
    b = k.task(3, 3, b"kworker/0:1", state=0x402)
    k.ring(INIT_TASK + 32, [a1 + 32, b + 32])  # group leaders only on init_task.tasks
    k.group([a1, a2])
    k.group([b])
    return k


def test_for_each_task_yields_every_thread(kernel: Kernel) -> None:
    walk = for_each_task(kernel.prog)
    got = [(int(t.pid), t.comm.string_()) for t in walk]
    assert got == [(1, b"init"), (2, b"init-thread"), (3, b"kworker/0:1")]
    assert walk.truncated is None


@pytest.mark.parametrize(("state", "exit_state", "letter"), [
    (0, 0, "R"), (1, 0, "S"), (2, 0, "D"), (4, 0, "T"), (8, 0, "t"), (0, 16, "X"), (0, 32, "Z"),
    (64, 0, "P"), (0x402, 0, "I"), (0x401, 0, "S"), (0x80, 0, "R"),
])
def test_state_letters_follow_task_state_array(kernel: Kernel, state: int, exit_state: int, letter: str) -> None:
    addr = kernel.task(9, 9, b"x", state=state, exit_state=exit_state)
    assert task_state_to_char(kernel.obj(addr)) == letter


def test_a_cycle_in_a_thread_list_is_a_marked_truncation(kernel: Kernel) -> None:
    c1, c2, c3 = kernel.task(10, 10, b"a"), kernel.task(11, 10, b"b"), kernel.task(12, 10, b"c")
    kernel.group([c1, c2, c3])
    kernel.u64(c3 + 48, c2 + 48)  # the third thread points back to the second
    kernel.ring(INIT_TASK + 32, [c1 + 32])
    walk = for_each_task(kernel.prog)
    assert [int(t.pid) for t in walk] == [10, 11, 12]
    assert walk.truncated is not None and "cycle" in walk.truncated and "pid 10" in walk.truncated


def test_a_null_signal_yields_the_leader_alone(kernel: Kernel) -> None:
    lone = kernel.task(20, 20, b"exiting")
    kernel.ring(INIT_TASK + 32, [lone + 32])
    assert [int(t.pid) for t in for_each_task(kernel.prog)] == [20]


def test_taint_letters(kernel: Kernel) -> None:
    assert taint_flags(kernel.prog) == [("P", "G"), ("F", " "), ("S", " "), ("R", " "), ("D", " ")]
    assert tainted(kernel.prog) == ""
    kernel.u64(TAINTED_MASK, 0b10010)
    assert tainted(kernel.prog) == "GF  D"


def _record(seq: int, text: bytes) -> PrintkRecord:
    return PrintkRecord(seq, seq * 1000, text, None, 6, 0, 0)


def test_panic_message_prefers_the_panic_line() -> None:
    records = [_record(0, b"Oops: invalid opcode: 0000 [#1] SMP"),
               _record(1, b"kernel BUG at drivers/x.c:12!\nnext line"),
               _record(2, b"Kernel panic - not syncing: Fatal exception"),
               _record(3, b"Oops: again")]
    assert panic_message_or_none(records) == "Kernel panic - not syncing: Fatal exception"
    assert panic_message_or_none(records[:2]) == "kernel BUG at drivers/x.c:12!"
    assert panic_message_or_none([_record(0, b"all quiet")]) is None


@pytest.mark.parametrize("name", ["cpumask", "module", "panic", "percpu", "sched"])
def test_helper_modules_export_their_public_functions(name: str) -> None:
    module = importlib.import_module(f"kcrash.helpers.linux.{name}")
    public = {n for n, v in vars(module).items() if not n.startswith("_") and getattr(v, "__module__", None)
              == module.__name__ and (inspect.isfunction(v) or inspect.isclass(v))}
    assert public <= set(module.__all__)
    assert module.__doc__ is not None and "include/linux/" in module.__doc__
