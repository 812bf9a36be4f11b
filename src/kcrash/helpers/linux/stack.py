"""
kcrash.helpers.linux.stack
==========================

Stack traces of a typed kernel target (``arch/x86/kernel/unwind_orc.c``,
``arch/x86/include/asm/switch_to.h``, ``arch/x86/include/asm/cpu_entry_area.h``) with nothing but
the dump: :func:`stack_trace` unwinds a task (``struct task_struct *``) or a CPU (its
``NT_PRSTATUS`` registers) with :func:`kcrash.unwind.unwind`. The ORC tables come from kernel memory
(vmlinux: ``__start_orc_unwind_ip`` … from kallsyms; modules: ``mod->arch.orc_unwind_ip``,
``orc_unwind``, ``num_orcs``), the stack bounds from the task's ``stack``, the per-CPU IRQ stack
(``pcpu_hot.hardirq_stack_ptr`` or ``hardirq_stack_ptr``) and exception stacks
(``cea_exception_stacks``). A task running on a CPU is unwound from that CPU's registers, as drgn
does; other tasks from the ``struct inactive_task_frame`` at ``task->thread.sp``. x86-64 only. The
NT_PRSTATUS note of CPU *n* is taken to be the *n*-th one (QEMU and kdump write them in CPU order).
Symbolizing frames is the caller's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from kcrash.errors import CorruptDumpError, FaultError, MissingDebugInfoError, SymbolNotFoundError, TypeLookupError
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.memory.kernel import kernel_image_end
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu
from kcrash.types.program import Program
from kcrash.unwind import (
    MemoryUnwindContext,
    OrcTable,
    OrcTables,
    Registers,
    StackRange,
    Trace,
    inactive_task_frame_registers,
    unwind,
    vmlinux_orc_table,
)

__all__ = ["KernelUnwinder", "kernel_unwinder", "stack_trace"]

_DEFAULT_THREAD_SIZE = 16384
_CACHE = "kcrash.helpers.linux.stack.kernel_unwinder"  # prog.cache key


@dataclass(frozen=True, slots=True)
class _TaskFrameLayout:
    members: dict[str, int]
    size: int


class KernelUnwinder:
    """Everything :func:`stack_trace` needs, found once per program.

    The ORC tables of vmlinux and the modules, the per-CPU IRQ/exception stacks, kernel text, and each
    CPU's ``NT_PRSTATUS`` registers.

    Get it with :func:`kernel_unwinder`, which caches it per program.

    :param prog: the program

    >>> unwinder = kernel_unwinder(prog)
    >>> [hex(frame.pc) for frame in unwinder.unwind_cpu(1).frames][:2]
    ['0xffffffffc020a212', '0xffffffffc020a283']
    """

    def __init__(self, prog: Program) -> None:
        self.prog = prog
        #: why there is no vmlinux ORC table (unknown layout, damaged, missing pages), or None
        self.orc_error: str | None = None
        try:
            vmlinux = vmlinux_orc_table(prog.memory, prog.symbol_address("__start_orc_unwind_ip"),
                                        prog.symbol_address("__stop_orc_unwind_ip"),
                                        prog.symbol_address("__start_orc_unwind"))
        except (CorruptDumpError, FaultError, SymbolNotFoundError) as exc:
            # Without ORC every frame is the kernel's orc_fp_entry guess plus the stack scan,
            # all unreliable; the traces say why.
            self.orc_error = str(exc)
            self.modules_complete = False
            self.orc = OrcTables([])
        else:
            modules, self.modules_complete = _module_tables(prog, vmlinux.format, vmlinux.registers)
            self.orc = OrcTables([vmlinux, *modules])
        self.thread_size = _thread_size(prog)
        # A CPU whose per-CPU area is missing from the dump has no known IRQ/exception stacks and
        # no known running task; the others are unaffected.
        self.cpu_stacks = [s for cpu in range(self.num_cpus())
                           for s in _cpu_stacks_or_none(prog, cpu, self.thread_size)]
        self.text = _text_ranges(prog, self.orc, self.modules_complete)
        self._frame = _task_frame_layout(prog)
        self._ret_from_fork = _symbol_or_none(prog, "ret_from_fork_asm") or _symbol_or_none(prog, "ret_from_fork")
        self._running = {curr: cpu for cpu in range(self.num_cpus()) if (curr := _cpu_curr_or_none(prog, cpu))}

    def num_cpus(self) -> int:
        """Return the number of CPUs with registers in the dump.

        :return: the number of ``NT_PRSTATUS`` notes
        """
        return len(self.prog.cpus)

    def context(self, task_stack: StackRange | None = None) -> MemoryUnwindContext:
        """Return an unwind context knowing the per-CPU stacks and ``task_stack``.

        :param task_stack: the task stack to add, None for the per-CPU stacks only
        :return: the context an unwinder reads memory and stack bounds through
        """
        stacks = self.cpu_stacks if task_stack is None else [*self.cpu_stacks, task_stack]
        return MemoryUnwindContext(self.prog.memory, self.orc, stacks, self.text)

    def cpu_registers(self, cpu: int) -> Registers:
        """Return a CPU's registers from its ``NT_PRSTATUS`` note.

        :param cpu: the CPU
        :return: the registers
        :raises MissingDebugInfoError: if the dump has no registers for ``cpu``
        """
        cpus = self.prog.cpus
        if not 0 <= cpu < len(cpus):
            raise MissingDebugInfoError(f"the dump has no registers for CPU {cpu}")
        prstatus = cpus[cpu].prstatus
        if prstatus is None:
            raise MissingDebugInfoError(f"the dump has no NT_PRSTATUS note for CPU {cpu}")
        return Registers.from_mapping(prstatus.registers)

    def unwind_cpu(self, cpu: int, *, scan: bool = False) -> Trace:
        """Unwind a CPU from its ``NT_PRSTATUS`` registers, its current task's stack included.

        When the run queue or the task is missing from the dump, the ``THREAD_SIZE``-aligned stack
        around ``rsp`` is used.

        :param cpu: the CPU
        :param scan: after an early stop, add unreliable frames found by scanning the stack
        :return: the frames, innermost first
        :raises MissingDebugInfoError: if the dump has no registers for ``cpu``
        """
        regs = self.cpu_registers(cpu)
        try:
            stack: StackRange | None = self.task_stack(per_cpu(self.prog, "runqueues", cpu).curr)
        except FaultError:
            sp = regs.get_or_none("rsp")
            stack = self._stack_around(sp) if sp is not None else None
        return unwind(regs, self.context(stack), scan=scan)

    def _stack_around(self, sp: int) -> StackRange | None:
        # Task stacks are THREAD_SIZE long and THREAD_SIZE aligned (THREAD_ALIGN, kernel/fork.c).
        if any(s.lo <= sp < s.hi for s in self.cpu_stacks):
            return None
        base = sp & ~(self.thread_size - 1)
        return StackRange(base, base + self.thread_size, "running task (around sp)")

    def task_stack(self, task: Object) -> StackRange:
        """Return a task's stack, ``[task->stack, task->stack + THREAD_SIZE)``.

        :param task: ``struct task_struct *``
        :return: the stack range
        :raises FaultError: if the task cannot be read
        """
        base = int(task.stack)
        return StackRange(base, base + self.thread_size, f"task {int(task.pid)}")

    def unwind_task(self, task: Object, *, scan: bool = False) -> Trace:
        """Unwind a task from its CPU's registers or its saved ``struct inactive_task_frame``.

        From its CPU's registers when it is running, else from the frame saved at ``task->thread.sp``.

        :param task: ``struct task_struct *``
        :param scan: after an early stop, add unreliable frames found by scanning the stack
        :return: the frames, innermost first
        :raises FaultError: if the task cannot be read
        """
        cpu = self._running.get(int(task))
        if cpu is not None:
            return self.unwind_cpu(cpu, scan=scan)
        ctx = self.context(self.task_stack(task))
        thread_sp = int(task.thread.sp)
        try:
            frame = self.prog.memory.read(thread_sp, self._frame.size)
        except FaultError as exc:
            return Trace((), f"cannot read the saved frame at thread.sp {thread_sp:#x}: {exc.reason}")
        regs = inactive_task_frame_registers(frame, thread_sp, self._frame.members, self._frame.size)
        return unwind(regs, ctx, interrupted=regs["rip"] == self._ret_from_fork, scan=scan)


def kernel_unwinder(prog: Program) -> KernelUnwinder:
    """Return the :class:`KernelUnwinder` of a program, built on first use and cached.

    :param prog: the program
    :return: the unwinder

    >>> kernel_unwinder(prog).num_cpus()
    2
    """
    found: KernelUnwinder | None = prog.cache.get(_CACHE)
    if found is None:
        found = prog.cache[_CACHE] = KernelUnwinder(prog)
    return found


def stack_trace(prog: Program, task_or_cpu: Object | int, *, scan: bool = False) -> Trace:
    """Return the stack trace of a task or a CPU, like drgn's ``stack_trace()``.

    It unwinds with ORC through the task, IRQ and exception stacks, with ``struct pt_regs`` frames at
    interrupts.

    :param prog: the program
    :param task_or_cpu: ``struct task_struct *``, or a CPU number (its ``NT_PRSTATUS`` registers)
    :param scan: after an early stop, add unreliable frames found by scanning the stack
    :return: the frames, innermost first, and why the walk stopped early (``truncated``)
    :raises MissingDebugInfoError: if a CPU has no registers in the dump

    >>> trace = stack_trace(prog, prog["init_task"].address_of_())
    >>> [prog.format_address(frame.pc) for frame in trace.frames][:2]
    ['__schedule+0x4e0/0xbf0', 'schedule_idle+0x23/0x40']
    """
    unwinder = kernel_unwinder(prog)
    if isinstance(task_or_cpu, int):
        trace = unwinder.unwind_cpu(task_or_cpu, scan=scan or unwinder.orc_error is not None)
    else:
        trace = unwinder.unwind_task(task_or_cpu, scan=scan or unwinder.orc_error is not None)
    if unwinder.orc_error is None:
        return trace
    why = f"no usable ORC table ({unwinder.orc_error}): frames are frame-pointer and stack-scan guesses"
    return dataclasses.replace(trace, truncated=f"{trace.truncated}; {why}" if trace.truncated else why)


def _symbol_or_none(prog: Program, name: str) -> int | None:
    try:
        return prog.symbol_address(name)
    except SymbolNotFoundError:
        return None


def _module_tables(prog: Program, fmt: str, registers: tuple[int, ...]) -> tuple[list[OrcTable], bool]:
    # The ORC table of every module, and whether every module could be read: one whose struct
    # module or tables are missing from the dump (or a broken list) is unwound without ORC.
    walk = list_for_each_entry("struct module", prog["modules"].address_of_(), "list", limit=10_000)
    tables, complete = [], True
    for mod in walk:
        try:
            arch = mod.arch
            num = int(arch.num_orcs)
            if num:
                name = mod.name.string_().decode(errors="replace")
                tables.append(OrcTable.from_memory(prog.memory, int(arch.orc_unwind_ip), int(arch.orc_unwind), num,
                                                   fmt=fmt, name=name, registers=registers))
        except FaultError:
            complete = False
    return tables, complete and walk.truncated is None


def _thread_size(prog: Program) -> int:
    # init_stack is THREAD_SIZE long (include/asm-generic/vmlinux.lds.h: INIT_TASK_DATA)
    start, end = _symbol_or_none(prog, "init_stack"), _symbol_or_none(prog, "__end_init_stack")
    if start is not None and end is not None and 0 < end - start <= 1 << 20:
        return end - start
    return _DEFAULT_THREAD_SIZE


def _hardirq_stack_ptr(prog: Program, cpu: int) -> int:
    # Since Linux kernel commit 4ad4fdb49b40 (v6.2) it lives in struct pcpu_hot; before (and again
    # after pcpu_hot was dissolved) it is a per-CPU variable of its own.
    try:
        return int(per_cpu(prog, "pcpu_hot", cpu).hardirq_stack_ptr)
    except (SymbolNotFoundError, TypeLookupError):
        return int(per_cpu(prog, "hardirq_stack_ptr", cpu))


_MODULES_END = 0xFFFFFFFFFF000000


def _cpu_stacks_or_none(prog: Program, cpu: int, thread_size: int) -> list[StackRange]:
    try:
        return _cpu_stacks(prog, cpu, thread_size)
    except FaultError:
        return []


def _cpu_curr_or_none(prog: Program, cpu: int) -> int | None:
    try:
        return int(per_cpu(prog, "runqueues", cpu).curr)
    except FaultError:
        return None


def _cpu_stacks(prog: Program, cpu: int, thread_size: int) -> list[StackRange]:
    stacks = []
    top = _hardirq_stack_ptr(prog, cpu)
    if top:  # hardirq_stack_ptr is IRQ_STACK_SIZE (THREAD_SIZE) above the base, minus 8
        stacks.append(StackRange(top + 8 - thread_size, top + 8, f"IRQ {cpu}"))
    ces = per_cpu(prog, "cea_exception_stacks", cpu)
    if int(ces):
        stacks.extend(_exception_stacks(ces, cpu))
    return stacks


def _exception_stacks(ces: Object, cpu: int) -> Iterator[StackRange]:
    base = int(ces)
    for member, bits in ces.type_.type.iter_members():
        if member.name and member.name.endswith("_stack"):
            lo = base + bits // 8
            yield StackRange(lo, lo + member.type.sizeof(), f"{member.name.removesuffix('_stack')} {cpu}")


def _text_ranges(prog: Program, orc: OrcTables, modules_complete: bool) -> list[tuple[int, int]]:
    text = [(prog.symbol_address("_stext"), prog.symbol_address("_etext"))]
    init = _symbol_or_none(prog, "_sinittext"), _symbol_or_none(prog, "_einittext")
    if init[0] is not None and init[1] is not None:
        text.append((init[0], init[1]))
    # module text: what each module's ORC table covers (objtool covers every text section); when
    # some module could not be read, the whole module area, so the stack scan still finds its frames
    text.extend((table.start, table.end + 1) for table in orc.tables if table.name != "vmlinux")
    if not modules_complete:
        text.append(_module_area(prog))
    return text


def _module_area(prog: Program) -> tuple[int, int]:
    # [MODULES_VADDR, MODULES_END): right after the kernel image mapping
    # (arch/x86/include/asm/pgtable_64_types.h)
    return kernel_image_end(prog.vmcoreinfo), _MODULES_END


def _task_frame_layout(prog: Program) -> _TaskFrameLayout:
    frame_type = prog.type("struct inactive_task_frame")
    members = {m.name: bits // 8 for m, bits in frame_type.iter_members() if m.name}
    return _TaskFrameLayout(members, frame_type.sizeof())
