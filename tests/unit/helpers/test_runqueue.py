"""kernel/sched/sched.h run queues on the synthetic two-CPU kernel: the running task apart from the
queued ones, the fair tree descended into a task group's own queue, the RT priority array by its
bitmap, the deadline tree without the rq's embedded fair_server, the counters, and a corrupt tree
that ends with a reason."""

from __future__ import annotations

from kcrash.helpers.linux.runqueue import (
    cpu_rq,
    rq_dl_tasks,
    rq_fair_tasks,
    rq_rt_tasks,
    rq_stop_task,
    runqueue_info,
)
from support.state_kernel import RQ_CFS, TASK_SE, percpu, sample


def test_runqueue_of_a_busy_cpu() -> None:
    k, named = sample()
    rq = runqueue_info(k.prog, 0)
    assert (rq.cpu, rq.address, rq.nr_running, rq.clock, rq.clock_task) == (0, k.rq(0), 6, 123456, 123451)
    assert (rq.curr.task, rq.curr.pid, rq.curr.comm) == (named["init"], 1, "init")
    assert [(t.pid, t.comm) for t in rq.cfs] == [(20, "kworker/0:1"), (21, "grouped")]  # init is curr: left out
    assert [(t.pid, t.prio, t.policy) for t in rq.rt] == [(30, 0, 1)]
    assert [(t.pid, t.prio) for t in rq.dl] == [(40, -1)]  # the fair_server entity is not a task
    assert [(t.task, t.comm) for t in rq.stop] == [(named["stop0"], "migration/0")]
    assert rq.truncated == ()


def test_idle_offline_cpu_is_read() -> None:
    k, named = sample()
    rq = runqueue_info(k.prog, 1)
    assert (rq.curr.task, rq.idle, rq.nr_running) == (named["idle1"], named["idle1"], 0)
    assert (rq.cfs, rq.rt, rq.dl, rq.stop) == ((), (), (), ())  # migration/1 is not on_rq


def test_class_walkers_give_task_addresses() -> None:
    k, named = sample()
    rq = cpu_rq(k.prog, 0)
    assert int(rq) == percpu(0, 0x300)
    assert rq_fair_tasks(rq) == [named["fair"], named["grouped"]]
    assert rq_rt_tasks(rq) == [named["rt"]]
    assert rq_dl_tasks(rq) == [named["dl"]]
    assert rq_stop_task(rq) == named["stop0"] and rq_stop_task(cpu_rq(k.prog, 1)) is None


def test_a_cfs_tree_cycle_is_reported() -> None:
    k, named = sample()
    fair_se = named["fair"] + TASK_SE
    k.u64(k.rq(0) + RQ_CFS + 8, fair_se)  # the tree's root node
    k.u64(fair_se + 16, fair_se)  # is its own left child (rb_left)
    rq = runqueue_info(k.prog, 0)
    assert any("cycle" in reason for reason in rq.truncated)
