"""
kcrash.analysis.kernel_state
============================

The machine-wide state crash's ``dev``, ``irq``, ``timer`` and ``runq`` show, gathered for every
CPU of ``__cpu_possible_mask`` (after a panic the other CPUs are marked offline, yet their run
queues and timers are what was pending): timer wheels and hrtimers
(:mod:`~kcrash.helpers.linux.timer`), run queues (:mod:`~kcrash.helpers.linux.runqueue`), IRQ
descriptors (:mod:`~kcrash.helpers.linux.irq`) and devices (:mod:`~kcrash.helpers.linux.device`).
A CPU or IRQ whose structures cannot be read is listed in ``errors`` instead of ending the listing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from kcrash.errors import FaultError, KcrashError, TypeLookupError
from kcrash.helpers.linux.cpumask import for_each_online_cpu, for_each_possible_cpu
from kcrash.helpers.linux.device import (
    BlockMajor,
    CharDevice,
    Disk,
    for_each_disk,
    for_each_registered_blkdev,
    for_each_registered_chrdev,
)
from kcrash.helpers.linux.irq import IrqInfo, for_each_irq_desc, irq_desc_info
from kcrash.helpers.linux.runqueue import Runqueue, runqueue_info
from kcrash.helpers.linux.timer import HrtimerClockBase, TimerBase, cpu_hrtimer_bases, cpu_timer_bases, get_jiffies
from kcrash.types.program import Program

__all__ = ["DeviceTable", "IrqTable", "RunqueueTable", "TimerTable", "devices", "irqs", "runqueues", "timers"]

T = TypeVar("T")
_ERRORS = (FaultError, KcrashError, TypeLookupError, LookupError)


@dataclass(frozen=True, slots=True)
class TimerTable:
    """``timer``: ``jiffies`` and every possible CPU's timer bases (``hrtimers``: clock bases)."""

    jiffies: int
    bases: tuple[TimerBase, ...]
    hrtimer_bases: tuple[HrtimerClockBase, ...]
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunqueueTable:
    """``runq``: every possible CPU's run queue, and which CPUs were online."""

    runqueues: tuple[Runqueue, ...]
    online: tuple[int, ...]
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IrqTable:
    """``irq``: the possible CPUs (the order of each IRQ's counts) and every allocated IRQ."""

    cpus: tuple[int, ...]
    irqs: tuple[IrqInfo, ...]
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeviceTable:
    """``dev``: character device ranges, block majors and (``dev -d``) disks."""

    chrdevs: tuple[CharDevice, ...]
    blkdevs: tuple[BlockMajor, ...]
    disks: tuple[Disk, ...]
    errors: tuple[str, ...]


def _per_cpu(prog: Program, what: str, read: Callable[[Program, int], Iterable[T]],
             errors: list[str]) -> list[T]:
    out: list[T] = []
    for cpu in for_each_possible_cpu(prog):
        try:
            out.extend(read(prog, cpu))
        except _ERRORS as exc:
            errors.append(f"CPU {cpu}: {what}: {exc}")
    return out


def timers(prog: Program, *, hrtimers: bool = False) -> TimerTable:
    """Every possible CPU's timer wheels (and with ``hrtimers`` their hrtimer clock bases).

    >>> sum(len(b.timers) for b in timers(prog).bases)  # doctest: +SKIP
    25
    """
    errors: list[str] = []
    bases = _per_cpu(prog, "timer_bases", cpu_timer_bases, errors)
    hr = _per_cpu(prog, "hrtimer_bases", cpu_hrtimer_bases, errors) if hrtimers else []
    return TimerTable(get_jiffies(prog), tuple(bases), tuple(hr), tuple(errors))


def runqueues(prog: Program) -> RunqueueTable:
    """Every possible CPU's run queue.

    >>> [rq.curr.comm for rq in runqueues(prog).runqueues]  # doctest: +SKIP
    ['init', 'kworker/1:1']
    """
    errors: list[str] = []
    found = _per_cpu(prog, "runqueues", lambda p, cpu: (runqueue_info(p, cpu),), errors)
    return RunqueueTable(tuple(found), tuple(for_each_online_cpu(prog)), tuple(errors))


def irqs(prog: Program) -> IrqTable:
    """Every allocated IRQ with its per-CPU counts, chip, flow handler, actions and affinity.

    >>> [i.irq for i in irqs(prog).irqs if i.actions][:3]  # doctest: +SKIP
    [0, 1, 4]
    """
    errors: list[str] = []
    found: list[IrqInfo] = []
    for irq, desc in for_each_irq_desc(prog):
        try:
            found.append(irq_desc_info(prog, irq, desc))
        except _ERRORS as exc:
            errors.append(f"IRQ {irq} (irq_desc {int(desc):#x}): {exc}")
    return IrqTable(tuple(for_each_possible_cpu(prog)), tuple(found), tuple(errors))


def _listed(what: str, items: Callable[[], Iterable[T]], errors: list[str]) -> tuple[T, ...]:
    out: list[T] = []
    try:
        out.extend(items())
    except _ERRORS as exc:
        errors.append(f"{what}: {exc}")
    return tuple(out)


def devices(prog: Program, *, disks: bool = False) -> DeviceTable:
    """Registered character and block device numbers, and with ``disks`` every disk.

    >>> [c.name for c in devices(prog).chrdevs][:2]  # doctest: +SKIP
    ['mem', '/dev/vc/0']
    """
    errors: list[str] = []
    chrdevs = _listed("chrdevs", lambda: for_each_registered_chrdev(prog), errors)
    blkdevs = _listed("major_names", lambda: for_each_registered_blkdev(prog), errors)
    found = _listed("block_class", lambda: for_each_disk(prog), errors) if disks else ()
    return DeviceTable(chrdevs, blkdevs, found, tuple(errors))
