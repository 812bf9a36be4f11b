"""
kcrash.helpers.linux.slab
=========================

The SLUB allocator (``include/linux/slub_def.h``, ``mm/slab.h``, ``mm/slub.c``) read from memory with
kallsyms and BTF only: :func:`for_each_slab_cache` and :func:`find_slab_cache` walk ``slab_caches``;
:func:`slab_cache_usage` counts a cache's slabs and objects from the slabs themselves (every slab
page found by one numpy scan of the ``struct page`` array, its ``objects``/``inuse`` counters, plus
the per-CPU freelists and, since v6.18, the per-CPU and per-node sheaves, which hold objects that
``inuse`` counts as used; pages, the direct map and compound heads are
:mod:`kcrash.helpers.linux.mm`'s); :func:`slab_cache_for_each_object` yields every object of a
cache, free or allocated, with its slab; :func:`slab_object_info` says which cache, slab and object an address
lies in and whether that object is allocated. :func:`slab_cache_node_counts` reads the per-node
``nr_slabs``/``total_objects`` counters (``CONFIG_SLUB_DEBUG``), which ``/proc/slabinfo`` prints.

Kernel differences are probed, never versioned: ``struct slab`` (since v5.17) or ``struct page``;
slab pages flagged by ``PG_slab`` or, since v6.10, by a page type (``PAGE_SLAB_MAPCOUNT_VALUE``
from VMCOREINFO); ``kmem_cache.node[]`` or, since v7.1, ``kmem_cache.per_node[].node``;
``cpu_slab`` (gone in v7.0) and ``cpu_sheaves``; hardened freelist pointers
(``CONFIG_SLAB_FREELIST_HARDENED``: ``kmem_cache.random`` exists), decoded with or without the
byte swap of v5.7 by checking which decode lands in the slab. KFENCE pages are left out of the
counts as the kernel leaves them out of ``nr_slabs``; an address in the pool is identified by
:mod:`kcrash.helpers.linux.kfence`. Walks over dump memory are bounded: a freelist cycle or a
wild pointer ends the walk with a reason (and ``allocated=None`` where that makes the answer
unknown). SLAB and SLOB (removed in v6.5 and v6.4) are not supported. Nothing here prints.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from kcrash.errors import FaultError, KcrashError, SymbolNotFoundError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.cpumask import for_each_possible_cpu
from kcrash.helpers.linux.kfence import kfence_object, kfence_pool
from kcrash.helpers.linux.list import ListWalk, list_for_each, list_for_each_entry
from kcrash.helpers.linux.mm import MmLayout, compound_head, in_direct_map, mm_layout, virt_to_page
from kcrash.helpers.memo import per_program
from kcrash.types.model import Type
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu_offset
from kcrash.types.program import Program

__all__ = [
    "SlabCacheInfo",
    "SlabCacheUsage",
    "SlabObject",
    "SlabObjectInfo",
    "find_slab_cache",
    "for_each_slab_cache",
    "slab_cache_for_each_allocated_object",
    "slab_cache_for_each_object",
    "slab_cache_info",
    "slab_cache_node_counts",
    "slab_cache_slab_locations",
    "slab_cache_usage",
    "slab_object_info",
]

#: ``struct kmem_cache_order_objects``: objects in the low OO_SHIFT bits, order above (mm/slub.c)
_OO_SHIFT = 16
_MAX_CACHES = 4096
_MAX_OBJECTS = 1 << 15  # slab->objects is a 15-bit field (mm/slab.h)
_MAX_SHEAVES = 1 << 16
_MAX_SLABS = 1 << 24
#: struct pages per vmemmap read (2 MiB of ``struct page``)
_SCAN_PAGES = 32768
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class SlabCacheInfo:
    """One ``struct kmem_cache`` (``include/linux/slub_def.h``): its address, name and geometry.

    :param address: the ``struct kmem_cache``'s address
    :param name: ``s->name``
    :param object_size: the caller's object size (``s->object_size``)
    :param size: the stride between objects, metadata included (``s->size``)
    :param offset: where the free pointer is in a free object (``s->offset``)
    :param objects_per_slab: objects in one slab (``oo_objects(s->oo)``)
    :param order: pages per slab as a power of two (``oo_order(s->oo)``)
    :param red_left_pad: ``s->red_left_pad`` (``SLAB_RED_ZONE`` debugging)
    :param page_size: ``PAGE_SIZE``

    >>> info = slab_cache_info(prog, find_slab_cache(prog, "kcrash_test_cache"))
    >>> info.slab_size // info.size >= info.objects_per_slab
    True
    """

    address: int
    name: str
    #: the caller's object size (``object_size``)
    object_size: int
    #: the stride between objects, metadata included (``size``)
    size: int
    #: where the free pointer is in a free object (``offset``)
    offset: int
    objects_per_slab: int
    order: int
    red_left_pad: int
    page_size: int

    @property
    def slab_size(self) -> int:
        """Return the bytes of one slab (``PAGE_SIZE << order``).

        :return: the slab's size in bytes
        """
        return self.page_size << self.order


@dataclass(frozen=True, slots=True)
class SlabCacheUsage:
    """Slab and object counts of one cache, counted from its slabs (see :func:`slab_cache_usage`).

    :param num_slabs: slabs of the cache
    :param num_objs: objects in those slabs
    :param free_objs: free objects (slab freelists, per-CPU freelists and sheaves)
    :param error: why the counts may be incomplete, None if they are not

    >>> usage = slab_cache_usage(prog, find_slab_cache(prog, "kcrash_test_cache"))
    >>> usage.active_objs == usage.num_objs - usage.free_objs
    True
    """

    num_slabs: int
    num_objs: int
    free_objs: int
    error: str | None = None

    @property
    def active_objs(self) -> int:
        """Return the number of allocated objects.

        :return: ``num_objs - free_objs``
        """
        return self.num_objs - self.free_objs


@dataclass(frozen=True, slots=True)
class SlabObject:
    """One object of a slab, as :func:`slab_cache_for_each_object` yields it.

    :param address: the object's address
    :param slab: its slab (``struct slab *``, ``struct page *`` before v5.17)
    :param allocated: whether it is allocated; None: unknown (the slab's freelist is damaged)

    >>> first = next(slab_cache_for_each_object(prog, find_slab_cache(prog, "kcrash_test_cache")))
    """

    address: int
    slab: int
    allocated: bool | None


@dataclass(frozen=True, slots=True)
class SlabObjectInfo:
    """Where an address lies in the slab allocator, as :func:`slab_object_info` finds it.

    :param cache_name: the cache's ``name``
    :param cache: ``struct kmem_cache *``
    :param slab: ``struct slab *`` (``struct page *`` before v5.17)
    :param address: the start of the object holding the address
    :param offset: the address's offset in the object
    :param allocated: True allocated, False free, None unknown (damaged freelist, or not inside an
        object: the slab's tail or left red zone)

    >>> address = next(slab_cache_for_each_allocated_object(prog, find_slab_cache(prog, "kcrash_test_cache")))
    >>> slab_object_info(prog, address + 8).offset
    8
    """

    cache_name: str
    #: ``struct kmem_cache *``
    cache: int
    #: ``struct slab *`` (``struct page *`` before v5.17)
    slab: int
    #: the start of the object holding the address
    address: int
    #: the address's offset in the object
    offset: int
    #: True allocated, False free, None unknown (damaged freelist, or not inside an object: the
    #: slab's tail or left red zone)
    allocated: bool | None


# -- per-program facts ------------------------------------------------------------------------------

@per_program
def _slub(prog: Program) -> _Slub:
    return _Slub(prog)


def _symbol_u64(prog: Program, name: str) -> int | None:
    try:
        return prog.read_u64(prog.symbol_address(name))
    except (SymbolNotFoundError, FaultError, KcrashError):
        return None


def _bitfield(t: Type, name: str) -> tuple[int, int]:
    # (shift within the 64-bit counters word, mask) of a slab counter bit-field (mm/slab.h)
    bits, _, size = t.walk_path(name)
    base, _, _ = t.walk_path("counters")
    return bits - base, (1 << (size or 32)) - 1


class _Slub:
    # Everything about this kernel's SLUB that does not change during a session.

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        info = prog.vmcoreinfo
        self.page_size = (info.page_size if info is not None else None) or 4096
        self.cache_type = prog.type("struct kmem_cache")
        self.hardened = self.cache_type.has_member("random")
        self.swab: bool | None = None  # freelist decode: with the v5.7 byte swap, without; None untried
        self.caches: dict[int, SlabCacheInfo] = {}
        self.random: dict[int, int] = {}
        self.index: _SlabIndex | None = None
        self.cpu_free: dict[int, _CpuFree] = {}
        self.cache_layout: StructLayout | None = None
        self._cpus: list[tuple[int, int]] | None = None
        self.layouts: dict[str, StructLayout] = {}
        self.has_barn = prog.find_type_or_none("struct node_barn") is not None
        self.unreadable_pages = 0
        # What is read from memory that changes (slab pages, freelists) is kept only for a dump; a
        # live kernel runs between stops, so it is read again on every call.
        self.static = prog.dump is not None
        #: (slab, freelist head) -> (its free objects, why the walk stopped early): a dump does not change
        self.freelists: dict[tuple[int, int], tuple[frozenset[int], str | None]] = {}

    # The page side, probed on first use (reading caches and their node counters needs none of it).

    @functools.cached_property
    def mm(self) -> MmLayout:
        return mm_layout(self.prog)

    @functools.cached_property
    def slab_type(self) -> Type:
        # Since Linux kernel commit d122019bf061 (v5.17) slab fields are in struct slab, an overlay
        # of struct page; before they were struct page's own.
        return self.prog.find_type_or_none("struct slab") or self.prog.type("struct page")

    @functools.cached_property
    def slab_layout(self) -> StructLayout:
        return StructLayout(self.slab_type, ("slab_cache", "freelist", "counters"))

    @functools.cached_property
    def inuse(self) -> tuple[int, int]:
        return _bitfield(self.slab_type, "inuse")

    @functools.cached_property
    def objects(self) -> tuple[int, int]:
        return _bitfield(self.slab_type, "objects")

    @functools.cached_property
    def slab_flag(self) -> tuple[str, int, int]:
        return self._slab_test()

    @functools.cached_property
    def kfence(self) -> tuple[int, int] | None:
        return kfence_pool(self.prog)

    def _slab_test(self) -> tuple[str, int, int]:
        # ("type", byte offset of page_type, value) or ("flag", 0, bit): how a slab's head page is
        # marked. Since Linux kernel commit 46df8e73a4a3 (v6.10) by a page type VMCOREINFO exports
        # as PAGE_SLAB_MAPCOUNT_VALUE; before by the PG_slab flag.
        info = self.prog.vmcoreinfo
        value = info.get_number_or_none("PAGE_SLAB_MAPCOUNT_VALUE") if info is not None else None
        if value is not None:
            offset = self.prog.type("struct page").walk_path("_mapcount")[0] // 8
            return "type", offset, value & 0xFFFFFFFF
        bit = info.get_number_or_none("PG_slab") if info is not None else None
        if bit is None:
            bit = int(self.prog.constant("PG_slab"))
        return "flag", 0, bit

    def cpus(self) -> list[tuple[int, int]]:
        # (cpu, __per_cpu_offset[cpu]) of every possible CPU: a panic's stop_this_cpu()
        # (arch/x86/kernel/process.c) clears the other CPUs' online bits, and their per-CPU
        # freelists still hold objects.
        if self._cpus is None:
            self._cpus = [(cpu, per_cpu_offset(self.prog, cpu)) for cpu in for_each_possible_cpu(self.prog)]
        return self._cpus

    def layout(self, struct: str, members: dict[str, str | tuple[str, ...]]) -> StructLayout:
        key = f"{struct} {sorted(members)}"
        found = self.layouts.get(key)
        if found is None:
            found = self.layouts[key] = StructLayout(self.prog.type(struct), members)
        return found

    # -- addresses ------------------------------------------------------------------------------

    def page_to_virt(self, page: int) -> int:
        mm = self.mm
        return mm.page_offset + ((page - mm.vmemmap) // mm.sizeof_page << mm.page_shift)

    def head_page(self, address: int) -> tuple[int, bytes]:
        # The head page of the direct-map address's (compound) page and its struct page bytes.
        head = int(compound_head(virt_to_page(self.prog, address)))
        return head, self.prog.read(head, self.mm.sizeof_page)

    def counters(self, value: int) -> tuple[int, int]:
        # (objects, inuse) of a slab's counters word
        return (value >> self.objects[0]) & self.objects[1], (value >> self.inuse[0]) & self.inuse[1]

    def is_slab(self, page_bytes: bytes) -> bool:
        kind, offset, value = self.slab_flag
        if kind == "type":
            return int.from_bytes(page_bytes[offset:offset + 4], "little") == value
        return bool(int.from_bytes(page_bytes[:8], "little") >> value & 1)

    # -- caches ---------------------------------------------------------------------------------

    def cache(self, address: int) -> SlabCacheInfo:
        found = self.caches.get(address)
        if found is None:
            found = self.caches[address] = self._read_cache(address)
        return found

    def _read_cache(self, address: int) -> SlabCacheInfo:
        layout = _cache_layout(self)
        c = layout.read(self.prog, address)
        oo = c.value("oo")
        self.random[address] = c.value("random") if self.hardened else 0
        try:
            name = c.object("name").string_().decode("utf-8", "backslashreplace")
        except FaultError:
            name = f"<cache {address:#x}>"
        return SlabCacheInfo(address, name, c.value("object_size"), c.value("size"), c.value("offset"),
                             oo & ((1 << _OO_SHIFT) - 1), oo >> _OO_SHIFT,
                             c.value("red_left_pad") if self.cache_type.has_member("red_left_pad") else 0,
                             self.page_size)


def _cache_layout(slub: _Slub) -> StructLayout:
    # ``red_left_pad`` (since v4.6) and ``random`` (CONFIG_SLAB_FREELIST_HARDENED) when present
    if slub.cache_layout is None:
        members = {"name": "name", "object_size": "object_size", "size": "size", "offset": "offset", "oo": "oo.x"}
        members.update({m: m for m in ("red_left_pad", "random") if slub.cache_type.has_member(m)})
        slub.cache_layout = StructLayout(slub.cache_type, members)
    return slub.cache_layout


# -- freelists --------------------------------------------------------------------------------------


def _swab64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


def _decode(slub: _Slub, cache: SlabCacheInfo, slot: int, raw: int, inside: _Inside) -> int:
    # The next free object from the free pointer ``raw`` stored at ``slot`` (mm/slub.c
    # freelist_ptr_decode): with CONFIG_SLAB_FREELIST_HARDENED it is ``ptr ^ s->random ^
    # swab(slot)``, without the swab before Linux kernel commit 1ad53d9fa3f6 (v5.7, also in some
    # stable trees): no marker says which, so the first decode that lands in the slab decides.
    if not slub.hardened:
        return raw
    random = slub.random[cache.address]
    swabbed = raw ^ random ^ _swab64(slot)
    if slub.swab:
        return swabbed
    plain = raw ^ random ^ slot
    if slub.swab is False:
        return plain
    for value, mode in ((swabbed, True), (plain, False)):
        if value and inside(value):
            slub.swab = mode
            return value
    return swabbed


class _Inside:
    # Is a pointer an object start of one slab?
    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("base", "end", "size")

    def __init__(self, base: int, objects: int, size: int) -> None:
        self.base, self.end, self.size = base, base + objects * size, size

    def __call__(self, pointer: int) -> bool:
        return self.base <= pointer < self.end and (pointer - self.base) % self.size == 0


def _walk_freelist(slub: _Slub, cache: SlabCacheInfo, slab: int, objects: int, head: int,
                   data: bytes | None = None) -> tuple[list[int], str | None]:
    # The free objects chained from ``head`` in the slab ``slab`` (``data``: the slab's bytes, when
    # read already), and why the walk stopped early (None: it reached the end). Bounded by the
    # slab's object count: every accepted pointer is a distinct object start of the slab.
    start = slub.page_to_virt(slab)
    inside = _Inside(start + cache.red_left_pad, min(objects, _MAX_OBJECTS), cache.size or 1)
    out: list[int] = []
    seen: set[int] = set()
    pointer = head
    while pointer:
        if not inside(pointer):
            return out, f"free pointer {pointer:#x} is not an object of slab {slab:#x}"
        if pointer in seen:
            return out, f"freelist cycle at {pointer:#x} in slab {slab:#x}"
        seen.add(pointer)
        out.append(pointer)
        slot = pointer + cache.offset
        if data is not None and slot + 8 <= start + len(data):
            raw = int.from_bytes(data[slot - start:slot - start + 8], "little")
        else:
            try:
                raw = slub.prog.read_u64(slot)
            except FaultError:
                return out, f"unreadable free pointer at {slot:#x}"
        pointer = _decode(slub, cache, slot, raw, inside)
    return out, None


# -- the slab pages -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SlabIndex:
    # Every slab head page found in the struct page array (KFENCE pages left out), by cache:
    # rows of (struct page/slab address, freelist, counters).
    by_cache: dict[int, np.ndarray]
    #: why the scan missed part of the array (unreadable vmemmap), None if it did not
    missing: str | None


def _slab_index(slub: _Slub) -> _SlabIndex:
    if slub.index is not None:
        return slub.index
    index = _scan(slub)
    if slub.static:
        slub.index = index
    return index


def _vmemmap_chunks(slub: _Slub) -> Iterator[tuple[int, np.ndarray]]:
    # (address, struct pages as rows of u64 words) over the valid PFNs up to max_pfn in large reads;
    # an unreadable read is retried page by page (a damaged dump may lack vmemmap pages).
    mm = slub.mm
    words = mm.sizeof_page // 8
    per_page = max(1, slub.page_size // mm.sizeof_page)
    for start, end in mm.valid:
        for first in range(start, min(end, mm.max_pfn + 1), _SCAN_PAGES):
            count = min(_SCAN_PAGES, min(end, mm.max_pfn + 1) - first)
            address = mm.vmemmap + first * mm.sizeof_page
            try:
                data = slub.prog.read(address, count * mm.sizeof_page)
            except FaultError:
                for sub in range(0, count, per_page):
                    n = min(per_page, count - sub)
                    try:
                        part = slub.prog.read(address + sub * mm.sizeof_page, n * mm.sizeof_page)
                    except FaultError:
                        slub.unreadable_pages += n
                        continue
                    yield address + sub * mm.sizeof_page, np.frombuffer(part, "<u8").reshape(n, words)
                continue
            yield address, np.frombuffer(data, "<u8").reshape(count, words)


def _slab_rows(slub: _Slub, rows: np.ndarray) -> np.ndarray:
    # The rows whose page is a slab's head page.
    kind, offset, value = slub.slab_flag
    if kind == "type":
        word = rows[:, offset // 8] >> np.uint64(offset % 8 * 8)
        return (word & np.uint64(0xFFFFFFFF)) == np.uint64(value)  # type: ignore[no-any-return]
    return (rows[:, 0] >> np.uint64(value)) & np.uint64(1) == np.uint64(1)  # type: ignore[no-any-return]


def _scan(slub: _Slub) -> _SlabIndex:
    slub.unreadable_pages = 0
    layout = slub.slab_layout
    columns = [layout.offsetof(name) // 8 for name in ("slab_cache", "freelist", "counters")]
    found: list[np.ndarray] = []
    for address, rows in _vmemmap_chunks(slub):
        hit = np.nonzero(_slab_rows(slub, rows))[0]
        if hit.size:
            pages = np.uint64(address) + hit.astype(np.uint64) * np.uint64(slub.mm.sizeof_page)
            found.append(np.column_stack([pages, rows[hit][:, columns]]))
    table = np.concatenate(found) if found else np.zeros((0, 4), np.uint64)
    if slub.kfence is not None:
        low, high = (int(virt_to_page(slub.prog, a)) for a in slub.kfence)
        table = table[(table[:, 0] < np.uint64(low)) | (table[:, 0] >= np.uint64(high))]
    order = np.argsort(table[:, 1], kind="stable")
    table = table[order]
    keys, starts = np.unique(table[:, 1], return_index=True)
    bounds = [*starts.tolist(), len(table)]
    by_cache = {int(k): table[bounds[i]:bounds[i + 1]][:, [0, 2, 3]] for i, k in enumerate(keys.tolist())}
    if not slub.mm.max_pfn:
        return _SlabIndex(by_cache, "max_pfn unknown: no struct page scanned")
    missing = slub.unreadable_pages
    return _SlabIndex(by_cache, f"{missing} struct pages unreadable: their slabs are not counted" if missing else None)


# -- per-CPU and per-node caches of free objects -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CpuFree:
    # Free objects a cache holds outside its slabs' freelists: the per-CPU freelists of the CPUs'
    # active slabs, and (since v6.18) the objects in sheaves. ``count`` counts them all.
    objects: frozenset[int]
    count: int
    error: str | None


def _cpu_free(slub: _Slub, cache: SlabCacheInfo) -> _CpuFree:
    found = slub.cpu_free.get(cache.address)
    if found is None:
        objects: set[int] = set()
        errors: list[str] = []
        for part in (_cpu_slab_free, _cpu_sheaves_free, _barn_free):
            try:
                error = part(slub, cache, objects)
            except KcrashError as exc:
                error = f"{part.__name__.strip('_').replace('_', ' ')}: {exc}"
            if error:
                errors.append(error)
        found = _CpuFree(frozenset(objects), len(objects), "; ".join(errors) or None)
        if slub.static:
            slub.cpu_free[cache.address] = found
    return found


def _cpu_slab_free(slub: _Slub, cache: SlabCacheInfo, out: set[int]) -> str | None:
    # ``kmem_cache.cpu_slab`` (removed by Linux kernel commit 32c894c7274b, v7.0): each online CPU's
    # lockless freelist of its active slab (``slab``; ``page`` before commit bb192ed9aa71, v5.17).
    if not slub.cache_type.has_member("cpu_slab"):
        return None
    prog = slub.prog
    percpu = prog.read_u64(cache.address + slub.cache_type.walk_path("cpu_slab")[0] // 8)
    layout = slub.layout("struct kmem_cache_cpu", {"freelist": "freelist", "slab": ("slab", "page")})
    errors = []
    for cpu, offset in slub.cpus():
        c = layout.read(prog, (percpu + offset) & _MASK64)
        slab, head = c.value("slab"), c.value("freelist")
        if not slab or not head:
            continue
        fields = slub.slab_layout.read(prog, slab)
        if fields.value("slab_cache") != cache.address:
            continue
        objects, _ = slub.counters(fields.value("counters"))
        free, error = _walk_freelist(slub, cache, slab, objects, head, _slab_bytes(slub, cache, slab))
        out.update(free)
        if error:
            errors.append(f"cpu {cpu}: {error}")
    return "; ".join(errors) or None


def _sheaf_objects(slub: _Slub, sheaf: int, out: set[int]) -> None:
    # ``struct slab_sheaf``: ``size`` object pointers in ``objects[]``.
    prog = slub.prog
    layout = slub.layout("struct slab_sheaf", {"size": "size", "objects": "objects"})
    size = min(layout.read_value(prog, sheaf, "size"), _MAX_SHEAVES)
    if size:
        data = prog.read(sheaf + layout.offsetof("objects"), size * 8)
        out.update(np.frombuffer(data, "<u8").tolist())


def _cpu_sheaves_free(slub: _Slub, cache: SlabCacheInfo, out: set[int]) -> str | None:
    # Since Linux kernel commit 2d517aa09bbc (v6.18): each online CPU's ``main`` and ``spare``
    # sheaves (``rcu_free`` holds objects still waiting for a grace period: allocated until then).
    if not slub.cache_type.has_member("cpu_sheaves"):
        return None
    prog = slub.prog
    percpu = prog.read_u64(cache.address + slub.cache_type.walk_path("cpu_sheaves")[0] // 8)
    if not percpu:
        return None
    layout = slub.layout("struct slub_percpu_sheaves", {"main": "main", "spare": "spare"})
    for _, offset in slub.cpus():
        pcs = layout.read(prog, (percpu + offset) & _MASK64)
        for name in ("main", "spare"):
            if pcs.value(name):
                _sheaf_objects(slub, pcs.value(name), out)
    return None


def _node_members(slub: _Slub, node: int) -> tuple[str, str | None]:
    # (path of the kmem_cache_node pointer, path of the node_barn pointer or None) in struct
    # kmem_cache: ``per_node[i].node``/``.barn`` since Linux kernel commit 5ba6bc27b1f9 (v7.1),
    # ``node[i]`` (with ``->barn`` since v6.18) before.
    if slub.cache_type.has_member("per_node"):
        return f"per_node[{node}].node", f"per_node[{node}].barn"
    return f"node[{node}]", None


def _nodes(slub: _Slub) -> int:
    # nr_node_ids, bounded by the length of the kmem_cache's node array (MAX_NUMNODES)
    member = "per_node" if slub.cache_type.has_member("per_node") else "node"
    length = slub.cache_type.walk_path(member)[1].strip_typedefs().length or 1
    try:
        count = slub.prog.read_u32(slub.prog.symbol_address("nr_node_ids"))
    except KcrashError:
        count = 1
    return max(1, min(count, length))


def _node_pointers(slub: _Slub, cache: int) -> list[tuple[int, int]]:
    # (struct kmem_cache_node *, struct node_barn * or 0) of each node
    out = []
    for i in range(_nodes(slub)):
        node_path, barn_path = _node_members(slub, i)
        node = slub.prog.read_u64(cache + slub.cache_type.walk_path(node_path)[0] // 8)
        barn = slub.prog.read_u64(cache + slub.cache_type.walk_path(barn_path)[0] // 8) if barn_path else 0
        if not barn and node and slub.prog.type("struct kmem_cache_node").has_member("barn"):
            barn = slub.prog.read_u64(node + slub.prog.type("struct kmem_cache_node").walk_path("barn")[0] // 8)
        out.append((node, barn))
    return out


def _barn_free(slub: _Slub, cache: SlabCacheInfo, out: set[int]) -> str | None:
    # Since v6.18: the full sheaves on each node's barn (``barn->sheaves_full``, linked by
    # ``slab_sheaf.barn_list``).
    prog = slub.prog
    if not slub.has_barn:
        return None
    errors = []
    for _, barn in _node_pointers(slub, cache.address):
        if not barn:
            continue
        head = Object(prog, "struct node_barn", address=barn).sheaves_full.address_of_()
        walk = list_for_each(head, limit=_MAX_SHEAVES)
        for entry in walk:
            _sheaf_objects(slub, int(entry) - prog.type("struct slab_sheaf").walk_path("barn_list")[0] // 8, out)
        if walk.truncated:
            errors.append(f"barn {barn:#x}: {walk.truncated}")
    return "; ".join(errors) or None


# -- public helpers -------------------------------------------------------------------------------


def _address(cache: Object | int) -> int:
    return cache if isinstance(cache, int) else int(cache)


def for_each_slab_cache(prog: Program) -> ListWalk:
    """Iterate over every slab cache on the ``slab_caches`` list (linked by ``kmem_cache.list``).

    :param prog: the program
    :return: a bounded :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct kmem_cache *``, whose
        ``truncated`` says why it stopped early
    :raises FaultError: if ``slab_caches`` cannot be read

    >>> [slab_cache_info(prog, c).name for c in for_each_slab_cache(prog)][:2]
    ['kcrash_test_cache', 'fsverity_info']
    """
    return list_for_each_entry("struct kmem_cache", prog["slab_caches"].address_of_(), "list", limit=_MAX_CACHES)


def find_slab_cache(prog: Program, name: str) -> Object | None:
    """Return the slab cache named ``name`` (the first on ``slab_caches``; drgn's ``find_slab_cache()``).

    :param prog: the program
    :param name: the cache's name (``"dentry"``)
    :return: ``struct kmem_cache *``, None if there is none

    >>> hex(find_slab_cache(prog, "dentry"))
    '0xffff8880041f4b00'
    """
    for cache in for_each_slab_cache(prog):
        if slab_cache_info(prog, cache).name == name:
            return cache
    return None


def slab_cache_info(prog: Program, cache: Object | int) -> SlabCacheInfo:
    """Return the name and geometry of a slab cache (one read of its ``struct kmem_cache`` members).

    :param prog: the program
    :param cache: ``struct kmem_cache *`` (or its address)
    :return: the cache's name and geometry
    :raises FaultError: if the cache cannot be read

    >>> slab_cache_info(prog, find_slab_cache(prog, "kcrash_test_cache")).objects_per_slab
    51
    """
    return _slub(prog).cache(_address(cache))


def slab_cache_usage(prog: Program, cache: Object | int) -> SlabCacheUsage:
    """Return a cache's slabs, objects and free objects, counted from its slabs.

    Every slab page of the cache (flagged by ``PG_slab`` or, since v6.10, a page type; ``slab_cache``
    is ``cache``), ``objects - inuse`` of each, plus the objects on per-CPU freelists and in sheaves.

    :param prog: the program
    :param cache: ``struct kmem_cache *`` (or its address)
    :return: the counts, with :attr:`SlabCacheUsage.error` saying why they may be incomplete
    :raises FaultError: if the cache cannot be read

    >>> slab_cache_usage(prog, find_slab_cache(prog, "kcrash_test_cache")).free_objs
    53
    """
    slub = _slub(prog)
    info = slub.cache(_address(cache))
    rows = _slab_index(slub).by_cache.get(info.address)
    if rows is None:
        rows = np.zeros((0, 3), np.uint64)
    counters = rows[:, 2]
    objects = (counters >> np.uint64(slub.objects[0])) & np.uint64(slub.objects[1])
    inuse = (counters >> np.uint64(slub.inuse[0])) & np.uint64(slub.inuse[1])
    cpu = _cpu_free(slub, info)
    free = int(np.sum(objects - np.minimum(objects, inuse))) + cpu.count
    errors = [e for e in (_slab_index(slub).missing, cpu.error) if e]
    return SlabCacheUsage(len(rows), int(np.sum(objects)), free, "; ".join(errors) or None)


def slab_cache_node_counts(prog: Program, cache: Object | int) -> tuple[int, int]:
    r"""Return ``(nr_slabs, total_objects)`` summed over a cache's ``struct kmem_cache_node``\ s.

    The counters ``/proc/slabinfo`` prints (kept with ``CONFIG_SLUB_DEBUG``).

    :param prog: the program
    :param cache: ``struct kmem_cache *`` (or its address)
    :return: ``(slabs, objects)``
    :raises FaultError: if the cache or a node cannot be read

    >>> slab_cache_node_counts(prog, find_slab_cache(prog, "kcrash_test_cache"))
    (3, 153)
    """
    slub = _slub(prog)
    layout = StructLayout(prog.type("struct kmem_cache_node"), ("nr_slabs.counter", "total_objects.counter"))
    slabs = objects = 0
    for node, _ in _node_pointers(slub, _address(cache)):
        if node:
            counts = layout.read(prog, node)
            slabs += counts.value("nr_slabs.counter")
            objects += counts.value("total_objects.counter")
    return slabs, objects


def _cpu_slab_locations(slub: _Slub, cache: int, out: dict[int, str]) -> None:
    # Each CPU's active slab and its partial slabs (``kmem_cache_cpu.partial``, chained by
    # ``slab->next``; CONFIG_SLUB_CPU_PARTIAL), bounded by the slab count.
    if not slub.cache_type.has_member("cpu_slab"):
        return
    prog = slub.prog
    percpu = prog.read_u64(cache + slub.cache_type.walk_path("cpu_slab")[0] // 8)
    has_partial = prog.type("struct kmem_cache_cpu").has_member("partial")
    members: dict[str, str | tuple[str, ...]] = {"slab": ("slab", "page")}
    layout = slub.layout("struct kmem_cache_cpu", {"freelist": "freelist", **members,
                                                   **({"partial": "partial"} if has_partial else {})})
    next_offset = slub.slab_type.walk_path("next")[0] // 8
    for cpu, offset in slub.cpus():
        c = layout.read(prog, (percpu + offset) & _MASK64)
        if c.value("slab"):
            out.setdefault(c.value("slab"), f"cpu {cpu}")
        slab = c.value("partial") if has_partial else 0
        for _ in range(_MAX_OBJECTS):
            if not slab or slab in out:
                break
            out[slab] = f"cpu {cpu} partial"
            slab = prog.read_u64(slab + next_offset)


def slab_cache_slab_locations(prog: Program, cache: Object | int) -> dict[int, str]:
    """Return where the kernel holds each slab of a cache.

    ``"cpu N"`` (CPU N's active slab, ``kmem_cache_cpu.slab``), ``"cpu N partial"`` (its partial
    slabs), ``"node N partial"`` (``kmem_cache_node.partial``). Slabs on no list are absent: full
    slabs, which SLUB lists only for caches being debugged.

    :param prog: the program
    :param cache: ``struct kmem_cache *`` (or its address)
    :return: slab address to location
    :raises FaultError: if the cache or its per-CPU data cannot be read

    >>> sorted(slab_cache_slab_locations(prog, find_slab_cache(prog, "kcrash_test_cache")).values())
    ['cpu 1', 'cpu 1 partial']
    """
    slub = _slub(prog)
    address = _address(cache)
    out: dict[int, str] = {}
    _cpu_slab_locations(slub, address, out)
    list_offset = slub.slab_type.walk_path("slab_list")[0] // 8
    for i, (node, _) in enumerate(_node_pointers(slub, address)):
        if node:
            head = Object(prog, "struct kmem_cache_node", address=node).partial.address_of_()
            for entry in list_for_each(head, limit=_MAX_SLABS):
                out.setdefault(int(entry) - list_offset, f"node {i} partial")
    return out


def _slab_bytes(slub: _Slub, cache: SlabCacheInfo, slab: int) -> bytes | None:
    # The memory of a slab in one read (None: unreadable; the freelist walk then reads pointers).
    try:
        return slub.prog.read(slub.page_to_virt(slab), cache.slab_size)
    except FaultError:
        return None


def _slab_objects(slub: _Slub, cache: SlabCacheInfo, row: np.ndarray, cpu: _CpuFree) -> Iterator[SlabObject]:
    slab, head, counters = (int(v) for v in row)
    objects, _ = slub.counters(counters)
    free, error = _walk_freelist(slub, cache, slab, objects, head, _slab_bytes(slub, cache, slab))
    free_set = set(free)
    start = slub.page_to_virt(slab) + cache.red_left_pad
    for i in range(min(objects, _MAX_OBJECTS)):
        address = start + i * cache.size
        if address in free_set or address in cpu.objects:
            yield SlabObject(address, slab, False)
        else:
            yield SlabObject(address, slab, None if error or cpu.error else True)


def slab_cache_for_each_object(prog: Program, cache: Object | int) -> Iterator[SlabObject]:
    """Iterate over every object of every slab of a cache, free or allocated, slab by slab in address order.

    An object is free when it is on its slab's freelist or on a per-CPU freelist.

    :param prog: the program
    :param cache: ``struct kmem_cache *`` (or its address)
    :return: an iterator of :class:`SlabObject`
    :raises FaultError: if the cache cannot be read

    >>> sum(bool(o.allocated) for o in slab_cache_for_each_object(prog, find_slab_cache(prog, "kcrash_test_cache")))
    100
    """
    slub = _slub(prog)
    info = slub.cache(_address(cache))
    rows = _slab_index(slub).by_cache.get(info.address)
    if rows is None:
        return
    cpu = _cpu_free(slub, info)
    for row in rows[np.argsort(rows[:, 0])]:
        yield from _slab_objects(slub, info, row, cpu)


def slab_cache_for_each_allocated_object(prog: Program, cache: Object | int) -> Iterator[int]:
    """Iterate over the address of every allocated object of a cache (objects of unknown state left out).

    :param prog: the program
    :param cache: ``struct kmem_cache *`` (or its address)
    :return: an iterator of object addresses
    :raises FaultError: if the cache cannot be read

    >>> cache = find_slab_cache(prog, "kcrash_test_cache")
    >>> objects = [prog.object("struct kcrash_test_obj", a) for a in slab_cache_for_each_allocated_object(prog, cache)]
    """
    return (o.address for o in slab_cache_for_each_object(prog, cache) if o.allocated)


def slab_object_info(prog: Program, address: int) -> SlabObjectInfo | None:
    """Return the slab object holding ``address``.

    Its cache, slab, start and state, like drgn's ``slab_object_info()``; KFENCE objects included.

    :param prog: the program
    :param address: a kernel virtual address
    :return: where the address lies; None if it is not in a slab page of the direct map

    >>> cache = find_slab_cache(prog, "kcrash_test_cache")
    >>> slab_object_info(prog, next(slab_cache_for_each_allocated_object(prog, cache))).cache_name
    'kcrash_test_cache'
    """
    slub = _slub(prog)
    if not in_direct_map(prog, address):
        return None
    try:
        slab, data = slub.head_page(address)
    except FaultError:
        return None
    if not slub.is_slab(data):
        return None
    if slub.kfence is not None and slub.kfence[0] <= address < slub.kfence[1]:
        return _kfence_object_info(slub, address, slab)
    fields = slub.slab_layout.read(prog, slab)
    cache_address = fields.value("slab_cache")
    if not cache_address:
        return None
    cache = slub.cache(cache_address)
    objects, _ = slub.counters(fields.value("counters"))
    start = slub.page_to_virt(slab) + cache.red_left_pad
    index = (address - start) // (cache.size or 1)
    obj = start + index * cache.size
    if not 0 <= index < objects:
        return SlabObjectInfo(cache.name, cache.address, slab, obj, address - obj, None)
    return SlabObjectInfo(cache.name, cache.address, slab, obj, address - obj,
                          _allocated(slub, cache, slab, objects, fields.value("freelist"), obj))


def _allocated(slub: _Slub, cache: SlabCacheInfo, slab: int, objects: int, head: int, obj: int) -> bool | None:
    cpu = _cpu_free(slub, cache)
    if obj in cpu.objects:
        return False
    key = (slab, head)
    walked = slub.freelists.get(key)
    if walked is None:
        free, error = _walk_freelist(slub, cache, slab, objects, head, _slab_bytes(slub, cache, slab))
        walked = (frozenset(free), error)
        if slub.static:
            slub.freelists[key] = walked
    if obj in walked[0]:
        return False
    return None if walked[1] or cpu.error else True


def _kfence_object_info(slub: _Slub, address: int, slab: int) -> SlabObjectInfo | None:
    # A KFENCE object's page (kcrash.helpers.linux.kfence); the rest of the page is the object's
    # red zone: not in an object (allocated None).
    found = kfence_object(slub.prog, address)
    if found is None or not found.cache:
        return None
    cache = slub.cache(found.cache)
    inside = found.address <= address < found.address + found.size
    return SlabObjectInfo(cache.name, cache.address, slab, found.address, address - found.address,
                          found.allocated if inside else None)
