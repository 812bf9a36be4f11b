"""types.program's target API (issue 22 item 2): what helpers ask of a target beyond memory, symbols
and types — CPUs' saved registers, layout, KASLR offset, page tables, VMCOREINFO, symbol lookups,
``prog.cache`` — answered by the Program itself for a dump's kernel memory and for a flat reader (a
synthetic or live-like backend), with documented empty answers where a backend lacks a fact. And the
proof that it matters: panic helpers that used to downcast ``prog.memory`` to ``KernelMemory`` now
work through a Program whose memory is a plain reader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.cpustate import CpuState, PrStatus
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.errors import MissingDebugInfoError, SymbolNotFoundError
from kcrash.helpers.linux.panic import crash_context, panic_cpu_or_none, taint_flags
from kcrash.helpers.linux.sched import task_state_to_char
from kcrash.memory import KernelLayout, KernelMemory, MemoryReader, SegmentMap
from kcrash.types.program import Program
from support.state_kernel import Kernel, func
from support.task_kernel import Kernel as TaskKernel

TEXT = 0xFFFFFFFF81000000
_PAGE = 1 << 12


def _cpu(cpu: int, rip: int, rsp: int) -> CpuState:
    return CpuState(cpu, PrStatus(cpu + 1, 0, {"rip": rip, "rsp": rsp}), None)


def _table() -> SymbolTable:
    return SymbolTable(["_stext", "start_kernel", "panic", "_end"],
                       [TEXT, TEXT + 0x100, TEXT + 0x180, TEXT + 0x1000], "TTTT")


class _NameOnly:
    # a SymbolSource that only maps names to addresses (no sizes, no lookups by address)
    def address_of(self, name: str) -> int:
        if name != "panic":
            raise SymbolNotFoundError(name)
        return TEXT + 0x180


def _flat(symbols: SymbolTable | _NameOnly | None = None) -> Program:
    segments = SegmentMap()
    data = bytes(_PAGE)
    segments.add_segment(TEXT, _PAGE, lambda offset, size: data[offset:offset + size], physical=False)
    return Program(MemoryReader(segments), symbols)


def _kernel_memory(cpus: list[CpuState], *, kaslr: int | None, pgd: int | None = None) -> KernelMemory:
    segments = SegmentMap()
    page = bytes(_PAGE)
    segments.add_segment(0, _PAGE, lambda offset, size: page[offset:offset + size], physical=True)
    info = parse_vmcoreinfo("OSRELEASE=6.12.0\nKERNELOFFSET=2a000000\n")
    return KernelMemory(segments, KernelLayout(pgd, 4, kaslr, 0, "vmcoreinfo"), cpus, info)


# -- a dump's kernel memory ---------------------------------------------------------------------


def test_a_dump_programs_facts_are_its_kernel_memorys() -> None:
    cpus = [_cpu(0, TEXT + 0x104, 0xFFFFC90000003F00), _cpu(1, TEXT + 0x184, 0xFFFFC90000007F00)]
    memory = _kernel_memory(cpus, kaslr=0x2A000000, pgd=0)
    prog = Program(memory, _table())
    assert prog.cpus is memory.cpus and [c.cpu for c in prog.cpus] == [0, 1]
    assert prog.layout is memory.layout and prog.kaslr_offset == 0x2A000000
    assert prog.vmcoreinfo is memory.vmcoreinfo  # taken from the memory when not given
    assert prog.page_tables is memory.page_tables is not None
    user = prog.page_tables_at(0)
    assert (user.root, user.levels) == (0, 4) and user.read_phys is memory.page_tables.read_phys


def test_setting_the_cpus_of_a_dump_program_sets_its_memorys() -> None:
    # live_program gives a stopped kernel its vCPUs' registers so; the memory's readers see them too
    memory = _kernel_memory([], kaslr=0)
    prog = Program(memory)
    states = [_cpu(0, TEXT, 0)]
    prog.cpus = states
    assert memory.cpus is states and prog.cpus is states


def test_an_explicit_vmcoreinfo_wins_over_the_memorys() -> None:
    info = parse_vmcoreinfo("OSRELEASE=6.1.0\n")
    assert Program(_kernel_memory([], kaslr=None), vmcoreinfo=info).vmcoreinfo is info


# -- a flat reader (synthetic kernels, a backend without paging) -----------------------------------


def test_a_flat_program_has_no_cpus_layout_or_page_tables() -> None:
    prog = _flat()
    assert prog.cpus == [] and prog.layout is None and prog.page_tables is None
    assert prog.vmcoreinfo is None and prog.kaslr_offset is None
    with pytest.raises(MissingDebugInfoError, match="no kernel page tables"):
        prog.page_tables_at(0x1000)


def test_a_flat_program_keeps_the_cpus_it_is_given() -> None:
    prog = _flat()
    states = [_cpu(0, TEXT, 0), _cpu(1, TEXT + 8, 0)]
    prog.cpus = states
    assert prog.cpus is states


def test_without_a_layout_the_kaslr_offset_is_vmcoreinfos() -> None:
    segments = SegmentMap()
    prog = Program(MemoryReader(segments), vmcoreinfo=parse_vmcoreinfo("KERNELOFFSET=1c000000\n"))
    assert prog.kaslr_offset == 0x1C000000


# -- symbols --------------------------------------------------------------------------------------


def test_symbol_lookups_are_the_tables() -> None:
    table = _table()
    prog = _flat(table)
    assert prog.symbol_table is table
    for address in (TEXT + 0x100, TEXT + 0x1A0, TEXT + 0x2000, 0x1234):
        assert prog.symbolize_or_none(address) == table.symbolize_or_none(address)
        assert prog.containing_symbol_or_none(address) == table.containing_symbol_or_none(address)
        assert prog.format_address(address) == table.format_address(address)
    assert prog.format_address(TEXT + 0x184) == "panic+0x4/0xe80"
    assert prog.get_symbol_by_name("start_kernel") == table.get_symbol_by_name("start_kernel")
    with pytest.raises(SymbolNotFoundError):
        prog.get_symbol_by_name("no_such_symbol")


@pytest.mark.parametrize("symbols", [None, _NameOnly()], ids=["no symbols", "names only"])
def test_without_a_table_address_lookups_are_empty(symbols: _NameOnly | None) -> None:
    prog = _flat(symbols)
    assert prog.symbol_table is None
    assert prog.symbolize_or_none(TEXT + 0x184) is None
    assert prog.containing_symbol_or_none(TEXT + 0x184) is None
    assert prog.format_address(TEXT + 0x184) == "0xffffffff81000184"
    with pytest.raises(MissingDebugInfoError, match="needs a symbol table"):
        prog.get_symbol_by_name("panic")


# -- prog.cache -----------------------------------------------------------------------------------


def test_the_cache_is_per_program_and_helpers_use_it() -> None:
    k, other = TaskKernel(), _flat()
    k.prog.cache["mine"] = 1
    assert "mine" not in other.cache
    letters = taint_flags(k.prog)
    task_state_to_char(k.obj(k.task(7, 7, b"sleeper", state=1)))
    cached = {key: value for key, value in k.prog.cache.items() if key != "mine"}
    assert letters in cached.values() and len(cached) == 2  # taint_flags[] and task_state_array's letters
    assert taint_flags(k.prog) is letters  # read once per program
    assert not [name for name in vars(k.prog) if name.startswith("_kcrash_")]


# -- a helper that used to downcast, through a plain reader ---------------------------------------


def test_panic_helpers_work_through_a_program_whose_memory_is_not_kernel_memory() -> None:
    # Before issue 22, crash_context and the halted-CPU rule of panic_cpu_or_none asked
    # isinstance(prog.memory, KernelMemory) and gave up on any other backend.
    k = Kernel()
    assert not isinstance(k.prog.memory, KernelMemory)
    busy, idle = k.task(42, b"panicker"), k.task(0, b"swapper/1")
    k.runqueue(0, curr=busy, idle=idle, nr_running=1, clock=1000)
    k.runqueue(1, curr=idle, idle=idle, nr_running=0, clock=1000)
    running, halted = func("process_timeout") + 8, func("hrtimer_wakeup") + 8
    k.put(running - 1, b"\x90")
    k.put(halted - 1, b"\xf4")  # stop_this_cpu's hlt: the CPU the panic stopped
    k.prog.cpus = [_cpu(0, running, 0xFFFFC90000003F00), _cpu(1, halted, 0xFFFFC90000007F00)]
    assert panic_cpu_or_none(k.prog) == 0
    ctx = crash_context(k.prog)
    assert (ctx.cpu, ctx.pid, ctx.comm, ctx.task) == (0, 42, b"panicker", busy)
    assert (ctx.ip, ctx.sp) == (running, 0xFFFFC90000003F00)


def test_without_cpus_the_panic_helpers_say_so() -> None:
    k = Kernel()
    assert panic_cpu_or_none(k.prog) is None
    with pytest.raises(MissingDebugInfoError, match="no registers for CPU 1"):
        crash_context(k.prog, 1)


def test_no_layer_above_types_looks_behind_the_program() -> None:
    # helpers, analysis and cli ask the Program (and analysis.live.kernel_binder_or_none), never
    # downcast its parts or stash attributes on it
    src = Path(__file__).resolve().parents[3] / "src" / "kcrash"
    banned = re.compile(r"isinstance\([^)]*\b(?:SymbolTable|KernelMemory|KernelBinder)\b|[sg]etattr\((?:self\.)?prog\b")
    found = [f"{path.relative_to(src)}: {m.group(0)}" for layer in ("helpers", "analysis", "cli")
             for path in sorted((src / layer).rglob("*.py")) for m in banned.finditer(path.read_text(encoding="utf-8"))]
    assert found == []
