"""find_percpu_address on a synthetic kernel: which CPU's unit (``__per_cpu_offset[cpu]``,
``pcpu_unit_size`` long) holds an address, the offset into it, and the vmlinux per-CPU variable there
(symbols linked at 0, found by offset although they never symbolize as addresses)."""

from __future__ import annotations

from kcrash.helpers.linux.percpu import find_percpu_address
from support.mm_kernel import PAGE, PAGE_OFFSET, UNIT_PFN, UNIT_SIZE, Kernel


def test_units_and_variables() -> None:
    prog = Kernel().prog
    unit1 = PAGE_OFFSET + UNIT_PFN[1] * PAGE
    found = find_percpu_address(prog, unit1 + 0x108)
    assert found is not None
    assert (found.cpu, found.offset, found.symbol, found.symbol_offset, found.module) == (1, 0x108, "runqueues",
                                                                                        8, None)
    found = find_percpu_address(prog, PAGE_OFFSET + UNIT_PFN[0] * PAGE + 0x44)
    assert found is not None and (found.cpu, found.symbol, found.symbol_offset) == (0, "cpu_number", 4)
    # past the static variables (dynamic per-CPU memory): the unit, no variable
    found = find_percpu_address(prog, unit1 + 0x3000)
    assert found is not None and (found.cpu, found.symbol) == (1, None)
    assert find_percpu_address(prog, unit1 + UNIT_SIZE) is None
    assert find_percpu_address(prog, PAGE_OFFSET) is None
