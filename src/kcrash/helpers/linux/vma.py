"""
kcrash.helpers.linux.vma
========================

A process's virtual memory areas (``include/linux/mm_types.h``: ``struct mm_struct``,
``struct vm_area_struct``; ``include/linux/mm.h``: ``VM_*`` flags, ``get_mm_rss()``):
:func:`for_each_vma` in address order, :func:`vma_find` (the VMA holding an address),
:func:`vm_flags_names` (the ``VM_*`` names of a ``vm_flags`` value) and :func:`get_mm_counters`
(the RSS counters). The VMAs are found by probing ``struct mm_struct``: the maple tree ``mm_mt``
(since Linux kernel commit 763ecb035029, v6.1) through :mod:`~kcrash.helpers.linux.mapletree`, or
the ``mmap`` list linked by ``vm_next`` before it; both walks are bounded and record why they
stopped. Names of what backs a VMA (file paths, ``[heap]``) are the analysis layer's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kcrash.errors import FaultError, TypeLookupError
from kcrash.helpers.linux.cpumask import for_each_online_cpu
from kcrash.helpers.linux.list import ListWalk, list_for_each_entry
from kcrash.helpers.linux.mapletree import mt_for_each_range, mtree_load
from kcrash.types.model import TypeKind
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu_offset

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["MmCounters", "for_each_vma", "get_mm_counters", "task_rss", "vm_flags_names", "vma_find"]

_ULONG_MASK = (1 << 64) - 1
#: default bound on the VMAs one walk yields (``DEFAULT_MAX_MAP_COUNT`` is 65530)
DEFAULT_LIMIT = 1 << 20

# include/linux/mm.h, the low 32 bits of vm_flags (bit 0x800 was VM_DENYWRITE until Linux kernel
# commit 8d0920bde5eb, v5.15; bit 0x1000000 is VM_PAT on x86). Higher bits are per-architecture
# (protection keys) or moved between releases, and are shown as a number.
_VM_FLAGS = (
    "READ", "WRITE", "EXEC", "SHARED", "MAYREAD", "MAYWRITE", "MAYEXEC", "MAYSHARE",
    "GROWSDOWN", "UFFD_MISSING", "PFNMAP", "DENYWRITE", "UFFD_WP", "LOCKED", "IO", "SEQ_READ",
    "RAND_READ", "DONTCOPY", "DONTEXPAND", "LOCKONFAULT", "ACCOUNT", "NORESERVE", "HUGETLB", "SYNC",
    "PAT", "WIPEONFORK", "DONTDUMP", "SOFTDIRTY", "MIXEDMAP", "HUGEPAGE", "NOHUGEPAGE", "MERGEABLE",
)


def vm_flags_names(flags: int) -> list[str]:
    """Return the ``VM_*`` names of the bits set in a VMA's ``vm_flags`` (``include/linux/mm.h``).

    :param flags: ``vma->vm_flags``
    :return: the names without ``VM_``, lowest bit first; bits above 31 as one hex number

    >>> vm_flags_names(0x100073)
    ['READ', 'WRITE', 'MAYREAD', 'MAYWRITE', 'MAYEXEC', 'ACCOUNT']
    """
    names = [name for bit, name in enumerate(_VM_FLAGS) if flags >> bit & 1]
    if flags >> 32:
        names.append(f"{flags & ~0xFFFFFFFF:#x}")
    return names


def _mm_pointer(mm: Object) -> Object:
    return mm if mm.type_.strip_typedefs().kind is TypeKind.POINTER else mm.address_of_()


def for_each_vma(mm: Object, *, limit: int = DEFAULT_LIMIT) -> ListWalk:
    """Iterate over the VMAs of an address space in address order, like the kernel's ``for_each_vma()``.

    Walks ``mm->mm_mt`` (the maple tree, since v6.1) or else the ``mm->mmap`` list, bounded: the walk
    stops at a damaged node or ``limit`` VMAs and says why in
    :attr:`~kcrash.helpers.linux.list.ListWalk.truncated`.

    :param mm: ``struct mm_struct *`` (or a ``struct mm_struct``)
    :param limit: the most VMAs to yield
    :return: a :class:`~kcrash.helpers.linux.list.ListWalk` of ``struct vm_area_struct *`` objects
    :raises FaultError: if ``mm`` itself cannot be read

    >>> vmas = list(for_each_vma(task.mm))
    >>> hex(vmas[1].vm_start), hex(vmas[1].vm_end), vm_flags_names(int(vmas[1].vm_flags))
    ('0x401000', '0x585000', ['READ', 'EXEC', 'MAYREAD', 'MAYWRITE', 'MAYEXEC', 'SOFTDIRTY'])
    """
    mm = _mm_pointer(mm)
    prog = mm.prog_
    vma_type = prog.pointer_type("struct vm_area_struct")
    if prog.type("struct mm_struct").has_member("mm_mt"):
        tree = mt_for_each_range(mm.mm_mt, limit=limit)

        def from_tree(walk: ListWalk) -> Iterator[Object]:
            for _, _, entry in tree:
                yield Object(prog, vma_type, entry)
            walk.truncated = tree.truncated

        return ListWalk(from_tree)
    return ListWalk(lambda walk: _vma_list(walk, mm, limit))


def _vma_list(walk: ListWalk, mm: Object, limit: int) -> Iterator[Object]:
    # Before v6.1: mm->mmap, linked by vm_next, NULL-terminated.
    seen: set[int] = set()
    try:
        vma = mm.mmap.read_()
        while int(vma):
            if int(vma) in seen or len(seen) >= limit:
                walk.truncated = f"cycle at VMA {int(vma):#x}" if int(vma) in seen \
                    else f"stopped at the limit of {limit} VMAs"
                return
            seen.add(int(vma))
            yield vma
            vma = vma.vm_next.read_()
    except FaultError as exc:
        walk.truncated = f"unreadable VMA at {exc.address:#x} after {len(seen)} VMAs"


def vma_find(mm: Object, address: int) -> Object:
    """Return the VMA of an address space that holds ``address``, like the kernel's ``vma_lookup(mm, addr)``.

    :param mm: ``struct mm_struct *`` (or a ``struct mm_struct``)
    :param address: a user address
    :return: ``struct vm_area_struct *`` whose ``[vm_start, vm_end)`` holds ``address``, NULL if none
    :raises FaultError: if ``mm`` or a tree node cannot be read

    >>> vma = vma_find(task.mm, int(task.mm.start_stack))
    """
    mm = _mm_pointer(mm)
    prog = mm.prog_
    vma_type = prog.pointer_type("struct vm_area_struct")
    if prog.type("struct mm_struct").has_member("mm_mt"):
        return Object(prog, vma_type, int(mtree_load(mm.mm_mt, address)))
    for vma in for_each_vma(mm):
        if int(vma.vm_start) <= address < int(vma.vm_end):
            return vma
        if int(vma.vm_start) > address:
            break
    return Object(prog, vma_type, 0)


@dataclass(frozen=True, slots=True)
class MmCounters:
    """The RSS counters of an address space (``mm->rss_stat``), in pages.

    :param file: ``MM_FILEPAGES``: file-backed pages
    :param anon: ``MM_ANONPAGES``: anonymous pages
    :param shmem: ``MM_SHMEMPAGES``: shared-memory pages
    :param swap: ``MM_SWAPENTS``: swap entries

    >>> counters = get_mm_counters(task.mm)
    >>> counters.rss == counters.file + counters.anon + counters.shmem
    True
    """

    file: int
    anon: int
    shmem: int
    swap: int

    @property
    def rss(self) -> int:
        """Return the resident set size, like the kernel's ``get_mm_rss()``.

        :return: file + anon + shmem pages
        """
        return self.file + self.anon + self.shmem


def _counter_index(prog: Program, name: str) -> int | None:
    try:
        return int(prog.constant(name))
    except TypeLookupError:
        return None  # MM_SHMEMPAGES exists since Linux kernel commit eca56ff906bd (v4.5)


def _percpu_counter_sum(counter: Object) -> int:
    # percpu_counter_sum(): count plus each online CPU's s32 delta (lib/percpu_counter.c)
    prog = counter.prog_
    total = int(counter.count)
    counters = int(counter.counters)
    for cpu in for_each_online_cpu(prog):
        # unsigned long arithmetic: since x86's percpu pointers stopped being zero-based offsets,
        # pointer + __per_cpu_offset wraps around 2**64
        address = (counters + per_cpu_offset(prog, cpu)) & _ULONG_MASK
        total += int.from_bytes(prog.read(address, 4), "little", signed=True)
    return total


def get_mm_counters(mm: Object) -> MmCounters:
    """Return the RSS counters of an address space (``mm->rss_stat``).

    Since Linux kernel commit f1a7941243c1 (v6.2) ``rss_stat`` is an array of per-CPU counters,
    summed here; before, the ``mm``'s atomic counters as they are (:func:`task_rss` adds the threads'
    ``SPLIT_RSS_COUNTING`` caches). A per-CPU sum can be briefly negative, as in the kernel.

    :param mm: ``struct mm_struct *`` (or a ``struct mm_struct``)
    :return: the counters, in pages
    :raises FaultError: if the counters cannot be read

    >>> get_mm_counters(task.mm).anon
    15
    """
    mm = _mm_pointer(mm)
    prog = mm.prog_
    values = []
    for name in ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS"):
        index = _counter_index(prog, name)
        if index is None:
            values.append(0)
            continue
        stat = mm.rss_stat
        if stat.type_.strip_typedefs().kind is TypeKind.ARRAY:
            values.append(_percpu_counter_sum(stat[index]))
        else:
            values.append(int(stat.count[index].counter))
    return MmCounters(*values)


def task_rss(task: Object) -> MmCounters:
    """Return the RSS counters of a task's address space, as ``get_mm_counter()`` sees them.

    Before v6.2 each thread's cached ``task->rss_stat`` (``SPLIT_RSS_COUNTING``, folded into the mm
    every 64 events) is added; a kernel thread (no ``task->mm``) gets zeros.

    :param task: ``struct task_struct *``
    :return: the counters, in pages
    :raises FaultError: if the task or its counters cannot be read

    >>> task_rss(task).rss * 4096
    1703936
    """
    mm = task.mm.read_()
    if not int(mm):
        return MmCounters(0, 0, 0, 0)
    counters = get_mm_counters(mm)
    prog = task.prog_
    if not prog.type("struct task_struct").has_member("rss_stat"):
        return counters
    names = ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES", "MM_SWAPENTS")
    indices = [_counter_index(prog, name) for name in names]
    totals = [counters.file, counters.anon, counters.shmem, counters.swap]
    for thread in list_for_each_entry("struct task_struct", task.signal.thread_head, "thread_node", limit=1 << 16):
        stat = thread.rss_stat.count
        for k, index in enumerate(indices):
            if index is not None:
                totals[k] += int(stat[index])
    return MmCounters(*totals)
