"""
kcrash.helpers.linux.cpumask
============================

CPU masks (``include/linux/cpumask.h``): which CPUs are possible, present and online, read from
the kernel's ``__cpu_*_mask`` bitmaps and bounded by ``nr_cpu_ids``. Per-CPU data itself is
:mod:`kcrash.helpers.linux.percpu`.
"""

from __future__ import annotations

from collections.abc import Iterator

from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["cpumask_bits", "for_each_online_cpu", "for_each_possible_cpu", "for_each_present_cpu",
           "num_online_cpus", "num_possible_cpus"]

_MAX_CPUS = 1 << 16


def cpumask_bits(prog: Program, mask: Object) -> Iterator[int]:
    """Iterate over the CPUs set in a ``struct cpumask`` (below ``nr_cpu_ids``).

    :param prog: the program the mask is in
    :param mask: ``struct cpumask`` (or a pointer to one)
    :return: an iterator of CPU numbers, ascending
    :raises FaultError: if the mask cannot be read

    >>> list(cpumask_bits(prog, prog["__cpu_online_mask"]))
    [1]
    """
    limit = min(int(prog["nr_cpu_ids"]), _MAX_CPUS)
    raw = mask.bits.to_bytes_()[:(limit + 63) // 64 * 8]
    value = int.from_bytes(raw, "little")
    return (cpu for cpu in range(limit) if value >> cpu & 1)


def _mask(prog: Program, name: str) -> Iterator[int]:
    return cpumask_bits(prog, prog[name])


def for_each_possible_cpu(prog: Program) -> Iterator[int]:
    """Iterate over the possible CPUs, like the kernel's ``for_each_possible_cpu(cpu)``.

    The CPUs in ``__cpu_possible_mask``.

    :param prog: the program
    :return: an iterator of CPU numbers, ascending

    >>> list(for_each_possible_cpu(prog))
    [0, 1]
    """
    return _mask(prog, "__cpu_possible_mask")


def for_each_present_cpu(prog: Program) -> Iterator[int]:
    """Iterate over the present CPUs, like the kernel's ``for_each_present_cpu(cpu)``.

    The CPUs in ``__cpu_present_mask``.

    :param prog: the program
    :return: an iterator of CPU numbers, ascending

    >>> list(for_each_present_cpu(prog))
    [0, 1]
    """
    return _mask(prog, "__cpu_present_mask")


def for_each_online_cpu(prog: Program) -> Iterator[int]:
    """Iterate over the online CPUs, like the kernel's ``for_each_online_cpu(cpu)``.

    The CPUs in ``__cpu_online_mask`` (after a panic, the CPUs stopped by it are offline).

    :param prog: the program
    :return: an iterator of CPU numbers, ascending

    >>> list(for_each_online_cpu(prog))
    [1]
    """
    return _mask(prog, "__cpu_online_mask")


def num_online_cpus(prog: Program) -> int:
    """Return the number of online CPUs, like the kernel's ``num_online_cpus()``.

    :param prog: the program
    :return: how many CPUs ``__cpu_online_mask`` has

    >>> num_online_cpus(prog)
    1
    """
    return sum(1 for _ in for_each_online_cpu(prog))


def num_possible_cpus(prog: Program) -> int:
    """Return the number of possible CPUs, like the kernel's ``num_possible_cpus()``.

    :param prog: the program
    :return: how many CPUs ``__cpu_possible_mask`` has

    >>> num_possible_cpus(prog)
    2
    """
    return sum(1 for _ in for_each_possible_cpu(prog))
