"""sched.h / panic.h helpers on a synthetic kernel: every thread (not only leaders), ps state letters
from the kernel's own task_state_array, the ps members read in one go equal to the per-member
helpers, a corrupted thread list ends in a marked truncation, taint letters from taint_flags[], and
the panic-line ranking. Also pins each helper module's __all__."""

from __future__ import annotations

import importlib
import inspect
import time

import pytest

from kcrash.errors import ValidationError
from kcrash.helpers.linux.panic import panic_message_or_none, taint_flags, tainted
from kcrash.helpers.linux.printk import PrintkRecord
from kcrash.helpers.linux.sched import for_each_task, task_cpu, task_ps_layout, task_state_to_char, validate_task
from support.task_kernel import INIT_TASK, TAINTED_MASK, Kernel


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


def test_ps_layout_reads_what_the_object_helpers_read(kernel: Kernel) -> None:
    parent = kernel.task(1, 1, b"init")
    addr = kernel.task(42, 40, b"worker", state=0x402, parent=parent, cpu=3)
    members = task_ps_layout(kernel.prog).read(kernel.prog, addr)
    task = kernel.obj(addr)
    assert (members.value("pid"), members.value("tgid"), members.value("real_parent"), members.value("cpu"),
            members.value("state"), members.value("exit_state"), members.string("comm")) == \
        (int(task.pid), int(task.tgid), parent, task_cpu(task), int(task.member_("__state")), 0, b"worker")
    assert task_cpu(task) == 3 and task_state_to_char(task) == "I"


def test_a_cycle_in_a_thread_list_is_a_marked_truncation(kernel: Kernel) -> None:
    c1, c2, c3 = kernel.task(10, 10, b"a"), kernel.task(11, 10, b"b"), kernel.task(12, 10, b"c")
    kernel.group([c1, c2, c3])
    kernel.u64(c3 + 48, c2 + 48)  # the third thread points back to the second
    kernel.ring(INIT_TASK + 32, [c1 + 32])
    walk = for_each_task(kernel.prog)
    assert [int(t.pid) for t in walk] == [10, 11, 12]
    assert walk.truncated is not None and "cycle" in walk.truncated and "pid 10" in walk.truncated


def test_leaders_sharing_one_thread_list_stop_at_the_task_limit(kernel: Kernel) -> None:
    # Corrupt signal pointers: every leader's thread list is the same 40-thread group, so the walk
    # would yield 40 * 40 tasks; the limit bounds the whole walk, not each list.
    tasks = [kernel.task(100 + k, 100, b"t") for k in range(40)]
    kernel.group(tasks)
    kernel.ring(INIT_TASK + 32, [t + 32 for t in tasks])
    began = time.monotonic()
    walk = for_each_task(kernel.prog, limit=100)
    pids = [int(t.pid) for t in walk]
    assert time.monotonic() - began < 1.0
    assert pids == [100 + k % 40 for k in range(100)]
    assert walk.truncated == "stopped at the limit of 100 tasks"


def test_a_null_signal_yields_the_leader_alone(kernel: Kernel) -> None:
    lone = kernel.task(20, 20, b"exiting")
    kernel.ring(INIT_TASK + 32, [lone + 32])
    assert [int(t.pid) for t in for_each_task(kernel.prog)] == [20]


def test_validate_task_accepts_only_listed_tasks(kernel: Kernel) -> None:
    tasks = [int(t) for t in for_each_task(kernel.prog)]
    assert [int(validate_task(kernel.prog, t).pid) for t in tasks] == [1, 2, 3]
    stray = kernel.task(7, 7, b"stray")  # a sane task_struct on no list: not a task of this kernel
    for address in (tasks[0] + 8, stray, INIT_TASK + 0x3000):
        with pytest.raises(ValidationError, match="is not a task \\(not on the task list\\)"):
            validate_task(kernel.prog, address)


def test_validate_task_on_a_damaged_list_checks_the_members(kernel: Kernel) -> None:
    c1, c2 = kernel.task(10, 10, b"a"), kernel.task(11, 10, b"b")
    kernel.group([c1, c2])
    kernel.u64(c2 + 48, c2 + 48)  # the second thread points at itself: the walk is truncated
    kernel.ring(INIT_TASK + 32, [c1 + 32])
    stray = kernel.task(12, 10, b"c")  # cut off by the damage, but a task_struct by its members
    assert int(validate_task(kernel.prog, stray).pid) == 12
    garbage = kernel.task(0, 0, b"\x01\x02")
    kernel.put(garbage, (-5).to_bytes(4, "little", signed=True))
    with pytest.raises(ValidationError, match=r"pid -5 is out of range.*task list is damaged"):
        validate_task(kernel.prog, garbage)
    kernel.put(garbage, (5).to_bytes(4, "little"))
    with pytest.raises(ValidationError, match="is not a task name"):
        validate_task(kernel.prog, garbage)


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
