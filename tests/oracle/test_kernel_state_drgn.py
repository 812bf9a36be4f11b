"""Oracle for issue 18's ``dev``, ``irq``, ``timer`` and ``runq``. kcrash opens each lab dump with
NO vmlinux (kallsyms, in-memory BTF) and is compared with drgn 0.3.0 given the Debian -dbg vmlinux
and the lab module's .ko, through drgn's own helpers where it has them:

* ``irq``: every IRQ drgn's ``for_each_irq_desc`` yields (the ``sparse_irqs`` maple tree on 6.12
  and 7.2, the ``irq_desc_tree`` radix tree on 5.10 and 6.1) with the same descriptor, chip name
  (``irq_desc_chip_name``), action names (``irq_desc_action_names``), handler and thread function
  symbols (``prog.symbol``), count on every possible CPU (``irq_desc_kstat_cpu``) and affinity
  (``irq_desc_affinity_mask``);
* ``timer``: on every possible CPU and timer base (``timer_base_names``), the pending timers drgn's
  ``timer_base_for_each`` walks (address, expiry, function and its symbol), and for every clock
  base of ``hrtimer_bases`` those of ``hrtimer_clock_base_for_each`` in the same (expiry) order;
  the planted ``kcrash_test_timer`` and ``kcrash_test_hrtimer`` are found with their functions;
* ``runq``: on every possible CPU, ``cpu_curr``, ``nr_running``, ``clock`` and the queued fair
  tasks of drgn's ``cfs_rq_for_each_entity`` (tasks that are not their queue's ``curr``), the RT
  tasks of ``rq_for_each_rt_task`` and the deadline entities of ``rq->dl.root`` that are not
  deadline servers (drgn reads the ``dl_server`` bit, kcrash compares addresses), and the
  stopper task when queued; the same on the HUNG_ABBA, SOFTLOCKUP and SPINLOCKUP dumps of 6.12;
* ``dev``: ``for_each_registered_chrdev`` (first dev_t, minor count, name, cdev) and
  ``for_each_registered_blkdev``, and ``for_each_disk`` for ``dev -d`` (the lab guest has no disk:
  both are empty, so the disk walk is only proven to agree on the empty case).

drgn 0.3.0's ``for_each_online_cpu`` would miss the CPUs a panic stops (they are marked offline);
both sides here iterate ``__cpu_possible_mask``. The 7.2 dump has no lab module, so the planted
timers are checked on the other three. Each CLI command's ``--json`` equals the analysis it prints,
and the crash's ``vmcore.kdump`` gives the same state as its ``vmcore.elf``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kcrash.analysis import kernel_state
from kcrash.analysis.target import open_target
from kcrash.cli.app import kcrash
from kcrash.types.program import Program
from support.drgn_oracle import (
    KDUMP_KCRASH,
    LAB_CASES,
    case_id,
    drgn_program,
    lab_info,
    module_kallsyms_symbol,
    skip_kdump_pair,
    skip_lost_slab,
)
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.block import for_each_disk  # noqa: E402
from drgn.helpers.linux.cpumask import for_each_cpu, for_each_online_cpu, for_each_possible_cpu  # noqa: E402
from drgn.helpers.linux.device import for_each_registered_blkdev, for_each_registered_chrdev  # noqa: E402
from drgn.helpers.linux.irq import (  # noqa: E402
    for_each_irq_desc,
    irq_desc_action_names,
    irq_desc_affinity_mask,
    irq_desc_chip_name,
    irq_desc_kstat_cpu,
)
from drgn.helpers.linux.percpu import per_cpu  # noqa: E402
from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry  # noqa: E402
from drgn.helpers.linux.sched import cfs_rq_for_each_entity, cpu_curr, rq_for_each_rt_task  # noqa: E402
from drgn.helpers.linux.timer import (  # noqa: E402
    hrtimer_clock_base_for_each,
    timer_base_for_each,
    timer_base_names,
)

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_KCRASH


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, dict[str, Any]]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    info = lab_info(out)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    return out, dprog, info


@pytest.fixture(scope="module")
def prog(crash: tuple[Path, Any, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with open_target(crash[0] / "vmcore.elf", tmp_path_factory.mktemp("cache")) as target:
        yield target


def _name(dprog: Any, address: int) -> str | None:
    # drgn's symbol of a code address, as kcrash writes it (name, or name+0xoff)
    if not address:
        return None
    try:
        symbol = dprog.symbol(address)
        name, start = symbol.name, symbol.address
    except LookupError:
        # a function of a module drgn has no debug .ko of (the kdump guest's virtio_pci): its kallsyms
        found = module_kallsyms_symbol(dprog, address)
        if found is None:
            return None
        name, start = found
    offset = address - start
    return f"{name}+{offset:#x}" if offset else name


def _cli_json(path: Path, *args: str) -> Any:
    result = CliRunner().invoke(kcrash, [args[0], str(path / "vmcore.elf"), *args[1:], "--json"])
    assert result.exit_code == 0, result.output
    return from_hex(json.loads(result.output))


def _possible(dprog: Any) -> list[int]:
    return list(for_each_possible_cpu(dprog))


# -- irq -------------------------------------------------------------------------------------------

def _drgn_irq(dprog: Any, irq: int, desc: Any) -> tuple[Any, ...]:
    actions = []
    action = desc.action.read_()
    while action:
        actions.append((action.value_(), _name(dprog, action.handler.value_()),
                        _name(dprog, action.thread_fn.value_())))
        action = action.next.read_()
    chip = irq_desc_chip_name(desc)
    return (irq, desc.value_(), chip.decode() if chip is not None else None,
            [n.decode() for n in irq_desc_action_names(desc)], actions,
            [(cpu, irq_desc_kstat_cpu(desc, cpu)) for cpu in _possible(dprog)],
            list(for_each_cpu(irq_desc_affinity_mask(desc))))


def test_irqs_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    dprog = crash[1]
    table = kernel_state.irqs(prog)
    assert not table.errors
    ours = [(i.irq, i.desc, i.chip, [a.name for a in i.actions if a.name],
             [(a.address, a.handler_name, a.thread_fn_name) for a in i.actions],
             list(i.counts), list(i.affinity)) for i in table.irqs]
    theirs = [_drgn_irq(dprog, irq, desc) for irq, desc in for_each_irq_desc(dprog)]
    assert ours == theirs
    assert len(ours) >= 16
    fired = [i for i in table.irqs if i.total]
    assert fired and any(a.name == "timer" for i in fired for a in i.actions)  # the PIT/HPET tick on IRQ 0
    assert _cli_json(crash[0], "irq") == json.loads(json.dumps(dataclasses.asdict(table)))


# -- timer ------------------------------------------------------------------------------------------

def _drgn_wheel(dprog: Any, cpu: int) -> list[tuple[str, list[tuple[int, int, int, str | None]]]]:
    bases = per_cpu(dprog["timer_bases"], cpu)
    out = []
    for i, name in enumerate(timer_base_names(dprog)):
        timers = [(t.value_(), t.expires.value_(), t.function.value_(), _name(dprog, t.function.value_()))
                  for t in timer_base_for_each(bases[i].address_of_())]
        out.append((name, sorted(timers, key=lambda t: (t[1], t[0]))))
    return out


def _drgn_hrtimers(dprog: Any, cpu: int) -> list[list[tuple[int, int, int, int, str | None]]]:
    cpu_base = per_cpu(dprog["hrtimer_bases"], cpu)
    return [[(t.value_(), t._softexpires.value_(), t.node.expires.value_(), t.function.value_(),
              _name(dprog, t.function.value_()))
             for t in hrtimer_clock_base_for_each(clock_base.address_of_())]
            for clock_base in cpu_base.clock_base]


def test_timers_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    dprog = crash[1]
    table = kernel_state.timers(prog, hrtimers=True)
    assert not table.errors
    assert table.jiffies == dprog["jiffies_64"].value_()
    cpus = _possible(dprog)
    assert sorted({b.cpu for b in table.bases}) == cpus
    ours = [(b.name, [(t.address, t.expires, t.function, t.function_name) for t in b.timers])
            for cpu in cpus for b in table.bases if b.cpu == cpu]
    assert ours == [base for cpu in cpus for base in _drgn_wheel(dprog, cpu)]
    ours_hr = [[(t.address, t.softexpires, t.expires, t.function, t.function_name) for t in b.timers]
               for cpu in cpus for b in table.hrtimer_bases if b.cpu == cpu]
    assert ours_hr == [base for cpu in cpus for base in _drgn_hrtimers(dprog, cpu)]
    assert all(b.truncated is None for b in (*table.bases, *table.hrtimer_bases))
    assert sum(len(b.timers) for b in table.bases) >= 10
    assert _cli_json(crash[0], "timer", "-r") == json.loads(json.dumps(dataclasses.asdict(table)))


def test_planted_timers_are_found(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    if not crash[2]["module"]:
        pytest.skip("no lab module on this kernel")
    table = kernel_state.timers(prog, hrtimers=True)
    timer = prog.symbol_address("kcrash_test_timer")
    found = [t for b in table.bases for t in b.timers if t.address == timer]
    assert [t.function_name for t in found] == ["kcrash_test_timer_fn"]
    assert found[0].function == prog.symbol_address("kcrash_test_timer_fn")
    # armed 1000 s ahead (HZ=250 on Debian): far beyond the crash time
    assert found[0].expires - table.jiffies > 100 * 250
    hrtimer = prog.symbol_address("kcrash_test_hrtimer")
    hr = [t for b in table.hrtimer_bases for t in b.timers if t.address == hrtimer]
    assert [t.function_name for t in hr] == ["kcrash_test_hrtimer_fn"]
    assert hr[0].expires >= hr[0].softexpires


# -- runq -------------------------------------------------------------------------------------------

def _drgn_dl_tasks(dprog: Any, rq: Any) -> list[int]:
    out = []
    for dl_se in rbtree_inorder_for_each_entry("struct sched_dl_entity", rq.dl.root.rb_root.address_of_(), "rb_node"):
        try:
            if dl_se.dl_server:
                continue
        except AttributeError:
            pass
        out.append(drgn.container_of(dl_se, "struct task_struct", "dl").pid.value_())
    return out


def _drgn_runqueue(dprog: Any, cpu: int) -> tuple[Any, ...]:
    rq = per_cpu(dprog["runqueues"], cpu)
    cfs = [drgn.container_of(se, "struct task_struct", "se").pid.value_()
           for se, _, is_curr, is_task in cfs_rq_for_each_entity(rq.cfs.address_of_()) if is_task and not is_curr]
    rt = [t.pid.value_() for t in rq_for_each_rt_task(rq.address_of_())]
    stop = rq.stop.read_()
    stopped = [stop.pid.value_()] if stop and stop != rq.curr and stop.on_rq else []
    return (cpu, rq.address_of_().value_(), cpu_curr(dprog, cpu).value_(), rq.nr_running.value_(),
            rq.clock.value_(), sorted(cfs), rt, _drgn_dl_tasks(dprog, rq), stopped)


def _check_runqueues(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> kernel_state.RunqueueTable:
    dprog = crash[1]
    table = kernel_state.runqueues(prog)
    assert not table.errors
    assert list(table.online) == list(for_each_online_cpu(dprog))
    ours = [(rq.cpu, rq.address, rq.curr.task, rq.nr_running, rq.clock, sorted(t.pid for t in rq.cfs),
             [t.pid for t in rq.rt], [t.pid for t in rq.dl], [t.pid for t in rq.stop]) for rq in table.runqueues]
    assert ours == [_drgn_runqueue(dprog, cpu) for cpu in _possible(dprog)]
    assert all(not rq.truncated for rq in table.runqueues)
    # every queued task counts in nr_running, and so does a running non-idle task
    for rq in table.runqueues:
        queued = len(rq.cfs) + len(rq.rt) + len(rq.dl) + len(rq.stop)
        assert queued <= rq.nr_running <= queued + 1, rq.cpu
    return table


def test_runqueues_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    table = _check_runqueues(prog, crash)
    assert _cli_json(crash[0], "runq") == json.loads(json.dumps(dataclasses.asdict(table)))


LOCKUPS = [("HUNG_ABBA", "6.12", False), ("SOFTLOCKUP", "6.12", False), ("SPINLOCKUP", "6.12", False)]


@pytest.mark.parametrize("case", LOCKUPS, ids=lambda c: f"{c[0]}-{c[1]}")
def test_runqueues_of_lockups_equal_drgn(case: tuple[str, str, bool], lab_crash: Callable[..., Path],
                                         lab_vmlinux_dbg: Callable[[str], Path],
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    # The lock-up kinds leave one CPU busy (its stopper queued behind the looping task, SOFTLOCKUP
    # and SPINLOCKUP) and the AB-BA kthreads off every run queue (HUNG_ABBA: D state).
    out = lab_crash(*case)
    info = json.loads((out / "lab.json").read_text())
    dprog = drgn.Program()
    dprog.set_core_dump(str(out / "vmcore.elf"))
    dprog.load_debug_info([str(lab_vmlinux_dbg(case[1])), info["module"]["path"]])
    with open_target(out / "vmcore.elf", tmp_path_factory.mktemp("cache")) as prog:
        table = _check_runqueues(prog, (out, dprog, info))
    queued = {t.comm for rq in table.runqueues for t in (rq.curr, *rq.cfs, *rq.rt, *rq.dl)}
    if case[0] == "HUNG_ABBA":
        assert not queued & {"kcrash_abba_a", "kcrash_abba_b"}
    else:
        assert any(rq.stop for rq in table.runqueues)


# -- dev --------------------------------------------------------------------------------------------

def test_devices_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    dprog = crash[1]
    table = kernel_state.devices(prog, disks=True)
    assert not table.errors
    ours = [((c.major << 20) | c.baseminor, c.minorct, c.name, c.cdev) for c in table.chrdevs]
    theirs = [(dev, count, name.decode(), cdev.value_())
              for dev, count, name, cdev in for_each_registered_chrdev(dprog)]
    assert ours == theirs
    assert {"mem", "tty", "misc"} <= {c.name for c in table.chrdevs}
    assert [(b.major, b.name, b.address) for b in table.blkdevs] == [
        (major, name.decode(), obj.value_()) for major, name, obj in for_each_registered_blkdev(dprog)]
    assert [d.address for d in table.disks] == [d.value_() for d in for_each_disk(dprog)]
    mem = next(c for c in table.chrdevs if c.name == "mem")
    assert mem.ops_name == "memory_fops"
    assert _cli_json(crash[0], "dev", "-d") == json.loads(json.dumps(dataclasses.asdict(table)))


def test_kdump_file_answers_as_the_elf_file(prog: Program, crash: tuple[Path, Any, dict[str, Any]],
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    # The compressed kdump file of the same crash (makedumpfile's format, excluded pages and all)
    # gives the same machine state as the ELF file.
    skip_kdump_pair(crash[0])
    with open_target(crash[0] / "vmcore.kdump", tmp_path_factory.mktemp("cache")) as kdump:
        assert kernel_state.timers(kdump, hrtimers=True) == kernel_state.timers(prog, hrtimers=True)
        assert kernel_state.runqueues(kdump) == kernel_state.runqueues(prog)
        assert kernel_state.irqs(kdump) == kernel_state.irqs(prog)
        assert kernel_state.devices(kdump, disks=True) == kernel_state.devices(prog, disks=True)
