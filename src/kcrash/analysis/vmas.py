"""
kcrash.analysis.vmas
====================

The memory regions (VMAs) of a task for the report, as ``/proc/PID/maps`` shows them: range,
``rwx`` plus ``p``/``s`` from ``vm_flags`` (``include/linux/mm.h``: ``VM_READ`` 1, ``VM_WRITE`` 2,
``VM_EXEC`` 4, ``VM_SHARED`` 8), file offset, and what backs the region (the file's path, or
``[heap]``/``[stack]``/``[vdso]``-style names). The VMAs are found by probing ``struct mm_struct``:
the maple tree ``mm_mt`` (since Linux kernel commit d4af56c5c7c6, v6.1) or the ``mmap`` list linked
by ``vm_next`` before it. Corrupt trees stop the walk with a reason; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterator

from kcrash.errors import KcrashError
from kcrash.report import model
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["mt_entries", "task_memory", "vma_backing", "vma_perms"]

VM_READ, VM_WRITE, VM_EXEC, VM_SHARED = 0x1, 0x2, 0x4, 0x8
_MAX_VMAS = 65536
_MAX_DEPTH = 16
#: budget of distinct maple nodes one walk reads (a tree of _MAX_VMAS entries needs far fewer)
_MAX_NODES = 65536
_KERNEL = 0xFFFF800000000000
# include/linux/maple_tree.h: node entries end in 0b10 and carry the node type in bits 3-6;
# maple_leaf_64 is 1, maple_range_64 2, maple_arange_64 3.
_NODE_MASK, _TYPE_SHIFT, _TYPE_MASK = 0xFF, 3, 0xF
_LEAF_64, _RANGE_64, _ARANGE_64 = 1, 2, 3
_PATH_DEPTH = 64


def vma_perms(flags: int) -> str:
    """``rwxp``/``rwxs`` of ``vm_flags`` as ``/proc/PID/maps`` prints them."""
    return "".join(c if flags & bit else "-" for c, bit in (("r", VM_READ), ("w", VM_WRITE), ("x", VM_EXEC))) \
        + ("s" if flags & VM_SHARED else "p")


def _is_node(entry: int) -> bool:
    return entry & 3 == 2 and entry > 4096


def mt_entries(prog: Program, root: int, *, limit: int = _MAX_VMAS) -> Iterator[int]:
    """The non-NULL leaf entries of a maple tree whose ``ma_root`` is ``root``, in index order.
    The walk reads each node at most once and at most 65536 nodes, whatever the slots say.

    :raises KcrashError: a node is unreadable, of an unknown type, reached twice (a slot shared by
        two parents), or the tree is too deep/large.
    """
    for count, entry in enumerate(_walk(prog, root, 0, set()), 1):
        if count > limit:
            raise KcrashError(f"more than {limit} entries (corrupt tree?)")
        yield entry


def _walk(prog: Program, entry: int, depth: int, seen: set[int]) -> Iterator[int]:
    # Bounded by the nodes read (``seen``, at most _MAX_NODES), not by entries yielded: slots that
    # all point at one child would otherwise visit 16**16 nodes within _MAX_DEPTH levels.
    if not _is_node(entry):
        if entry >= _KERNEL:
            yield entry
        return
    if depth > _MAX_DEPTH:
        raise KcrashError(f"maple tree deeper than {_MAX_DEPTH} levels (corrupt tree?)")
    address = entry & ~_NODE_MASK
    if address in seen:
        raise KcrashError(f"maple node {address:#x} reached twice after {len(seen)} nodes (corrupt tree?)")
    if len(seen) >= _MAX_NODES:
        raise KcrashError(f"more than {_MAX_NODES} maple nodes (corrupt tree?)")
    seen.add(address)
    kind = (entry >> _TYPE_SHIFT) & _TYPE_MASK
    node = prog.object("struct maple_node", address)
    if kind == _ARANGE_64:
        slots = node.ma64.slot
    elif kind in (_LEAF_64, _RANGE_64):
        slots = node.mr64.slot
    else:
        raise KcrashError(f"maple node {entry:#x} has unexpected type {kind}")
    for slot in slots:
        value = int(slot)
        if value and kind != _LEAF_64:
            yield from _walk(prog, value, depth + 1, seen)
        elif value >= _KERNEL:
            yield value


def _vmas(prog: Program, mm: Object) -> Iterator[Object]:
    mm_type = prog.type("struct mm_struct")
    vma_type = prog.pointer_type("struct vm_area_struct")
    if mm_type.has_member("mm_mt"):
        for entry in mt_entries(prog, int(mm.mm_mt.ma_root)):
            yield Object(prog, vma_type, entry)
        return
    vma, seen = mm.mmap, 0  # before v6.1: the list linked by vm_next
    while int(vma) and seen < _MAX_VMAS:
        yield vma
        vma, seen = vma.vm_next, seen + 1


def _dentry_path(dentry: Object) -> str:
    # Names up to the root of the dentry's file system (mount points are not crossed).
    parts: list[bytes] = []
    for _ in range(_PATH_DEPTH):
        parent = dentry.d_parent
        if int(parent) == int(dentry) or not int(parent):
            break
        parts.append(dentry.d_name.name.string_())
        dentry = parent
    return "/" + "/".join(p.decode("utf-8", "backslashreplace") for p in reversed(parts))


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
        return _dentry_path(vma.vm_file.f_path.dentry)
    start, end = int(vma.vm_start), int(vma.vm_end)
    if start <= int(mm.brk) and end >= int(mm.start_brk):
        return "[heap]"
    if start <= int(mm.start_stack) <= end:
        return "[stack]"
    return _special_name_or_none(prog, vma) or "[anon]"


def _region(prog: Program, vma: Object, mm: Object) -> model.MemoryRegion:
    flags = int(vma.vm_flags)
    offset = int(vma.vm_pgoff) * 4096 if int(vma.vm_file) else 0  # as /proc/PID/maps: 0 for anonymous
    return model.MemoryRegion(int(vma.vm_start), int(vma.vm_end), flags, vma_perms(flags), offset,
                              vma_backing(prog, vma, mm))


def task_memory(prog: Program, task: Object) -> model.TaskMemory:
    """The VMAs of ``task`` (``struct task_struct *``), sorted by address; kernel threads have none."""
    pid, comm = int(task.pid), task.comm.string_().decode("utf-8", "backslashreplace")
    mm = task.mm
    if not int(mm):
        return model.TaskMemory(pid, comm, True, (), None)
    regions: dict[int, model.MemoryRegion] = {}
    truncated = None
    try:
        for vma in _vmas(prog, mm):
            if int(vma.vm_mm) == int(mm):  # stale slots of a tree point at VMAs of other mms or freed ones
                region = _region(prog, vma, mm)
                regions[region.start] = region
    except KcrashError as exc:
        truncated = str(exc)
    return model.TaskMemory(pid, comm, False, tuple(regions[k] for k in sorted(regions)), truncated)
