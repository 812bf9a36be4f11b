"""
kcrash.analysis.memory_summary
==============================

Memory at the crash for the report: totals the way ``/proc/meminfo`` computes them (``_totalram_pages``,
``vm_zone_stat[NR_FREE_PAGES]``, ``vm_node_stat[...]``) and the biggest slab caches the way
``/proc/slabinfo`` counts them (``struct kmem_cache_node``'s ``nr_slabs``/``total_objects`` on every
node, slab size from ``kmem_cache.oo``; ``mm/slub.c``), read by :mod:`kcrash.helpers.linux.slab`.
Counters that a kernel lacks are None; item names are probed (``NR_SLAB_RECLAIMABLE_B`` since v5.9,
``NR_SLAB_RECLAIMABLE`` before), never versions. Slab counts need ``CONFIG_SLUB_DEBUG`` (Debian has
it). Nothing here prints.
"""

from __future__ import annotations

from kcrash import model
from kcrash.errors import KcrashError
from kcrash.helpers.linux.slab import for_each_slab_cache, slab_cache_info, slab_cache_node_counts
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["memory_summary", "slab_cache", "slab_caches", "totalram_pages_or_none", "vm_stat_pages_or_none"]

_PAGE_SIZE = 4096
#: globals this module reads, with their C types (kallsyms gives addresses only)
_DECLARATIONS = {"nr_node_ids": "unsigned int", "vm_zone_stat": "atomic_long_t[]", "vm_node_stat": "atomic_long_t[]"}


def _declare(prog: Program) -> None:
    for name, spec in _DECLARATIONS.items():
        try:
            prog.variable_type(name)
        except KcrashError:
            prog.declare(name, spec)


def vm_stat_pages_or_none(prog: Program, array: str, *items: str) -> int | None:
    """The global counter of the first of ``items`` this kernel's enum has (``NR_FREE_PAGES``...),
    read from ``array`` (``vm_zone_stat``, ``vm_node_stat``), in pages; None if it has none or the
    counter is unreadable."""
    _declare(prog)
    for item in items:
        try:
            index = int(prog.constant(item))
        except KcrashError:
            continue
        try:
            return int(prog[array][index].counter)
        except KcrashError:
            return None
    return None


def totalram_pages_or_none(prog: Program) -> int | None:
    """``totalram_pages()``: ``_totalram_pages`` (since v5.0), else ``totalram_pages``; None if unreadable."""
    _declare(prog)
    try:
        return int(prog["_totalram_pages"].counter)
    except KcrashError:
        pass
    try:
        return prog.read_u64(prog.symbol_address("totalram_pages"))
    except KcrashError:
        return None


def _stat_or_none(prog: Program, array: str, *items: str) -> int | None:
    # vm_stat_pages_or_none in bytes
    pages = vm_stat_pages_or_none(prog, array, *items)
    return None if pages is None else pages * _PAGE_SIZE


def _total_or_none(prog: Program) -> int | None:
    pages = totalram_pages_or_none(prog)
    return None if pages is None else pages * _PAGE_SIZE


def _slab_cache(prog: Program, cache: int) -> model.SlabCache:
    # A cache's /proc/slabinfo line, from kcrash.helpers.linux.slab (the node counters; kmem -s counts
    # the slab pages themselves, and the oracle tests check that both agree)
    info = slab_cache_info(prog, cache)
    slabs, objects = slab_cache_node_counts(prog, cache)
    return model.SlabCache(info.name, info.object_size, objects, slabs, slabs * info.slab_size)


def slab_cache(prog: Program, cache: Object) -> model.SlabCache:
    """The ``/proc/slabinfo`` counts of one ``struct kmem_cache *`` over its nodes (``nr_node_ids``,
    at most the length of ``kmem_cache.node[]``)."""
    return _slab_cache(prog, int(cache))


def slab_caches(prog: Program) -> tuple[list[model.SlabCache], str | None]:
    """Every slab cache on ``slab_caches``, and why the walk stopped early (None: it did not)."""
    walk = for_each_slab_cache(prog)
    out: list[model.SlabCache] = []
    try:
        for cache in walk:
            out.append(_slab_cache(prog, int(cache)))
    except KcrashError as exc:
        walk.truncated = str(exc)
    return out, walk.truncated


def memory_summary(prog: Program, top: int = 10) -> model.MemorySummary:
    """Totals, page-cache/anonymous/slab bytes and the ``top`` slab caches by size."""
    _declare(prog)
    error = None
    try:
        caches, error = slab_caches(prog)
    except KcrashError as exc:
        caches, error = [], f"slab caches: {exc}"
    caches.sort(key=lambda c: (-c.total_bytes, c.name))
    return model.MemorySummary(
        total_bytes=_total_or_none(prog),
        free_bytes=_stat_or_none(prog, "vm_zone_stat", "NR_FREE_PAGES"),
        file_bytes=_stat_or_none(prog, "vm_node_stat", "NR_FILE_PAGES"),
        anon_bytes=_stat_or_none(prog, "vm_node_stat", "NR_ANON_MAPPED"),
        slab_reclaimable_bytes=_stat_or_none(prog, "vm_node_stat", "NR_SLAB_RECLAIMABLE_B", "NR_SLAB_RECLAIMABLE"),
        slab_unreclaimable_bytes=_stat_or_none(
            prog, "vm_node_stat", "NR_SLAB_UNRECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE"
        ),
        slab_caches=len(caches),
        top_slabs=tuple(caches[:top]),
        error=error,
    )
