"""
kcrash.helpers.linux.kfence
===========================

KFENCE, the sampling memory-safety allocator (``mm/kfence/core.c``, ``mm/kfence/kfence.h``), read
without vmlinux: :func:`kfence_pool` is the pool's extent and :func:`kfence_object` the object an
address of the pool belongs to (object ``i`` lives in page ``2i + 2`` of the pool, between guard
pages, at ``kfence_metadata[i].addr``), with its size, slab cache and state. The object count
(``CONFIG_KFENCE_NUM_OBJECTS``) is not in BTF: it is found by validating ``kfence_metadata``
against the pool. A kernel built with KFENCE and booted with it off (``kfence.sample_interval=0``,
Debian's default) has a NULL ``__kfence_pool``: no pool. Reports and allocation stacks are not read.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcrash.errors import FaultError, KcrashError, SymbolNotFoundError
from kcrash.types.model import Type
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["KfenceObject", "kfence_object", "kfence_pool"]

_PAGE_SIZE = 4096
#: the largest CONFIG_KFENCE_NUM_OBJECTS the Kconfig allows (65535)
_MAX_OBJECTS = 1 << 16
_POOL = "kcrash.helpers.linux.kfence.kfence_pool"  # prog.cache key


@dataclass(frozen=True, slots=True)
class KfenceObject:
    """One KFENCE object (``struct kfence_metadata`` in ``kfence_metadata[]``, ``mm/kfence/kfence.h``).

    :param index: its index in the pool
    :param address: ``meta->addr``, the object's address
    :param size: ``meta->size``
    :param cache: ``meta->cache``, the ``struct kmem_cache *`` (0 for a never-used object)
    :param allocated: whether ``meta->state`` is ``KFENCE_OBJECT_ALLOCATED``

    >>> pool = kfence_pool(prog)
    >>> [kfence_object(prog, a) for a in range(pool[0], pool[1], 4096)][2:3] if pool else []
    []
    """

    index: int
    address: int
    size: int
    cache: int
    allocated: bool


def _metadata(prog: Program, pool: int) -> tuple[int, Type]:
    # (address of kfence_metadata[0], struct kfence_metadata). A static array, or since Linux kernel
    # commit 21c690a349ba (v6.6) a pointer to one; kallsyms gives the address only, so the reading
    # whose first entry has the first object page's address is the one (kfence_init_pool sets it; an
    # allocation keeps the object inside that page).
    meta_type = prog.type("struct kfence_metadata")
    addr_offset = meta_type.walk_path("addr")[0] // 8
    address = prog.symbol_address("kfence_metadata")
    for start in (address, prog.read_u64(address)):
        try:
            first = prog.read_u64(start + addr_offset)
        except FaultError:
            continue
        if pool + 2 * _PAGE_SIZE <= first < pool + 3 * _PAGE_SIZE:
            return start, meta_type
    raise SymbolNotFoundError("kfence_metadata: neither an array nor a pointer to one")


def _entry(prog: Program, metadata: tuple[int, Type], index: int) -> Object:
    start, meta_type = metadata
    return Object(prog, meta_type, address=start + index * meta_type.sizeof())


def _find_pool(prog: Program) -> tuple[int, int] | None:
    # KFENCE_POOL_SIZE = (CONFIG_KFENCE_NUM_OBJECTS + 1) * 2 * PAGE_SIZE; the count is the number of
    # kfence_metadata entries whose addr lies in their object page (kfence_init_pool sets every one).
    try:
        pool = prog.read_u64(prog.symbol_address("__kfence_pool"))
        metadata = _metadata(prog, pool) if pool else None
    except KcrashError:
        return None
    count = 0
    while metadata is not None and count < _MAX_OBJECTS:
        page = pool + (2 * count + 2) * _PAGE_SIZE
        try:
            if not page <= int(_entry(prog, metadata, count).addr) < page + _PAGE_SIZE:
                break
        except FaultError:
            break
        count += 1
    return (pool, pool + (count + 1) * 2 * _PAGE_SIZE) if count else None


def kfence_pool(prog: Program) -> tuple[int, int] | None:
    """Return the ``[start, end)`` of the KFENCE pool (``__kfence_pool``, ``KFENCE_POOL_SIZE``).

    :param prog: the program
    :return: ``(start, end)``, None when KFENCE is off or absent

    >>> kfence_pool(prog) is None  # KFENCE is off in this kernel
    True
    """
    if _POOL not in prog.cache:
        prog.cache[_POOL] = _find_pool(prog)
    pool: tuple[int, int] | None = prog.cache[_POOL]
    return pool


def kfence_object(prog: Program, address: int) -> KfenceObject | None:
    """Return the KFENCE object whose page holds ``address``, like the kernel's ``addr_to_metadata()``.

    :param prog: the program
    :param address: a kernel virtual address
    :return: the object; None outside the pool and in guard pages
    :raises FaultError: if the object's metadata cannot be read

    >>> kfence_object(prog, 0xffff888007a03f10) is None
    True
    """
    pool = kfence_pool(prog)
    if pool is None or not pool[0] <= address < pool[1]:
        return None
    page = (address - pool[0]) // _PAGE_SIZE
    if page < 2 or page % 2:
        return None  # a guard page
    meta = _entry(prog, _metadata(prog, pool[0]), page // 2 - 1)
    allocated = int(meta.state) == int(prog.constant("KFENCE_OBJECT_ALLOCATED"))
    return KfenceObject(page // 2 - 1, int(meta.addr), int(meta.size), int(meta.cache), allocated)
