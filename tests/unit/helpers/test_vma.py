"""vma helpers on a synthetic kernel without a maple tree (the ``mmap``/``vm_next`` list of kernels
before 6.1): order, vma_find, a cycle ending the walk with a reason, VM_* flag names."""

from __future__ import annotations

from kcrash.helpers.linux.vma import for_each_vma, vm_flags_names, vma_find
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000000000
MM, VMAS = BASE, BASE + 0x100
VMA_SIZE = 0x20


def kernel(ranges: list[tuple[int, int]]) -> tuple[Program, bytearray]:
    w = BtfWriter()
    ul = w.add_int("unsigned long", 8)
    vma_ptr = w.add_ptr(w.next_id + 1)
    w.add_struct("vm_area_struct", VMA_SIZE, [("vm_start", ul, 0, 0), ("vm_end", ul, 64, 0),
                                              ("vm_next", vma_ptr, 128, 0)])
    w.add_struct("mm_struct", 8, [("mmap", vma_ptr, 0, 0)])
    memory = bytearray(0x1000)
    segments = SegmentMap()
    segments.add_segment(BASE, len(memory), lambda a, n: bytes(memory[a - BASE:a - BASE + n]), physical=False)

    def u64(address: int, value: int) -> None:
        memory[address - BASE:address - BASE + 8] = value.to_bytes(8, "little")

    for j, (start, end) in enumerate(ranges):
        vma = VMAS + j * VMA_SIZE
        u64(vma, start)
        u64(vma + 8, end)
        u64(vma + 16, vma + VMA_SIZE if j + 1 < len(ranges) else 0)
    u64(MM, VMAS if ranges else 0)
    return Program(MemoryReader(segments), None, parse_btf(w.to_bytes())), memory


def mm(prog: Program) -> Object:
    return Object(prog, prog.pointer_type("struct mm_struct"), MM)


def test_the_mmap_list_in_order_and_vma_find() -> None:
    prog, _ = kernel([(0x400000, 0x401000), (0x600000, 0x700000), (0x7FF000, 0x800000)])
    walk = for_each_vma(mm(prog))
    assert [(int(v.vm_start), int(v.vm_end)) for v in walk] == [(0x400000, 0x401000), (0x600000, 0x700000),
                                                                (0x7FF000, 0x800000)]
    assert walk.truncated is None
    assert int(vma_find(mm(prog), 0x6FFFFF)) == VMAS + VMA_SIZE
    assert int(vma_find(mm(prog), 0x500000)) == 0 and int(vma_find(mm(prog), 0x800000)) == 0


def test_a_cycle_ends_the_walk() -> None:
    prog, memory = kernel([(0x1000, 0x2000), (0x3000, 0x4000)])
    memory[VMAS + VMA_SIZE + 16 - BASE:VMAS + VMA_SIZE + 24 - BASE] = VMAS.to_bytes(8, "little")
    walk = for_each_vma(mm(prog))
    assert len(list(walk)) == 2 and walk.truncated == f"cycle at VMA {VMAS:#x}"
    walk = for_each_vma(mm(prog), limit=1)
    assert len(list(walk)) == 1 and walk.truncated == "stopped at the limit of 1 VMAs"


def test_vm_flags_names() -> None:
    assert vm_flags_names(0x8100073) == ["READ", "WRITE", "MAYREAD", "MAYWRITE", "MAYEXEC", "ACCOUNT", "SOFTDIRTY"]
    assert vm_flags_names(0x1_0000_0001) == ["READ", "0x100000000"]
    assert vm_flags_names(0) == []
