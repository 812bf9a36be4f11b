"""
kcrash.analysis.memory_usage
============================

crash's ``kmem -i`` (``dump_kmeminfo`` in crash's ``memory.c``) from the dump alone: total RAM
(``totalram_pages``), free (``vm_zone_stat[NR_FREE_PAGES]``), used, buffers (the page cache of
the block devices: every inode of ``blockdev_superblock``, since v5.9, or of ``all_bdevs``
before — ``nr_blockdev_pages()``), cached (``NR_FILE_PAGES`` minus swap cache and buffers), slab
(``NR_SLAB_RECLAIMABLE[_B]`` + ``NR_SLAB_UNRECLAIMABLE[_B]``), huge pages (``hstates[]``), swap
(``swap_info[]``: ``pages``, ``inuse_pages``), the commit limit (``sysctl_overcommit_kbytes`` or
``sysctl_overcommit_ratio`` of RAM less huge pages, plus swap) and committed memory
(``vm_committed_as.count``, as crash reads it, clamped at 0). Counters come from
:mod:`kcrash.analysis.memory_summary` (one reader of ``vm_*_stat`` for the report and for this).
``SHARED`` (crash's ``kmem -i=shared``: pages of the ``struct page`` array with a reference count
above 1 that are not reserved) is counted only when asked, with one numpy pass over the array.
Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from kcrash.analysis.memory_summary import totalram_pages_or_none, vm_stat_pages_or_none
from kcrash.errors import KcrashError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.mm import mm_layout
from kcrash.types.model import TypeKind
from kcrash.types.program import Program

__all__ = ["MemoryUsage", "UsageRow", "memory_usage"]

_MAX_INODES = 1 << 20
_MAX_SWAPFILES = 64
_MAX_HSTATES = 16
#: swap_info_struct.flags: SWP_USED (include/linux/swap.h)
_SWP_USED = 1
_CHUNK_PAGES = 1 << 15
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of ``kmem -i``: a label, a page count, and what its percentage is of (a label,
    None for a total line)."""

    label: str
    pages: int
    of: str | None


@dataclass(frozen=True, slots=True)
class MemoryUsage:
    """The ``kmem -i`` counts, in pages (None: this kernel or dump does not tell; ``shared`` None
    when not asked for). ``notes`` say what could not be read."""

    page_size: int
    total: int
    free: int | None
    buffers: int | None
    cached: int | None
    slab: int | None
    shared: int | None
    huge_total: int | None
    huge_free: int | None
    swap_total: int | None
    swap_used: int | None
    commit_limit: int | None
    committed: int | None
    notes: tuple[str, ...] = ()

    def groups(self) -> list[list[UsageRow]]:
        """The rows in crash's order and groups (blank lines between groups); rows this kernel
        lacks are left out."""
        used = None if self.free is None else self.total - self.free
        swap_free = None if self.swap_total is None or self.swap_used is None else self.swap_total - self.swap_used
        memory = [("TOTAL MEM", self.total, None), ("FREE", self.free, "TOTAL MEM"), ("USED", used, "TOTAL MEM"),
                  ("SHARED", self.shared, "TOTAL MEM"), ("BUFFERS", self.buffers, "TOTAL MEM"),
                  ("CACHED", self.cached, "TOTAL MEM"), ("SLAB", self.slab, "TOTAL MEM")]
        huge = [("TOTAL HUGE", self.huge_total, None), ("HUGE FREE", self.huge_free, "TOTAL HUGE")]
        swap = [("TOTAL SWAP", self.swap_total, None), ("SWAP USED", self.swap_used, "TOTAL SWAP"),
                ("SWAP FREE", swap_free, "TOTAL SWAP")]
        commit = [("COMMIT LIMIT", self.commit_limit, None), ("COMMITTED", self.committed, "TOTAL LIMIT")]
        out = [[UsageRow(label, pages, of) for label, pages, of in group if pages is not None]
               for group in (memory, huge, swap, commit)]
        return [group for group in out if group]

    def percent(self, row: UsageRow) -> int | None:
        """The row's integer percentage of its total, as crash computes it (``pages * 100 / total``,
        truncated; 0 when the total is 0)."""
        totals = {"TOTAL MEM": self.total, "TOTAL HUGE": self.huge_total, "TOTAL SWAP": self.swap_total,
                  "TOTAL LIMIT": self.commit_limit}
        if row.of is None:
            return None
        total = totals.get(row.of) or 0
        return row.pages * 100 // total if total else 0


def memory_usage(prog: Program, *, shared: bool = False) -> MemoryUsage:
    """The ``kmem -i`` counts of the dump (``shared``: also count shared pages, a pass over every
    ``struct page``).

    >>> memory_usage(prog).total
    62387
    """
    notes: list[str] = []
    total = totalram_pages_or_none(prog)
    if total is None:
        raise KcrashError("cannot read totalram_pages (_totalram_pages)")
    buffers = _guard(notes, "buffers", _blockdev_pages, prog)
    huge = _guard(notes, "huge pages", _hugetlb_pages, prog)
    swap = _guard(notes, "swap", _swap_pages, prog)
    return MemoryUsage(
        page_size=1 << mm_layout(prog).page_shift,
        total=total, free=vm_stat_pages_or_none(prog, "vm_zone_stat", "NR_FREE_PAGES"), buffers=buffers,
        cached=_cached(prog, buffers), slab=_slab(prog),
        shared=_guard(notes, "shared pages", _shared_pages, prog) if shared else None,
        huge_total=huge[0] if huge else None, huge_free=huge[1] if huge else None,
        swap_total=swap[0] if swap else None, swap_used=swap[1] if swap else None,
        commit_limit=_guard(notes, "commit limit", _commit_limit, prog, total, huge, swap),
        committed=_guard(notes, "committed", _committed, prog), notes=tuple(notes))


def _guard(notes: list[str], what: str, fn: Callable[..., _T | None], *args: object) -> _T | None:
    # fn(*args), or None with a note when the dump does not let it be read
    try:
        return fn(*args)
    except KcrashError as exc:
        notes.append(f"{what}: {exc}")
        return None


def _u64_or_none(prog: Program, name: str) -> int | None:
    try:
        return prog.read_u64(prog.symbol_address(name))
    except KcrashError:
        return None


def _sum_nrpages(prog: Program, inodes: list[int]) -> int:
    # sum of inode->i_mapping->nrpages
    inode_layout = StructLayout(prog.type("struct inode"), "i_mapping")
    mapping_layout = StructLayout(prog.type("struct address_space"), "nrpages")
    total = 0
    for inode in inodes:
        mapping = inode_layout.read_value(prog, inode, "i_mapping")
        if mapping:
            total += mapping_layout.read_value(prog, mapping, "nrpages")
    return total


def _blockdev_pages(prog: Program) -> int:
    # nr_blockdev_pages(): since Linux kernel commit 1008fe6dc36d (v5.9) the inodes of
    # blockdev_superblock; before, bdev->bd_inode of each block_device on all_bdevs.
    sb = _u64_or_none(prog, "blockdev_superblock")
    if sb is not None and "all_bdevs" not in prog:
        head = prog.object("struct super_block", sb).s_inodes.address_of_()
        walk = list_for_each_entry("struct inode", head, "i_sb_list", limit=_MAX_INODES)
        return _sum_nrpages(prog, [int(inode) for inode in walk])
    head = prog.object("struct list_head", prog.symbol_address("all_bdevs"))
    bdev_layout = StructLayout(prog.type("struct block_device"), "bd_inode")
    walk = list_for_each_entry("struct block_device", head, "bd_list", limit=_MAX_INODES)
    return _sum_nrpages(prog, [bdev_layout.read_value(prog, int(bdev), "bd_inode") for bdev in walk])


def _swap_cache_pages(prog: Program) -> int:
    # NR_SWAPCACHE (node stat since Linux kernel commit b6038942480e, v5.13); before, the nrpages
    # of every swapper_spaces[i][0..nr_swapper_spaces[i]) address_space (mm/swap_state.c).
    pages = vm_stat_pages_or_none(prog, "vm_node_stat", "NR_SWAPCACHE")
    if pages is not None:
        return pages
    spaces, counts = prog.symbol_address("swapper_spaces"), prog.symbol_address("nr_swapper_spaces")
    layout = StructLayout(prog.type("struct address_space"), "nrpages")
    size = prog.type("struct address_space").sizeof()
    total = 0
    for i in range(_MAX_SWAPFILES):
        banks, space = prog.read_u32(counts + 4 * i), prog.read_u64(spaces + 8 * i)
        if banks and space:
            total += sum(layout.read_value(prog, space + j * size, "nrpages") for j in range(min(banks, 1 << 16)))
    return total


def _cached(prog: Program, buffers: int | None) -> int | None:
    # NR_FILE_PAGES - swap cache - buffers, clamped at 0 as crash does
    file_pages = vm_stat_pages_or_none(prog, "vm_node_stat", "NR_FILE_PAGES")
    if file_pages is None:
        return None
    try:
        swap_cache = _swap_cache_pages(prog)
    except KcrashError:
        swap_cache = 0
    return max(file_pages - swap_cache - (buffers or 0), 0)


def _slab(prog: Program) -> int | None:
    # NR_SLAB_RECLAIMABLE_B / NR_SLAB_UNRECLAIMABLE_B since Linux kernel commit d42f3245c7e2 (v5.9)
    reclaimable = vm_stat_pages_or_none(prog, "vm_node_stat", "NR_SLAB_RECLAIMABLE_B", "NR_SLAB_RECLAIMABLE")
    unreclaimable = vm_stat_pages_or_none(prog, "vm_node_stat", "NR_SLAB_UNRECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE")
    if reclaimable is None and unreclaimable is None:
        return None
    return (reclaimable or 0) + (unreclaimable or 0)


def _hugetlb_pages(prog: Program) -> tuple[int, int]:
    # hstates[0 .. hugetlb_max_hstate): nr_huge_pages and free_huge_pages, each << order
    if "hstates" not in prog:
        return 0, 0
    count = prog.read_u32(prog.symbol_address("hugetlb_max_hstate")) if "hugetlb_max_hstate" in prog else 1
    hstate = prog.type("struct hstate")
    layout = StructLayout(hstate, ("order", "nr_huge_pages", "free_huge_pages"))
    base = prog.symbol_address("hstates")
    total = free = 0
    for i in range(min(count, _MAX_HSTATES)):
        h = layout.read(prog, base + i * hstate.sizeof())
        order = h.value("order")
        if order:
            total += h.value("nr_huge_pages") << order
            free += h.value("free_huge_pages") << order
    return total, free


def _swap_pages(prog: Program) -> tuple[int, int]:
    # swap_info[0 .. nr_swapfiles): pages and inuse_pages of each area with SWP_USED
    count = prog.read_u32(prog.symbol_address("nr_swapfiles"))
    if not count:
        return 0, 0
    base = prog.symbol_address("swap_info")
    # Since Linux kernel commit 6f2a7f55c9d8 (v6.13) inuse_pages is an atomic_long_t.
    info_type = prog.type("struct swap_info_struct")
    atomic = info_type.member("inuse_pages")[0].type.strip_typedefs().kind is TypeKind.STRUCT
    layout = StructLayout(info_type, {"flags": "flags", "pages": "pages",
                                      "inuse": "inuse_pages.counter" if atomic else "inuse_pages"})
    total = used = 0
    for i in range(min(count, _MAX_SWAPFILES)):
        pointer = prog.read_u64(base + 8 * i)
        if pointer:
            info = layout.read(prog, pointer)
            if info.value("flags") & _SWP_USED:
                total += info.value("pages")
                used += info.value("inuse")
    return total, used


def _commit_limit(prog: Program, total: int, huge: tuple[int, int] | None,
                  swap: tuple[int, int] | None) -> int | None:
    # vm_commit_limit() (mm/util.c): overcommit kbytes, or ratio % of RAM less huge pages; + swap
    kbytes = _u64_or_none(prog, "sysctl_overcommit_kbytes") or 0
    if kbytes:
        allowed = kbytes >> (mm_layout(prog).page_shift - 10)
    else:
        if huge is None:
            return None
        allowed = (total - huge[0]) * prog.read_u32(prog.symbol_address("sysctl_overcommit_ratio")) // 100
    return allowed + (swap[0] if swap else 0)


def _committed(prog: Program) -> int:
    # vm_committed_as.count, the percpu_counter's global part (crash reads no per-CPU deltas), >= 0
    layout = StructLayout(prog.type("struct percpu_counter"), "count")
    return max(layout.read_value(prog, prog.symbol_address("vm_committed_as"), "count"), 0)


def _shared_pages(prog: Program) -> int:
    # crash's dump_mem_map(): pages not PG_reserved whose _refcount is above 1, over every valid
    # struct page up to max_pfn, read 32768 at a time; unreadable chunks are skipped.
    layout = mm_layout(prog)
    page = prog.type("struct page")
    flags_at = page.walk_path("flags")[0] // 8
    count_at = page.walk_path("_refcount")[0] // 8
    reserved = 1 << int(prog.constant("PG_reserved"))
    words = layout.sizeof_page // 8
    shared = 0
    for start, end in layout.valid:
        for pfn in range(start, min(end, layout.max_pfn + 1), _CHUNK_PAGES):
            n = min(_CHUNK_PAGES, end - pfn, layout.max_pfn + 1 - pfn)
            try:
                raw = prog.read(layout.vmemmap + pfn * layout.sizeof_page, n * layout.sizeof_page)
            except KcrashError:
                continue
            table = np.frombuffer(raw, dtype=np.uint64).reshape(n, words)
            counts = np.frombuffer(raw, dtype=np.int32).reshape(n, words * 2)[:, count_at // 4]
            flags = table[:, flags_at // 8]
            shared += int(np.count_nonzero((counts > 1) & ((flags & np.uint64(reserved)) == 0)))
    return shared
