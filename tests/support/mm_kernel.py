"""A synthetic x86-64 kernel for the mm, vmalloc, per-CPU, identify and kmem -i tests: 16 pages of
direct map with their ``struct page``\\ s, ``mem_section`` (VMCOREINFO-described, 8-page sections so
that validity has holes), two CPUs whose per-CPU units live in the direct map, a ``vmap_area_list``,
``vm_zone_stat``/``vm_node_stat`` counters, a block-device superblock with two inodes, one swap area
and one huge-page size. Everything a test needs is a method; nothing is read from a real dump."""

from __future__ import annotations

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.memory import MemoryReader
from kcrash.types.btf import parse_btf
from kcrash.types.program import Program
from support.btf_write import BtfWriter
from support.synthetic_memory import SyntheticMemory

BASE = 0xFFFFFFFF81000000
END = BASE + 0x10000
PAGE_OFFSET, VMEMMAP, VMALLOC = 0xFFFF888000000000, 0xFFFFEA0000000000, 0xFFFFC90000000000
PAGES, PAGE = 16, 4096
#: globals: name -> address
GLOBALS = {name: BASE + 0x100 + 0x10 * i for i, name in enumerate((
    "page_offset_base", "vmemmap_base", "max_pfn", "min_low_pfn", "__per_cpu_offset", "pcpu_unit_size",
    "nr_cpu_ids", "__cpu_possible_mask", "vmap_area_list", "_totalram_pages", "nr_swapfiles",
    "sysctl_overcommit_ratio", "sysctl_overcommit_kbytes", "vm_committed_as", "blockdev_superblock",
    "hugetlb_max_hstate", "swap_info", "task_struct_cachep", "init_task"))}
VM_ZONE_STAT, VM_NODE_STAT, HSTATES = BASE + 0x800, BASE + 0x900, BASE + 0xA00
ROOTS, SECTIONS = BASE + 0x2000, BASE + 0x3000
OBJECTS = BASE + 0x5000  # vmap areas, vm_structs, super_block, inodes, address spaces, swap_info
#: per-CPU symbols (offsets into each CPU's unit; .data..percpu linked at 0 as on x86-64 SMP)
PERCPU_SYMBOLS = {"__per_cpu_start": 0, "cpu_number": 0x40, "runqueues": 0x100, "__per_cpu_end": 0x2000}
UNIT_PFN = (8, 12)  # CPU c's unit starts at page UNIT_PFN[c] of the direct map
UNIT_SIZE = 0x4000
PG = {"PG_locked": 0, "PG_referenced": 2, "PG_head": 6, "PG_owner_priv_1": 8, "PG_checked": 8, "PG_slab": 9,
      "PG_reserved": 10, "__NR_PAGEFLAGS": 22}
ZONES = {"ZONE_DMA": 0, "ZONE_DMA32": 1, "ZONE_NORMAL": 2, "ZONE_MOVABLE": 3, "__MAX_NR_ZONES": 4}
ZONE_ITEMS = {"NR_FREE_PAGES": 0, "NR_ZONE_LRU_BASE": 1}
NODE_ITEMS = {"NR_SLAB_RECLAIMABLE_B": 0, "NR_SLAB_UNRECLAIMABLE_B": 1, "NR_FILE_PAGES": 2, "NR_SWAPCACHE": 3}
BUDDY = 0xF0000000  # PAGE_BUDDY_MAPCOUNT_VALUE (as PGTY_buddy << 24)


def _types() -> bytes:
    w = BtfWriter()
    i = w.add_int("int", 4, signed=True)
    u = w.add_int("unsigned int", 4)
    ul = w.add_int("long unsigned int", 8)
    lg = w.add_int("long long int", 8, signed=True)
    c = w.add_int("char", 1, signed=True, char=True)
    void_p = w.add_ptr(0)
    atomic = w.add_typedef("atomic_t", w.add_struct("", 4, [("counter", i, 0, 0)]))
    w.add_typedef("atomic_long_t", w.add_struct("", 8, [("counter", lg, 0, 0)]))
    lp = w.add_ptr(w.next_id + 1)
    lh = w.add_struct("list_head", 16, [("next", lp, 0, 0), ("prev", lp, 64, 0)])
    w.add_struct("cpumask", 8, [("bits", w.add_array(ul, 1, i), 0, 0)])
    w.add_struct("page", 64, [("flags", ul, 0, 0), ("compound_head", ul, 64, 0), ("mapping", void_p, 192, 0),
                              ("index", ul, 256, 0), ("private", ul, 320, 0), ("_mapcount", atomic, 384, 0),
                              ("_refcount", atomic, 416, 0)])
    w.add_struct("mem_section", 16, [("section_mem_map", ul, 0, 0), ("usage", void_p, 64, 0)])
    w.add_enum("pageflags", 4, list(PG.items()))
    w.add_enum("zone_type", 4, list(ZONES.items()))
    w.add_enum("zone_stat_item", 4, list(ZONE_ITEMS.items()))
    w.add_enum("node_stat_item", 4, list(NODE_ITEMS.items()))
    w.add_struct("task_struct", 0x40, [("pid", i, 0, 0), ("comm", w.add_array(c, 16, i), 32, 0),
                                       ("stack", void_p, 256, 0)])
    vm = w.add_struct("vm_struct", 64, [("next", void_p, 0, 0), ("addr", void_p, 64, 0), ("size", ul, 128, 0),
                                        ("flags", ul, 192, 0), ("pages", void_p, 256, 0), ("nr_pages", u, 320, 0),
                                        ("phys_addr", ul, 384, 0), ("caller", void_p, 448, 0)])
    w.add_struct("vmap_area", 56, [("va_start", ul, 0, 0), ("va_end", ul, 64, 0), ("list", lh, 128, 0),
                                   ("vm", w.add_ptr(vm), 384, 0)])
    w.add_struct("kmem_cache", 16, [("size", u, 0, 0), ("object_size", u, 32, 0)])
    w.add_struct("percpu_counter", 16, [("count", lg, 0, 0)])
    aspace = w.add_struct("address_space", 16, [("nrpages", ul, 64, 0)])
    w.add_struct("inode", 32, [("i_mapping", w.add_ptr(aspace), 0, 0), ("i_sb_list", lh, 64, 0)])
    w.add_struct("super_block", 32, [("s_inodes", lh, 128, 0)])
    w.add_struct("swap_info_struct", 16, [("flags", ul, 0, 0), ("pages", i, 64, 0), ("inuse_pages", u, 96, 0)])
    w.add_struct("hstate", 24, [("order", u, 0, 0), ("nr_huge_pages", ul, 64, 0), ("free_huge_pages", ul, 128, 0)])
    return w.to_bytes()


def _vmcoreinfo() -> str:
    return "\n".join((
        f"SYMBOL(mem_section)={ROOTS:x}", "LENGTH(mem_section)=2", "SIZE(mem_section)=16",
        "NUMBER(SECTION_SIZE_BITS)=15", "NUMBER(MAX_PHYSMEM_BITS)=46", "LENGTH(node_data)=64",
        f"NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)={BUDDY - (1 << 32)}", "NUMBER(pgtable_l5_enabled)=0", ""))


class Kernel(SyntheticMemory):
    """The memory regions, a Program over them, and writers for what the tests plant."""

    def __init__(self) -> None:
        super().__init__({BASE: END - BASE, PAGE_OFFSET: PAGES * PAGE, VMEMMAP: PAGES * 64, VMALLOC: 8 * PAGE})
        segments = self.segments()
        symbols = sorted([*PERCPU_SYMBOLS.items(), ("_stext", BASE), ("_etext", BASE + 0x100), *GLOBALS.items(),
                          ("vm_zone_stat", VM_ZONE_STAT), ("vm_node_stat", VM_NODE_STAT), ("hstates", HSTATES),
                          ("_end", END)], key=lambda s: s[1])
        kinds = "".join("T" if n == "_stext" else "D" for n, _ in symbols)
        self.symbols = SymbolTable([n for n, _ in symbols], [a for _, a in symbols], kinds)
        self.prog = Program(MemoryReader(segments), self.symbols, parse_btf(_types()),
                            vmcoreinfo=parse_vmcoreinfo(_vmcoreinfo()))
        for name, value in (("page_offset_base", PAGE_OFFSET), ("vmemmap_base", VMEMMAP), ("max_pfn", PAGES - 1),
                            ("min_low_pfn", 1), ("__cpu_possible_mask", 0b11), ("vmap_area_list", 0)):
            self.u64(GLOBALS[name], value)
        self.u32(GLOBALS["nr_cpu_ids"], 2)
        self.u32(GLOBALS["pcpu_unit_size"], UNIT_SIZE)
        for cpu, pfn in enumerate(UNIT_PFN):
            self.u64(GLOBALS["__per_cpu_offset"] + 8 * cpu, PAGE_OFFSET + pfn * PAGE)
        # sections 0 and 1 (PFNs 0-15) and 3 (24-31) have a mem_map; root 1 is absent
        self.u64(ROOTS, SECTIONS)
        for nr in (0, 1, 3):
            self.u64(SECTIONS + 16 * nr, VMEMMAP | 0b11)  # SECTION_MARKED_PRESENT | SECTION_HAS_MEM_MAP
        self.list_init(GLOBALS["vmap_area_list"])
        self.next_object = OBJECTS

    def alloc(self, size: int) -> int:
        addr = self.next_object
        self.next_object += (size + 15) & ~15
        return addr

    def list_init(self, head: int) -> None:
        self.u64(head, head)
        self.u64(head + 8, head)

    def list_add_tail(self, head: int, node: int) -> None:
        last = int.from_bytes(self.regions[BASE][head + 8 - BASE:head + 16 - BASE], "little")
        self.u64(node, head)
        self.u64(node + 8, last)
        self.u64(last, node)
        self.u64(head + 8, node)

    def page(self, pfn: int, *, flags: int = 0, refcount: int = 1, mapcount: int = -1, mapping: int = 0,
             index: int = 0, compound_head: int = 0) -> int:
        addr = VMEMMAP + pfn * 64
        self.u64(addr, flags)
        self.u64(addr + 8, compound_head)
        self.u64(addr + 24, mapping)
        self.u64(addr + 32, index)
        self.u32(addr + 48, mapcount & 0xFFFFFFFF)
        self.u32(addr + 52, refcount)
        return addr

    def vmap_area(self, start: int, end: int, *, vm: bool = True, caller: int = 0, flags: int = 2,
                  nr_pages: int = 0) -> int:
        va = self.alloc(56)
        self.u64(va, start)
        self.u64(va + 8, end)
        if vm:
            vm_struct = self.alloc(64)
            for off, value in ((8, start), (16, end - start), (24, flags), (56, caller)):
                self.u64(vm_struct + off, value)
            self.u32(vm_struct + 40, nr_pages)
            self.u64(va + 48, vm_struct)
        self.list_add_tail(GLOBALS["vmap_area_list"], va + 16)
        return va

    def zone_stat(self, item: str, value: int) -> None:
        self.u64(VM_ZONE_STAT + 8 * ZONE_ITEMS[item], value)

    def node_stat(self, item: str, value: int) -> None:
        self.u64(VM_NODE_STAT + 8 * NODE_ITEMS[item], value)
