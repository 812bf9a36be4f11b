"""
kcrash.analysis.identify
========================

"What is at this address" (crash's ``kmem ADDR``, drgn's ``identify_address``) with nothing but the
dump: :func:`identify_address` returns an :class:`AddressIdentity` saying the address is in a
kernel or module symbol (``sym+off``), ``init_task`` or a task's ``struct task_struct``, a task's
kernel stack (``task->stack``, ``THREAD_SIZE`` long; vmap'd or not), a slab object of a cache
(allocated or free: :func:`~kcrash.helpers.linux.slab.slab_object_info`), a ``struct page`` in
the vmemmap array (PFN, flags, mapping, compound head), a vmalloc/vmap area (range, ``VM_*``
flags, the allocating ``caller`` symbolized), a CPU's per-CPU unit (CPU, offset, variable), other
direct-map memory (its page), user space, or nothing known. The order of the checks is drgn's, so
the two agree where both answer; the per-CPU, direct-map and user answers are kcrash's own (drgn
has none there).

A symbol answer means the address is *inside* the symbol
(:meth:`~kcrash.debuginfo.symbols.SymbolTable.containing_symbol_or_none`). In a module, whose ELF
symbol table the kernel keeps in memory with ``st_size`` (``mod->kallsyms->symtab``), an address at
or past a symbol's end is in no symbol (a sizeless one ends at the next symbol or section start,
``mod->sect_attrs``) and is answered by what follows, the module's vmap area, as drgn answers with
the ``.ko``'s sizes. The kernel image's kallsyms keep no sizes, so there a symbol runs to the next
one (``kallsyms_lookup_size_offset``); neither BTF (no addresses or sizes of functions) nor ORC
(its "undefined" entries also cover unreachable code inside functions) tells a function's end. What
the image does tell is the linker's fill: ``arch/x86/kernel/vmlinux.lds.S`` fills the gaps of
``.text`` with ``int3`` (``:text =0xcccc``), so a text address in a run of at least two ``0xcc``
bytes that reaches the next symbol is alignment fill after the function, in no symbol, as drgn
says with the vmlinux's ELF sizes (most of it is the ~1 MiB of ``int3`` up to the 2 MiB boundary
after the SRSO alias thunk) -- unless the symbol itself starts in the fill: a sizeless
linker-script marker such as ``__static_call_text_end``, which runs to the next symbol for drgn too.
``nop`` fill (``.align`` inside a section) is not told
apart from code: it stays named after the function before it, as the kernel's ``%pS`` names it.
Backtraces and ``sym`` print the kernel's ``%pS``
(:meth:`~kcrash.debuginfo.symbols.SymbolTable.symbolize_or_none`: the next-symbol rule, so their
text equals the kernel's own oops lines); ``sym`` says when an address is past a module symbol's
own size (the text-fill rule is this module's alone: ``sym`` prints what ``%pS`` prints).

The per-program indexes (tasks by stack, vmap areas, valid PFNs, per-CPU units) are built once
and cached, so asking about many addresses costs little more per address than the
reads of its slab and page. Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kcrash.errors import FaultError, KcrashError
from kcrash.helpers.layout import StructLayout
from kcrash.helpers.linux.mm import PageInfo, mm_layout, page_info
from kcrash.helpers.linux.percpu import PercpuAddress, find_percpu_address
from kcrash.helpers.linux.sched import for_each_task
from kcrash.helpers.linux.slab import SlabObjectInfo, slab_object_info
from kcrash.helpers.linux.stack import kernel_unwinder
from kcrash.helpers.linux.vmalloc import VmapArea, find_vmap_area, vmalloc_to_pfn
from kcrash.helpers.memo import per_program
from kcrash.types.program import Program

__all__ = ["KINDS", "AddressIdentity", "identify_address", "identify_addresses"]

#: every :attr:`AddressIdentity.kind`
KINDS = ("symbol", "task", "task_stack", "slab", "page", "vmap", "percpu", "direct_map", "user", "unknown")
#: x86-64: user space is the lower half (TASK_SIZE_MAX is just below it)
_USER_END = 0x0000800000000000
_FUNCTION_KINDS = frozenset("Tt")
#: the byte arch/x86/kernel/vmlinux.lds.S fills .text's gaps with (``:text =0xcccc``, int3)
_TEXT_FILL = b"\xcc"
#: how far a fill run is followed (the largest, after the SRSO alias thunk, is ~1 MiB), and per read
_MAX_FILL, _FILL_CHUNK = 4 << 20, 1 << 16


@dataclass(frozen=True, slots=True)
class AddressIdentity:
    """What an address is. ``kind`` is one of :data:`KINDS`; ``name`` the symbol, slab cache,
    task ``comm``, per-CPU variable or vmap caller; ``offset`` the address's offset from the start
    of what it is in (symbol, object, ``task_struct``, stack base, ``struct page``, vmap area, per-CPU
    variable); ``start``/``end`` that thing's range where known. The other fields are set where
    they apply: ``module``, ``symbol_kind`` (the ``nm`` letter), ``allocated`` (slab), ``pid`` and
    ``task`` (task, task_stack), ``cpu`` (per-CPU), ``pfn`` and ``page`` (page, direct map, slab),
    ``vmap`` and ``caller`` (vmap, vmap'd stacks), ``slab`` (slab, task)."""

    address: int
    kind: str
    name: str | None = None
    offset: int = 0
    start: int | None = None
    end: int | None = None
    module: str | None = None
    symbol_kind: str | None = None
    allocated: bool | None = None
    pid: int | None = None
    task: int | None = None
    cpu: int | None = None
    pfn: int | None = None
    caller: str | None = None
    page: PageInfo | None = None
    vmap: VmapArea | None = None
    slab: SlabObjectInfo | None = None
    #: why part of the answer is missing (an unreadable page, a broken task list), or None
    note: str | None = None

    def describe(self) -> str:
        """One line, in drgn's words where drgn has them (``slab object: kmalloc-64+0x10``)."""
        return _DESCRIBE[self.kind](self)


def _plus(offset: int) -> str:
    return f" +{offset:#x}" if offset else ""


_DESCRIBE: dict[str, Callable[[AddressIdentity], str]] = {
    "symbol": lambda i: (f"{'function' if i.symbol_kind in _FUNCTION_KINDS else 'object'} symbol: "
                         f"{i.name}+{i.offset:#x}{f' [{i.module}]' if i.module else ''}"),
    "task": lambda i: f"task: {i.pid} ({i.name}){_plus(i.offset)}",
    "task_stack": lambda i: f"task stack: {i.pid} ({i.name}) +{i.offset:#x}",
    "slab": lambda i: (f"{'' if i.allocated else 'free ' if i.allocated is False else 'corrupted '}"
                       f"slab object: {i.name}+{i.offset:#x}"),
    "page": lambda i: f"page: pfn {i.pfn}{_plus(i.offset)}",
    "vmap": lambda i: f"vmap: {i.start:#x}-{i.end:#x}{f' caller {i.caller}' if i.caller else ''}",
    "percpu": lambda i: f"per-cpu: CPU {i.cpu} " + (f"{i.name}+{i.offset:#x}" if i.name else f"unit +{i.offset:#x}"),
    "direct_map": lambda i: f"direct map: pfn {i.pfn}",
    "user": lambda i: "user address",
    "unknown": lambda i: "unknown",
}


# -- per-program indexes ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Tasks:
    # stack base -> (task, pid, comm); task_struct address -> (pid, comm); THREAD_SIZE; init_task's range
    stacks: dict[int, tuple[int, int, str]]
    tasks: dict[int, tuple[int, str]]
    thread_size: int
    init_task: tuple[int, int]
    sizeof_task: int
    task_cachep: int
    truncated: str | None


@per_program
def _tasks(prog: Program) -> _Tasks:
    # Every task with a stack: the thread list plus each CPU's idle task (for_each_task(idle=True)).
    task_type = prog.type("struct task_struct")
    layout = StructLayout(task_type, ("stack", "pid", "comm"))
    stacks: dict[int, tuple[int, int, str]] = {}
    tasks: dict[int, tuple[int, str]] = {}
    walk = for_each_task(prog, idle=True)
    try:
        for task in walk:
            members = layout.read(prog, int(task))
            pid, comm = members.value("pid"), members.string("comm").decode("utf-8", "backslashreplace")
            tasks[int(task)] = (pid, comm)
            stacks.setdefault(members.value("stack"), (int(task), pid, comm))
    except KcrashError as exc:
        walk.truncated = walk.truncated or str(exc)
    init_task = prog.symbol_address("init_task")
    cachep = _u64_or_zero(prog, "task_struct_cachep")
    return _Tasks(stacks, tasks, kernel_unwinder(prog).thread_size, (init_task, init_task + task_type.sizeof()),
                  task_type.sizeof(), cachep, walk.truncated)


def _u64_or_zero(prog: Program, name: str) -> int:
    try:
        return prog.read_u64(prog.symbol_address(name))
    except KcrashError:
        return 0


# -- the checks, in drgn's order --------------------------------------------------------------------


def identify_address(prog: Program, address: int) -> AddressIdentity:
    """What ``address`` is (see the module docstring for the order of the checks).

    >>> identify_address(prog, prog.symbol_address("jiffies_64") + 4).describe()
    'object symbol: jiffies_64+0x4'
    """
    found = _symbol(prog, address)
    if found is not None:
        return found
    layout = mm_layout(prog)
    pfn = layout.pfn_of_page(address)
    if pfn is not None:
        return _page(prog, address, pfn)
    if layout.in_direct_map(address):
        return _direct_map(prog, address)
    if address < _USER_END:
        return AddressIdentity(address, "user")
    return _vmap(prog, address) or _percpu(prog, address) or AddressIdentity(address, "unknown")


def identify_addresses(prog: Program, addresses: list[int]) -> list[AddressIdentity]:
    """:func:`identify_address` of each address, in order (the indexes are built once)."""
    return [identify_address(prog, address) for address in addresses]


def _symbol(prog: Program, address: int) -> AddressIdentity | None:
    found = prog.containing_symbol_or_none(address)
    if found is None:
        return None
    symbol, offset = found
    tasks = _tasks(prog)
    start, end = tasks.init_task
    if start <= address < end:
        pid, comm = tasks.tasks.get(start, (0, "swapper/0"))
        return AddressIdentity(address, "task", comm, address - start, start, end, pid=pid, task=start)
    stack = _task_stack(prog, address)
    if stack is not None:
        return stack
    end = symbol.address + symbol.size
    if symbol.module is None and symbol.kind in _FUNCTION_KINDS and _in_text_fill(prog, symbol.address, address, end):
        return None
    return AddressIdentity(address, "symbol", symbol.name, offset, symbol.address, symbol.address + symbol.size,
                           module=symbol.module, symbol_kind=symbol.kind)


def _in_text_fill(prog: Program, symbol: int, address: int, end: int) -> bool:
    # address lies in a run (>= 2 bytes) of the linker's .text fill that reaches ``end``, the next
    # symbol: padding after the last instruction of the function at ``symbol``. A symbol whose own
    # first byte is fill is a linker-script marker placed in the fill (``__static_call_text_end``:
    # sizeless, so it runs to the next symbol for drgn too), not a function.
    if not 0 < end - address <= _MAX_FILL:
        return False
    start = address - 1 if end - address == 1 else address
    try:
        if prog.read(symbol, 1) == _TEXT_FILL:
            return False
        for at in range(start, end, _FILL_CHUNK):
            if prog.read(at, min(_FILL_CHUNK, end - at)).strip(_TEXT_FILL):
                return False
    except FaultError:
        return False
    return True


def _task_stack(prog: Program, address: int) -> AddressIdentity | None:
    tasks = _tasks(prog)
    base = address & ~(tasks.thread_size - 1)
    owner = tasks.stacks.get(base)
    if owner is None:
        return None
    task, pid, comm = owner
    return AddressIdentity(address, "task_stack", comm, address - base, base, base + tasks.thread_size,
                           pid=pid, task=task)


def _page(prog: Program, address: int, pfn: int) -> AddressIdentity:
    layout = mm_layout(prog)
    start = layout.vmemmap + pfn * layout.sizeof_page
    try:
        info: PageInfo | None = page_info(prog, start)
        note = None
    except KcrashError as exc:
        info, note = None, str(exc)
    return AddressIdentity(address, "page", None, address - start, start, start + layout.sizeof_page,
                           pfn=pfn, page=info, note=note)


def _page_of(prog: Program, address: int) -> tuple[int, PageInfo | None, str | None]:
    layout = mm_layout(prog)
    pfn = (address - layout.page_offset) >> layout.page_shift
    try:
        return pfn, page_info(prog, layout.vmemmap + pfn * layout.sizeof_page), None
    except KcrashError as exc:
        return pfn, None, str(exc)


def _direct_map(prog: Program, address: int) -> AddressIdentity:
    pfn, page, note = _page_of(prog, address)
    try:
        slab = slab_object_info(prog, address)
    except KcrashError as exc:
        slab, note = None, note or str(exc)
    if slab is not None:
        return _slab(prog, address, slab, pfn, page)
    stack = _task_stack(prog, address)  # stacks from the page allocator (no CONFIG_VMAP_STACK)
    if stack is not None:
        return stack
    percpu = _percpu(prog, address)
    if percpu is not None:
        return percpu
    return AddressIdentity(address, "direct_map", pfn=pfn, page=page, note=note)


def _slab(prog: Program, address: int, slab: SlabObjectInfo, pfn: int, page: PageInfo | None) -> AddressIdentity:
    tasks = _tasks(prog)
    if slab.allocated and tasks.task_cachep and slab.cache == tasks.task_cachep:
        pid, comm = tasks.tasks.get(slab.address) or _read_task(prog, slab.address)
        return AddressIdentity(address, "task", comm, slab.offset, slab.address, slab.address + tasks.sizeof_task,
                               pid=pid, task=slab.address, pfn=pfn, page=page, slab=slab)
    end = slab.address + _object_size(prog, slab)
    note = None if slab.allocated is not None else \
        "not inside an object (the slab's tail or a red zone), or the slab's freelist is damaged"
    return AddressIdentity(address, "slab", slab.cache_name, slab.offset, slab.address, end,
                           allocated=slab.allocated, pfn=pfn, page=page, slab=slab, note=note)


def _object_size(prog: Program, slab: SlabObjectInfo) -> int:
    try:
        return prog.read_u32(slab.cache + prog.type("struct kmem_cache").walk_path("object_size")[0] // 8)
    except KcrashError:
        return 0


def _read_task(prog: Program, task: int) -> tuple[int, str]:
    # a task_struct not on the task list (exiting, or not yet attached)
    members = StructLayout(prog.type("struct task_struct"), ("pid", "comm")).read(prog, task)
    return members.value("pid"), members.string("comm").decode("utf-8", "backslashreplace")


def _vmap(prog: Program, address: int) -> AddressIdentity | None:
    try:
        area = find_vmap_area(prog, address)
    except KcrashError:
        return None
    if area is None or not area.vm:  # drgn, too, names only areas with a vm_struct
        return None
    stack = _task_stack(prog, address)
    caller = _format_caller(prog, area.caller)
    pfn, page = _vmalloc_page(prog, address)
    if stack is not None:
        return AddressIdentity(address, "task_stack", stack.name, stack.offset, stack.start, stack.end,
                               pid=stack.pid, task=stack.task, pfn=pfn, caller=caller, page=page, vmap=area)
    return AddressIdentity(address, "vmap", caller, address - area.start, area.start, area.end, pfn=pfn,
                           caller=caller, page=page, vmap=area)


def _vmalloc_page(prog: Program, address: int) -> tuple[int | None, PageInfo | None]:
    # the page mapped there (none for the guard page or an unmapped ioremap hole)
    layout = mm_layout(prog)
    try:
        pfn = vmalloc_to_pfn(prog, address)
    except KcrashError:
        return None, None
    try:
        return pfn, page_info(prog, layout.vmemmap + pfn * layout.sizeof_page)
    except KcrashError:
        return pfn, None


def _format_caller(prog: Program, caller: int) -> str | None:
    found = prog.symbolize_or_none(caller) if caller else None
    if found is None:
        return None
    symbol, offset = found
    return f"{symbol.name}+{offset:#x}" + (f" [{symbol.module}]" if symbol.module else "")


def _percpu(prog: Program, address: int) -> AddressIdentity | None:
    try:
        found: PercpuAddress | None = find_percpu_address(prog, address)
    except KcrashError:
        return None
    if found is None:
        return None
    return AddressIdentity(address, "percpu", found.symbol, found.symbol_offset if found.symbol else found.offset,
                           module=found.module, cpu=found.cpu)
