"""
kcrash.helpers.linux.sched
==========================

Tasks (``include/linux/sched.h``, ``include/linux/sched/signal.h``, ``fs/proc/array.c``):
:func:`for_each_task` yields every thread (not only group leaders) by walking ``init_task.tasks``
and each leader's ``signal->thread_head``, with the bounded walks of
:mod:`~kcrash.helpers.linux.list` so a corrupted list ends in a recorded truncation;
:func:`task_state_to_char` gives the ``ps`` letter (``R S D T t X Z P I``) the way
``fs/proc/array.c`` computes it; :func:`cpu_curr`, :func:`idle_task` and :func:`task_cpu` give the
per-CPU view. For many tasks, :func:`task_ps_layout` reads the members ``ps`` shows with one read
per task (:mod:`~kcrash.helpers.layout`) and :func:`task_state_char` turns them into the letter.
Stack traces are :mod:`~kcrash.helpers.linux.stack`.
"""

from __future__ import annotations

from collections.abc import Iterator

from kcrash.errors import FaultError, KcrashError, SymbolNotFoundError, ValidationError
from kcrash.helpers.layout import StructBytes, StructLayout
from kcrash.helpers.linux.cpumask import for_each_present_cpu
from kcrash.helpers.linux.list import ListWalk, list_for_each_entry
from kcrash.types.model import TypeKind
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu
from kcrash.types.program import Program

__all__ = [
    "cpu_curr",
    "find_task_or_none",
    "for_each_task",
    "idle_task",
    "task_cpu",
    "task_ps_layout",
    "task_state",
    "task_state_char",
    "task_state_to_char",
    "task_thread_count",
    "validate_task",
]

#: ``fs/proc/array.c`` ``task_state_array`` since v4.14: index = bit position + 1 of the state
_DEFAULT_STATE_CHARS = "RSDTtXZPI"
#: ``TASK_NOLOAD`` (``include/linux/sched.h``): ``TASK_IDLE`` is ``TASK_UNINTERRUPTIBLE | TASK_NOLOAD``
_TASK_NOLOAD = 0x400
_TASK_LIMIT = 1_000_000
_CACHE_KEY = "kcrash.helpers.linux.sched.task_state_array"
#: the ``struct task_struct`` members ``ps`` shows, each with the names it had (newest first)
_PS_MEMBERS: dict[str, str | tuple[str, ...]] = {
    "pid": "pid", "tgid": "tgid", "real_parent": "real_parent",
    # Since Linux kernel commit bcf9033e5449 (v5.16) the field is back in thread_info on x86.
    "cpu": ("thread_info.cpu", "cpu"),
    # Since Linux kernel commit 2f064a59a11f (v5.14) the state is ``__state``.
    "state": ("__state", "state"),
    "exit_state": "exit_state", "comm": "comm",
}


def for_each_task(prog: Program, *, idle: bool = False, limit: int = _TASK_LIMIT) -> ListWalk:
    """Iterate over every thread of every process, like the kernel's ``for_each_process_thread(p, t)``.

    It walks ``init_task.tasks``, then each leader's ``signal->thread_head`` list.

    The idle tasks (pid 0, one per CPU, not on the task list) come first when ``idle`` is set.
    ``truncated`` of the returned walk names the first broken list, if any. At most ``limit`` tasks
    are yielded in all (each thread list is bounded too, but corrupt ``signal`` pointers can make
    every leader's list the same long one).

    :param prog: the program
    :param idle: yield each possible CPU's idle task (``swapper/N``) first
    :param limit: the most tasks to yield
    :return: a :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct task_struct *``
    :raises FaultError: if ``init_task`` cannot be read

    >>> [(int(t.pid), t.comm.string_(), task_state_to_char(t)) for t in for_each_task(prog)][-3:]
    [(183, b'kcrash_abba_a', 'D'), (184, b'kcrash_abba_b', 'D'), (223, b'exe', 'R')]
    """

    def tasks(walk: ListWalk) -> Iterator[Object]:
        for count, task in enumerate(_all_tasks(prog, walk, idle, limit)):
            if count >= limit:
                walk.truncated = f"stopped at the limit of {limit} tasks"
                return
            yield task

    return ListWalk(tasks)


def _all_tasks(prog: Program, walk: ListWalk, idle: bool, limit: int) -> Iterator[Object]:
    if idle:
        for cpu in for_each_present_cpu(prog):
            yield idle_task(prog, cpu)
    leaders = list_for_each_entry("struct task_struct", prog["init_task"].tasks, "tasks", limit=limit)
    for leader in leaders:
        yield from _threads(leader, walk, limit)
    if leaders.truncated is not None:
        walk.truncated = f"task list: {leaders.truncated}"


def _threads(leader: Object, walk: ListWalk, limit: int) -> Iterator[Object]:
    # signal->thread_head links every thread of the group through task->thread_node (since
    # Linux kernel commit 0c740d0afc3b, v3.14). An exiting leader may have lost its signal_struct.
    try:
        signal = leader.signal
        if not int(signal):
            yield leader
            return
        threads = list_for_each_entry("struct task_struct", signal.thread_head, "thread_node", limit=limit)
        yield from threads
    except FaultError as exc:
        walk.truncated = f"threads of task {int(leader):#x}: unreadable at {exc.address:#x}"
        yield leader
        return
    if threads.truncated is not None:
        walk.truncated = f"threads of pid {int(leader.pid)}: {threads.truncated}"


def task_thread_count(task: Object) -> int:
    """Return the number of threads in a task's thread group (``task->signal->nr_threads``).

    :param task: ``struct task_struct *``
    :return: the thread count
    :raises FaultError: if the task or its ``signal`` cannot be read

    >>> task_thread_count(find_task_or_none(prog, 1))
    1
    """
    return int(task.signal.nr_threads)


def cpu_curr(prog: Program, cpu: int) -> Object:
    """Return the task running on a CPU, like the kernel's ``cpu_curr(cpu)``.

    That is ``rq->curr`` of the per-CPU ``runqueues``.

    :param prog: the program
    :param cpu: a possible CPU
    :return: ``struct task_struct *``
    :raises FaultError: if the run queue cannot be read

    >>> cpu_curr(prog, 1).comm.string_()
    b'khungtaskd'
    """
    return per_cpu(prog, "runqueues", cpu).curr


def idle_task(prog: Program, cpu: int) -> Object:
    """Return the idle task (``swapper/N``) of a CPU, like the kernel's ``idle_task(cpu)``: ``rq->idle``.

    :param prog: the program
    :param cpu: a possible CPU
    :return: ``struct task_struct *``
    :raises FaultError: if the run queue cannot be read

    >>> idle_task(prog, 1).comm.string_()
    b'swapper/1'
    """
    return per_cpu(prog, "runqueues", cpu).idle


def task_cpu(task: Object) -> int:
    """Return the CPU a task last ran on, like the kernel's ``task_cpu(task)``.

    That is ``task->cpu``, or ``task->thread_info.cpu`` where the kernel keeps it there.

    :param task: ``struct task_struct *``
    :return: the CPU number
    :raises FaultError: if the task cannot be read

    >>> task_cpu(cpu_curr(prog, 1))
    1
    """
    return _task_members(task, "cpu").value("cpu")


def task_ps_layout(prog: Program) -> StructLayout:
    """Return where the members ``ps`` shows are in this kernel's ``struct task_struct``.

    The members are named ``pid``, ``tgid``, ``real_parent``, ``cpu``, ``state``, ``exit_state`` and
    ``comm`` whatever the kernel calls them (``__state`` or ``state``, ``cpu`` or
    ``thread_info.cpu``), for reading many tasks with one read each.

    :param prog: the program
    :return: a :class:`~kcrash.helpers.layout.StructLayout` of ``struct task_struct``
    :raises TypeLookupError: if the type lacks one of the members

    >>> row = task_ps_layout(prog).read(prog, int(cpu_curr(prog, 1)))
    >>> row.value("pid"), row.string("comm")
    (34, b'khungtaskd')
    """
    return StructLayout(prog.type("struct task_struct"), _PS_MEMBERS)


def _task_members(task: Object, *names: str) -> StructBytes:
    # Some of the ps members of one task (``struct task_struct *``, or a ``struct task_struct`` in memory).
    prog = task.prog_
    layout = StructLayout(prog.type("struct task_struct"), {name: _PS_MEMBERS[name] for name in names})
    pointer = task.type_.strip_typedefs().kind is TypeKind.POINTER
    return layout.read(prog, int(task) if pointer else int(task.address_of_()))


def find_task_or_none(prog: Program, pid: int) -> Object | None:
    """Return the task with a PID, like the kernel's ``find_task_by_pid_ns()`` in the initial namespace.

    A walk of :func:`for_each_task`, idle tasks included.

    :param prog: the program
    :param pid: the PID (0: the idle task of the first CPU)
    :return: ``struct task_struct *``, None if no task has ``pid``

    >>> find_task_or_none(prog, 1).comm.string_()
    b'init'
    """
    for task in for_each_task(prog, idle=True):
        if int(task.pid) == pid:
            return task
    return None


def validate_task(prog: Program, address: int) -> Object:
    """Return the ``struct task_struct *`` at ``address`` if it is a task.

    A task is one of :func:`for_each_task` (idle tasks included) or, when that walk was cut short
    by a damaged list, a ``task_struct`` whose ``pid``, ``comm`` and ``stack`` look like a task's.

    :param prog: the program
    :param address: the candidate's address
    :return: ``struct task_struct *``
    :raises ValidationError: if ``address`` is not a task (or cannot be read)

    >>> int(validate_task(prog, int(cpu_curr(prog, 1))).pid)
    34
    """
    walk = for_each_task(prog)
    if address in _idle_tasks(prog) or any(int(task) == address for task in walk):
        return Object(prog, prog.pointer_type("struct task_struct"), address)
    if walk.truncated is None:
        raise ValidationError(f"{address:#x} is not a task (not on the task list)")
    why = _insane_task_or_none(prog, address)
    if why is not None:
        raise ValidationError(f"{address:#x} is not a task ({why}; the task list is damaged: {walk.truncated})")
    return Object(prog, prog.pointer_type("struct task_struct"), address)


#: ``PID_MAX_LIMIT`` on 64-bit (``include/linux/threads.h``)
_PID_MAX_LIMIT = 4 * 1024 * 1024


def _idle_tasks(prog: Program) -> set[int]:
    # the idle tasks (not on the task list); none when the run queues cannot be read
    try:
        return {int(idle_task(prog, cpu)) for cpu in for_each_present_cpu(prog)}
    except KcrashError:
        return set()


def _insane_task_or_none(prog: Program, address: int) -> str | None:
    # Why the task_struct at address does not look like a task, or None.
    task_type = prog.type("struct task_struct")
    names = [name for name in ("pid", "comm", "stack") if task_type.has_member(name)]
    try:
        task = StructLayout(task_type, names).read(prog, address)
    except FaultError as exc:
        return f"unreadable at {exc.address:#x}"
    comm = task.string("comm")
    if not 0 <= task.value("pid") <= _PID_MAX_LIMIT:
        return f"pid {task.value('pid')} is out of range"
    if not comm or not all(0x20 <= c < 0x7F for c in comm):
        return f"comm {comm!r} is not a task name"
    if "stack" in names and task.value("stack") < 1 << 63:
        return f"stack {task.value('stack'):#x} is not a kernel address"
    return None


def _state_chars(prog: Program) -> str:
    # The letters of fs/proc/array.c's task_state_array (a static array: found through kallsyms,
    # its length from the symbol's size); the v4.14+ default when it cannot be read.
    cached: str | None = prog.cache.get(_CACHE_KEY)
    if cached is None:
        cached = prog.cache[_CACHE_KEY] = _read_state_chars(prog) or _DEFAULT_STATE_CHARS
    return cached


def _read_state_chars(prog: Program) -> str | None:
    try:
        symbol = prog.get_symbol_by_name("task_state_array")
        count = min(symbol.size // 8, 16)
        pointers = prog.read(symbol.address, count * 8)
        chars = [prog.read(int.from_bytes(pointers[i:i + 8], "little"), 1) for i in range(0, count * 8, 8)]
    except (SymbolNotFoundError, KcrashError):
        return None
    text = b"".join(chars).decode("ascii", "replace")
    # keep the prefix of plausible letters (the symbol's size may include padding)
    good = ""
    for c in text:
        if c not in "RSDTtXZPIKWN":
            break
        good += c
    return good if good.startswith("RSD") else None


def task_state(task: Object) -> int:
    """Return a task's state bits.

    That is ``task->__state`` (``state`` before v5.14, Linux kernel commit 2f064a59a11f).

    :param task: ``struct task_struct *``
    :return: the ``TASK_*`` bits (0: ``TASK_RUNNING``)
    :raises FaultError: if the task cannot be read

    >>> task_state(prog["init_task"].address_of_())
    0
    """
    return _task_members(task, "state").value("state")


def task_state_to_char(task: Object) -> str:
    """Return a task's state letter as ``ps`` and ``/proc/PID/stat`` print it.

    As ``task_state_to_char()`` in ``fs/proc/array.c`` gives it.

    :param task: ``struct task_struct *``
    :return: ``R``, ``S``, ``D``, ``T``, ``t``, ``X``, ``Z``, ``P`` or ``I``
    :raises FaultError: if the task cannot be read

    >>> task_state_to_char(find_task_or_none(prog, 1))
    'R'
    """
    members = _task_members(task, "state", "exit_state")
    return task_state_char(task.prog_, members.value("state"), members.value("exit_state"))


def task_state_char(prog: Program, state: int, exit_state: int) -> str:
    """Return the state letter of a task from its ``__state`` and ``exit_state`` values.

    As :func:`task_state_to_char` gives it; ``state`` is the task's ``__state`` (``state`` before
    v5.14).

    For rows read with :func:`task_ps_layout`, without an object per task.

    :param prog: the program (its ``task_state_array`` letters)
    :param state: the task's ``__state``
    :param exit_state: the task's ``exit_state``
    :return: the state letter

    >>> task_state_char(prog, 0x402, 0)
    'I'
    """
    chars = _state_chars(prog)
    reported = (state | exit_state) & _report_bits(chars)
    char = chars[min(reported.bit_length(), len(chars) - 1)]
    if char == "D" and state & ~reported == _TASK_NOLOAD:
        return "I"
    return char


def _report_bits(chars: str) -> int:
    # TASK_REPORT: the states up to the last of R S D T t X Z P in the table (TASK_REPORT_IDLE, 'I',
    # is the one past it).
    last = max(i for i, c in enumerate(chars) if c in "RSDTtXZP")
    return (1 << last) - 1
