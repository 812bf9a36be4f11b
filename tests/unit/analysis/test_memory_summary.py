"""The report's memory section on a synthetic kernel: /proc/slabinfo counts of every cache on
``slab_caches`` summed over the NUMA nodes (slab bytes from the order in ``oo``), the biggest caches
first, /proc/meminfo totals from the vm stat arrays by enum item, a cache whose node is
unreadable ending the walk with the reason kept, and a corrupt ``nr_node_ids`` bounded by the
length of ``kmem_cache.node[]``."""

from __future__ import annotations

import time

from kcrash.analysis.memory_summary import memory_summary, slab_cache, slab_caches
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.memory import MemoryReader
from kcrash.model import SlabCache
from kcrash.types.btf import parse_btf
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF82000000
SLAB_CACHES = BASE + 0x100
NR_NODE_IDS = BASE + 0x110
TOTALRAM = BASE + 0x118
ZONE_STAT = BASE + 0x120
NODE_STAT = BASE + 0x140
NAMES = BASE + 0x200
CACHES = BASE + 0x1000
NODES = BASE + 0x3000
END = BASE + 0x4000
CACHE_SIZE = 0x80  # list at 0x10, node[2] at 0x40
NODE_SIZE = 0x20  # nr_slabs at 0x8, total_objects at 0x10
OO_SHIFT = 16


class Kernel(SyntheticMemory):
    """struct kmem_cache {unsigned int object_size; struct kmem_cache_order_objects oo; const char *name;
    struct list_head list; unsigned int size, offset; ...; struct kmem_cache_node *node[2];},
    struct kmem_cache_node {...; atomic_long_t nr_slabs; atomic_long_t total_objects;}, and the vm stat enums."""

    def __init__(self) -> None:
        w = BtfWriter()
        i = w.add_int("int", 4, signed=True)
        u = w.add_int("unsigned int", 4)
        lg = w.add_int("long", 8, signed=True)
        c = w.add_int("char", 1, signed=True, char=True)
        atomic = w.add_typedef("atomic_long_t", w.add_struct("", 8, [("counter", lg, 0, 0)]))
        lp = w.add_ptr(w.next_id + 1)
        lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
        oo = w.add_struct("kmem_cache_order_objects", 4, [("x", u, 0, 0)])
        node = w.add_struct(
            "kmem_cache_node",
            NODE_SIZE,
            [("nr_partial", lg, 0, 0), ("nr_slabs", atomic, 64, 0), ("total_objects", atomic, 128, 0)],
        )
        nodes = w.add_array(w.add_ptr(node), 2, i)
        w.add_struct(
            "kmem_cache",
            CACHE_SIZE,
            [
                ("object_size", u, 0, 0),
                ("oo", oo, 32, 0),
                ("name", w.add_ptr(w.add_qualifier("CONST", c)), 64, 0),
                ("list", lh, 128, 0),
                ("size", u, 256, 0),
                ("offset", u, 288, 0),
                ("node", nodes, 512, 0),
            ],
        )
        w.add_enum("zone_stat_item", 4, [("NR_FREE_PAGES", 0), ("NR_ZONE_LRU_BASE", 1)])
        w.add_enum(
            "node_stat_item",
            4,
            [("NR_FILE_PAGES", 1), ("NR_ANON_MAPPED", 2), ("NR_SLAB_RECLAIMABLE_B", 3), ("NR_SLAB_UNRECLAIMABLE_B", 4)],
        )
        super().__init__({BASE: END - BASE})
        self.memory = self.regions[BASE]
        segments = self.segments()
        names = ["_stext", "slab_caches", "nr_node_ids", "_totalram_pages", "vm_zone_stat", "vm_node_stat", "_end"]
        addrs = [BASE, SLAB_CACHES, NR_NODE_IDS, TOTALRAM, ZONE_STAT, NODE_STAT, END]
        self.prog = Program(MemoryReader(segments), SymbolTable(names, addrs, "TDDDDDD"), parse_btf(w.to_bytes()))
        self.put(NR_NODE_IDS, (2).to_bytes(4, "little"))
        self.caches: list[int] = []
        self.names = NAMES

    def cache(self, name: bytes, object_size: int, order: int, nodes: list[tuple[int, int] | None]) -> int:
        addr = CACHES + len(self.caches) * CACHE_SIZE
        self.put(addr, object_size.to_bytes(4, "little") + (order << OO_SHIFT | 7).to_bytes(4, "little"))
        self.u64(addr + 8, self.names)
        self.put(self.names, name + b"\0")
        self.names += len(name) + 1
        for k, counts in enumerate(nodes):
            if counts is not None:
                node = NODES + (len(self.caches) * 2 + k) * NODE_SIZE
                self.u64(node + 8, counts[0])
                self.u64(node + 16, counts[1])
                self.u64(addr + 0x40 + 8 * k, node)
        self.caches.append(addr)
        ring = [SLAB_CACHES, *(c + 0x10 for c in self.caches)]
        for k, link in enumerate(ring):
            self.u64(link, ring[(k + 1) % len(ring)])
            self.u64(link + 8, ring[k - 1])
        return addr


def test_slab_counts_sum_the_nodes_and_sort_by_size() -> None:
    k = Kernel()
    k.cache(b"kmalloc-64", 64, 0, [(3, 192), (1, 64)])
    k.cache(b"task_struct", 9792, 3, [(2, 6), None])
    k.cache(b"dentry", 192, 0, [None, (5, 105)])
    k.u64(TOTALRAM, 1000)
    for index, pages in ((0, 200), (1, 300), (2, 40), (3, 10), (4, 20)):
        k.u64((ZONE_STAT if index == 0 else NODE_STAT) + 8 * index, pages)
    summary = memory_summary(k.prog, top=2)
    assert summary.slab_caches == 3 and summary.error is None
    # task_struct: 2 slabs of 8 pages; dentry: 5 slabs of 1 page; kmalloc-64: 4 slabs of 1 page
    assert summary.top_slabs == (
        SlabCache("task_struct", 9792, 6, 2, 2 * 8 * 4096),
        SlabCache("dentry", 192, 105, 5, 5 * 4096),
    )
    assert (
        summary.total_bytes,
        summary.free_bytes,
        summary.file_bytes,
        summary.anon_bytes,
        summary.slab_reclaimable_bytes,
        summary.slab_unreclaimable_bytes,
    ) == (1000 * 4096, 200 * 4096, 300 * 4096, 40 * 4096, 10 * 4096, 20 * 4096)
    one = Object(k.prog, k.prog.pointer_type("struct kmem_cache"), k.caches[0])
    assert slab_cache(k.prog, one) == SlabCache("kmalloc-64", 64, 256, 4, 4 * 4096)


def test_an_unreadable_node_ends_the_walk_with_the_reason() -> None:
    k = Kernel()
    k.cache(b"good", 32, 0, [(1, 128), None])
    bad = k.cache(b"bad", 32, 0, [(1, 128), None])
    k.cache(b"after", 32, 0, [(1, 128), None])
    k.u64(bad + 0x40, END + 0x1000)  # node[0] points outside the dump
    summary = memory_summary(k.prog)
    assert [s.name for s in summary.top_slabs] == ["good"]
    assert summary.error is not None and f"{END + 0x1000 + 8:#x}" in summary.error


def test_nr_node_ids_is_bounded_by_the_length_of_node() -> None:
    # A corrupt nr_node_ids of 2**32 - 1 drove range() over the members read; kmem_cache.node[]
    # has 2 entries, so 2 nodes are summed.
    k = Kernel()
    k.cache(b"kmalloc-64", 64, 0, [(3, 192), (1, 64)])
    k.put(NR_NODE_IDS, (0xFFFFFFFF).to_bytes(4, "little"))
    start = time.monotonic()
    caches, truncated = slab_caches(k.prog)
    assert time.monotonic() - start < 1
    assert caches == [SlabCache("kmalloc-64", 64, 256, 4, 4 * 4096)] and truncated is None
    one = Object(k.prog, k.prog.pointer_type("struct kmem_cache"), k.caches[0])
    assert slab_cache(k.prog, one) == SlabCache("kmalloc-64", 64, 256, 4, 4 * 4096)
