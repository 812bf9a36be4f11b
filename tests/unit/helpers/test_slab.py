"""SLUB on a synthetic kernel (two CPUs, one node, 16 pages of direct map): a 64-object cache with a
hardened freelist (free pointer at offset 56, outside the 48-byte object as with a constructor) whose
three slabs are a partial one, CPU 1's active slab (its lockless freelist, and an object another CPU
freed onto the slab's own freelist) and a full one, and an order-1 cache whose slab spans a head and a
tail page. CPU 1 is offline as a panic leaves it (stop_this_cpu), and its freelist still counts.
Slab pages are marked by PG_slab or by the v6.10 page type; freelist pointers are encoded with the
v5.7 byte swap or without it; a freelist cycle and a wild free pointer end their walks with a reason.
"""

from __future__ import annotations

import pytest

from kcrash.helpers.linux.slab import (
    SlabObjectInfo,
    _slub,
    find_slab_cache,
    for_each_slab_cache,
    slab_cache_for_each_allocated_object,
    slab_cache_for_each_object,
    slab_cache_info,
    slab_cache_node_counts,
    slab_cache_slab_locations,
    slab_cache_usage,
    slab_object_info,
)
from support.slab_kernel import BASE, NODES, PAGE, PAGE_OFFSET, PAGES, VMEMMAP, build, obj


@pytest.mark.parametrize("page_type", [False, True], ids=["PG_slab", "page-type"])
@pytest.mark.parametrize("swab", [True, False], ids=["swab", "no-swab"])
def test_usage_counts_the_slab_pages_and_every_cpus_freelist(page_type: bool, swab: bool) -> None:
    k, small, big = build(page_type=page_type, swab=swab)
    prog = k.prog
    assert [slab_cache_info(prog, c).name for c in for_each_slab_cache(prog)] == ["test-64", "big-1k"]
    found = find_slab_cache(prog, "big-1k")
    assert found is not None and int(found) == big and find_slab_cache(prog, "nope") is None
    info = slab_cache_info(prog, small)
    assert (info.size, info.object_size, info.offset, info.objects_per_slab, info.order, info.slab_size) == \
        (64, 48, 56, 64, 0, PAGE)
    usage = slab_cache_usage(prog, small)
    # 4 (partial) + 1 (remote free on the active slab) + 3 (offline CPU 1's freelist)
    assert (usage.num_slabs, usage.num_objs, usage.free_objs, usage.active_objs, usage.error) == (3, 192, 8, 184, None)
    assert slab_cache_node_counts(prog, small) == (3, 192)
    assert slab_cache_usage(prog, big) == type(usage)(1, 8, 1, None)
    assert _slub(prog).swab is swab


def test_every_object_with_its_state() -> None:
    k, small, big = build()
    objects = list(slab_cache_for_each_object(k.prog, small))
    assert len(objects) == 192 and [o.slab for o in objects[::64]] == [VMEMMAP + pfn * 64 for pfn in (2, 3, 5)]
    free = {o.address for o in objects if o.allocated is False}
    assert free == {obj(2, i) for i in (5, 9, 10, 63)} | {obj(3, i) for i in (0, 1, 2, 7)}
    assert all(o.allocated is not None for o in objects)
    assert len(list(slab_cache_for_each_allocated_object(k.prog, small))) == 184
    assert [o.allocated for o in slab_cache_for_each_object(k.prog, big)] == [True] * 5 + [False] + [True] * 2


def test_slab_object_info() -> None:
    k, small, big = build()
    prog = k.prog
    slab2, slab3, slab6 = (VMEMMAP + pfn * 64 for pfn in (2, 3, 6))
    assert slab_object_info(prog, obj(2, 5) + 10) == SlabObjectInfo("test-64", small, slab2, obj(2, 5), 10, False)
    assert slab_object_info(prog, obj(2, 6)) == SlabObjectInfo("test-64", small, slab2, obj(2, 6), 0, True)
    for index, allocated in ((0, False), (2, False), (7, False), (8, True)):
        info = slab_object_info(prog, obj(3, index) + 63)
        assert info is not None and (info.slab, info.address, info.offset, info.allocated) == \
            (slab3, obj(3, index), 63, allocated)
    # an address in the tail page of the order-1 slab: the head page's slab
    assert slab_object_info(prog, obj(6, 5, 1024) + 1) == SlabObjectInfo("big-1k", big, slab6, obj(6, 5, 1024), 1,
                                                                          False)
    assert slab_object_info(prog, obj(6, 6, 1024)) == SlabObjectInfo("big-1k", big, slab6, obj(6, 6, 1024), 0, True)
    assert slab_object_info(prog, PAGE_OFFSET + 4 * PAGE + 8) is None  # not a slab page
    assert slab_object_info(prog, PAGE_OFFSET + PAGES * PAGE + 8) is None  # past the direct map
    assert slab_object_info(prog, BASE + 8) is None  # kernel image


def test_a_freelist_cycle_or_a_wild_pointer_makes_the_state_unknown() -> None:
    k, small, _ = build()
    # object 10's free pointer leads back to object 5: the walk stops at the cycle
    k.u64(obj(2, 10) + 56, k.encode(small, obj(2, 10) + 56, obj(2, 5)))
    info = slab_object_info(k.prog, obj(2, 6))
    assert info is not None and info.allocated is None
    info = slab_object_info(k.prog, obj(2, 9))
    assert info is not None and info.allocated is False  # walked before the cycle
    states = [o.allocated for o in slab_cache_for_each_object(k.prog, small) if o.slab == VMEMMAP + 2 * 64]
    assert states.count(False) == 3 and states.count(None) == 61
    # a wild pointer in another slab's list
    k2, small2, _ = build()
    k2.u64(obj(2, 9) + 56, k2.encode(small2, obj(2, 9) + 56, 0xDEAD0000))
    info = slab_object_info(k2.prog, obj(2, 6))
    assert info is not None and info.allocated is None
    assert slab_object_info(k2.prog, obj(5, 1)) == SlabObjectInfo("test-64", small2, VMEMMAP + 5 * 64,
                                                                  obj(5, 1), 0, True)


def test_kfence_objects_are_identified_and_not_counted() -> None:
    # A two-object KFENCE pool at PFN 8 (mm/kfence/core.c: object i in page 2i+2, guard pages between):
    # object 0 allocated at the end of its page, object 1 freed at the start of its page. Their pages
    # are slab pages of test-64 that nr_slabs does not count.
    k, small, _ = build()
    pool = PAGE_OFFSET + 8 * PAGE
    objects = [(pool + 2 * PAGE + PAGE - 64, 1), (pool + 4 * PAGE, 2)]
    k.kfence(8, [(address, state, small) for address, state in objects])
    assert _slub(k.prog).kfence == (pool, pool + 3 * 2 * PAGE)
    assert slab_cache_usage(k.prog, small).num_slabs == 3
    page0, page1 = VMEMMAP + 10 * 64, VMEMMAP + 12 * 64
    (first, _), (second, _) = objects
    assert slab_object_info(k.prog, first + 8) == SlabObjectInfo("test-64", small, page0, first, 8, True)
    assert slab_object_info(k.prog, second) == SlabObjectInfo("test-64", small, page1, second, 0, False)
    info = slab_object_info(k.prog, pool + 2 * PAGE + 16)  # the red zone before object 0
    assert info is not None and info.allocated is None and info.address == first
    assert slab_object_info(k.prog, pool + 3 * PAGE) is None  # a guard page


def test_slab_locations() -> None:
    # slab 2 on the node's partial list, slab 5 on CPU 0's partial chain, slab 3 CPU 1's active slab
    k, small, big = build()
    slabs = {pfn: VMEMMAP + pfn * 64 for pfn in (2, 3, 5)}
    node = NODES
    k.u64(node + 16, slabs[2] + 16)
    k.u64(node + 24, slabs[2] + 16)
    k.u64(slabs[2] + 16, node + 16)
    k.u64(slabs[2] + 24, node + 16)
    k.cpu(0, 0, 0, 0, partial=slabs[5])
    assert slab_cache_slab_locations(k.prog, small) == {slabs[2]: "node 0 partial", slabs[3]: "cpu 1",
                                                        slabs[5]: "cpu 0 partial"}
    assert slab_cache_slab_locations(k.prog, big) == {}
