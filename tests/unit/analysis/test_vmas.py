"""task_memory and the maple-tree walk under it (:mod:`kcrash.helpers.linux.mapletree`) on a
synthetic maple tree: a corrupt tree whose internal nodes point every slot at the same child
(16**16 paths within the depth limit) ends the walk quickly, with the VMAs found so far and the
reason kept."""

from __future__ import annotations

import time

import pytest

from kcrash.analysis.vmas import task_memory
from kcrash.helpers.linux import mapletree
from kcrash.helpers.linux.mapletree import mt_for_each_range
from kcrash.memory import MemoryReader, SegmentMap
from kcrash.model import MemoryRegion
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter

BASE = 0xFFFF888000100000
TASK, MM, VMA = BASE, BASE + 0x100, BASE + 0x200
NODES = BASE + 0x1000
NODE_SIZE = 256
CHAIN = 16  # internal nodes at depths 0..15, one leaf at depth 16 (the deepest the walk allows)
END = NODES + (CHAIN + 1) * NODE_SIZE
RANGE_64, LEAF_64 = 2, 1


def node_entry(address: int, kind: int) -> int:
    # include/linux/maple_tree.h mt_mk_node(): the node address | type << 3 | 0b10
    return address | kind << 3 | 2


class Kernel:
    """struct maple_node {union {struct maple_range_64 mr64; struct maple_arange_64 ma64;}} (slots
    at +128 and +80), struct maple_tree {...; void *ma_root at +8}, and the few members of
    task_struct, mm_struct and vm_area_struct that task_memory reads."""

    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        ul = w.add_int("unsigned long", 8)
        c = w.add_int("char", 1, signed=True, char=True)
        vp = w.add_ptr(0)
        uc = w.add_int("unsigned char", 1)
        meta = w.add_struct("maple_metadata", 2, [("end", uc, 0, 0), ("gap", uc, 8, 0)])
        # meta overlaps the last slot, as in the kernel's union (only read when the last pivot is 0)
        mr64 = w.add_struct(
            "maple_range_64",
            NODE_SIZE,
            [
                ("parent", vp, 0, 0),
                ("pivot", w.add_array(ul, 15, i), 64, 0),
                ("slot", w.add_array(vp, 16, i), 1024, 0),
                ("meta", meta, 1984, 0),
            ],
        )
        ma64 = w.add_struct(
            "maple_arange_64",
            NODE_SIZE,
            [
                ("parent", vp, 0, 0),
                ("pivot", w.add_array(ul, 9, i), 64, 0),
                ("slot", w.add_array(vp, 10, i), 640, 0),
                ("gap", w.add_array(ul, 10, i), 1280, 0),
                ("meta", meta, 1920, 0),
            ],
        )
        slots = w.add_struct("", NODE_SIZE, [("mr64", mr64, 0, 0), ("ma64", ma64, 0, 0)], union=True)
        w.add_struct("maple_node", NODE_SIZE, [("", slots, 0, 0)])
        tree = w.add_struct("maple_tree", 16, [("ma_flags", i, 32, 0), ("ma_root", vp, 64, 0)])
        mm_ptr = w.add_ptr(w.next_id + 1)
        w.add_struct(
            "mm_struct",
            64,
            [("mm_mt", tree, 0, 0), ("start_brk", ul, 128, 0), ("brk", ul, 192, 0), ("start_stack", ul, 256, 0)],
        )
        w.add_struct(
            "vm_area_struct",
            64,
            [
                ("vm_start", ul, 0, 0),
                ("vm_end", ul, 64, 0),
                ("vm_mm", mm_ptr, 128, 0),
                ("vm_flags", ul, 192, 0),
                ("vm_pgoff", ul, 256, 0),
                ("vm_file", vp, 320, 0),
                ("vm_ops", vp, 384, 0),
                ("vm_private_data", vp, 448, 0),
            ],
        )
        w.add_struct(
            "task_struct", 64, [("pid", i, 0, 0), ("comm", w.add_array(c, 16, i), 32, 0), ("mm", mm_ptr, 256, 0)]
        )
        self.memory = bytearray(END - BASE)
        segments = SegmentMap()
        segments.add_segment(
            BASE, len(self.memory), lambda a, n: bytes(self.memory[a - BASE : a - BASE + n]), physical=False
        )
        self.prog = Program(MemoryReader(segments), None, parse_btf(w.to_bytes()))

    def u64(self, address: int, value: int) -> None:
        self.memory[address - BASE : address - BASE + 8] = value.to_bytes(8, "little")


def shared_slot_tree() -> Kernel:
    # Internal node k has all 16 slots pointing at node k+1 (pivots 1..15: all 16 slots in use);
    # the leaf holds one VMA.
    k = Kernel()
    k.memory[TASK - BASE + 4 : TASK - BASE + 8] = b"sh\0\0"
    k.memory[TASK - BASE : TASK - BASE + 4] = (42).to_bytes(4, "little")
    k.u64(TASK + 32, MM)
    k.u64(MM + 8, node_entry(NODES, RANGE_64))
    for depth in range(CHAIN):
        child = NODES + (depth + 1) * NODE_SIZE
        kind = LEAF_64 if depth + 1 == CHAIN else RANGE_64
        for slot in range(16):
            k.u64(NODES + depth * NODE_SIZE + 128 + 8 * slot, node_entry(child, kind))
        for pivot in range(15):
            k.u64(NODES + depth * NODE_SIZE + 8 + 8 * pivot, pivot + 1)
    k.u64(NODES + CHAIN * NODE_SIZE + 128, VMA)
    k.u64(VMA, 0x400000)
    k.u64(VMA + 8, 0x401000)
    k.u64(VMA + 16, MM)
    k.u64(VMA + 24, 0x5)  # r-x
    return k


def test_a_slot_shared_by_two_parents_ends_the_walk_with_the_reason() -> None:
    k = shared_slot_tree()
    task = k.prog.object("struct task_struct", TASK)
    start = time.monotonic()
    memory = task_memory(k.prog, task)
    assert time.monotonic() - start < 1
    assert memory.regions == (MemoryRegion(0x400000, 0x401000, 0x5, "r-xp", 0, "[anon]"),)
    # The first path reads every node down to the leaf; the root's second slot covers [2, 2] and
    # leads to the depth-1 node again (below the root, slot 1 lies past its parent's range [0, 1]).
    again = NODES + NODE_SIZE
    assert memory.truncated == f"maple node {again:#x} reached twice after {CHAIN + 1} nodes (corrupt tree?)"


def test_the_walk_stops_at_the_node_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    k = shared_slot_tree()
    monkeypatch.setattr(mapletree, "_MAX_NODES", 4)
    start = time.monotonic()
    walk = mt_for_each_range(k.prog.object("struct mm_struct", MM).mm_mt)
    assert list(walk) == []
    assert walk.truncated is not None and "over 4 nodes" in walk.truncated
    assert time.monotonic() - start < 1
