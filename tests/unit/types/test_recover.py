"""kcrash.types.recover: each scanner finds the real thing in synthetic memory and rejects near-misses."""

from __future__ import annotations

import struct

import pytest

from kcrash.errors import FaultError
from kcrash.types.btf import parse_btf
from kcrash.types.model import TypeKind
from kcrash.types.recover import (
    ImageData,
    find_btf_or_none,
    find_init_task_or_none,
    find_modules_head_or_none,
    find_per_cpu_offset_or_none,
    percpu_variables,
)
from support.btf_write import BtfWriter

BASE = 0xFFFF800008000000
# task_struct: pid at 8, tasks at 16 (list_head), comm at 32; struct module: state 0, list 8, name 24
TASK_SIZE, PID, TASKS, COMM = 64, 8, 16, 32
MOD_SIZE, STATE, LIST, NAME = 96, 0, 8, 24


def _btf(with_task: bool = True) -> bytes:
    w = BtfWriter()
    u64 = w.add_int("unsigned long", 8)
    int_ = w.add_int("int", 4, signed=True)
    char = w.add_int("char", 1, signed=True, char=True)
    head = w.add_struct("list_head", 16, [("next", u64, 0, 0), ("prev", u64, 64, 0)])
    comm = w.add_array(char, 16, int_)
    if with_task:
        w.add_struct("task_struct", TASK_SIZE, [("pid", int_, PID * 8, 0), ("tasks", head, TASKS * 8, 0),
                                                ("comm", comm, COMM * 8, 0)])
    name = w.add_array(char, 56, int_)
    w.add_struct("module", MOD_SIZE, [("state", int_, STATE * 8, 0), ("list", head, LIST * 8, 0),
                                      ("name", name, NAME * 8, 0)])
    rq = w.add_int("rq_blob", 8)
    var = w.add_var("runqueues", rq)
    other = w.add_var("__entry_task", u64)
    w.add_datasec(".data..percpu", 0x2000, [(other, 0x308, 8), (var, 0x1000, 8)])
    return w.to_bytes()


class Memory:
    """A dict of 8-byte words and byte strings; anything else faults."""

    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}

    def put(self, address: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.bytes[address + i] = b

    def u64(self, address: int, value: int) -> None:
        self.put(address, value.to_bytes(8, "little"))

    def read(self, address: int, size: int) -> bytes:
        try:
            return bytes(self.bytes[address + i] for i in range(size))
        except KeyError:
            raise FaultError(f"{address:#x} not mapped") from None

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")


def test_btf_is_found_after_near_misses() -> None:
    blob = _btf()
    bad_version = blob[:2] + b"\x02" + blob[3:]
    bad_strings = blob[:16] + struct.pack("<I", 4) + blob[20:]  # str_off not right after the types
    no_task = _btf(with_task=False)
    data = b"\0" * 8 + bad_version + b"\x9f\xeb\x01" + no_task + bad_strings + b"\0" * 5 + blob + b"\0" * 8
    found = find_btf_or_none(data, BASE)
    assert found is not None
    start, stop, btf = found
    assert start == BASE + data.index(blob)
    assert stop - start == len(blob)
    assert btf.find_type_or_none("task_struct", TypeKind.STRUCT) is not None


def test_btf_cut_short_or_without_task_struct_is_none() -> None:
    blob = _btf()
    assert find_btf_or_none(blob[:-1], BASE) is None
    assert find_btf_or_none(_btf(with_task=False), BASE) is None


def _task(mem: Memory, image: bytearray, address: int, pid: int, comm: bytes) -> None:
    off = address - BASE
    image[off + PID:off + PID + 4] = struct.pack("<i", pid)
    image[off + COMM:off + COMM + len(comm)] = comm


def _ring(mem: Memory, nodes: list[int]) -> None:
    for i, node in enumerate(nodes):
        mem.u64(node, nodes[(i + 1) % len(nodes)])
        mem.u64(node + 8, nodes[i - 1])


def test_init_task_needs_pid_0_and_a_consistent_ring() -> None:
    btf = parse_btf(_btf())
    mem, image = Memory(), bytearray(0x1000)
    decoy_pid, decoy_ring, real = BASE + 0x100, BASE + 0x200, BASE + 0x300
    _task(mem, image, decoy_pid, 7, b"swapper/0\0")
    _task(mem, image, decoy_ring, 0, b"swapper/0\0")
    _task(mem, image, real, 0, b"swapper/0\0")
    other = 0xFFFF000001000000
    _ring(mem, [real + TASKS, other + TASKS])
    _ring(mem, [decoy_ring + TASKS, other + 0x100 + TASKS])
    mem.u64(other + 0x100 + TASKS + 8, 0)  # its prev does not point back
    assert find_init_task_or_none(ImageData(BASE, bytes(image)), btf, mem.read_u64) == real
    mem.u64(other + TASKS + 8, 0)
    assert find_init_task_or_none(ImageData(BASE, bytes(image)), btf, mem.read_u64) is None


def test_modules_head_is_the_list_of_valid_modules_only() -> None:
    btf = parse_btf(_btf())
    mem = Memory()
    lo, hi = 0xFFFF800000000000, 0xFFFF800008000000
    mods = [lo + 0x1000, lo + 0x3000]
    for i, m in enumerate(mods):
        mem.put(m, bytes(MOD_SIZE))
        mem.put(m + NAME, f"mod{i}".encode() + b"\0")
    head, decoy = BASE + 0x40, BASE + 0x80
    _ring(mem, [head, *(m + LIST for m in mods)])
    image = bytearray(0x100)
    for address in (head, decoy):
        image[address - BASE:address - BASE + 16] = mem.read(head, 16)
    # the decoy's ring is the same list seen from a module: it is not consistent from the decoy
    image[decoy - BASE:decoy - BASE + 8] = (mods[1] + LIST).to_bytes(8, "little")
    for address in range(BASE, BASE + 0x100):
        if address not in mem.bytes:
            mem.put(address, bytes([image[address - BASE]]))
    assert find_modules_head_or_none(ImageData(BASE, bytes(image)), btf, mem, [(lo, hi)]) == head
    mem.put(mods[1] + STATE, (9).to_bytes(4, "little"))  # not a module state
    assert find_modules_head_or_none(ImageData(BASE, bytes(image)), btf, mem, [(lo, hi)]) is None
    mem.put(mods[1] + STATE, bytes(4))
    mem.put(mods[0] + NAME, b"bad name\0")  # not printable without spaces
    assert find_modules_head_or_none(ImageData(BASE, bytes(image)), btf, mem, [(lo, hi)]) is None


def test_percpu_variables_come_from_the_datasec() -> None:
    assert percpu_variables(parse_btf(_btf())) == {"__entry_task": (0x308, 8), "runqueues": (0x1000, 8)}


@pytest.mark.parametrize(("start_misaligned", "known"), [(False, (0, 1, 2, 3)), (True, (0, 1, 2, 3)),
                                                         (False, (0, 2))])
def test_per_cpu_offset_is_the_one_array_matching_the_runqueues(start_misaligned: bool,
                                                                known: tuple[int, ...]) -> None:
    # evenly spaced areas: with CPUs 1 and 3 unknown, the array shifted by one entry fits as well
    # (another __per_cpu_start), so the scanner refuses rather than guess
    start = BASE + 0x4000 + (8 if start_misaligned else 0)
    offsets = [0xFFFF7FFFF7000000 + 0x10000 * c for c in range(4)]
    rqs = {c: (start + 0x1000 + offsets[c]) % (1 << 64) for c in known}
    words = [5, 6, 0, 0, *offsets, 0, 0, 1, 2]
    array = BASE + 0x10000 + 4 * 8
    image = ImageData(BASE + 0x10000, b"".join(w.to_bytes(8, "little") for w in words))
    found = find_per_cpu_offset_or_none(image, rqs, 0x1000, BASE - 0x100000)
    assert found == (None if start_misaligned or len(known) < 4 else (array, start))


def test_per_cpu_offset_needs_two_cpus_and_a_unique_match() -> None:
    start = BASE + 0x4000
    offsets = [0x100000, 0x200000]
    rqs = {c: start + 0x1000 + offsets[c] for c in (0, 1)}
    twice = b"".join(w.to_bytes(8, "little") for w in [*offsets, 0, *offsets])
    assert find_per_cpu_offset_or_none(ImageData(BASE + 0x10000, twice), rqs, 0x1000, BASE) is None
    once = b"".join(w.to_bytes(8, "little") for w in offsets)
    assert find_per_cpu_offset_or_none(ImageData(BASE + 0x10000, once), {0: rqs[0]}, 0x1000, BASE) is None
    assert find_per_cpu_offset_or_none(ImageData(BASE + 0x10000, once), rqs, 0x1000, BASE) == (BASE + 0x10000, start)
    # a __per_cpu_start below the image (a pointer pair that happens to differ as the runqueues) is refused
    assert find_per_cpu_offset_or_none(ImageData(BASE + 0x10000, once), rqs, 0x1000, start + 0x1000) is None


def _ksymtab(names: list[str], values: list[int], base: int) -> tuple[bytes, dict[str, int]]:
    # entries first (12 bytes: value_offset, name_offset, namespace_offset), then the names
    strings = b"".join(n.encode() + b"\0" for n in names)
    table = 12 * len(names)
    out, at = bytearray(), table
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        out += struct.pack("<iii", value - (base + 12 * i), at - (12 * i + 4), 0)
        at += len(name) + 1
    return bytes(out) + strings, dict(zip(names, values, strict=True))


def test_ksymtab_runs_are_taken_when_kallsyms_agrees() -> None:
    from kcrash.types.recover import find_ksymtab

    names = [f"sym_{i}" for i in range(80)]
    values = [BASE + 0x100000 + 0x40 * i for i in range(80)]
    data, expected = _ksymtab(names, values, BASE)
    kallsyms = {"sym_0": values[0], "sym_40": values[40]}
    assert find_ksymtab(data, BASE, 12, kallsyms.get, minimum=1) == expected
    # one kallsyms symbol elsewhere: the run is not the table
    assert find_ksymtab(data, BASE, 12, {**kallsyms, "sym_40": values[40] + 4}.get, minimum=1) == {}
    # no name kallsyms knows, or too few agreeing, or a run too short: nothing
    assert find_ksymtab(data, BASE, 12, {}.get, minimum=0) == {}
    assert find_ksymtab(data, BASE, 12, kallsyms.get, minimum=3) == {}
    short, _ = _ksymtab(names[:40], values[:40], BASE)
    assert find_ksymtab(short, BASE, 12, kallsyms.get, minimum=1) == {}


def test_taint_flags_is_the_one_array_starting_pg_f_s_r_m() -> None:
    from kcrash.types.recover import find_taint_flags_or_none

    table = b"PG\x01F \x01S \x00R \x00M \x00B \x00"
    assert find_taint_flags_or_none(b"xx" + table, BASE, 3) == BASE + 2
    assert find_taint_flags_or_none(b"PG\x01F \x01S \x00R \x00X \x00", BASE, 3) is None  # not M
    assert find_taint_flags_or_none(table + table, BASE, 3) is None  # twice: not told apart
    assert find_taint_flags_or_none(b"PG\x01\x00F \x01\x00S \x00\x00R \x00\x00M \x00\x00", BASE, 4) == BASE
