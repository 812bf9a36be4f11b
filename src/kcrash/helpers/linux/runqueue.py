"""
kcrash.helpers.linux.runqueue
=============================

Per-CPU run queues (``kernel/sched/sched.h``: ``struct rq`` in the per-CPU ``runqueues``): the
running task (``curr``), the counters (``nr_running``, ``clock``, ``clock_task``) and the tasks
queued in each scheduling class, read as crash's ``runq`` shows them: the fair class's
``cfs_rq.tasks_timeline`` rbtree of ``struct sched_entity`` (CFS, and EEVDF since v6.6, the same
tree), descending into task groups' own ``my_q`` run queues; the real-time class's ``rt_rq.active``
priority array (a bitmap and ``MAX_RT_PRIO`` lists of ``struct sched_rt_entity``); the deadline
class's ``dl_rq.root`` rbtree of ``struct sched_dl_entity`` (the v6.8+ deadline servers embedded
in ``struct rq`` are left out: they are not tasks). The running entity is not in its class's tree
(``set_next_entity()`` takes it out), so ``curr`` is reported apart. Every CPU of
``__cpu_possible_mask`` is read. Walks are bounded and say why they stopped in ``truncated``.
drgn's counterparts are ``cpu_rq``, ``rq_for_each_fair_task``, ``rq_for_each_rt_task`` and
``cfs_rq_for_each_entity`` in ``drgn.helpers.linux.sched``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.errors import FaultError, TypeLookupError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.rbtree import rbtree_inorder_for_each_entry
from kcrash.helpers.memo import per_program
from kcrash.types.object import Object, offsetof
from kcrash.types.percpu import per_cpu
from kcrash.types.program import Program

__all__ = ["QueuedTask", "Runqueue", "cpu_rq", "rq_dl_tasks", "rq_fair_tasks", "rq_rt_tasks", "rq_stop_task",
           "runqueue_info"]

#: how deep task groups nest at most (``kernel/sched/core.c`` allows any depth; real systems use few)
_MAX_GROUP_DEPTH = 64
#: the most tasks one class of one run queue yields
_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A task on a run queue, as :func:`runqueue_info` lists it.

    :param task: the ``struct task_struct *``, as an address
    :param pid: ``task->pid``
    :param comm: ``task->comm``
    :param prio: ``task->prio``
    :param policy: ``task->policy`` (``SCHED_NORMAL``...)

    >>> runqueue_info(prog, 1).curr.comm
    'khungtaskd'
    """

    task: int
    pid: int
    comm: str
    prio: int
    policy: int


@dataclass(frozen=True, slots=True)
class Runqueue:
    """One CPU's ``struct rq`` (``kernel/sched/sched.h``), as :func:`runqueue_info` reads it.

    :param cpu: the CPU
    :param address: the ``struct rq *``
    :param curr: the running task (``rq->curr``)
    :param idle: the idle task (``rq->idle``), as an address
    :param nr_running: ``rq->nr_running``
    :param clock: ``rq->clock`` (ns)
    :param clock_task: ``rq->clock_task`` (ns)
    :param cfs_nr_running: the fair class's count (``cfs.h_nr_queued``, older ``h_nr_running``)
    :param rt_nr_running: ``rq->rt.rt_nr_running``
    :param dl_nr_running: ``rq->dl.dl_nr_running``
    :param cfs: the queued fair-class tasks (:func:`rq_fair_tasks`)
    :param rt: the queued real-time tasks (:func:`rq_rt_tasks`)
    :param dl: the queued deadline tasks (:func:`rq_dl_tasks`)
    :param stop: the CPU's stopper task when it is queued but not running (:func:`rq_stop_task`)
    :param truncated: why walks stopped early, empty if none did

    >>> rq = runqueue_info(prog, 1)
    >>> rq.curr.comm, [t.pid for t in rq.cfs]
    ('khungtaskd', [18, 1, 45])
    """

    cpu: int
    address: int
    curr: QueuedTask
    idle: int
    nr_running: int
    clock: int
    clock_task: int
    cfs_nr_running: int
    rt_nr_running: int
    dl_nr_running: int
    cfs: tuple[QueuedTask, ...]
    rt: tuple[QueuedTask, ...]
    dl: tuple[QueuedTask, ...]
    stop: tuple[QueuedTask, ...]
    truncated: tuple[str, ...]


def cpu_rq(prog: Program, cpu: int) -> Object:
    """Return the run queue of a CPU, like the kernel's and drgn's ``cpu_rq(cpu)``: per-CPU ``runqueues``.

    :param prog: the program
    :param cpu: a possible CPU
    :return: ``struct rq *``

    >>> int(cpu_rq(prog, 0).nr_running)
    2
    """
    return per_cpu(prog, "runqueues", cpu).address_of_()


@per_program
def _task_layout(prog: Program) -> StructLayout:
    return StructLayout(prog.type("struct task_struct"), ("pid", "comm", "prio", "policy"))


def _queued(prog: Program, task: int) -> QueuedTask:
    raw = _task_layout(prog).read(prog, task)
    return QueuedTask(task, raw.value("pid"), raw.string("comm").decode(errors="replace"),
                      raw.value("prio"), raw.value("policy"))


def _cfs_entities(cfs_rq: Object, truncated: list[str], depth: int) -> Iterator[int]:
    # The task entities queued under cfs_rq: its tree, and the queues of group entities (the
    # running group entity, cfs_rq->curr, is out of the tree but its own queue holds tasks).
    if depth > _MAX_GROUP_DEPTH:
        truncated.append(f"cfs: task groups nested deeper than {_MAX_GROUP_DEPTH}")
        return
    curr = int(cfs_rq.curr)
    walk = rbtree_inorder_for_each_entry("struct sched_entity", cfs_rq.tasks_timeline.address_of_(),
                                         "run_node", limit=_LIMIT)
    entities = ([cfs_rq.curr] if curr else []) + list(walk)
    if walk.truncated:
        truncated.append(f"cfs_rq {int(cfs_rq.address_of_()):#x}: {walk.truncated}")
    for se in entities:
        my_q = _group_queue(se)
        if my_q is not None:
            yield from _cfs_entities(my_q, truncated, depth + 1)
        elif int(se) != curr:
            yield int(se)


def _group_queue(se: Object) -> Object | None:
    # se->my_q: the queue a group entity owns (CONFIG_FAIR_GROUP_SCHED / RT_GROUP_SCHED); NULL for a task.
    try:
        my_q = se.my_q
    except (AttributeError, TypeLookupError):
        return None
    return my_q[0] if int(my_q) else None


def rq_fair_tasks(rq: Object, truncated: list[str] | None = None) -> list[int]:
    """Return the fair-class tasks queued on a run queue.

    From the ``cfs.tasks_timeline`` rbtree of ``struct sched_entity`` (tree order within each group,
    groups descended); the running task is not among them.

    :param rq: ``struct rq *``
    :param truncated: where to add the reasons walks stopped early
    :return: ``struct task_struct *`` addresses

    >>> [hex(t) for t in rq_fair_tasks(cpu_rq(prog, 1))]
    ['0xffff8880042c48c0', '0xffff88800425c8c0', '0xffff888004bc6100']
    """
    prog = rq.prog_
    se_offset = offsetof(prog.type("struct task_struct"), "se")
    return [se - se_offset for se in _cfs_entities(rq.cfs, truncated if truncated is not None else [], 0)]


def _rt_entities(rt_rq: Object, truncated: list[str], depth: int) -> Iterator[int]:
    if depth > _MAX_GROUP_DEPTH:
        truncated.append(f"rt: task groups nested deeper than {_MAX_GROUP_DEPTH}")
        return
    active = rt_rq.active
    bitmap = int.from_bytes(active.bitmap.to_bytes_(), "little")
    for prio in range(len(active.queue)):
        if not bitmap >> prio & 1:
            continue
        walk = list_for_each_entry("struct sched_rt_entity", active.queue[prio].address_of_(), "run_list",
                                   limit=_LIMIT)
        for rt_se in walk:
            my_q = _group_queue(rt_se)
            if my_q is not None:
                yield from _rt_entities(my_q, truncated, depth + 1)
            else:
                yield int(rt_se)
        if walk.truncated:
            truncated.append(f"rt prio {prio}: {walk.truncated}")


def rq_rt_tasks(rq: Object, truncated: list[str] | None = None) -> list[int]:
    """Return the real-time tasks queued on a run queue, by priority.

    From the ``rt.active.queue[]`` lists of ``struct sched_rt_entity``; the running one is included when
    it is still queued, as the kernel keeps it there.

    :param rq: ``struct rq *``
    :param truncated: where to add the reasons walks stopped early
    :return: ``struct task_struct *`` addresses

    >>> rq_rt_tasks(cpu_rq(prog, 0))
    []
    """
    offset = offsetof(rq.prog_.type("struct task_struct"), "rt")
    return [rt_se - offset for rt_se in _rt_entities(rq.rt, truncated if truncated is not None else [], 0)]


def _dl_servers(rq: Object) -> set[int]:
    # Deadline servers embedded in struct rq (fair_server since v6.12's "sched/fair: Add trivial
    # fair server", ext_server since v6.17 with sched_ext): queued in dl_rq like tasks, not tasks.
    servers = set()
    for name in ("fair_server", "ext_server"):
        try:
            servers.add(int(rq.member_(name).address_of_()))
        except (AttributeError, TypeLookupError):
            continue
    return servers


def rq_dl_tasks(rq: Object, truncated: list[str] | None = None) -> list[int]:
    """Return the deadline tasks queued on a run queue, by deadline.

    From the ``dl.root`` rbtree of ``struct sched_dl_entity``; deadline servers left out.

    :param rq: ``struct rq *``
    :param truncated: where to add the reasons walks stopped early
    :return: ``struct task_struct *`` addresses

    >>> rq_dl_tasks(cpu_rq(prog, 0))
    []
    """
    prog = rq.prog_
    offset = offsetof(prog.type("struct task_struct"), "dl")
    walk = rbtree_inorder_for_each_entry("struct sched_dl_entity", rq.dl.root.address_of_(), "rb_node",
                                         limit=_LIMIT)
    servers = _dl_servers(rq)
    tasks = [int(dl_se) - offset for dl_se in walk if int(dl_se) not in servers]
    if walk.truncated and truncated is not None:
        truncated.append(f"dl: {walk.truncated}")
    return tasks


def rq_stop_task(rq: Object) -> int | None:
    """Return the CPU's stopper task (``migration/N``) when it is queued and not running.

    That is ``rq->stop`` (``kernel/sched/stop_task.c``) when ``on_rq`` and not ``rq->curr``; it counts
    in ``nr_running`` like any other.

    :param rq: ``struct rq *``
    :return: its ``struct task_struct *`` address, or None (also without ``CONFIG_SMP``)

    >>> rq_stop_task(cpu_rq(prog, 1)) is None
    True
    """
    try:
        stop = rq.stop
    except (AttributeError, TypeLookupError):
        return None  # !CONFIG_SMP
    if not int(stop) or int(stop) == int(rq.curr) or not int(stop.on_rq):
        return None
    return int(stop)


def _class_tasks(prog: Program, rq: Object, truncated: list[str]) -> tuple[tuple[QueuedTask, ...], ...]:
    out = []
    for name, walker in (("cfs", rq_fair_tasks), ("rt", rq_rt_tasks), ("dl", rq_dl_tasks), ("stop", _stop_list)):
        try:
            out.append(tuple(_queued(prog, t) for t in walker(rq, truncated)))
        except FaultError as exc:
            truncated.append(f"{name}: unreadable at {exc.address:#x}")
            out.append(())
    return tuple(out)


def _stop_list(rq: Object, truncated: list[str]) -> list[int]:
    stop = rq_stop_task(rq)
    return [stop] if stop is not None else []


def _counter(obj: Object, *paths: str) -> int:
    # The first of ``paths`` the kernel has: the hierarchical fair count is h_nr_queued since
    # v6.14's "sched/fair: Rename h_nr_running into h_nr_queued" (backported to 6.12.y).
    for path in paths:
        try:
            value = obj
            for part in path.split("."):
                value = value.member_(part)
            return int(value)
        except (AttributeError, TypeLookupError):
            continue
    return 0


def runqueue_info(prog: Program, cpu: int) -> Runqueue:
    """Return the run queue of a CPU: the running task, the counters, every queued task per class.

    :param prog: the program
    :param cpu: a possible CPU
    :return: the run queue (unreadable parts are named in :attr:`Runqueue.truncated`)
    :raises FaultError: if the ``struct rq`` itself cannot be read

    >>> [t.comm for t in runqueue_info(prog, 1).cfs]
    ['rcu_preempt', 'init', 'kworker/1:1']
    """
    rq = cpu_rq(prog, cpu)
    truncated: list[str] = []
    cfs, rt, dl, stop = _class_tasks(prog, rq, truncated)
    try:
        curr = _queued(prog, int(rq.curr))
    except FaultError:
        curr = QueuedTask(int(rq.curr), -1, "?", 0, 0)
        truncated.append(f"curr: unreadable task at {int(rq.curr):#x}")
    return Runqueue(cpu, int(rq), curr, int(rq.idle), int(rq.nr_running), int(rq.clock), int(rq.clock_task),
                    _counter(rq, "cfs.h_nr_queued", "cfs.h_nr_running", "cfs.nr_running"),
                    _counter(rq, "rt.rt_nr_running"), _counter(rq, "dl.dl_nr_running"),
                    cfs, rt, dl, stop, tuple(truncated))

