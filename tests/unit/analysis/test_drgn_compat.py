"""drgn's Program API on a synthetic task kernel (tests/support/task_kernel.py): prog.symbol(s),
threads, thread, crashed_thread without a panic, stack_trace of a PID/task with a stubbed unwinder
(the real unwinding is tests/oracle/test_shell_drgn_compat.py), the frames' drgn text, and
Object's dir() and repr."""

from __future__ import annotations

import pytest

from kcrash.analysis import drgn_compat
from kcrash.analysis.drgn_compat import Symbol, SymbolBinding, SymbolKind, drgn_program
from kcrash.errors import SymbolNotFoundError
from kcrash.types.object import Object
from kcrash.types.program import Program
from kcrash.unwind import Frame, Registers, Trace
from support.task_kernel import BASE, INIT_TASK, Kernel


def _kernel() -> tuple[Kernel, int, int]:
    k = Kernel()
    init = k.task(1, 1, b"init")
    kthreadd = k.task(2, 2, b"kthreadd")
    k.ring(INIT_TASK + 32, [kthreadd + 32, init + 32])  # the task list in reverse PID order
    k.put(INIT_TASK + 16, b"swapper/0")
    return k, init, kthreadd


def test_drgn_program_is_the_same_object_with_drgn_methods() -> None:
    k, _, _ = _kernel()
    prog = drgn_program(k.prog)
    assert prog is k.prog and isinstance(prog, Program) and prog.cache == {}
    assert drgn_program(prog) is prog


def test_symbol_by_name_and_address() -> None:
    prog = drgn_program(_kernel()[0].prog)
    sym = prog.symbol("init_task")
    assert sym == Symbol("init_task", INIT_TASK, 0x4000 - 0x1000, SymbolBinding.GLOBAL, SymbolKind.OBJECT)
    assert prog.symbol(INIT_TASK + 8) == sym and prog.symbol(Object(prog, "long", INIT_TASK)) == sym
    assert prog.symbol(BASE + 0x10).kind is SymbolKind.FUNC and prog.symbol(BASE).binding is SymbolBinding.GLOBAL
    assert prog.symbol("task_state_array").binding is SymbolBinding.LOCAL
    assert repr(sym) == (f"Symbol(name='init_task', address={INIT_TASK:#x}, size=0x3000, "
                         "binding=<SymbolBinding.GLOBAL: 2>, kind=<SymbolKind.OBJECT: 1>)")
    with pytest.raises(LookupError):
        prog.symbol(0x1000)
    with pytest.raises(SymbolNotFoundError):
        prog.symbol("no_such_symbol")


def test_symbols_is_callable_and_still_the_table() -> None:
    prog = drgn_program(_kernel()[0].prog)
    assert [s.name for s in prog.symbols("init_task")] == ["init_task"]  # type: ignore[operator]
    assert [s.name for s in prog.symbols(INIT_TASK + 1)] == ["init_task"]  # type: ignore[operator]
    assert prog.symbols(0x10) == [] and len(prog.symbols()) == 6  # type: ignore[operator]
    assert prog.symbol_address("init_task") == INIT_TASK  # kcrash's own use of prog.symbols


def test_threads_and_thread() -> None:
    k, init, kthreadd = _kernel()
    prog = drgn_program(k.prog)
    assert [(t.tid, t.name) for t in prog.threads()] == [(1, "init"), (2, "kthreadd")]  # PID order
    thread = prog.thread(1)
    assert int(thread.object) == init and repr(thread) == f"Thread(tid=1, name='init', object={init:#x})"
    with pytest.raises(LookupError, match="PID 7"):
        prog.thread(7)
    assert prog.object("init_task").address_ == INIT_TASK
    assert prog.object("struct task_struct", kthreadd).pid == 2


def test_crashed_thread_without_a_panic_is_a_value_error() -> None:
    prog = drgn_program(_kernel()[0].prog)
    with pytest.raises(ValueError, match="crashed thread"):
        prog.crashed_thread()


def _trace(prog: Program, task: Object | int) -> Trace:
    regs = Registers.from_mapping({"rip": BASE + 0x18, "rsp": 0x1000})
    frames = (Frame(BASE + 0x18, 0x1000, True, regs, "regs"), Frame(INIT_TASK + 0x20, 0x1010, True, None, "call"),
              Frame(0x1234, 0x1020, True, None, "call"))
    user = Registers.from_mapping({"rip": 0x47B7A0, "rsp": 0x7FFF0000})
    return Trace(frames, None, user, 0x2000)


def test_stack_trace_of_a_pid_a_task_and_its_text(monkeypatch: pytest.MonkeyPatch) -> None:
    k, init, _ = _kernel()
    prog = drgn_program(k.prog)
    seen: list[int] = []
    monkeypatch.setattr(drgn_compat, "unwind_stack", lambda p, task: seen.append(int(task)) or _trace(p, task))
    trace = prog.stack_trace(1)
    assert seen == [init] and len(trace) == 4
    prog.stack_trace(k.obj(init))
    prog.stack_trace(k.obj(init)[0])
    assert seen == [init] * 3
    assert str(trace).splitlines() == ["#0  _stext+0x18/0x100", "#1  init_task+0x20/0x3000", "#2  0x1234",
                                       "#3  0x47b7a0"]
    frame = trace[0]
    assert (frame.name, frame.pc, frame.sp, frame.interrupted, frame.is_inline) == ("_stext", BASE + 0x18, 0x1000,
                                                                                    True, False)
    assert str(frame) == f"#0 at {BASE + 0x18:#x} (_stext+0x18/0x100) in _stext"
    assert frame.registers()["rip"] == BASE + 0x18 and frame.register("rsp") == 0x1000
    assert trace[2].name is None and str(trace[2]) == "#2 at 0x1234"
    assert trace[3].interrupted and trace[3].registers()["rsp"] == 0x7FFF0000
    with pytest.raises(LookupError):
        trace[1].register("rbx")
    with pytest.raises(LookupError):
        frame.source()
    assert [f.pc for f in trace] == [BASE + 0x18, INIT_TASK + 0x20, 0x1234, 0x47B7A0]
    assert prog.thread(1).stack_trace()[1].symbol().name == "init_task"


def test_object_dir_lists_members_without_recursion() -> None:
    k, init, _ = _kernel()
    task = k.obj(init)
    names = dir(task)
    assert {"pid", "comm", "tasks", "value_", "member_", "format_"} <= set(names)
    assert "pid" in dir(task[0]) and "next" in dir(task.tasks)


def test_object_repr_is_drgns() -> None:
    k, init, _ = _kernel()
    task = k.obj(init)
    assert repr(task) == f"Object(prog, 'struct task_struct *', value={init:#x})"
    assert repr(task.pid) == f"Object(prog, 'int', address={init:#x})"
    assert repr(task.pid.read_()) == "Object(prog, 'int', value=1)"


def test_pid_0_is_no_thread_as_in_drgn() -> None:
    prog = drgn_program(_kernel()[0].prog)
    with pytest.raises(LookupError, match="idle_task"):
        prog.stack_trace(0)
