"""
kcrash.helpers.linux.percpu
===========================

Per-CPU variables (``include/linux/percpu-defs.h``) for helper users: :func:`per_cpu`,
:func:`per_cpu_ptr` and :func:`per_cpu_offset` from :mod:`kcrash.types.percpu`, plus
:func:`this_cpu_current`, the ``current`` task of a CPU as the kernel stores it
(``pcpu_hot.current_task`` or ``current_task``), and :func:`find_percpu_address`, which CPU's
per-CPU unit (``mm/percpu.c``: ``pcpu_unit_size`` bytes at ``__per_cpu_offset[cpu]``) an address
is in and which per-CPU variable of vmlinux or of a module (``mod->percpu``) lies there. Which
CPUs exist is :mod:`~kcrash.helpers.linux.cpumask`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from kcrash.errors import KcrashError, SymbolNotFoundError, TypeLookupError
from kcrash.helpers.linux.cpumask import for_each_possible_cpu
from kcrash.helpers.linux.module import for_each_module, module_symbols_of
from kcrash.helpers.memo import per_program
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu, per_cpu_offset, per_cpu_ptr
from kcrash.types.program import Program

__all__ = ["PercpuAddress", "find_percpu_address", "per_cpu", "per_cpu_offset", "per_cpu_ptr",
           "this_cpu_current"]


def this_cpu_current(prog: Program, cpu: int) -> Object:
    """Return ``current`` on a CPU, from the per-CPU variable the kernel reads.

    Since Linux kernel commit e57ef2ed97c1 (v6.2) it is ``pcpu_hot.current_task``; before (and after
    ``pcpu_hot`` was dissolved again) the per-CPU ``current_task``. arm64 keeps ``current`` in
    ``sp_el0``, which a dump does not save; the per-CPU ``__entry_task`` it reloads ``sp_el0`` from
    (set at every context switch, ``entry_task_switch()``) is read there.

    :param prog: the program
    :param cpu: a possible CPU
    :return: ``struct task_struct *``
    :raises FaultError: if the per-CPU variable cannot be read

    >>> this_cpu_current(prog, 1).comm.string_()
    b'khungtaskd'
    """
    for name in ("pcpu_hot", "current_task"):
        try:
            found = per_cpu(prog, name, cpu)
        except (SymbolNotFoundError, TypeLookupError):
            continue
        return found.current_task if name == "pcpu_hot" else found
    return per_cpu(prog, "__entry_task", cpu)


# -- which CPU's area an address is in ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PercpuAddress:
    """An address inside a CPU's unit of the first per-CPU chunk, as :func:`find_percpu_address` finds it.

    :param address: the address looked up
    :param cpu: the CPU whose unit holds it
    :param offset: the offset into that unit
    :param symbol: the per-CPU variable there; None: dynamic per-CPU memory (``alloc_percpu``) or padding
    :param symbol_offset: the offset into ``symbol``
    :param module: the module whose static per-CPU data it is, None for vmlinux

    >>> found = find_percpu_address(prog, int(per_cpu_ptr(prog, prog["runqueues"].address_of_(), 1)))
    >>> found.cpu, found.symbol
    (1, 'runqueues')
    """

    address: int
    cpu: int
    offset: int
    symbol: str | None
    symbol_offset: int
    module: str | None


@dataclass(frozen=True, slots=True)
class _Units:
    # (start, cpu) of each possible CPU's unit, sorted; the unit size; __per_cpu_start; the static
    # per-CPU symbols as sorted (address, end, name, module) when they are not ordinary kernel addresses
    starts: tuple[tuple[int, int], ...]
    unit_size: int
    base: int
    symbols: tuple[tuple[int, int, str, str | None], ...]


_MASK64 = (1 << 64) - 1


@per_program
def _units(prog: Program) -> _Units:
    # Unit c of the first chunk is __per_cpu_offset[c] + __per_cpu_start (mm/percpu.c
    # setup_per_cpu_areas: delta + pcpu_unit_offsets[cpu]), pcpu_unit_size bytes long; the sum wraps
    # where .data..percpu is linked at a kernel address (the lab's 7.2) instead of 0.
    base = prog.symbol_address("__per_cpu_start")
    unit_size = prog.read_u32(prog.symbol_address("pcpu_unit_size"))
    starts = sorted(((per_cpu_offset(prog, cpu) + base) & _MASK64, cpu) for cpu in for_each_possible_cpu(prog))
    return _Units(tuple(starts), unit_size, base, tuple(_percpu_symbols(prog, base)))


def _percpu_symbols(prog: Program, base: int) -> list[tuple[int, int, str, str | None]]:
    # vmlinux's per-CPU symbols when linked at 0 (the kernel-address case symbolizes as usual), and
    # each module's static per-CPU variables ([mod->percpu, + percpu_size), kernel/module/main.c).
    out: list[tuple[int, int, str, str | None]] = []
    table = prog.symbol_table
    if table is None:
        return out
    end = prog.symbol_address("__per_cpu_end")
    if base == 0:
        for symbol in table.iter_symbols():
            if symbol.address >= end:
                break
            out.append((symbol.address, symbol.address + symbol.size, symbol.name, None))
    try:
        modules = list(for_each_module(prog))
    except KcrashError:  # no module list (or an unreadable one): vmlinux's variables only
        modules = []
    for mod in modules:
        try:
            start, size = int(mod.percpu), int(mod.percpu_size)
            if size:
                out.extend((s.address, s.address + max(s.size, 1), s.name, s.module)
                           for s in module_symbols_of(mod) if start <= s.address < start + size)
        except (KcrashError, AttributeError):
            continue
    return sorted(out)


def find_percpu_address(prog: Program, address: int) -> PercpuAddress | None:
    """Return which CPU's per-CPU unit holds ``address``, and the variable there.

    Only the first chunk (the static variables of vmlinux and modules and the
    first dynamic allocations); later chunks are vmalloc'd and show as vmap areas.

    :param prog: the program
    :param address: a kernel virtual address
    :return: where it is, None when no unit of the first chunk holds it

    >>> find_percpu_address(prog, int(per_cpu_ptr(prog, prog["runqueues"].address_of_(), 1))).cpu
    1
    """
    units = _units(prog)
    i = bisect.bisect_right(units.starts, (address, 1 << 16)) - 1
    if i < 0 or address >= units.starts[i][0] + units.unit_size:
        return None
    start, cpu = units.starts[i]
    offset = address - start
    name, symbol_offset, module = _percpu_symbol(prog, units, (units.base + offset) & _MASK64)
    return PercpuAddress(address, cpu, offset, name, symbol_offset, module)


def _percpu_symbol(prog: Program, units: _Units, key: int) -> tuple[str | None, int, str | None]:
    k = bisect.bisect_right(units.symbols, (key, 1 << 64)) - 1
    if k >= 0 and key < units.symbols[k][1]:
        start, _, name, module = units.symbols[k]
        return name, key - start, module
    if units.base:
        found = prog.symbolize_or_none(key)
        if found is not None and found[0].address >= units.base:
            return found[0].name, found[1], found[0].module
    return None, 0, None
