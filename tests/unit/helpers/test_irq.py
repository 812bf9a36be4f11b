"""irqdesc.h helpers on the synthetic kernel's static irq_desc[] (no CONFIG_SPARSE_IRQ): each IRQ's
chip, flow handler, actions with handler and thread_fn symbols, per-CPU counts for every possible
CPU (the offline one too), affinity, and a looping action chain that ends with a reason."""

from __future__ import annotations

from kcrash.helpers.linux.irq import (
    for_each_irq_desc,
    irq_desc_affinity,
    irq_desc_info,
    irq_desc_kstat_cpu,
    irq_get_nr_irqs,
)
from support.state_kernel import BASE, IRQ_DESC, sample


def test_irq_descriptors_from_the_array() -> None:
    k, named = sample()
    assert irq_get_nr_irqs(k.prog) == 4
    descs = list(for_each_irq_desc(k.prog))
    assert [(irq, int(desc)) for irq, desc in descs] == [(n, IRQ_DESC + 48 * n) for n in range(4)]
    info = irq_desc_info(k.prog, *descs[3])
    assert (info.irq, info.desc, info.chip, info.flow_handler) == (3, named["irq3"], "IO-APIC", "handle_edge_irq")
    assert [(a.name, a.handler_name, a.thread_fn_name) for a in info.actions] == [
        ("eth0", "timer_interrupt+0x4", None), ("", None, "irq_thread_fn")]
    assert (info.counts, info.total, info.affinity, info.truncated) == (((0, 0), (1, 7)), 7, (1,), None)


def test_counts_and_affinity() -> None:
    k, _ = sample()
    _, desc = next(iter(for_each_irq_desc(k.prog)))
    assert [irq_desc_kstat_cpu(desc, cpu) for cpu in (0, 1)] == [120, 3]
    assert irq_desc_affinity(desc) == (0, 1)
    _, empty = list(for_each_irq_desc(k.prog))[1]
    assert irq_desc_kstat_cpu(empty, 0) == 0 and irq_desc_affinity(empty) == ()
    assert irq_desc_info(k.prog, 1, empty).actions == ()


def test_a_looping_action_chain_ends() -> None:
    k, named = sample()
    first = int.from_bytes(k.memory[named["irq3"] + 40 - BASE:][:8], "little")
    second = int.from_bytes(k.memory[first + 16 - BASE:][:8], "little")
    k.u64(second + 16, first)  # second->next = first
    info = irq_desc_info(k.prog, *list(for_each_irq_desc(k.prog))[3])
    assert len(info.actions) == 2 and info.truncated is not None and "loops" in info.truncated
