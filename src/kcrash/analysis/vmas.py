"""
kcrash.analysis.vmas
====================

The memory regions (VMAs) of a task for the report, as ``/proc/PID/maps`` shows them: range,
``rwx`` plus ``p``/``s`` from ``vm_flags`` (``include/linux/mm.h``: ``VM_READ`` 1, ``VM_WRITE`` 2,
``VM_EXEC`` 4, ``VM_SHARED`` 8), file offset, and what backs the region (the file's path, or
``[heap]``/``[stack]``/``[vdso]``-style names). The VMAs are found by probing ``struct mm_struct``:
the maple tree ``mm_mt`` (since Linux kernel commit d4af56c5c7c6, v6.1) or the ``mmap`` list linked
by ``vm_next`` before it (:func:`~kcrash.helpers.linux.vma.for_each_vma`). Corrupt trees stop the
walk with a reason; nothing here prints. :func:`task_vm` is crash's ``vm``: the mm, its page
directory, RSS and total size, and every VMA with its address, flags (and their ``VM_*`` names),
``vm_pgoff`` and backing.
"""

from __future__ import annotations

from dataclasses import dataclass

from kcrash import model
from kcrash.errors import KcrashError, ValidationError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.fs import d_path
from kcrash.helpers.linux.vma import MmCounters, for_each_vma, task_rss, vm_flags_names, vma_find
from kcrash.memory.layout import PageTables
from kcrash.memory.translate.x86_64 import PageWalk
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = [
    "TaskVm",
    "Vma",
    "task_memory",
    "task_vm",
    "task_vma_or_none",
    "user_page_tables",
    "user_page_walk",
    "vma_backing",
    "vma_perms",
]

VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
_MAX_VMAS = 65536


def vma_perms(flags: int) -> str:
    """``rwxp``/``rwxs`` of ``vm_flags`` as ``/proc/PID/maps`` prints them."""
    return "".join(c if flags & bit else "-" for c, bit in (("r", VM_READ), ("w", VM_WRITE), ("x", VM_EXEC))) + (
        "s" if flags & VM_SHARED else "p"
    )


def _d_path(path: Object) -> str:
    # d_path() of a ``struct path`` (:func:`kcrash.helpers.linux.fs.d_path`), as text; a dentry
    # cycle names itself instead of failing the whole listing
    try:
        return d_path(path).decode("utf-8", "backslashreplace")
    except ValidationError as exc:
        return f"(path: {exc})"


def _special_name_or_none(prog: Program, vma: Object) -> str | None:
    # [vdso]/[vvar]: _install_special_mapping() sets vm_ops to special_mapping_vmops and
    # vm_private_data to the struct vm_special_mapping (mm/mmap.c).
    try:
        if int(vma.vm_ops) != prog.symbol_address("special_mapping_vmops"):
            return None
        mapping = prog.object("struct vm_special_mapping", int(vma.vm_private_data))
        return mapping.name.string_().decode("utf-8", "backslashreplace")
    except KcrashError:
        return None


def vma_backing(prog: Program, vma: Object, mm: Object) -> str:
    """What backs ``vma`` (``struct vm_area_struct *``): a file path, ``[heap]``, ``[stack]``, a
    special mapping's name (``[vdso]``) or ``[anon]``."""
    if int(vma.vm_file):
        return _d_path(vma.vm_file.f_path)
    return _anon_backing(prog, vma, int(vma.vm_start), int(vma.vm_end), _MmBounds.read(mm))


@dataclass(frozen=True, slots=True)
class _MmBounds:
    # mm->start_brk, mm->brk and mm->start_stack: where [heap] and [stack] are.
    start_brk: int
    brk: int
    start_stack: int

    @staticmethod
    def read(mm: Object) -> _MmBounds:
        return _MmBounds(int(mm.start_brk), int(mm.brk), int(mm.start_stack))


def _anon_backing(prog: Program, vma: Object, start: int, end: int, mm: _MmBounds) -> str:
    if start <= mm.brk and end >= mm.start_brk:
        return "[heap]"
    if start <= mm.start_stack <= end:
        return "[stack]"
    return _special_name_or_none(prog, vma) or "[anon]"


def _region(prog: Program, vma: Object, mm: Object) -> model.MemoryRegion:
    flags = int(vma.vm_flags)
    offset = int(vma.vm_pgoff) * 4096 if int(vma.vm_file) else 0  # as /proc/PID/maps: 0 for anonymous
    return model.MemoryRegion(
        int(vma.vm_start), int(vma.vm_end), flags, vma_perms(flags), offset, vma_backing(prog, vma, mm)
    )


def task_memory(prog: Program, task: Object) -> model.TaskMemory:
    """The VMAs of ``task`` (``struct task_struct *``), sorted by address; kernel threads have none."""
    pid, comm = int(task.pid), task.comm.string_().decode("utf-8", "backslashreplace")
    mm = task.mm
    if not int(mm):
        return model.TaskMemory(pid, comm, True, (), None)
    regions: dict[int, model.MemoryRegion] = {}
    truncated = None
    try:
        walk = for_each_vma(mm, limit=_MAX_VMAS)
        for vma in walk:
            if int(vma.vm_mm) == int(mm):  # a VMA of another mm, or a freed one, is not this task's
                region = _region(prog, vma, mm)
                regions[region.start] = region
        truncated = walk.truncated
    except KcrashError as exc:
        truncated = str(exc)
    return model.TaskMemory(pid, comm, False, tuple(regions[k] for k in sorted(regions)), truncated)


@dataclass(frozen=True, slots=True)
class Vma:
    """One VMA as crash's ``vm`` shows it: its ``struct vm_area_struct`` address, [start, end),
    ``vm_flags`` with their ``VM_*`` names, ``vm_pgoff`` (pages; of the file for a file mapping),
    the file path (None when anonymous) and what backs it (:func:`vma_backing`)."""

    address: int
    start: int
    end: int
    flags: int
    flag_names: tuple[str, ...]
    pgoff: int
    file: str | None
    backing: str


@dataclass(frozen=True, slots=True)
class TaskVm:
    """A task's address space: ``mm`` (0 for a kernel thread), ``mm->pgd``, RSS and ``total_vm``
    in pages (None when the counters cannot be read), the VMAs in address order, and why the walk
    stopped early (None if it did not)."""

    pid: int
    task: int
    comm: str
    mm: int
    pgd: int
    rss: int | None
    total_vm: int
    vmas: tuple[Vma, ...]
    truncated: str | None


_VMA_MEMBERS = ("vm_start", "vm_end", "vm_flags", "vm_pgoff", "vm_file")


class _VmaReader:
    # The members vm shows, one read per VMA (StructLayout), and each file's path once per walk.
    def __init__(self, prog: Program, mm: Object) -> None:
        self.prog, self.mm = prog, mm
        self.layout = StructLayout(prog.type("struct vm_area_struct"), _VMA_MEMBERS)
        self.paths: dict[int, str] = {}
        self.bounds = _MmBounds.read(mm)

    def read(self, vma: Object) -> Vma:
        got = self.layout.read(self.prog, int(vma))
        flags, file = got.value("vm_flags"), got.value("vm_file")
        path = self.paths.get(file) if file else None
        if file and path is None:
            path = self.paths[file] = _d_path(vma.vm_file.f_path)
        start, end = got.value("vm_start"), got.value("vm_end")
        backing = path if path is not None else _anon_backing(self.prog, vma, start, end, self.bounds)
        return Vma(int(vma), start, end, flags, tuple(vm_flags_names(flags)), got.value("vm_pgoff"), path, backing)


def _rss_or_none(task: Object) -> int | None:
    try:
        counters: MmCounters = task_rss(task)
    except KcrashError:
        return None
    return counters.rss


def task_vm(prog: Program, task: Object) -> TaskVm:
    """crash's ``vm`` for ``task`` (``struct task_struct *``): its mm and every VMA; a kernel
    thread has mm 0 and no VMAs."""
    pid, comm = int(task.pid), task.comm.string_().decode("utf-8", "backslashreplace")
    mm = task.mm.read_()
    if not int(mm):
        return TaskVm(pid, int(task), comm, 0, 0, 0, 0, (), None)
    vmas: list[Vma] = []
    walk, reader = for_each_vma(mm, limit=_MAX_VMAS), _VmaReader(prog, mm)
    try:
        vmas.extend(reader.read(vma) for vma in walk)
        truncated = walk.truncated
    except KcrashError as exc:
        truncated = str(exc)
    return TaskVm(
        pid, int(task), comm, int(mm), int(mm.pgd), _rss_or_none(task), int(mm.total_vm), tuple(vmas), truncated
    )


def task_vma_or_none(prog: Program, task: Object, address: int) -> Vma | None:
    """The VMA of ``task`` holding user ``address``, or None (also for a kernel thread)."""
    mm = task.mm.read_()
    if not int(mm):
        return None
    vma = vma_find(mm, address)
    return _VmaReader(prog, mm).read(vma) if int(vma) else None


def user_page_tables(prog: Program, task: Object) -> PageTables:
    """The page tables of ``task``'s address space, rooted at its ``mm->pgd`` (the kernel's paging
    mode and SME mask; the PGD's physical address from the kernel's own page tables). Keep it to
    walk many addresses of one task.

    :raises KcrashError: ``task`` is a kernel thread (no mm), or its PGD cannot be translated
    """
    mm = task.mm.read_()
    if not int(mm):
        raise KcrashError(f"PID {int(task.pid)} is a kernel thread: it has no user address space (mm is NULL)")
    if prog.page_tables is None:
        raise KcrashError("no kernel page tables to find the task's page directory")
    pgd = int(mm.pgd)
    found = prog.page_tables.walk(pgd)
    if found.physical is None:
        raise KcrashError(f"the task's page directory {pgd:#x} is not mapped: {found.reason}")
    return prog.page_tables_at(found.physical)


def user_page_walk(prog: Program, task: Object, address: int) -> PageWalk:
    """The page-table walk of user ``address`` through ``task``'s page tables
    (:func:`user_page_tables`), level by level as ``vtop`` shows it.

    :raises KcrashError: as :func:`user_page_tables`
    """
    return user_page_tables(prog, task).walk(address)
