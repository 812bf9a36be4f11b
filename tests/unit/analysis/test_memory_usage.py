"""kmem -i on a synthetic kernel: every row from the counters crash reads (totalram, NR_FREE_PAGES,
the slab items, file pages less swap cache and buffers, blockdev_superblock's inodes, swap_info[],
hstates[], the commit limit from the overcommit ratio, vm_committed_as.count), percentages truncated
as crash computes them, shared pages only when asked, and a missing part as a note, not an error."""

from __future__ import annotations

from kcrash.analysis.memory_usage import memory_usage
from kcrash.cli.kmem import _pages_to_size
from support.mm_kernel import GLOBALS, HSTATES, PG, Kernel


def _kernel() -> Kernel:
    k = Kernel()
    k.u64(GLOBALS["_totalram_pages"], 5000)
    k.zone_stat("NR_FREE_PAGES", 400)
    k.node_stat("NR_SLAB_RECLAIMABLE_B", 30)
    k.node_stat("NR_SLAB_UNRECLAIMABLE_B", 20)
    k.node_stat("NR_FILE_PAGES", 200)
    k.node_stat("NR_SWAPCACHE", 10)
    sb = k.alloc(32)
    k.u64(GLOBALS["blockdev_superblock"], sb)
    k.list_init(sb + 16)
    for nrpages in (5, 7):
        inode, mapping = k.alloc(32), k.alloc(16)
        k.u64(inode, mapping)
        k.u64(mapping + 8, nrpages)
        k.list_add_tail(sb + 16, inode + 8)
    swap = k.alloc(16)
    k.u32(GLOBALS["nr_swapfiles"], 1)
    k.u64(GLOBALS["swap_info"], swap)
    k.u64(swap, 1)  # SWP_USED
    k.u32(swap + 8, 512)
    k.u32(swap + 12, 100)
    k.u32(GLOBALS["hugetlb_max_hstate"], 1)
    k.u32(HSTATES, 9)
    k.u64(HSTATES + 8, 2)
    k.u64(HSTATES + 16, 1)
    k.u32(GLOBALS["sysctl_overcommit_ratio"], 50)
    k.u64(GLOBALS["vm_committed_as"], 321)
    k.page(1, refcount=2)
    k.page(2, refcount=3, flags=1 << PG["PG_reserved"])  # reserved pages are not shared
    k.page(3, refcount=5)
    return k


def test_rows_as_crash_prints_them() -> None:
    usage = memory_usage(_kernel().prog)
    assert usage.notes == ()
    assert (usage.total, usage.free, usage.slab, usage.buffers, usage.cached) == (5000, 400, 50, 12, 178)
    assert (usage.huge_total, usage.huge_free, usage.swap_total, usage.swap_used) == (1024, 512, 512, 100)
    assert (usage.commit_limit, usage.committed, usage.shared) == ((5000 - 1024) * 50 // 100 + 512, 321, None)
    rows = [[(r.label, r.pages, usage.percent(r)) for r in group] for group in usage.groups()]
    assert rows == [
        [("TOTAL MEM", 5000, None), ("FREE", 400, 8), ("USED", 4600, 92), ("BUFFERS", 12, 0),
         ("CACHED", 178, 3), ("SLAB", 50, 1)],
        [("TOTAL HUGE", 1024, None), ("HUGE FREE", 512, 50)],
        [("TOTAL SWAP", 512, None), ("SWAP USED", 100, 19), ("SWAP FREE", 412, 80)],
        [("COMMIT LIMIT", 2500, None), ("COMMITTED", 321, 12)]]


def test_shared_pages_when_asked() -> None:
    usage = memory_usage(_kernel().prog, shared=True)
    assert usage.shared == 2
    assert ("SHARED", 2) in [(r.label, r.pages) for r in usage.groups()[0]]


def test_a_missing_part_is_a_note() -> None:
    k = _kernel()
    k.u64(GLOBALS["blockdev_superblock"], 0xFFFF888000F00000)  # not in the dump
    usage = memory_usage(k.prog)
    assert usage.buffers is None and usage.cached == 190
    assert len(usage.notes) == 1 and usage.notes[0].startswith("buffers: ")


def test_pages_to_size_as_crash() -> None:
    assert [_pages_to_size(n, 4096) for n in (0, 1, 255, 256, 2560, 262144, 262144 + 26215)] == \
        ["0", "4 KB", "1020 KB", "1 MB", "10 MB", "1 GB", "1.1 GB"]
