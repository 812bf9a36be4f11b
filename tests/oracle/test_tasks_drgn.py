"""Oracle for issue 18's per-task commands: ``waitq``, ``task -R``, ``foreach`` and ``ps -p/-c/-t/-l``.
kcrash opens each lab dump with NO vmlinux (kallsyms, in-memory BTF); drgn is given the Debian -dbg
vmlinux and the module's .ko:

* ``waitq``: the waiters of real wait queues equal drgn's ``waitqueue_for_each_task`` /
  ``swait_for_each_task`` walks of the same list, in order: ``oom_reaper_wait`` (the
  ``oom_reaper`` kthread sleeps there), node 0's ``kswapd_wait`` (``kswapd0``), ``rcu_state.gp_wq``
  (a simple wait queue: the RCU grace-period kthread), and when the lab module plants it,
  ``kcrash_test_completion`` (``kcrash_wait_comp``). BTF types none of these globals, so kcrash tells
  the kind by validating the entries: it must say ``wait_queue_head`` and ``swait_queue_head`` as
  drgn's typed objects are.
  The lab's ``nc -l`` listener sleeps on its socket's wait queue: kcrash's entries of every ``nc``
  socket queue equal drgn's ``waitqueue_for_each_entry``, and the listener's names ``nc``.
* ``task -R pid,comm,prio``: every task's members equal drgn's reads; ``task PID --json`` through the CLI.
* ``foreach files -u``: every user task's descriptors and files equal drgn's ``for_each_file``.
* ``foreach bt -s UN``: exactly the tasks drgn's ``task_state_to_char`` calls ``D``, each with the
  kernel pcs of drgn's ``stack_trace(task)``; ``foreach ps -k``/``-u``: drgn's ``PF_KTHREAD`` split.
* ``ps -p``: every task's ``real_parent`` chain equals drgn's; ``ps -c``: ``kthreadd``'s and
  ``init``'s children equal drgn's walk of ``children``/``sibling``; ``ps -t``/``-l``: every task's
  ``start_time``, ``start_boottime``, ``utime``, ``stime`` and ``sched_info.last_arrival`` equal drgn's.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kcrash.analysis.target import open_target
from kcrash.analysis.tasks import (
    TaskFilter,
    select_tasks,
    task_children,
    task_members,
    task_parentage,
    task_times,
    wait_queue_at,
)
from kcrash.cli import main
from kcrash.cli.app import kcrash
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.drgn_oracle import KDUMP_READABLE, LAB_CASES, case_id, drgn_program, skip_lost_slab
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.cpumask import for_each_possible_cpu  # noqa: E402
from drgn.helpers.linux.fs import for_each_file  # noqa: E402
from drgn.helpers.linux.list import list_for_each_entry  # noqa: E402
from drgn.helpers.linux.pid import find_task, for_each_task  # noqa: E402
from drgn.helpers.linux.sched import idle_task, task_state_to_char  # noqa: E402
from drgn.helpers.linux.swait import swait_for_each_task  # noqa: E402
from drgn.helpers.linux.wait import waitqueue_for_each_entry, waitqueue_for_each_task  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_READABLE
_USER_TOP = 1 << 47
_PF_KTHREAD = 0x00200000


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path], kcrash_cache: Path) -> Iterator[tuple[Path, Program, Any]]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    prog = open_target(out / "vmcore.elf", kcrash_cache)
    yield out, prog, dprog
    prog.close()


def _drgn_tasks(dprog: Any) -> dict[int, Any]:
    tasks = {t.value_(): t for t in for_each_task(dprog)}
    for cpu in for_each_possible_cpu(dprog):
        tasks.setdefault(idle_task(dprog, cpu).value_(), idle_task(dprog, cpu))
    return tasks


def _task(prog: Program, address: int) -> Object:
    return Object(prog, prog.pointer_type("struct task_struct"), address)


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(kcrash, list(args))
    assert result.exit_code == 0, result.output
    return from_hex(json.loads(result.output))


# -- waitq --------------------------------------------------------------------------------------

def _queues(dprog: Any) -> list[tuple[str, str, list[int]]]:
    # (kcrash's argument, kind, drgn's tasks) for each queue this kernel has
    out = []
    wq = dprog["oom_reaper_wait"].address_of_()
    out.append(("oom_reaper_wait", "wait_queue_head", [t.value_() for t in waitqueue_for_each_task(wq)]))
    kswapd = dprog["node_data"][0].kswapd_wait.address_of_()
    out.append((hex(kswapd.value_()), "wait_queue_head", [t.value_() for t in waitqueue_for_each_task(kswapd)]))
    gp = dprog["rcu_state"].gp_wq.address_of_()
    out.append((hex(gp.value_()), "swait_queue_head", [t.value_() for t in swait_for_each_task(gp)]))
    with contextlib.suppress(KeyError, LookupError):
        comp = dprog["kcrash_test_completion"]
        out.append(("kcrash_test_completion", "swait_queue_head",
                    [t.value_() for t in swait_for_each_task(comp.wait.address_of_())]))
    return out


def test_waitq_equals_drgns_walk(crash: tuple[Path, Program, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _, prog, dprog = crash
    queues = _queues(dprog)
    tasks = _drgn_tasks(dprog)
    for arg, kind, theirs in queues:
        ours = wait_queue_at(prog, arg)
        assert [w.task for w in ours.waiters] == theirs, arg
        assert ours.truncated is None
        if theirs:
            assert ours.kind == kind, arg
        # the same queue named with its type (a cast) is taken as that type, with the same waiters
        head = f"struct {kind}" if kind == "swait_queue_head" else "wait_queue_head_t"
        typed = wait_queue_at(prog, f"*({head} *){ours.address:#x}")
        assert (typed.decided_by, typed.kind, typed.waiters) == ("type", kind, ours.waiters), arg
        for w in ours.waiters:
            theirs_task = tasks[w.task]
            assert (w.pid, w.comm) == (theirs_task.pid.value_(),
                                       theirs_task.comm.string_().decode(errors="backslashreplace")), arg
    waiting = {arg: len(theirs) for arg, _, theirs in queues}
    with capsys.disabled():
        print(f"\n  waitq: waiters per queue {waiting}")
    assert waiting["oom_reaper_wait"] == 1
    assert sum(waiting.values()) >= 2


def test_waitq_of_sockets_equals_drgns_entries(crash: tuple[Path, Program, Any]) -> None:
    # The lab's nc processes sleep on their sockets' wait queues (sock->wq.wait): the listener on
    # 4322 in accept() (a default wake function: private is the task), the connected ones in poll()
    # (pollwake: private is the poll table, no task). The address comes from drgn's walk of the
    # task's files; kcrash tells the kind by the entries.
    _, prog, dprog = crash
    socket_ops = dprog["socket_file_ops"].address_of_().value_()
    queues = []
    for t in for_each_task(dprog):
        if t.comm.string_() != b"nc":
            continue
        for _, f in for_each_file(t):
            if f and f.f_op.value_() == socket_ops:
                queues.append((t.value_(), drgn.cast("struct socket *", f.private_data).wq.wait.address_of_()))
    by_task = 0
    for task, queue in queues:
        entries = list(waitqueue_for_each_entry(queue))
        theirs = [(e.value_(), e.private.value_()) for e in entries]
        ours = wait_queue_at(prog, hex(queue.value_()))
        assert [(w.entry, w.task) for w in ours.waiters] == theirs
        if not entries:
            continue
        assert ours.kind == "wait_queue_head" and ours.decided_by == "entries"
        funcs = [dprog.symbol(e.func.value_()).name for e in entries]
        assert [w.func for w in ours.waiters] == funcs
        # a task's own entry names it; a poll table's entry (pollwake) is no task
        expected = [(None, None) if f == "pollwake" else (task, "nc") for f in funcs]
        assert [(w.task if w.comm else None, w.comm) for w in ours.waiters] == expected
        by_task += sum(1 for f in funcs if f != "pollwake")
    assert by_task >= 1, queues


def test_waitq_cli_json_and_refusals(crash: tuple[Path, Program, Any], capsys: pytest.CaptureFixture[str]) -> None:
    out, _, dprog = crash
    data = _cli("waitq", str(out / "vmcore.elf"), "oom_reaper_wait", "--json")
    reaper = [t.value_() for t in waitqueue_for_each_task(dprog["oom_reaper_wait"].address_of_())]
    assert [w["task"] for w in data["waiters"]] == reaper and data["kind"] == "wait_queue_head"
    assert data["waiters"][0]["comm"] == "oom_reaper" and data["waiters"][0]["func"] == "autoremove_wake_function"
    capsys.readouterr()
    for bad in ("kthreadd", "0x10", "no_such_symbol_here", "jiffies"):
        code = main(["waitq", str(out / "vmcore.elf"), bad])
        printed, err = capsys.readouterr()
        assert code != 0 and printed == "" and err.count("\n") == 1 and "Traceback" not in err, (bad, err)


# -- task -R ------------------------------------------------------------------------------------

def test_task_members_equal_drgn(crash: tuple[Path, Program, Any]) -> None:
    out, prog, dprog = crash
    tasks = _drgn_tasks(dprog)
    for address, t in tasks.items():
        ours = {m.name: m.value for m in task_members(_task(prog, address), ["pid", "comm", "prio", "se.vruntime"])}
        assert ours == {"pid": t.pid.value_(), "comm": t.comm.string_().decode(errors="backslashreplace"),
                        "prio": t.prio.value_(), "se.vruntime": hex(t.se.vruntime.value_())}, hex(address)
    data = _cli("task", str(out / "vmcore.elf"), "1", "-R", "pid,comm,prio", "--json")
    init = find_task(dprog, 1)
    assert [(m["name"], m["value"]) for m in data[0]["members"]] == [
        ("pid", 1), ("comm", init.comm.string_().decode(errors="backslashreplace")), ("prio", init.prio.value_())]
    assert data[0]["task"]["task"] == init.value_()


def test_task_whole_struct_formats(crash: tuple[Path, Program, Any]) -> None:
    _, prog, dprog = crash
    init = next(t for t in _drgn_tasks(dprog).values() if t.pid.value_() == 1)
    (whole,) = task_members(_task(prog, init.value_()))
    assert whole.value["pid"] == 1 and whole.value["tgid"] == 1
    assert whole.value["real_parent"] == hex(init.real_parent.value_())  # pointers: "0x..." as in --json
    assert "\t.pid = 1,\n" in whole.text and "\t.comm = \"" in whole.text


# -- foreach ------------------------------------------------------------------------------------

def _drgn_pcs(dprog: Any, task: Any) -> list[int]:
    pcs = []
    for frame in dprog.stack_trace(task):
        if frame.is_inline:
            continue
        if frame.pc < _USER_TOP:
            break
        pcs.append(frame.pc)
    return pcs


def test_foreach_bt_un_is_drgns_d_state_tasks(crash: tuple[Path, Program, Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out, _, dprog = crash
    _check_foreach_bt_un(out, dprog, capsys)


@pytest.mark.parametrize("kernel", ["6.12", "6.1"])
def test_foreach_bt_un_on_a_hung_task_panic(kernel: str, lab_crash: Callable[..., Path],
                                            lab_vmlinux_dbg: Callable[[str], Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    # HUNG_ABBA: the two kthreads deadlocked on the module's mutexes sleep in D state
    out = lab_crash("HUNG_ABBA", kernel, False)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    comms = _check_foreach_bt_un(out, dprog, capsys)
    assert {"kcrash_abba_a", "kcrash_abba_b"} <= set(comms)


def _check_foreach_bt_un(out: Path, dprog: Any, capsys: pytest.CaptureFixture[str]) -> list[str]:
    tasks = _drgn_tasks(dprog)
    d_state = {a for a, t in tasks.items() if task_state_to_char(t) == "D"}
    data = _cli("foreach", str(out / "vmcore.elf"), "bt", "-s", "UN", "--json")
    assert {entry["task"]["task"] for entry in data} == d_state
    for entry in data:
        ours = [f["pc"] for f in entry["trace"]["frames"] if f["pc"] >= _USER_TOP]
        assert ours == _drgn_pcs(dprog, tasks[entry["task"]["task"]]), entry["task"]["comm"]
    with capsys.disabled():
        print(f"\n  foreach bt -s UN: {sorted(e['task']['comm'] for e in data)}")
    if "kcrash_wait_comp" in {t.comm.string_().decode(errors="backslashreplace") for t in tasks.values()}:
        assert len(d_state) >= 4  # the module's waiters on a mutex, a rwsem, a semaphore, a completion
    return [e["task"]["comm"] for e in data]


def test_foreach_filters_equal_drgn(crash: tuple[Path, Program, Any]) -> None:
    _, prog, dprog = crash
    tasks = _drgn_tasks(dprog)
    kthreads = {a for a, t in tasks.items() if t.flags.value_() & _PF_KTHREAD or t.pid.value_() == 0}
    ours_k, _ = select_tasks(prog, TaskFilter(kernel=True))
    ours_u, _ = select_tasks(prog, TaskFilter(kernel=False))
    assert {r.task for r in ours_k} == kthreads
    assert {r.task for r in ours_u} == set(tasks) - kthreads
    letters = {a: task_state_to_char(t) for a, t in tasks.items()}
    for states in ("RU", "IN", "UN", "ID"):
        from kcrash.analysis.tasks import parse_states

        rows, _ = select_tasks(prog, TaskFilter(states=parse_states(states)))
        assert {r.task for r in rows} == {a for a, c in letters.items() if c in parse_states(states)}, states
    named, _ = select_tasks(prog, TaskFilter(pids=frozenset({1, 2}), comms=frozenset({"kthreadd"})))
    assert sorted(r.pid for r in named) == [1, 2]


def test_foreach_files_equals_drgns_fd_tables(crash: tuple[Path, Program, Any]) -> None:
    # foreach files -u: every user task, each with the (fd, struct file *) pairs of drgn's for_each_file
    out, _, dprog = crash
    tasks = _drgn_tasks(dprog)
    users = {a for a, t in tasks.items() if not t.flags.value_() & _PF_KTHREAD and t.pid.value_()}
    data = _cli("foreach", str(out / "vmcore.elf"), "files", "-u", "--json")
    assert {entry["task"] for entry in data} == users
    for entry in data:
        # drgn also yields a descriptor reserved but not installed (a NULL file; nc's accept in
        # progress), which crash's and kcrash's files leave out
        theirs = [(fd, f.value_()) for fd, f in for_each_file(tasks[entry["task"]]) if f.value_()]
        assert [(f["fd"], f["file"]) for f in entry["files"]] == theirs, entry["comm"]
    assert sum(len(entry["files"]) for entry in data) > 3 * len(data)


# -- ps -p / -c / -t / -l -----------------------------------------------------------------------

def _drgn_chain(task: Any) -> list[int]:
    chain = [task.value_()]
    while True:
        parent = task.real_parent
        if parent.value_() in chain:
            return chain[::-1]
        chain.append(parent.value_())
        task = parent


def test_ps_parentage_equals_drgns_real_parent_walk(crash: tuple[Path, Program, Any]) -> None:
    out, prog, dprog = crash
    tasks = _drgn_tasks(dprog)
    for address, t in tasks.items():
        assert [r.task for r in task_parentage(prog, _task(prog, address))] == _drgn_chain(t), hex(address)
    init = next(a for a, t in tasks.items() if t.pid.value_() == 1)
    data = _cli("ps", str(out / "vmcore.elf"), "-p", "1", "--json")
    assert [p["task"] for p in data[0]["parents"]] == _drgn_chain(tasks[init])


def test_ps_children_equal_drgn(crash: tuple[Path, Program, Any]) -> None:
    _, prog, dprog = crash
    for t in _drgn_tasks(dprog).values():
        if t.pid.value_() not in (1, 2):
            continue
        theirs = [c.value_() for c in list_for_each_entry("struct task_struct", t.children.address_of_(), "sibling")]
        rows, truncated = task_children(prog, _task(prog, t.value_()))
        assert [r.task for r in rows] == theirs and truncated is None
        assert all(r.ppid == t.pid.value_() for r in rows)
        assert len(theirs) > 0


def _drgn_boottime(t: Any) -> int:
    for name in ("start_boottime", "real_start_time"):
        with contextlib.suppress(AttributeError, LookupError):
            return int(getattr(t, name).value_())
    raise AssertionError("no boot time member")


def test_ps_times_equal_drgn(crash: tuple[Path, Program, Any]) -> None:
    out, prog, dprog = crash
    tasks = _drgn_tasks(dprog)
    rows, _ = select_tasks(prog, TaskFilter())
    for times in task_times(prog, rows):
        t = tasks[times.task.task]
        assert (times.start_time, times.start_boottime, times.utime, times.stime, times.last_arrival) == (
            t.start_time.value_(), _drgn_boottime(t), t.utime.value_(), t.stime.value_(),
            t.sched_info.last_arrival.value_()), times.task.comm
    data = _cli("ps", str(out / "vmcore.elf"), "-l", "--json")
    arrivals = [e["last_arrival"] for e in data]
    assert arrivals == sorted(arrivals, reverse=True) and len(data) == len(tasks)
