"""A synthetic SLUB kernel for unit tests (``tests/unit/helpers/test_slab.py``, ``test_kfence.py``):
two CPUs (CPU 1 offline, as a panic's stop_this_cpu leaves it), one node, 16 pages of direct map and
their ``struct page``s, ``struct slab`` with its counters bit-fields, ``struct kmem_cache`` with a
hardened freelist (``random``), ``kmem_cache_cpu``/``kmem_cache_node``, and an empty KFENCE pool
pointer with ``struct kfence_metadata``. :func:`build` makes the caches the tests share."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF82000000
SLAB_CACHES, NR_NODE_IDS, MAX_PFN = BASE + 0x100, BASE + 0x110, BASE + 0x118
PAGE_OFFSET_BASE, VMEMMAP_BASE, NR_CPU_IDS = BASE + 0x120, BASE + 0x128, BASE + 0x130
POSSIBLE, ONLINE, PER_CPU_OFFSET = BASE + 0x138, BASE + 0x140, BASE + 0x150
NAMES, CACHES, NODES, PERCPU, END = BASE + 0x200, BASE + 0x1000, BASE + 0x3000, BASE + 0x5000, BASE + 0x8000
KFENCE_POOL, KFENCE_METADATA = BASE + 0x160, BASE + 0x7000
PAGE_OFFSET, VMEMMAP, PAGES = 0xFFFF888000000000, 0xFFFFEA0000000000, 16
CACHE_SIZE, PAGE = 0x100, 4096
PG_SLAB, PG_HEAD = 9, 6
SLAB_TYPE = 0xF5000000  # PGTY_slab << 24 (include/linux/page-flags.h, v6.12)
RANDOM = 0x1234_5678_9ABC_DEF0


def swab64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


def _types() -> bytes:
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    u = w.add_int("unsigned int", 4)
    ul = w.add_int("long unsigned int", 8)
    lg = w.add_int("long", 8, signed=True)
    c = w.add_int("char", 1, signed=True, char=True)
    void_p = w.add_ptr(0)
    atomic = w.add_typedef("atomic_t", w.add_struct("", 4, [("counter", i, 0, 0)]))
    atomic_long = w.add_typedef("atomic_long_t", w.add_struct("", 8, [("counter", lg, 0, 0)]))
    lp = w.add_ptr(w.next_id + 1)
    lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
    w.add_struct("cpumask", 8, [("bits", w.add_array(ul, 1, i), 0, 0)])
    w.add_struct("page", 64, [("flags", ul, 0, 0), ("compound_head", ul, 64, 0), ("mapping", void_p, 192, 0),
                              ("index", ul, 256, 0), ("private", ul, 320, 0), ("_mapcount", atomic, 384, 0),
                              ("_refcount", atomic, 416, 0)])
    cache_fwd = w.add_fwd("kmem_cache")
    slab = w.add_struct("slab", 64, [("__page_flags", ul, 0, 0), ("slab_cache", w.add_ptr(cache_fwd), 64, 0),
                                     ("slab_list", lh, 128, 0), ("next", void_p, 128, 0),
                                     ("freelist", void_p, 256, 0), ("counters", ul, 320, 0),
                                     ("inuse", u, 320, 16), ("objects", u, 336, 15), ("frozen", u, 351, 1)])
    w.add_struct("kmem_cache_cpu", 32, [("freelist", void_p, 0, 0), ("tid", ul, 64, 0),
                                        ("slab", w.add_ptr(slab), 128, 0), ("partial", w.add_ptr(slab), 192, 0)])
    node = w.add_struct("kmem_cache_node", 64, [
        ("nr_partial", ul, 64, 0), ("partial", lh, 128, 0), ("nr_slabs", atomic_long, 256, 0),
        ("total_objects", atomic_long, 320, 0)])
    oo = w.add_struct("kmem_cache_order_objects", 4, [("x", u, 0, 0)])
    w.add_struct("kmem_cache", CACHE_SIZE, [
        ("cpu_slab", void_p, 0, 0), ("size", u, 64, 0), ("object_size", u, 96, 0), ("offset", u, 128, 0),
        ("oo", oo, 160, 0), ("red_left_pad", u, 192, 0), ("name", w.add_ptr(w.add_qualifier("CONST", c)), 256, 0),
        ("list", lh, 320, 0), ("random", ul, 448, 0), ("node", w.add_array(w.add_ptr(node), 1, i), 512, 0)])
    state = w.add_enum("kfence_object_state", 4, [("KFENCE_OBJECT_UNUSED", 0), ("KFENCE_OBJECT_ALLOCATED", 1),
                                                  ("KFENCE_OBJECT_FREED", 2)])
    w.add_struct("kfence_metadata", 64, [("list", lh, 0, 0), ("state", state, 128, 0), ("addr", ul, 192, 0),
                                         ("size", ul, 256, 0), ("cache", w.add_ptr(cache_fwd), 320, 0)])
    w.add_enum("pageflags", 4, [("PG_locked", 0), ("PG_head", PG_HEAD), ("PG_slab", PG_SLAB),
                                ("__NR_PAGEFLAGS", 22)])
    return w.to_bytes()


class Kernel(SyntheticMemory):
    """The memory (globals, direct map, struct pages) and how slabs are marked and encoded."""

    def __init__(self, *, page_type: bool = False, swab: bool = True) -> None:
        super().__init__({BASE: END - BASE, PAGE_OFFSET: PAGES * PAGE, VMEMMAP: PAGES * 64})
        self.page_type, self.swab = page_type, swab
        segments = self.segments()
        symbols = sorted([("_stext", BASE), ("slab_caches", SLAB_CACHES), ("nr_node_ids", NR_NODE_IDS),
                          ("max_pfn", MAX_PFN), ("page_offset_base", PAGE_OFFSET_BASE),
                          ("vmemmap_base", VMEMMAP_BASE), ("nr_cpu_ids", NR_CPU_IDS),
                          ("__cpu_possible_mask", POSSIBLE), ("__cpu_online_mask", ONLINE),
                          ("__per_cpu_offset", PER_CPU_OFFSET), ("__kfence_pool", KFENCE_POOL),
                          ("kfence_metadata", KFENCE_METADATA), ("_end", END)], key=lambda s: s[1])
        info = parse_vmcoreinfo(f"NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)={SLAB_TYPE - (1 << 32)}\n") if page_type else None
        self.prog = Program(MemoryReader(segments), SymbolTable([n for n, _ in symbols], [a for _, a in symbols],
                                                                "T" + "D" * (len(symbols) - 1)),
                            parse_btf(_types()), vmcoreinfo=info)
        for addr, value in ((MAX_PFN, PAGES), (PAGE_OFFSET_BASE, PAGE_OFFSET), (VMEMMAP_BASE, VMEMMAP),
                            (POSSIBLE, 0b11), (ONLINE, 0b01), (PER_CPU_OFFSET, 0), (PER_CPU_OFFSET + 8, 0x1000)):
            self.u64(addr, value)
        self.put(NR_NODE_IDS, (1).to_bytes(4, "little"))
        self.put(NR_CPU_IDS, (2).to_bytes(4, "little"))
        self.caches: list[int] = []
        self.names = NAMES

    def cache(self, name: bytes, size: int, object_size: int, offset: int, order: int, nodes: tuple[int, int]) -> int:
        addr = CACHES + len(self.caches) * CACHE_SIZE
        self.u64(addr, PERCPU + len(self.caches) * 0x40)  # cpu_slab (a per-CPU pointer)
        per_slab = (PAGE << order) // size
        for offset_, value in ((8, size), (12, object_size), (16, offset), (20, order << 16 | per_slab), (24, 0)):
            self.put(addr + offset_, value.to_bytes(4, "little"))
        self.u64(addr + 32, self.names)
        self.put(self.names, name + b"\0")
        self.names += len(name) + 1
        self.u64(addr + 56, RANDOM)
        node = NODES + len(self.caches) * 64
        self.u64(node + 32, nodes[0])
        self.u64(node + 40, nodes[1])
        self.u64(addr + 64, node)
        self.caches.append(addr)
        ring = [SLAB_CACHES, *(c + 40 for c in self.caches)]
        for k, link in enumerate(ring):
            self.u64(link, ring[(k + 1) % len(ring)])
            self.u64(link + 8, ring[k - 1])
        return addr

    def encode(self, cache: int, slot: int, pointer: int) -> int:
        return pointer ^ RANDOM ^ (swab64(slot) if self.swab else slot)

    def slab(self, cache: int, pfn: int, objects: int, inuse: int, free: list[int], *, order: int = 0,
             size: int = 64, offset: int = 56, frozen: bool = False) -> int:
        # A slab at ``pfn``: marked, its cache, counters and the freelist of object indices ``free``.
        page = VMEMMAP + pfn * 64
        if self.page_type:
            self.put(page + 48, SLAB_TYPE.to_bytes(4, "little"))
        else:
            self.u64(page, 1 << PG_SLAB | (1 << PG_HEAD if order else 0))
        for tail in range(1, 1 << order):
            self.u64(page + tail * 64 + 8, page + 1)
        self.u64(page + 8, cache)  # struct slab.slab_cache overlays compound_head (bit 0 clear: a head page)
        self.u64(page + 40, inuse | objects << 16 | int(frozen) << 31)
        self.u64(page + 32, self.chain(cache, pfn, free, size, offset))
        return page

    def chain(self, cache: int, pfn: int, free: list[int], size: int = 64, offset: int = 56) -> int:
        # Write the freelist of object indices ``free`` in the slab at ``pfn``; return its head.
        start = PAGE_OFFSET + pfn * PAGE
        addresses = [start + i * size for i in free]
        for here, following in zip(addresses, [*addresses[1:], 0][:len(addresses)], strict=True):
            self.u64(here + offset, self.encode(cache, here + offset, following))
        return addresses[0] if addresses else 0

    def kfence(self, pfn: int, objects: list[tuple[int, int, int]], *, pointer: bool = False) -> int:
        # A KFENCE pool at ``pfn`` with ``objects`` (address, state, cache) in pages 2i+2, their
        # pages slab pages of their caches; kfence_metadata an array, or (``pointer``, v6.6) a
        # pointer to one. Returns the pool's address.
        pool = PAGE_OFFSET + pfn * PAGE
        self.u64(KFENCE_POOL, pool)
        array = KFENCE_METADATA + 0x400 if pointer else KFENCE_METADATA
        if pointer:
            self.u64(KFENCE_METADATA, array)
        for i, (address, state, cache) in enumerate(objects):
            meta = array + i * 64
            self.u64(meta, meta)  # list_head
            self.put(meta + 16, state.to_bytes(4, "little"))
            self.u64(meta + 24, address)
            self.u64(meta + 32, 48)
            self.u64(meta + 40, cache)
            if cache:
                self.slab(cache, pfn + 2 * i + 2, 1, 1, [])
        return pool

    def cpu(self, cpu: int, cache_index: int, slab: int, freelist: int, partial: int = 0) -> None:
        at = PERCPU + cache_index * 0x40 + cpu * 0x1000
        self.u64(at, freelist)
        self.u64(at + 16, slab)
        self.u64(at + 24, partial)


def obj(pfn: int, index: int, size: int = 64) -> int:
    return PAGE_OFFSET + pfn * PAGE + index * size


def build(*, page_type: bool = False, swab: bool = True) -> tuple[Kernel, int, int]:
    k = Kernel(page_type=page_type, swab=swab)
    small = k.cache(b"test-64", 64, 48, 56, 0, (3, 192))
    big = k.cache(b"big-1k", 1024, 1024, 0, 1, (1, 8))
    k.slab(small, 2, 64, 60, [5, 9, 10, 63])                   # partial: 4 free
    active = k.slab(small, 3, 64, 63, [7], frozen=True)         # CPU 1's: 1 freed remotely...
    k.cpu(1, 0, active, k.chain(small, 3, [0, 1, 2]))           # ...and 3 on its lockless freelist
    k.slab(small, 5, 64, 64, [])                               # full
    k.slab(big, 6, 8, 7, [5], order=1, size=1024, offset=0)     # object 5 lies in the tail page
    return k, small, big
