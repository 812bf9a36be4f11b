"""
kcrash.analysis.drgn_helpers
============================

drgn's Linux helpers under drgn's names and arguments, for drgn scripts run in ``kcrash shell``:
``find_task(prog, pid)``, ``for_each_task(prog)``, ``get_dmesg(prog)``, ``slab_object_info(prog,
addr)``, ``slab_cache_for_each_allocated_object(cache, type)``, ``per_cpu(var, cpu)``,
``percpu_counter_sum(fbc)``, ``d_path(path)``, ``get_kconfig(prog)`` … Where kcrash's own helper
already has drgn's name and arguments (``list_for_each_entry``, ``rbtree_inorder_for_each_entry``,
``xa_for_each``, ``cpu_curr``, ``task_state_to_char``, ``for_each_possible_cpu`` …) it is used as
is. :func:`drgn_modules` lays the names out as drgn's modules (``drgn``, ``drgn.helpers.linux.pid``
…) for the shell's import hook. What differs from drgn: ``for_each_task`` walks the task list and
yields in PID order (drgn walks the PID IDR, also in PID order); ``idle=True`` gives the idle
tasks of every present CPU (drgn 0.3.0: of online CPUs only, and after a panic the stopped CPUs
are offline).
"""

from __future__ import annotations

import gzip
import types
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kcrash.analysis import drgn_compat
from kcrash.errors import FaultError, MissingDebugInfoError, SymbolNotFoundError
from kcrash.helpers.linux import cpumask, fs, mapletree, mm, module, net, rbtree, sched, slab, vma, wait, xarray
from kcrash.helpers.linux import list as klist
from kcrash.helpers.linux.printk import PrintkRecord
from kcrash.helpers.linux.printk import get_printk_records as kcrash_printk_records
from kcrash.types import object as kobject
from kcrash.types.model import int_type
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu_offset
from kcrash.types.program import Program

__all__ = [
    "SlabObjectInfo",
    "drgn_modules",
    "find_task",
    "for_each_task",
    "get_dmesg",
    "get_kconfig",
    "get_printk_records",
    "page_to_pfn",
    "per_cpu",
    "per_cpu_ptr",
    "percpu_counter_sum",
    "pfn_to_page",
    "pfn_to_virt",
    "slab_cache_for_each_allocated_object",
    "slab_object_info",
    "virt_to_page",
    "virt_to_pfn",
    "waitqueue_for_each_entry",
    "xa_to_value",
]

_TASK_LIMIT = 1_000_000
_KCONFIG_MAX = 4 << 20


def find_task(prog: Program, pid: int) -> Object:
    """drgn's ``find_task(prog, pid)``: the ``struct task_struct *`` of ``pid``, NULL if none.

    >>> find_task(prog, 1).comm  # doctest: +SKIP
    """
    task = drgn_compat.find_task_or_none(prog, int(pid))
    return task if task is not None else Object(prog, prog.pointer_type("struct task_struct"), 0)


def for_each_task(prog: Program, *, idle: bool = False) -> Iterator[Object]:
    """drgn's ``for_each_task(prog)``: every task (``struct task_struct *``) in PID order.

    >>> [int(t.pid) for t in for_each_task(prog)][:3]  # doctest: +SKIP
    [1, 2, 3]
    """
    tasks = list(sched.for_each_task(prog, limit=_TASK_LIMIT))
    if idle:
        yield from (sched.idle_task(prog, cpu) for cpu in cpumask.for_each_present_cpu(prog))
    yield from sorted(tasks, key=lambda task: int(task.pid))


def get_printk_records(prog: Program) -> list[PrintkRecord]:
    """The log's records, oldest first (kcrash's :class:`PrintkRecord`: ``text``, ``ts_nsec`` …)."""
    if prog.vmcoreinfo is None:
        raise MissingDebugInfoError("the dump has no VMCOREINFO to find the printk ring buffer")
    return kcrash_printk_records(prog.memory, prog.vmcoreinfo)


def get_dmesg(prog: Program, *, timestamps: bool = True) -> bytes:
    """drgn's ``get_dmesg(prog)``: the log as ``dmesg`` prints it, ``[%5d.%06d] text`` lines.

    >>> get_dmesg(prog).splitlines()[-1]  # doctest: +SKIP
    """
    lines = [(b"[% 5d.%06d] " % (r.ts_nsec // 1_000_000_000, r.ts_nsec % 1_000_000_000 // 1000)
              if timestamps else b"") + r.text for r in get_printk_records(prog)]
    lines.append(b"")
    return b"\n".join(lines)


@dataclass(frozen=True, slots=True)
class SlabObjectInfo:
    """drgn's ``SlabObjectInfo``: ``slab_cache`` (``struct kmem_cache *``), ``slab`` (``struct
    slab *``, ``struct page *`` before v5.17), the object's ``address`` and ``allocated``."""

    slab_cache: Object
    slab: Object
    address: int
    allocated: bool | None

    def __repr__(self) -> str:
        return (f"SlabObjectInfo(slab_cache={self.slab_cache!r}, slab={self.slab!r}, "
                f"address={self.address:#x}, allocated={self.allocated})")


def _slab_pointer_type(prog: Program) -> str:
    # Since Linux kernel commit d122019bf061 (v5.17) slabs have their own struct slab.
    return "struct slab" if prog.find_type_or_none("struct slab") is not None else "struct page"


def slab_object_info(prog: Program, addr: int | Object) -> SlabObjectInfo | None:
    """drgn's ``slab_object_info(prog, addr)``; None if ``addr`` is not in a slab.

    >>> slab_object_info(prog, 0xffff888004d0d048).allocated  # doctest: +SKIP
    True
    """
    info = slab.slab_object_info(prog, int(addr))
    if info is None:
        return None
    cache = Object(prog, prog.pointer_type("struct kmem_cache"), info.cache)
    page = Object(prog, prog.pointer_type(_slab_pointer_type(prog)), info.slab)
    return SlabObjectInfo(cache, page, info.address, info.allocated)


def slab_cache_for_each_allocated_object(slab_cache: Object, type: Any) -> Iterator[Object]:
    """drgn's helper: every allocated object of the cache as a ``type *``.

    :param slab_cache: ``struct kmem_cache *``
    """
    prog = slab_cache.prog_
    pointer = prog.pointer_type(type)
    return (Object(prog, pointer, address) for address in slab.slab_cache_for_each_allocated_object(prog, slab_cache))


def xa_to_value(entry: Object) -> Object:
    """drgn's ``xa_to_value(entry)``: the integer of a value entry as an ``unsigned long`` object.

    :param entry: ``void *``
    """
    # spelled as drgn spells it (BTF's name is "long unsigned int")
    return _unsigned_long(entry.prog_, xarray.xa_to_value(entry))


def _unsigned_long(prog: Program, value: int) -> Object:
    # an unsigned long object spelled as drgn spells it (BTF's name is "long unsigned int")
    return Object(prog, int_type("unsigned long", 8, False), value)


def page_to_pfn(page: Object) -> Object:
    """drgn's ``page_to_pfn(page)``: the page frame number, an ``unsigned long`` object.

    :param page: ``struct page *``
    """
    return _unsigned_long(page.prog_, mm.page_to_pfn(page))


def virt_to_pfn(prog: Program, addr: int | Object) -> Object:
    """drgn's ``virt_to_pfn(prog, addr)``: an ``unsigned long`` object."""
    return _unsigned_long(prog, mm.virt_to_pfn(prog, int(addr)))


def pfn_to_page(prog: Program, pfn: int | Object) -> Object:
    """drgn's ``pfn_to_page(prog, pfn)``: ``struct page *``."""
    return mm.pfn_to_page(prog, int(pfn))


def virt_to_page(prog: Program, addr: int | Object) -> Object:
    """drgn's ``virt_to_page(prog, addr)``: ``struct page *``."""
    return mm.virt_to_page(prog, int(addr))


def pfn_to_virt(prog: Program, pfn: int | Object) -> Object:
    """drgn's ``pfn_to_virt(prog, pfn)``: a ``void *`` object."""
    return Object(prog, prog.pointer_type("void"), mm.pfn_to_virt(prog, int(pfn)))


def waitqueue_for_each_entry(wq: Object) -> Iterator[Object]:
    """drgn's ``waitqueue_for_each_entry(wq)``: each entry as a ``wait_queue_entry_t *``.

    :param wq: ``wait_queue_head_t *``
    """
    prog = wq.prog_
    entry_type = prog.find_type_or_none("wait_queue_entry_t")
    for entry in wait.waitqueue_for_each_entry(wq):
        yield entry if entry_type is None else Object(prog, prog.pointer_type(entry_type), int(entry))


def per_cpu_ptr(ptr: Object, cpu: int) -> Object:
    """drgn's ``per_cpu_ptr(ptr, cpu)``: the pointer moved to ``cpu``'s per-CPU area."""
    return Object(ptr.prog_, ptr.type_, int(ptr) + per_cpu_offset(ptr.prog_, int(cpu)))


def per_cpu(var: Object, cpu: int) -> Object:
    """drgn's ``per_cpu(var, cpu)``: the per-CPU variable ``var`` on ``cpu``.

    >>> per_cpu(prog["runqueues"], 0).nr_running  # doctest: +SKIP
    """
    return per_cpu_ptr(var.address_of_(), cpu)[0]


def percpu_counter_sum(fbc: Object) -> int:
    """drgn's ``percpu_counter_sum(fbc)``: ``fbc->count`` plus every possible CPU's ``counters``.

    :param fbc: ``struct percpu_counter *``
    """
    total = int(fbc.count)
    for cpu in cpumask.for_each_possible_cpu(fbc.prog_):
        total += int(per_cpu_ptr(fbc.counters, cpu)[0])
    return total


def get_kconfig(prog: Program) -> Mapping[str, str]:
    """drgn's ``get_kconfig(prog)``: the kernel's configuration from ``kernel_config_data``
    (CONFIG_IKCONFIG, ``kernel/configs.c``: ``IKCFG_ST``, a gzip stream, ``IKCFG_ED``).

    :raises LookupError: the kernel was built without CONFIG_IKCONFIG (or with it as a module)
    """
    cached = _program_cache(prog).get("kconfig")
    if cached is None:
        cached = _parse_kconfig(_raw_kconfig(prog))
        _program_cache(prog)["kconfig"] = cached
    result: Mapping[str, str] = cached
    return result


def _program_cache(prog: Program) -> dict[Any, Any]:
    return prog.cache


def _raw_kconfig(prog: Program) -> bytes:
    try:
        start = prog.symbol_address("kernel_config_data")
        end = prog.symbol_address("kernel_config_data_end")
    except SymbolNotFoundError:
        raise SymbolNotFoundError("kernel configuration data not found: the kernel was built without "
                                  "CONFIG_IKCONFIG (or with the 'configs' module, not loaded)") from None
    if not 0 < end - start <= _KCONFIG_MAX:
        raise MissingDebugInfoError(f"implausible kernel_config_data size {end - start}")
    data = prog.read(start, end - start)
    begin = data.find(b"IKCFG_ST")
    try:
        return gzip.decompress(data[begin + 8 if begin >= 0 else 0:].split(b"IKCFG_ED")[0])
    except (OSError, EOFError, zlib.error) as exc:
        raise MissingDebugInfoError(f"kernel_config_data is not a gzip stream: {exc}") from exc


def _parse_kconfig(text: bytes) -> dict[str, str]:
    out = {}
    for line in text.decode(errors="replace").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.startswith("CONFIG_"):
            out[name] = value
    return out


# -- drgn's module layout, for the shell's import hook ---------------------------------------------

_LINUX: dict[str, tuple[str, ...]] = {
    "pid": ("find_task", "for_each_task"),
    "sched": ("cpu_curr", "idle_task", "task_cpu", "task_state_to_char"),
    "printk": ("get_dmesg", "get_printk_records"),
    "slab": ("SlabObjectInfo", "find_slab_cache", "for_each_slab_cache", "slab_cache_for_each_allocated_object",
             "slab_object_info"),
    "list": ("hlist_empty", "hlist_for_each", "hlist_for_each_entry", "list_empty", "list_first_entry",
             "list_for_each", "list_for_each_entry", "list_for_each_entry_reverse", "list_for_each_reverse",
             "list_is_singular", "validate_list"),
    "rbtree": ("rb_first", "rb_last", "rb_next", "rb_parent", "rb_prev", "rbtree_inorder_for_each",
               "rbtree_inorder_for_each_entry"),
    "xarray": ("xa_for_each", "xa_is_value", "xa_is_zero", "xa_load", "xa_to_value"),
    "percpu": ("per_cpu", "per_cpu_ptr", "percpu_counter_sum"),
    "cpumask": ("for_each_online_cpu", "for_each_possible_cpu", "for_each_present_cpu", "num_online_cpus",
                "num_possible_cpus"),
    "fs": ("d_path", "fget", "for_each_file", "for_each_mount", "mount_dst", "mount_fstype", "mount_src"),
    "net": ("for_each_net", "for_each_netdev", "netdev_ipv4_addrs", "netdev_ipv6_addrs", "netdev_name"),
    "mm": ("compound_head", "for_each_vma", "in_direct_map", "page_to_pfn", "pfn_to_page", "pfn_to_virt", "vma_find",
           "virt_to_page", "virt_to_pfn"),
    "mapletree": ("mt_for_each", "mtree_load"),
    "wait": ("waitqueue_active", "waitqueue_for_each_entry", "waitqueue_for_each_task"),
    "swait": ("swait_active", "swait_for_each_task"),
    "kconfig": ("get_kconfig",),
    "module": ("for_each_module",),
}


def _linux_names() -> dict[str, Any]:
    names: dict[str, Any] = {}
    for mod in (cpumask, fs, klist, mapletree, mm, module, net, rbtree, sched, slab, vma, wait, xarray):
        names.update({k: getattr(mod, k) for k in getattr(mod, "__all__", ())})
    names.update({k: globals()[k] for k in __all__ if k != "drgn_modules"})
    return names


def _top_level(stack_trace: Callable[..., drgn_compat.StackTrace]) -> dict[str, Any]:
    return {"Object": Object, "Program": drgn_compat.DrgnProgram, "StackTrace": drgn_compat.StackTrace,
            "StackFrame": drgn_compat.StackFrame, "Symbol": drgn_compat.Symbol, "Thread": drgn_compat.Thread,
            "SymbolBinding": drgn_compat.SymbolBinding, "SymbolKind": drgn_compat.SymbolKind,
            "FaultError": FaultError, "cast": kobject.cast, "reinterpret": kobject.reinterpret,
            "container_of": kobject.container_of, "sizeof": kobject.sizeof, "offsetof": kobject.offsetof,
            "stack_trace": stack_trace}


def drgn_modules(prog: drgn_compat.DrgnProgram) -> dict[str, types.ModuleType]:
    """Modules named as drgn's (``drgn``, ``drgn.helpers``, ``drgn.helpers.linux``,
    ``drgn.helpers.linux.pid`` …) holding the drgn-compatible names, for ``prog``'s shell.
    ``drgn.stack_trace(thread)`` is ``prog.stack_trace(thread)`` (drgn's default program)."""
    linux_names = _linux_names()
    out = {"drgn": _module("drgn", _top_level(prog.stack_trace)), "drgn.helpers": _module("drgn.helpers", {}),
           "drgn.helpers.linux": _module("drgn.helpers.linux", {k: linux_names[k] for v in _LINUX.values()
                                                                  for k in v})}
    for name, exported in _LINUX.items():
        out[f"drgn.helpers.linux.{name}"] = _module(f"drgn.helpers.linux.{name}",
                                                    {k: linux_names[k] for k in exported})
    return out


def _module(name: str, names: dict[str, Any]) -> types.ModuleType:
    mod = types.ModuleType(name, f"kcrash's drgn-compatible {name} (kcrash shell)")
    mod.__dict__.update(names)
    mod.__all__ = sorted(names)  # type: ignore[attr-defined]
    mod.__path__ = []  # a package, so its submodules import
    mod.__kcrash_drgn__ = True  # type: ignore[attr-defined]  # kcrash's, not the real drgn's
    return mod


def shell_names(prog: drgn_compat.DrgnProgram) -> dict[str, Any]:
    """What ``drgn -c`` puts in a script's namespace: ``prog``, drgn's top-level names and the
    Linux helpers. ``stack_trace`` also takes kcrash's old ``(prog, thread)`` form."""

    def stack_trace(*args: Any) -> drgn_compat.StackTrace:
        if len(args) not in (1, 2):
            raise TypeError("stack_trace(thread) takes a PID, a struct task_struct * or a task")
        return prog.stack_trace(args[-1])

    names = {**_top_level(stack_trace), **{k: v for mod in drgn_modules(prog).values()
                                           if mod.__name__.startswith("drgn.helpers.linux.")
                                           for k, v in vars(mod).items() if not k.startswith("_")}}
    names["stack_trace"] = stack_trace
    names["prog"] = prog
    return names
