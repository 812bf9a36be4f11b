"""kcrash.helpers.linux.cpumask on a synthetic kernel: the ``__cpu_*_mask`` bitmaps (two words, so
CPUs past 63 count) read through ``struct cpumask``, cut at ``nr_cpu_ids``; the typed globals come
from the shipped declarations (no BTF VAR records), as on a dump without vmlinux."""

from __future__ import annotations

import pytest

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.helpers.linux.cpumask import (
    cpumask_bits,
    for_each_online_cpu,
    for_each_possible_cpu,
    for_each_present_cpu,
    num_online_cpus,
    num_possible_cpus,
)
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF82000000
NR_CPU_IDS, POSSIBLE, PRESENT, ONLINE = BASE, BASE + 0x100, BASE + 0x200, BASE + 0x300


def _kernel(nr_cpu_ids: int, possible: int, present: int, online: int) -> Program:
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    w.add_int("unsigned int", 4)
    ul = w.add_int("unsigned long", 8)
    w.add_struct("cpumask", 16, [("bits", w.add_array(ul, 2, i), 0, 0)])
    mem = SyntheticMemory({BASE: 0x1000})
    mem.u32(NR_CPU_IDS, nr_cpu_ids)
    for addr, bits in ((POSSIBLE, possible), (PRESENT, present), (ONLINE, online)):
        mem.put(addr, bits.to_bytes(16, "little"))
    symbols = SymbolTable(["nr_cpu_ids", "__cpu_possible_mask", "__cpu_present_mask", "__cpu_online_mask"],
                          [NR_CPU_IDS, POSSIBLE, PRESENT, ONLINE], "DDDD")
    return Program(MemoryReader(mem.segments()), symbols, parse_btf(w.to_bytes()))


def test_masks_and_counts() -> None:
    # 4 possible CPUs, 3 present, CPUs 0 and 2 online (1 was taken down, 3 never plugged in)
    prog = _kernel(4, 0b1111, 0b0111, 0b0101)
    assert list(for_each_possible_cpu(prog)) == [0, 1, 2, 3]
    assert list(for_each_present_cpu(prog)) == [0, 1, 2]
    assert list(for_each_online_cpu(prog)) == [0, 2]
    assert (num_possible_cpus(prog), num_online_cpus(prog)) == (4, 2)


def test_second_word_of_the_bitmap() -> None:
    # nr_cpu_ids 70: bits 64..69 live in bits[1]
    prog = _kernel(70, (1 << 70) - 1, 1 << 65 | 1, 1 << 69 | 1 << 64 | 1 << 3)
    assert num_possible_cpus(prog) == 70
    assert list(for_each_present_cpu(prog)) == [0, 65]
    assert list(for_each_online_cpu(prog)) == [3, 64, 69]


@pytest.mark.parametrize("nr_cpu_ids", [1, 2, 64])
def test_bits_past_nr_cpu_ids_are_ignored(nr_cpu_ids: int) -> None:
    # garbage above nr_cpu_ids (the kernel never reads it) must not invent CPUs
    prog = _kernel(nr_cpu_ids, (1 << 128) - 1, 0, 0)
    assert list(for_each_possible_cpu(prog)) == list(range(nr_cpu_ids))
    assert list(cpumask_bits(prog, prog["__cpu_possible_mask"])) == list(range(nr_cpu_ids))


def test_cpumask_bits_through_a_pointer() -> None:
    prog = _kernel(8, 0, 0, 0b1001_0000)
    online = prog["__cpu_online_mask"]
    assert list(cpumask_bits(prog, online.address_of_())) == [4, 7]
