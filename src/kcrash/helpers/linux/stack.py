"""
kcrash.helpers.linux.stack
==========================

Stack traces of a typed kernel target with nothing but the dump: :func:`stack_trace` unwinds a
task (``struct task_struct *``) or a CPU (its ``NT_PRSTATUS`` registers) with the unwinder of the
dump's machine (:func:`kcrash.unwind.arch.arch_unwinder`). What the unwinders need from the kernel
is found here, per machine. On x86-64 (``arch/x86/kernel/unwind_orc.c``,
``arch/x86/include/asm/switch_to.h``, ``arch/x86/include/asm/cpu_entry_area.h``) the ORC tables
come from kernel memory (vmlinux: ``__start_orc_unwind_ip`` … from kallsyms; modules:
``mod->arch.orc_unwind_ip``, ``orc_unwind``, ``num_orcs``), the stack bounds from the task's
``stack``, the per-CPU IRQ stack (``pcpu_hot.hardirq_stack_ptr`` or ``hardirq_stack_ptr``) and
exception stacks (``cea_exception_stacks``), a sleeping task starts from the
``struct inactive_task_frame`` at ``task->thread.sp``. On arm64 (``arch/arm64/kernel/stacktrace.c``,
``arch/arm64/include/asm/stacktrace.h``, ``process.c``) the stacks are the task's, the per-CPU
``irq_stack_ptr``, ``overflow_stack`` and SDEI stacks (``sdei_stack_normal_ptr``,
``sdei_stack_critical_ptr``) where present; a sleeping task starts from ``task->thread.cpu_context``;
return addresses lose their PAC bits (VMCOREINFO ``NUMBER(KERNELPACMASK)``); the ``pt_regs`` layout
comes from BTF. A task running on a CPU is unwound from that CPU's registers, as drgn does. The
NT_PRSTATUS note of CPU *n* is taken to be the *n*-th one (QEMU and kdump write them in CPU order).
Symbolizing frames is the caller's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kcrash.errors import (
    CorruptDumpError,
    FaultError,
    KcrashError,
    MissingDebugInfoError,
    SymbolNotFoundError,
    TypeLookupError,
    UnwindError,
)
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.memory.kernel import kernel_image_end
from kcrash.types.object import Object, offsetof
from kcrash.types.percpu import per_cpu, per_cpu_offset
from kcrash.types.program import Program
from kcrash.unwind import (
    MemoryUnwindContext,
    OrcTable,
    OrcTables,
    Registers,
    StackRange,
    Trace,
    inactive_task_frame_registers,
    vmlinux_orc_table,
)
from kcrash.unwind.arch import Aarch64Unwinder, ArchUnwinder, arch_unwinder
from kcrash.unwind.arch.arm64 import Aarch64Kernel, cpu_context_registers

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
        self.thread_size = _thread_size(prog)
        probe = _MACHINES.get(prog.machine)
        if probe is None:
            raise UnwindError(f"no unwinder for machine {prog.machine!r} (kcrash unwinds x86_64 and aarch64)")
        found = probe(prog)
        #: the unwinder of the dump's machine, with what it knows of this kernel
        self.arch: ArchUnwinder = found.arch
        #: why there is no vmlinux ORC table (unknown layout, damaged, missing pages), or None
        self.orc_error = found.orc_error
        self.orc = found.orc
        self.modules_complete = found.modules_complete
        self.text = found.text
        # A CPU whose per-CPU area is missing from the dump has no known IRQ/exception stacks and
        # no known running task; the others are unaffected.
        self.cpu_stacks = [s for cpu in range(self.num_cpus())
                           for s in _cpu_stacks_or_none(prog, cpu, self.thread_size, found.cpu_stacks)]
        self._start = found.task_start
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
            sp = regs.get_or_none(self.arch.sp_register)
            stack = self._stack_around(sp) if sp is not None else None
        return self.arch.unwind(regs, self.context(stack), scan=scan)

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
        try:
            regs, interrupted = self._start(task)
        except _NoStart as exc:
            return Trace((), str(exc))
        return self.arch.unwind(regs, ctx, interrupted=interrupted, scan=scan)


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


def _cpu_stacks_or_none(prog: Program, cpu: int, thread_size: int, find: _CpuStacks) -> list[StackRange]:
    try:
        return find(prog, cpu, thread_size)
    except FaultError:
        return []


def _cpu_curr_or_none(prog: Program, cpu: int) -> int | None:
    try:
        return int(per_cpu(prog, "runqueues", cpu).curr)
    except FaultError:
        return None


def _x86_64_cpu_stacks(prog: Program, cpu: int, thread_size: int) -> list[StackRange]:
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


class _NoStart(Exception):
    """A sleeping task's saved context cannot be read (the message says why)."""


_TaskStart = Callable[[Object], tuple[Registers, bool]]
_CpuStacks = Callable[[Program, int, int], list[StackRange]]


@dataclass(frozen=True, slots=True)
class _MachineKernel:
    # What the unwinder needs of the kernel on one machine: the unwinder, how to find a CPU's
    # stacks and a sleeping task's starting registers, kernel text, and (x86-64) the ORC tables.
    arch: ArchUnwinder
    cpu_stacks: _CpuStacks
    task_start: _TaskStart
    text: list[tuple[int, int]]
    orc: OrcTables = dataclasses.field(default_factory=lambda: OrcTables([]))
    orc_error: str | None = None
    modules_complete: bool = True


def _x86_64_machine(prog: Program) -> _MachineKernel:
    error: str | None = None
    try:
        vmlinux = vmlinux_orc_table(prog.memory, prog.symbol_address("__start_orc_unwind_ip"),
                                    prog.symbol_address("__stop_orc_unwind_ip"),
                                    prog.symbol_address("__start_orc_unwind"))
    except (CorruptDumpError, FaultError, SymbolNotFoundError) as exc:
        # Without ORC every frame is the kernel's orc_fp_entry guess plus the stack scan, all
        # unreliable; the traces say why.
        orc, error, complete = OrcTables([]), str(exc), False
    else:
        modules, complete = _module_tables(prog, vmlinux.format, vmlinux.registers)
        orc = OrcTables([vmlinux, *modules])
    return _MachineKernel(arch_unwinder("x86_64"), _x86_64_cpu_stacks, _x86_64_task_start(prog),
                          _text_ranges(prog, orc, complete), orc, error, complete)


def _aarch64_machine(prog: Program) -> _MachineKernel:
    text, complete = _aarch64_text_ranges(prog)
    return _MachineKernel(Aarch64Unwinder(_aarch64_kernel(prog)), _aarch64_cpu_stacks, _aarch64_task_start(prog),
                          text, modules_complete=complete)


# How the unwinder's view of the kernel is found on each machine (Program.machine)
_MACHINES: dict[str, Callable[[Program], _MachineKernel]] = {
    "x86_64": _x86_64_machine,
    "aarch64": _aarch64_machine,
}


def _x86_64_task_start(prog: Program) -> _TaskStart:
    # From the struct inactive_task_frame at task->thread.sp; a pc at ret_from_fork (a task that
    # has never run) is not a return address.
    layout = _task_frame_layout(prog)
    ret_from_fork = _symbol_or_none(prog, "ret_from_fork_asm") or _symbol_or_none(prog, "ret_from_fork")

    def start(task: Object) -> tuple[Registers, bool]:
        thread_sp = int(task.thread.sp)
        try:
            frame = prog.memory.read(thread_sp, layout.size)
        except FaultError as exc:
            raise _NoStart(f"cannot read the saved frame at thread.sp {thread_sp:#x}: {exc.reason}") from exc
        regs = inactive_task_frame_registers(frame, thread_sp, layout.members, layout.size)
        return regs, regs["rip"] == ret_from_fork

    return start


def _aarch64_task_start(prog: Program) -> _TaskStart:
    # From task->thread.cpu_context, saved by cpu_switch_to(): pc is a return address.
    context_type = prog.type("struct cpu_context")
    members = {m.name: bits // 8 for m, bits in context_type.iter_members() if m.name}
    size = context_type.sizeof()

    def start(task: Object) -> tuple[Registers, bool]:
        address = int(task.thread.cpu_context.address_of_())
        try:
            data = prog.memory.read(address, size)
        except FaultError as exc:
            raise _NoStart(f"cannot read thread.cpu_context at {address:#x}: {exc.reason}") from exc
        return cpu_context_registers(data, members), False

    return start


# OVERFLOW_STACK_SIZE (arch/arm64/include/asm/stacktrace.h) when the variable's type is not known
_AARCH64_OVERFLOW_STACK_SIZE = 4096
_U64_MASK = (1 << 64) - 1


def _aarch64_cpu_stacks(prog: Program, cpu: int, thread_size: int) -> list[StackRange]:
    # IRQ_STACK_SIZE and SDEI_STACK_SIZE are THREAD_SIZE; irq_stack_ptr and the SDEI pointers hold
    # the stacks' bases (arch/arm64/kernel/irq.c, sdei.c)
    offset = per_cpu_offset(prog, cpu)
    stacks = []
    for name, label in (("irq_stack_ptr", "IRQ"), ("sdei_stack_normal_ptr", "SDEI"),
                        ("sdei_stack_critical_ptr", "SDEI critical")):
        symbol = _symbol_or_none(prog, name)
        base = prog.read_u64((symbol + offset) & _U64_MASK) if symbol is not None else 0
        if base:
            stacks.append(StackRange(base, base + thread_size, f"{label} {cpu}"))
    overflow = _symbol_or_none(prog, "overflow_stack")
    if overflow is not None:
        try:
            size = prog["overflow_stack"].type_.sizeof()
        except (KcrashError, LookupError):
            size = _AARCH64_OVERFLOW_STACK_SIZE
        base = (overflow + offset) & _U64_MASK
        stacks.append(StackRange(base, base + size, f"overflow {cpu}"))
    return stacks


def _aarch64_kernel(prog: Program) -> Aarch64Kernel:
    pt_regs = prog.type("struct pt_regs")
    stackframe = offsetof(pt_regs, "stackframe")
    # Since Linux kernel commit c2c6b27b5aa1 (v6.13) pt_regs->stackframe is a struct
    # frame_record_meta whose type tells a pt_regs record from the final one.
    try:
        meta: int | None = offsetof(prog.type("struct frame_record_meta"), "type")
    except (TypeLookupError, KcrashError, LookupError):
        meta = None
    entry = _symbol_or_none(prog, "__entry_text_start"), _symbol_or_none(prog, "__entry_text_end")
    table = prog.symbol_table

    def function_start(pc: int) -> int | None:
        found = table.symbolize_or_none(pc) if table is not None else None
        return found[0].address if found is not None else None

    return Aarch64Kernel(_aarch64_pac_mask(prog), stackframe, pt_regs.sizeof(), meta,
                         ((entry[0], entry[1]),) if entry[0] is not None and entry[1] is not None else (),
                         function_start)


def _aarch64_pac_mask(prog: Program) -> int:
    # NUMBER(KERNELPACMASK) when the kernel signs return addresses; else the bits a kernel address
    # has set above VA_BITS (setting them again is harmless), GENMASK(54, VA_BITS)
    info = prog.vmcoreinfo
    mask = info.get_number_or_none("KERNELPACMASK") if info is not None else None
    if mask:
        return mask
    va_bits = (info.get_number_or_none("VA_BITS") if info is not None else None) or 48
    return ((1 << 55) - 1) & ~((1 << va_bits) - 1)


def _aarch64_text_ranges(prog: Program) -> tuple[list[tuple[int, int]], bool]:
    # vmlinux text, init text and each module's text (struct module_memory mem[MOD_TEXT] since
    # Linux kernel commit ac3b43283923 (v6.4), core_layout before)
    text = [(prog.symbol_address("_stext"), prog.symbol_address("_etext"))]
    init = _symbol_or_none(prog, "_sinittext"), _symbol_or_none(prog, "_einittext")
    if init[0] is not None and init[1] is not None:
        text.append((init[0], init[1]))
    walk = list_for_each_entry("struct module", prog["modules"].address_of_(), "list", limit=10_000)
    complete = True
    for mod in walk:
        try:
            try:
                mem = mod.mem[0]
                base, size = int(mem.base), int(mem.size)
            except AttributeError:
                base, size = int(mod.core_layout.base), int(mod.core_layout.text_size)
        except (KcrashError, LookupError, AttributeError):
            complete = False
            continue
        if base and 0 < size < 1 << 30:
            text.append((base, base + size))
    return text, complete and walk.truncated is None
