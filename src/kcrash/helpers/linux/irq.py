"""
kcrash.helpers.linux.irq
========================

Interrupt descriptors (``include/linux/irqdesc.h``: ``struct irq_desc``; ``kernel/irq/irqdesc.c``
keeps them in the ``sparse_irqs`` maple tree since v6.5, in the ``irq_desc_tree`` radix tree (an
XArray) before, or in the static ``irq_desc[]`` array without ``CONFIG_SPARSE_IRQ``): each IRQ's
per-CPU counts (``kstat_irqs``, a per-CPU ``unsigned int`` or, since v6.10, a per-CPU
``struct irqstat`` whose first member ``cnt`` is that counter), its ``irqaction`` chain (name,
``handler`` and ``thread_fn`` with their symbols), its chip (``irq_data.chip->name``), flow handler
and affinity (``irq_common_data.affinity``). What ``/proc/interrupts`` and crash's ``irq -s`` show,
for every CPU of ``__cpu_possible_mask``. Named as drgn's ``drgn.helpers.linux.irq``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.errors import FaultError, KcrashError, TypeLookupError
from kcrash.helpers.linux.cpumask import cpumask_bits, for_each_possible_cpu
from kcrash.helpers.linux.mapletree import mt_for_each
from kcrash.helpers.linux.timer import symbol_text
from kcrash.helpers.linux.xarray import xa_for_each
from kcrash.types.model import TypeKind
from kcrash.types.object import Object, cast
from kcrash.types.percpu import per_cpu_offset
from kcrash.types.program import Program

__all__ = [
    "IrqAction",
    "IrqInfo",
    "for_each_irq_desc",
    "irq_desc_affinity",
    "irq_desc_info",
    "irq_desc_kstat_cpu",
    "irq_get_nr_irqs",
]

#: the most actions one IRQ line may chain (shared interrupts have a handful)
_MAX_ACTIONS = 1024
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class IrqAction:
    """One ``struct irqaction`` of an IRQ (``include/linux/interrupt.h``).

    :param address: the ``struct irqaction *``
    :param name: ``action->name``
    :param handler: ``action->handler``
    :param handler_name: the symbol covering ``handler`` (None: no symbol covers it, or no function)
    :param thread_fn: ``action->thread_fn``
    :param thread_fn_name: the symbol covering ``thread_fn`` (None: no symbol, or no function)

    >>> [a.name for a in irq_desc_info(prog, *next(for_each_irq_desc(prog))).actions]
    ['timer']
    """

    address: int
    name: str
    handler: int
    handler_name: str | None
    thread_fn: int
    thread_fn_name: str | None


@dataclass(frozen=True, slots=True)
class IrqInfo:
    """One IRQ as ``irq -s`` shows it (``struct irq_desc``, ``include/linux/irqdesc.h``).

    :param irq: the IRQ number
    :param desc: the ``struct irq_desc *``
    :param chip: ``irq_data.chip->name``, None if there is no chip
    :param flow_handler: the symbol of ``handle_irq`` (``handle_edge_irq``), None if unknown
    :param actions: the ``struct irqaction`` chain
    :param counts: ``(cpu, count)`` for every possible CPU
    :param total: the sum of the counts
    :param affinity: the CPUs of its affinity mask
    :param truncated: why the action chain was cut short, None if it was not

    >>> info = irq_desc_info(prog, *next(for_each_irq_desc(prog)))
    >>> info.total == sum(count for _, count in info.counts)
    True
    """

    irq: int
    desc: int
    chip: str | None
    flow_handler: str | None
    actions: tuple[IrqAction, ...]
    counts: tuple[tuple[int, int], ...]
    total: int
    affinity: tuple[int, ...]
    truncated: str | None


def irq_get_nr_irqs(prog: Program) -> int:
    """Return the number of IRQs: ``nr_irqs`` (``total_nr_irqs`` since v7.2's commit b99dc723b12e).

    :param prog: the program
    :return: the number of IRQ numbers the kernel allocated room for

    >>> irq_get_nr_irqs(prog)
    440
    """
    for name in ("total_nr_irqs", "nr_irqs"):
        if name in prog:
            return prog.read_u32(prog.symbol_address(name))
    raise KcrashError("neither total_nr_irqs nor nr_irqs is in the symbol table")


def for_each_irq_desc(prog: Program) -> Iterator[tuple[int, Object]]:
    """Iterate over every allocated IRQ descriptor in IRQ order.

    They are in the ``sparse_irqs`` maple tree since v6.5, the ``irq_desc_tree`` radix tree before.

    :param prog: the program
    :return: an iterator of ``(irq, struct irq_desc *)``
    :raises FaultError: if the tree's root cannot be read

    >>> [irq for irq, _ in for_each_irq_desc(prog)][:3]
    [0, 1, 2]
    """
    desc_type = prog.pointer_type("struct irq_desc")
    if "sparse_irqs" in prog:
        # Since Linux kernel commit 721255b9826b (v6.5) the descriptors are in a maple tree.
        tree = prog.object("struct maple_tree", prog.symbol_address("sparse_irqs"))
        for irq, _, entry in mt_for_each(tree):
            yield irq, cast(desc_type, entry)
    elif "irq_desc_tree" in prog:
        # Before: a radix tree, which is an XArray since commit f8d5d0cc145c (v4.20).
        tree = prog.object("struct xarray", prog.symbol_address("irq_desc_tree"))
        for irq, entry in xa_for_each(tree):
            yield irq, cast(desc_type, entry)
    else:
        # !CONFIG_SPARSE_IRQ: the static array, nr_irqs entries in use.
        base, size = prog.symbol_address("irq_desc"), prog.type("struct irq_desc").sizeof()
        for irq in range(min(irq_get_nr_irqs(prog), 1 << 20)):
            yield irq, Object(prog, desc_type, base + irq * size)


def irq_desc_kstat_cpu(desc: Object, cpu: int) -> int:
    """Return how many times an IRQ fired on a CPU, like the kernel's ``irq_desc_kstat_cpu(desc, cpu)``.

    Read from ``desc->kstat_irqs``, per CPU.

    :param desc: ``struct irq_desc *``
    :param cpu: the CPU number
    :return: the count, 0 where the descriptor has no counters
    :raises FaultError: if the per-CPU counter cannot be read

    >>> irq_desc_kstat_cpu(next(for_each_irq_desc(prog))[1], 0)
    262
    """
    kstat = int(desc.kstat_irqs)
    if not kstat:
        return 0
    prog = desc.prog_
    # Since Linux kernel commit 86d2a2f51fba (v6.10) a struct irqstat whose first member is cnt.
    return prog.read_u32((kstat + per_cpu_offset(prog, cpu)) & _MASK64)


def irq_desc_affinity(desc: Object) -> tuple[int, ...]:
    """Return the CPUs of an IRQ's affinity mask.

    ``irq_common_data.affinity``, a ``cpumask_var_t``: a pointer with ``CONFIG_CPUMASK_OFFSTACK``,
    else an array of one ``struct cpumask``.

    :param desc: ``struct irq_desc *``
    :return: the CPU numbers, ascending; empty before v4.3 (the mask was in ``struct irq_data``)
    :raises FaultError: if the mask cannot be read

    >>> irq_desc_affinity(next(for_each_irq_desc(prog))[1])
    (0, 1)
    """
    try:
        mask = desc.irq_common_data.affinity
    except (AttributeError, TypeLookupError):
        # Before commit 9df872faa7e1 (v4.3) affinity was in struct irq_data.
        mask = desc.irq_data.affinity
    kind = mask.type_.strip_typedefs().kind
    if kind is TypeKind.POINTER and not int(mask):
        return ()
    target = mask[0]
    return tuple(cpumask_bits(desc.prog_, target))


def _string_or_none(pointer: Object) -> str | None:
    return pointer.string_().decode(errors="replace") if int(pointer) else None


def _actions(desc: Object) -> tuple[tuple[IrqAction, ...], str | None]:
    prog = desc.prog_
    out: list[IrqAction] = []
    seen: set[int] = set()
    action = desc.action
    while int(action):
        if int(action) in seen or len(seen) >= _MAX_ACTIONS:
            return tuple(out), f"action chain loops or exceeds {_MAX_ACTIONS} at {int(action):#x}"
        seen.add(int(action))
        handler, thread_fn = int(action.handler), int(action.thread_fn)
        out.append(IrqAction(int(action), _string_or_none(action.name) or "", handler,
                             symbol_text(prog, handler), thread_fn, symbol_text(prog, thread_fn)))
        action = action.next
    return tuple(out), None


def _chip_name(desc: Object) -> str | None:
    chip = desc.irq_data.chip
    return _string_or_none(chip.name) if int(chip) else None


def irq_desc_info(prog: Program, irq: int, desc: Object) -> IrqInfo:
    """Return everything ``irq -s`` shows of one IRQ: chip, flow handler, actions, per-CPU counts, affinity.

    :param prog: the program
    :param irq: the IRQ number
    :param desc: ``struct irq_desc *``
    :return: the IRQ's details (an unreadable action ends the chain, said in :attr:`IrqInfo.truncated`)
    :raises FaultError: if the descriptor cannot be read

    >>> irq_desc_info(prog, *next(for_each_irq_desc(prog))).chip
    'IO-APIC'
    """
    try:
        actions, truncated = _actions(desc)
    except FaultError as exc:
        actions, truncated = (), f"unreadable irqaction at {exc.address:#x}"
    counts = tuple((cpu, irq_desc_kstat_cpu(desc, cpu)) for cpu in for_each_possible_cpu(prog))
    try:
        affinity = irq_desc_affinity(desc)
    except FaultError:
        affinity = ()
    return IrqInfo(irq, int(desc), _chip_name(desc), symbol_text(prog, int(desc.handle_irq)), actions,
                   counts, sum(c for _, c in counts), affinity, truncated)
