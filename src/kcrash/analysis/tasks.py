"""
kcrash.analysis.tasks
=====================

What crash's per-task commands show beyond ``ps``: ``waitq`` (the tasks waiting on a wait queue,
:func:`wait_queue`), ``task`` (a ``task_struct`` formatted, or some of its members,
:func:`task_members`), ``foreach`` (the tasks a filter selects, :func:`select_tasks`) and the
``ps`` variants ``-p`` (parentage, :func:`task_parentage`), ``-c`` (children, :func:`task_children`),
``-t`` (run time, start time, user and system time) and ``-l`` (last arrival on a CPU)
(:func:`task_times`). Models are frozen dataclasses; the rows are :class:`~kcrash.model.TaskRow`.
What each ``foreach`` command does per task is its own analysis (:mod:`~kcrash.analysis.backtrace`,
:mod:`~kcrash.analysis.vmas`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kcrash import model
from kcrash.analysis import triage
from kcrash.errors import ExpressionError, FaultError, KcrashError, TypeLookupError, ValidationError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.cpumask import for_each_present_cpu
from kcrash.helpers.linux.list import ListWalk, list_for_each, list_for_each_entry
from kcrash.helpers.linux.panic import uptime_ns_or_none
from kcrash.helpers.linux.sched import for_each_task, idle_task, task_ps_layout
from kcrash.types.cexpr import SymbolObject, evaluate
from kcrash.types.format import format_object, object_to_json
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object, offsetof
from kcrash.types.program import Program

__all__ = [
    "STATE_NAMES",
    "TaskFilter",
    "TaskMember",
    "TaskTimes",
    "WaitQueue",
    "Waiter",
    "parse_states",
    "select_tasks",
    "task_children",
    "task_members",
    "task_parentage",
    "task_times",
    "wait_queue",
    "wait_queue_at",
]

#: crash's two-letter state names (``foreach -s``/``ps -S``) and the ``ps`` letters they stand for
STATE_NAMES = {
    "RU": "R",
    "IN": "S",
    "UN": "D",
    "ST": "T",
    "TR": "t",
    "DE": "X",
    "ZO": "Z",
    "PA": "P",
    "ID": "I",
    "WA": "W",
    "NE": "N",
}
#: ``PF_KTHREAD`` (``include/linux/sched.h``): the task is a kernel thread
PF_KTHREAD = 0x00200000
#: the most waiters read from one queue, and the deepest parent chain (a damaged dump ends there)
_MAX_WAITERS = 100_000
_MAX_DEPTH = 10_000
_WAIT = "wait_queue_head"
_SWAIT = "swait_queue_head"


# -- waitq --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Waiter:
    """One entry of a wait queue: its address, the task (``private``, or ``task`` of a simple
    wait queue's entry), that task's ``pid``/``comm`` when it is one of the dump's tasks (else
    None), and for a ``wait_queue_entry`` its ``flags`` and wake function's symbol."""

    entry: int
    task: int
    pid: int | None
    comm: str | None
    func: str | None = None
    flags: int | None = None


@dataclass(frozen=True, slots=True)
class WaitQueue:
    """``waitq ADDR``: the queue's address and kind (``wait_queue_head`` or ``swait_queue_head``),
    how the kind was decided (``type``: the symbol's type; ``entries``: its entries validated as
    one kind's; ``empty``: nothing to tell), the waiters in queue order and why the walk ended
    early (None if it did not)."""

    address: int
    kind: str
    decided_by: str
    waiters: tuple[Waiter, ...]
    truncated: str | None


def wait_queue(prog: Program, address: int, type: Type | None = None) -> WaitQueue:
    """The waiters of the wait queue at ``address``.

    :param address: a ``wait_queue_head_t``, a ``struct swait_queue_head`` or a ``struct
        completion`` (its ``wait``)
    :param type: the object's type where known (a typed global's); without it the kind is the one
        whose entries hold tasks (a simple queue's ``task``) or wake functions (``func``), of the
        queue at ``address`` or else of a ``struct completion``'s there (the first whose list is a
        ring)
    :raises ValidationError: the address holds no wait queue of a known kind
    """
    if type is not None:
        kind, address = _kind_of_type(type, address)
        return _queue(prog, address, kind, "type")
    tasks = _task_addresses(prog)
    why = []
    for head in _candidate_heads(prog, address):
        try:
            return _validated(prog, head, tasks)
        except ValidationError as exc:
            why.append(str(exc))
    raise ValidationError(f"{address:#x} is not a wait queue: {'; '.join(why)}")


def _candidate_heads(prog: Program, address: int) -> list[int]:
    # the queue head at address, then the wait member of a struct completion there
    completion = prog.find_type_or_none("struct completion")
    return [address] + ([address + offsetof(completion, "wait")] if completion is not None else [])


def _validated(prog: Program, address: int, tasks: set[int]) -> WaitQueue:
    # the kind whose entries the list at address holds (both kinds keep the list at the same offset)
    nodes, truncated = _nodes(prog, address + _list_offset(prog, _WAIT))
    if truncated is not None:
        raise ValidationError(f"the list at {address:#x} is no ring ({truncated})")
    if not nodes:
        return WaitQueue(address, _WAIT, "empty", (), None)
    if all(_swait_task(prog, node) in tasks for node in nodes):
        return _queue(prog, address, _SWAIT, "entries", tasks)
    if all(_is_function(prog, _wait_func(prog, node)) for node in nodes):
        return _queue(prog, address, _WAIT, "entries", tasks)
    raise ValidationError(
        f"the {len(nodes)} entries at {address:#x} hold neither tasks (struct swait_queue) nor "
        f"wake functions (wait_queue_entry_t)"
    )


def wait_queue_at(prog: Program, text: str) -> WaitQueue:
    """``waitq`` of a C expression (``kcrash_test_completion``, ``&rcu_state.gp_wq``, an address):
    typed by the expression's type when it has one (a pointer is followed), else validated
    by its entries (:func:`wait_queue`)."""
    obj = evaluate(prog, text, usable=False)
    if isinstance(obj, SymbolObject) and not obj.typed_:
        return wait_queue(prog, int(obj.address_ or 0))
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER:
        return _typed_or_validated(prog, int(obj), t.type)
    if t.kind is TypeKind.INT:
        return wait_queue(prog, int(obj) & (1 << 64) - 1)
    if obj.address_ is None:
        raise ExpressionError(f"{text!r} is a value with no address")
    return wait_queue(prog, obj.address_, obj.type_)


def _typed_or_validated(prog: Program, address: int, target: Type) -> WaitQueue:
    # a void * (or any pointer to something not a queue) is validated by its entries
    if target.strip_typedefs().tag in (_WAIT, _SWAIT, "completion"):
        return wait_queue(prog, address, target)
    return wait_queue(prog, address)


def _kind_of_type(t: Type, address: int) -> tuple[str, int]:
    # A wait_queue_head_t, a struct swait_queue_head, or a struct completion (its wait member).
    s = t.strip_typedefs()
    if s.tag in (_WAIT, _SWAIT):
        return s.tag, address
    if s.tag == "completion":
        wait = s.member("wait")[0].type.strip_typedefs()
        return str(wait.tag), address + offsetof(s, "wait")
    raise ValidationError(
        f"an object of type {t.type_name()} is not a wait queue (wait_queue_head_t, "
        f"struct swait_queue_head or struct completion)"
    )


def _list_offset(prog: Program, kind: str) -> int:
    # offset of the list head in the queue head (the same 8 in both kinds on x86-64)
    t = prog.type(f"struct {kind}")
    if kind == _SWAIT:
        return offsetof(t, "task_list")
    return offsetof(t, "head") if t.has_member("head") else offsetof(t, "task_list")


def _nodes(prog: Program, head: int) -> tuple[list[int], str | None]:
    walk = list_for_each(Object(prog, prog.pointer_type("struct list_head"), head), limit=_MAX_WAITERS)
    nodes = [int(node) for node in walk]
    return nodes, walk.truncated


def _entry_layout(prog: Program) -> tuple[Type, int]:
    # Since Linux kernel commits ac6424b981bc and 2055da97389a (v4.13): wait_queue_entry_t, linked by entry.
    t = prog.find_type_or_none("struct wait_queue_entry")
    if t is not None:
        return t, offsetof(t, "entry")
    t = prog.type("wait_queue_t").strip_typedefs()
    return t, offsetof(t, "task_list")


def _swait_task(prog: Program, node: int) -> int:
    t = prog.type("struct swait_queue")
    try:
        return int(prog.read_u64(node - offsetof(t, "task_list") + offsetof(t, "task")))
    except FaultError:
        return 0


def _wait_func(prog: Program, node: int) -> int:
    t, link = _entry_layout(prog)
    try:
        return int(prog.read_u64(node - link + offsetof(t, "func")))
    except FaultError:
        return 0


def _function_name_or_none(prog: Program, address: int) -> str | None:
    found = prog.symbolize_or_none(address)
    if found is None or found[0].kind not in "Tt" or found[1]:
        return None
    return str(found[0].name)


def _is_function(prog: Program, address: int) -> bool:
    return _function_name_or_none(prog, address) is not None


def _task_addresses(prog: Program) -> set[int]:
    # every task, and the idle tasks where the run queues can be read (they wait on no queue)
    tasks = {int(task) for task in for_each_task(prog)}
    with contextlib.suppress(KcrashError):
        tasks.update(int(idle_task(prog, cpu)) for cpu in for_each_present_cpu(prog))
    return tasks


def _queue(prog: Program, address: int, kind: str, decided_by: str, tasks: set[int] | None = None) -> WaitQueue:
    tasks = _task_addresses(prog) if tasks is None else tasks
    nodes, truncated = _nodes(prog, address + _list_offset(prog, kind))
    waiters = tuple(_swaiter(prog, node, tasks) if kind == _SWAIT else _waiter(prog, node, tasks) for node in nodes)
    return WaitQueue(address, kind, decided_by, waiters, truncated)


def _named(prog: Program, entry: int, task: int, tasks: set[int], **extra: Any) -> Waiter:
    if task not in tasks:
        return Waiter(entry, task, None, None, **extra)
    row = task_ps_layout(prog).read(prog, task)
    return Waiter(entry, task, row.value("pid"), row.string("comm").decode("utf-8", "backslashreplace"), **extra)


def _swaiter(prog: Program, node: int, tasks: set[int]) -> Waiter:
    t = prog.type("struct swait_queue")
    entry = node - offsetof(t, "task_list")
    return _named(prog, entry, _swait_task(prog, node), tasks)


def _waiter(prog: Program, node: int, tasks: set[int]) -> Waiter:
    t, link = _entry_layout(prog)
    entry = node - link
    fields = StructLayout(t, ("flags", "private", "func")).read(prog, entry)
    func = fields.value("func")
    return _named(
        prog,
        entry,
        fields.value("private"),
        tasks,
        func=_function_name_or_none(prog, func) or f"{func:#x}",
        flags=fields.value("flags"),
    )


# -- task ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskMember:
    """One member of a task (``task -R``): its path, its value formatted (crash's ``name = value``)
    and as JSON."""

    name: str
    text: str
    value: Any


def _member(obj: Object, path: str) -> Object:
    # a dotted member path (se.vruntime, sched_info.last_arrival); TypeLookupError if there is none
    for name in path.split("."):
        try:
            obj = obj.member_(name)
        except (TypeLookupError, ExpressionError) as exc:
            raise TypeLookupError(f"struct task_struct has no member {path!r}") from exc
    return obj


def task_members(task: Object, paths: Sequence[str] = (), *, radix: int = 10) -> tuple[TaskMember, ...]:
    """The members ``paths`` (dotted: ``se.vruntime``) of ``task`` (``struct task_struct *``), or
    the whole structure as one member named ``task_struct`` when ``paths`` is empty; integers in
    ``radix`` 10 or 16.

    :raises TypeLookupError: a path names no member

    >>> [m.text for m in task_members(task, ["pid", "comm"])]  # doctest: +SKIP
    ['1', '"init"']
    """
    obj = task[0]
    if not paths:
        return (TaskMember("task_struct", _value_text(obj, radix), object_to_json(obj)),)
    return tuple(
        TaskMember(path, _value_text(member, radix), object_to_json(member))
        for path, member in ((p, _member(obj, p)) for p in paths)
    )


def _value_text(obj: Object, radix: int) -> str:
    # format_object's text without its leading "(type)"
    return format_object(obj, radix=radix)[len(obj.type_.type_name()) + 2 :]


# -- foreach ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks ``foreach`` (and ``ps``) take: ``states`` ps letters (empty: any), ``kernel`` True
    for kernel threads only, False for user tasks only, None for both; ``pids``, ``tasks`` and
    ``comms`` (any match; all empty: every task)."""

    states: frozenset[str] = frozenset()
    kernel: bool | None = None
    pids: frozenset[int] = frozenset()
    tasks: frozenset[int] = frozenset()
    comms: frozenset[str] = frozenset()


def parse_states(text: str) -> frozenset[str]:
    """``RU,UN`` / ``UN`` / ``D`` → the ps letters (crash's two-letter names or the letters).

    :raises ValueError: an unknown state
    """
    letters = set()
    for word in (w.strip() for w in text.split(",") if w.strip()):
        if word.upper() in STATE_NAMES:
            letters.add(STATE_NAMES[word.upper()])
        elif len(word) == 1 and word in "RSDTtXZPIWN":
            letters.add(word)
        else:
            raise ValueError(f"unknown task state {word!r} (one of {', '.join(STATE_NAMES)} or a ps letter)")
    return frozenset(letters)


def _named_match(row: model.TaskRow, f: TaskFilter) -> bool:
    if not (f.pids or f.tasks or f.comms):
        return True
    return row.pid in f.pids or row.task in f.tasks or row.comm in f.comms


def _is_kernel_thread(prog: Program, row: model.TaskRow) -> bool:
    # PF_KTHREAD in task->flags; the idle tasks (pid 0) count as kernel threads whatever their flags say.
    if row.pid == 0:
        return True
    return bool(StructLayout(prog.type("struct task_struct"), "flags").read_value(prog, row.task, "flags") & PF_KTHREAD)


def select_tasks(prog: Program, f: TaskFilter) -> tuple[tuple[model.TaskRow, ...], str | None]:
    """The ``ps`` rows of the tasks ``f`` selects, idle tasks first then the task list order, and
    why the task walk stopped early (None if it did not)."""
    rows, truncated = triage.task_rows(prog)
    picked = [r for r in rows if _named_match(r, f) and (not f.states or r.state in f.states)]
    if f.kernel is not None:
        picked = [r for r in picked if _is_kernel_thread(prog, r) is f.kernel]
    return tuple(picked), truncated


# -- ps -p / -c ---------------------------------------------------------------------------------


def task_parentage(prog: Program, task: Object) -> tuple[model.TaskRow, ...]:
    """``ps -p``: the ``real_parent`` chain of ``task`` from the first ancestor (``init_task``,
    whose parent is itself) down to ``task``.

    :raises ValidationError: the chain is longer than any real one (a damaged dump)
    """
    layout = task_ps_layout(prog)
    chain = [int(task)]
    while len(chain) <= _MAX_DEPTH:
        parent = layout.read_value(prog, chain[-1], "real_parent")
        if parent in (0, chain[-1]) or parent in chain:
            return _rows(prog, reversed(chain))
        chain.append(parent)
    raise ValidationError(f"the parents of task {int(task):#x} go deeper than {_MAX_DEPTH}")


def task_children(prog: Program, task: Object) -> tuple[tuple[model.TaskRow, ...], str | None]:
    """``ps -c``: the children of ``task`` (its ``children`` list, linked by ``sibling``) and why
    the walk stopped early."""
    walk: ListWalk = list_for_each_entry("struct task_struct", task.children, "sibling", limit=_MAX_DEPTH)
    children = [int(child) for child in walk]
    return _rows(prog, children), walk.truncated


def _rows(prog: Program, addresses: Iterable[int]) -> tuple[model.TaskRow, ...]:
    task_type = prog.pointer_type("struct task_struct")
    return tuple(triage.task_backtrace_row(prog, Object(prog, task_type, a)) for a in addresses)


# -- ps -t / -l ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskTimes:
    """``ps -t``/``-l`` of one task, in nanoseconds: ``start_time`` (``CLOCK_MONOTONIC``),
    ``start_boottime`` (``CLOCK_BOOTTIME``; None where the kernel lacks it), ``utime``, ``stime``,
    ``run_time`` (the uptime at the crash less ``start_boottime``; None if either is unknown) and
    ``last_arrival`` (``sched_info.last_arrival``: when it last ran; None without
    ``CONFIG_SCHED_INFO``)."""

    task: model.TaskRow
    start_time: int
    start_boottime: int | None
    utime: int
    stime: int
    run_time: int | None
    last_arrival: int | None


#: the members read, each with the names it had (newest first)
_TIME_MEMBERS: dict[str, tuple[str, ...]] = {
    "start_time": ("start_time",),
    "utime": ("utime",),
    "stime": ("stime",),
    # Since Linux kernel commit cf25e24db61c (v5.5) real_start_time is start_boottime.
    "start_boottime": ("start_boottime", "real_start_time"),
    "last_arrival": ("sched_info.last_arrival",),
}


def _time_layout(prog: Program) -> StructLayout:
    t = prog.type("struct task_struct")
    members = {}
    for name, paths in _TIME_MEMBERS.items():
        try:
            StructLayout(t, {name: paths})
        except (TypeLookupError, ExpressionError):
            continue
        members[name] = paths
    return StructLayout(t, members)


def task_times(prog: Program, rows: Sequence[model.TaskRow]) -> tuple[TaskTimes, ...]:
    """``ps -t``: the times of the tasks of ``rows``."""
    layout = _time_layout(prog)
    uptime = uptime_ns_or_none(prog)
    out = []
    for row in rows:
        fields = layout.read(prog, row.task)
        boot = _value_or_none(fields, layout, "start_boottime")
        out.append(
            TaskTimes(
                row,
                fields.value("start_time"),
                boot,
                fields.value("utime"),
                fields.value("stime"),
                None if uptime is None or boot is None else uptime - boot,
                _value_or_none(fields, layout, "last_arrival"),
            )
        )
    return tuple(out)


def _value_or_none(fields: Any, layout: StructLayout, name: str) -> int | None:
    try:
        layout.offsetof(name)
    except KeyError:
        return None
    return int(fields.value(name))
