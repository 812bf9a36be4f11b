"""analysis.kernel_state on the synthetic two-CPU kernel: every possible CPU is listed (the offline
one too), and a CPU or IRQ whose structures cannot be read becomes a line in ``errors`` while the
rest is still listed."""

from __future__ import annotations

from kcrash.analysis import kernel_state
from support.state_kernel import IRQ_DESC, PCPU_OFFSETS, sample


def test_every_possible_cpu_is_listed() -> None:
    k, _ = sample()
    runqueues = kernel_state.runqueues(k.prog)
    assert [rq.cpu for rq in runqueues.runqueues] == [0, 1] and runqueues.online == (0,)
    timers = kernel_state.timers(k.prog, hrtimers=True)
    assert sorted({b.cpu for b in timers.bases}) == [0, 1] and len(timers.hrtimer_bases) == 4
    assert kernel_state.timers(k.prog).hrtimer_bases == ()
    assert kernel_state.irqs(k.prog).cpus == (0, 1)


def test_an_unreadable_cpu_is_an_error_line() -> None:
    k, _ = sample()
    k.u64(PCPU_OFFSETS + 8, 0x7000_0000_0000)  # CPU 1's per-CPU area is nowhere in the dump
    runqueues = kernel_state.runqueues(k.prog)
    assert [rq.cpu for rq in runqueues.runqueues] == [0]
    assert len(runqueues.errors) == 1 and runqueues.errors[0].startswith("CPU 1: runqueues:")
    timers = kernel_state.timers(k.prog, hrtimers=True)
    assert {b.cpu for b in timers.bases} == {0}
    assert [e.split(":")[:2] for e in timers.errors] == [["CPU 1", " timer_bases"], ["CPU 1", " hrtimer_bases"]]


def test_an_unreadable_irq_is_an_error_line() -> None:
    k, _ = sample()
    k.u64(IRQ_DESC + 48 * 3 + 16, 0x7000_0000_0000)  # irq_data.chip of IRQ 3: a wild pointer
    table = kernel_state.irqs(k.prog)
    assert [i.irq for i in table.irqs] == [0, 1, 2]
    assert len(table.errors) == 1 and table.errors[0].startswith("IRQ 3 (irq_desc ")
