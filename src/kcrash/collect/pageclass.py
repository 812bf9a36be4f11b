"""
kcrash.collect.pageclass
========================

Which pages a dump level (makedumpfile ``-d``, 0–31) leaves out, decided from ``struct page`` alone,
with the sizes, offsets and numbers the kernel exports in VMCOREINFO (no vmlinux, no BTF): page
cache without and with private data, anonymous (user) and hugetlbfs pages, free buddy blocks, and,
at every level, hardware-poisoned and logically offline pages. Zero pages are found later, on the
page data, by the writer.

``mem_map`` is found through ``SYMBOL(mem_section)`` (SPARSEMEM, extreme or static), read in bulk one
memory section at a time, and classified with :mod:`numpy` (a 64 GiB machine has 16 M pages).
Kernel drift is handled by probing which VMCOREINFO keys exist, never by the kernel version:
``PAGE_SLAB_MAPCOUNT_VALUE`` (≥ 6.10) or ``PG_slab``; page types as inverted bits (``~PG_buddy``,
e.g. -129) or in the top byte of ``page_type`` (``PGTY_buddy << 24``, ≥ 6.11), told apart by the
value's shape; hugetlb by ``PAGE_HUGETLB_MAPCOUNT_VALUE`` (≥ 6.9), ``PG_hugetlb`` (6.6–6.8) or
``compound_dtor == HUGETLB_PAGE_DTOR``. The precedence of the classes and the handling of compound
and buddy ranges follow makedumpfile's ``__exclude_unnecessary_pages``: a head page's class covers
its whole ``1 << order`` range (buddy order from ``page.private``), tails are otherwise skipped, a
page is counted in the class of the first range that covers it, a head inside an earlier range is
never looked at (the walk resumes after the range), and a buddy page whose order is not below
``LENGTH(zone.free_area)`` is left alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from kcrash.errors import FaultError, MissingDebugInfoError

if TYPE_CHECKING:
    from kcrash.dumps.vmcoreinfo import VmcoreInfo
    from kcrash.memory.reader import MemoryReader

__all__ = ["DL_EXCLUDE_CACHE", "DL_EXCLUDE_CACHE_PRI", "DL_EXCLUDE_FREE", "DL_EXCLUDE_USER_DATA",
           "DL_EXCLUDE_ZERO", "MemMapChunk", "PageClass", "classify_pages", "find_mem_map"]

DL_EXCLUDE_ZERO = 1
DL_EXCLUDE_CACHE = 2
DL_EXCLUDE_CACHE_PRI = 4
DL_EXCLUDE_USER_DATA = 8
DL_EXCLUDE_FREE = 16
_SECTION_HAS_MEM_MAP = 1 << 1
U64 = npt.NDArray[np.uint64]
Classes = npt.NDArray[np.int8]


class PageClass(enum.IntEnum):
    """Why a page is excluded (0: it is kept). Values index the per-class counters."""

    KEPT = 0
    CACHE = 1
    CACHE_PRIVATE = 2
    USER = 3
    FREE = 4
    HWPOISON = 5
    OFFLINE = 6


@dataclass(frozen=True, slots=True)
class MemMapChunk:
    """``struct page`` of pfns ``[start_pfn, end_pfn)`` at kernel virtual address ``mem_map``."""

    start_pfn: int
    end_pfn: int
    mem_map: int


# -- finding mem_map -------------------------------------------------------------------------


def find_mem_map(mem: MemoryReader, info: VmcoreInfo, max_pfn: int) -> list[MemMapChunk]:
    """Return the mem_map chunk of every present memory section below ``max_pfn``.

    :raises MissingDebugInfoError: VMCOREINFO has no ``SYMBOL(mem_section)`` and its sizes
    """
    try:
        base = info.get_symbol("mem_section")
        ms_size = info.get_size("mem_section")
        section_bits = info.get_number("SECTION_SIZE_BITS")
        page_size = info.page_size or 4096
        map_off = info.offsets.get("mem_section.section_mem_map", 0)
        page_struct = info.get_size("page")
    except KeyError as exc:
        raise MissingDebugInfoError(f"VMCOREINFO lacks {exc.args[0]}: cannot find mem_map (SPARSEMEM only)") \
            from None
    pfn_shift = section_bits - (page_size.bit_length() - 1)
    per_section = 1 << pfn_shift
    nr_sections = -(-max_pfn // per_section)
    values = _section_mem_maps(mem, info, base, ms_size, map_off, nr_sections, page_size)
    # the low bits of section_mem_map are flags; the encoded pointer is at least page-struct aligned
    mask = ~((1 << (6 if page_struct % 64 == 0 else 5)) - 1) & (2**64 - 1)
    chunks = []
    for nr, value in enumerate(values):
        if value & _SECTION_HAS_MEM_MAP:
            start = nr * per_section
            chunks.append(MemMapChunk(start, min(start + per_section, max_pfn),
                                      ((value & mask) + start * page_struct) & (2**64 - 1)))
    return chunks


def _section_mem_maps(mem: MemoryReader, info: VmcoreInfo, base: int, ms_size: int, map_off: int,
                      nr_sections: int, page_size: int) -> list[int]:
    per_root = page_size // ms_size
    nr_mem_sections = 1 << (info.get_number("MAX_PHYSMEM_BITS") - info.get_number("SECTION_SIZE_BITS"))
    extreme = info.lengths.get("mem_section") == nr_mem_sections // per_root
    if not extreme:  # static struct mem_section mem_section[NR_SECTION_ROOTS][1]
        table = mem.read(base, nr_sections * ms_size)
        return [_u64(table, i * ms_size + map_off) for i in range(nr_sections)]
    values = []
    nr_roots = -(-nr_sections // per_root)
    roots = mem.read(base, nr_roots * 8)
    for r in range(nr_roots):
        root = _u64(roots, r * 8)
        count = min(per_root, nr_sections - r * per_root)
        if root == 0:
            values += [0] * count
            continue
        table = mem.read(root, count * ms_size)
        values += [_u64(table, i * ms_size + map_off) for i in range(count)]
    return values


def _u64(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off:off + 8], "little")


# -- reading and classifying -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Keys:
    # What the kernel exported, probed once.
    size: int
    flags: int
    mapcount: int | None
    mapping: int
    private: int | None
    compound_head: int | None
    compound_order: int | None
    compound_dtor: int | None
    numbers: dict[str, int]
    free_area_len: int | None
    free_huge_page: int | None


def _keys(info: VmcoreInfo) -> _Keys:
    o = info.offsets
    try:
        return _Keys(info.get_size("page"), o["page.flags"], o.get("page._mapcount"), o["page.mapping"],
                     o.get("page.private"), o.get("page.compound_head"), o.get("page.compound_order"),
                     o.get("page.compound_dtor"), dict(info.numbers), info.lengths.get("zone.free_area"),
                     info.get_symbol_or_none("free_huge_page"))
    except KeyError as exc:
        raise MissingDebugInfoError(f"VMCOREINFO lacks {exc.args[0]}: cannot classify pages") from None


def _field(raw: npt.NDArray[np.uint8], off: int | None, width: int = 8) -> U64:
    # One member of every struct page, read in place through a strided view (no copy of mem_map).
    n = raw.shape[0]
    if off is None:
        return np.zeros(n, dtype=np.uint64)
    dtype = {8: "<u8", 4: "<u4", 1: "u1"}[width]
    column: npt.NDArray[np.generic] = np.ndarray((n,), dtype=dtype, buffer=raw, offset=off, strides=(raw.shape[1],))
    return column.astype(np.uint64)


def _next(values: U64) -> U64:
    # The same member of the next struct page (the first tail of a compound head); 0 after the last.
    out = np.zeros_like(values)
    out[:-1] = values[1:]
    return out


def _bit(flags: U64, numbers: dict[str, int], name: str) -> npt.NDArray[np.bool_]:
    bit = numbers.get(name)
    if bit is None or not 0 <= bit < 64:
        return np.zeros(flags.shape[0], dtype=np.bool_)
    return np.asarray((flags >> np.uint64(bit)) & np.uint64(1) != 0, dtype=np.bool_)


def _type_is(mapcount: U64, numbers: dict[str, int], name: str) -> npt.NDArray[np.bool_]:
    # page_type values: inverted flag bits (~PG_buddy = -129) are compared whole; a value whose
    # low 24 bits are clear is a PGTY_* code in the top byte (Linux ≥ 6.11) and is compared there.
    value = numbers.get(name)
    if value is None:
        return np.zeros(mapcount.shape[0], dtype=np.bool_)
    value &= 0xFFFFFFFF
    if value & 0xFFFFFF == 0 and value >> 31:
        return np.asarray((mapcount >> np.uint64(24)) == np.uint64(value >> 24), dtype=np.bool_)
    return np.asarray(mapcount == np.uint64(value), dtype=np.bool_)


def _orders(k: _Keys, raw: npt.NDArray[np.uint8], head: npt.NDArray[np.bool_], pfns: U64
            ) -> tuple[U64, npt.NDArray[np.bool_]]:
    # (compound order, hugetlb) of head pages, read from the first tail page (the next struct page).
    hugetlb_bit = k.numbers.get("PG_hugetlb")
    if hugetlb_bit is not None:  # 6.6-6.8: folio._flags_1 holds the order (low byte) and PG_hugetlb
        flags1 = _next(_field(raw, k.flags))
        order = flags1 & np.uint64(0xFF)
        hugetlb = _bit(flags1, k.numbers, "PG_hugetlb")
    else:
        order = _next(_field(raw, k.compound_order, 1))  # u8 since 4.16; little-endian low byte before
        hugetlb = _dtor_is_hugetlb(k, raw)
    hugetlb |= _type_is(_field(raw, k.mapcount, 4), k.numbers, "PAGE_HUGETLB_MAPCOUNT_VALUE")
    bad = (order >= np.uint64(64)) | ((pfns & ((np.uint64(1) << np.minimum(order, np.uint64(63))) - np.uint64(1)))
                                      != np.uint64(0))
    order = np.where(head & ~bad, order, np.uint64(0))
    return order, hugetlb & head


def _dtor_is_hugetlb(k: _Keys, raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    # compound_dtor of the next struct page (the first tail)
    if k.compound_dtor is None:
        return np.zeros(raw.shape[0], dtype=np.bool_)
    dtor_id = k.numbers.get("HUGETLB_PAGE_DTOR")
    if dtor_id is not None:  # an index since 4.4
        return np.asarray(_next(_field(raw, k.compound_dtor, 1)) == np.uint64(dtor_id), dtype=np.bool_)
    if k.free_huge_page is not None:  # a function pointer before
        return np.asarray(_next(_field(raw, k.compound_dtor)) == np.uint64(k.free_huge_page), dtype=np.bool_)
    return np.zeros(raw.shape[0], dtype=np.bool_)


@dataclass(frozen=True, slots=True)
class _Facts:
    # Per-page predicates of one chunk.
    tail: npt.NDArray[np.bool_]
    buddy: npt.NDArray[np.bool_]
    cache: npt.NDArray[np.bool_]
    private: npt.NDArray[np.bool_]
    anon: npt.NDArray[np.bool_]
    hugetlb: npt.NDArray[np.bool_]
    hwpoison: npt.NDArray[np.bool_]
    offline: npt.NDArray[np.bool_]
    order: U64
    free_pages: U64
    bad_order: npt.NDArray[np.bool_]


def _facts(k: _Keys, raw: npt.NDArray[np.uint8], start_pfn: int) -> _Facts:
    n = raw.shape[0]
    num = k.numbers
    pfns = np.arange(start_pfn, start_pfn + n, dtype=np.uint64)
    flags, mapcount = _field(raw, k.flags), _field(raw, k.mapcount, 4)
    private = _field(raw, k.private)
    if "PAGE_SLAB_MAPCOUNT_VALUE" in num:  # Since Linux 6.10 (PG_slab became a page type)
        slab = _type_is(mapcount, num, "PAGE_SLAB_MAPCOUNT_VALUE")
    else:
        slab = _bit(flags, num, "PG_slab")
    head = (flags & np.uint64(num["PG_head_mask"])) != 0 if "PG_head_mask" in num else np.zeros(n, np.bool_)
    order, hugetlb = _orders(k, raw, head, pfns)
    if "PAGE_BUDDY_MAPCOUNT_VALUE" in num:
        buddy = ~slab & _type_is(mapcount, num, "PAGE_BUDDY_MAPCOUNT_VALUE")
    else:
        buddy = _bit(flags, num, "PG_buddy")
    swapcache = _bit(flags, num, "PG_swapcache")
    if "PG_swapbacked" in num:  # PG_swapcache means swap cache only with PG_swapbacked (4.10+)
        swapcache &= _bit(flags, num, "PG_swapbacked")
    bad_order = private >= np.uint64(k.free_area_len) if k.free_area_len else np.zeros(n, np.bool_)
    free_pages = np.left_shift(np.uint64(1), np.minimum(private, np.uint64(63)))
    return _Facts(tail=(_field(raw, k.compound_head) & np.uint64(1)) != 0, buddy=buddy,
                  cache=_bit(flags, num, "PG_lru") | swapcache, private=_bit(flags, num, "PG_private"),
                  anon=((_field(raw, k.mapping) & np.uint64(1)) != 0) & ~slab, hugetlb=hugetlb,
                  hwpoison=_bit(flags, num, "PG_hwpoison"),
                  offline=_type_is(mapcount, num, "PAGE_OFFLINE_MAPCOUNT_VALUE") & ~_bit(flags, num, "PG_slab"),
                  order=order, free_pages=np.asarray(free_pages, dtype=np.uint64),
                  bad_order=np.asarray(bad_order, dtype=np.bool_))


def _rules(f: _Facts, level: int) -> list[tuple[npt.NDArray[np.bool_] | None, int]]:
    # makedumpfile's order: the first rule that matches decides; tails (-1) are left alone, and so
    # is a free block with an impossible order (makedumpfile warns and skips the page).
    cache = f.cache & ~f.anon
    return [
        (f.tail, -1),
        (f.buddy & f.bad_order if level & DL_EXCLUDE_FREE else None, PageClass.KEPT),
        (f.buddy if level & DL_EXCLUDE_FREE else None, PageClass.FREE),
        (cache & ~f.private if level & DL_EXCLUDE_CACHE else None, PageClass.CACHE),
        (cache & f.private if level & DL_EXCLUDE_CACHE_PRI else None, PageClass.CACHE_PRIVATE),
        (cache & ~f.private if level & DL_EXCLUDE_CACHE_PRI else None, PageClass.CACHE),
        ((f.anon | f.hugetlb) if level & DL_EXCLUDE_USER_DATA else None, PageClass.USER),
        (f.hwpoison, PageClass.HWPOISON),
        (f.offline, PageClass.OFFLINE),
    ]


def _classify_chunk(k: _Keys, raw: npt.NDArray[np.uint8], start_pfn: int, level: int
                    ) -> tuple[Classes, U64]:
    """Return (class, pages covered) per struct page of one chunk, before range resolution."""
    f = _facts(k, raw, start_pfn)
    n = raw.shape[0]
    cls = np.zeros(n, dtype=np.int8)
    decided = np.zeros(n, dtype=np.bool_)
    for mask, value in _rules(f, level):
        if mask is None:
            continue
        pick = mask & ~decided
        cls[pick] = max(value, 0)
        decided |= pick
    covered = np.where(cls == PageClass.FREE, f.free_pages, np.left_shift(np.uint64(1), f.order))
    covered[cls == 0] = 1
    return cls, np.asarray(covered, dtype=np.uint64)


def classify_pages(mem: MemoryReader, info: VmcoreInfo, max_pfn: int, level: int) -> Classes:
    """Return one :class:`PageClass` value per pfn ``[0, max_pfn)`` for dump level ``level``.

    Pages whose ``struct page`` cannot be read (a section not in the dump) are kept.

    :raises MissingDebugInfoError: VMCOREINFO lacks what the classification needs
    """
    keys = _keys(info)
    classes = np.zeros(max_pfn, dtype=np.int8)
    ranges: list[tuple[int, int, int]] = []  # (start pfn, end pfn, class) of multi-page exclusions
    for chunk in find_mem_map(mem, info, max_pfn):
        raw = _read_chunk(mem, chunk, keys.size)
        if raw is None:
            continue
        cls, covered = _classify_chunk(keys, raw, chunk.start_pfn, level)
        classes[chunk.start_pfn:chunk.start_pfn + len(cls)] = cls
        multi = np.flatnonzero((covered > 1) & (cls > 0))
        ranges += [(chunk.start_pfn + int(i), chunk.start_pfn + int(i) + int(covered[i]), int(cls[i])) for i in multi]
    return _resolve_ranges(classes, ranges)


def _read_chunk(mem: MemoryReader, chunk: MemMapChunk, size: int) -> npt.NDArray[np.uint8] | None:
    count = chunk.end_pfn - chunk.start_pfn
    try:
        data = mem.read(chunk.mem_map, count * size)
    except FaultError:
        return None
    return np.frombuffer(data, dtype=np.uint8).reshape(count, size)


def _resolve_ranges(classes: Classes, ranges: list[tuple[int, int, int]]) -> Classes:
    # makedumpfile walks pfns upward, clears a head's whole range at once and resumes after it: a
    # pfn in a range is counted in the range's class whatever its own, and a head inside an earlier
    # range (a stale buddy or compound head) is never looked at, so its range counts for nothing.
    owner = classes.copy()
    reach = 0
    for start, end, cls in sorted(ranges):
        if start >= reach:
            owner[start:end] = cls
            reach = end
    return owner
