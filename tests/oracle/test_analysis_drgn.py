"""Oracle: issue 4's "done when" list. kcrash opens each dump with NO vmlinux
(:func:`kcrash.analysis.target.open_target`: kallsyms, in-memory BTF, module symbols/BTF/ORC) and is
compared with drgn given the Debian -dbg vmlinux and the module's .ko, on lab dumps of 6.1, 6.12,
Debian 11's 5.10 (whose VMCOREINFO has no kallsyms lines: the tables are found by structure) and sid's
7.2 (ORC registers renumbered; no lab module builds there), KASLR on and off, ELF and kdump formats:

* the task set (pid, comm, state letter), dmesg line for line, the module list (name, base);
* symbol lookup of 10,000 random kernel text addresses on the ELF file (with the documented kallsyms-vs-ELF
  differences of ``test_kallsyms_drgn.py``: alias, nested label, gap past an ELF size); the kdump file's
  whole symbol table must equal the ELF file's, symbol for symbol;
* the crashed thread's backtrace frame by frame on drgn's physical frames (pc, and symbol name wherever
  drgn names one: drgn's ELF name must be kcrash's name or one of its aliases), and >= 95% of all tasks;
* the lab module's planted objects through typed walks, with module symbols and BTF read from memory;
* the planted corruption (a list cycle, a pointer to freed vmalloc memory) ends in a marked truncation.

drgn always reads the ELF dump (the same memory); kcrash reads ELF and kdump.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.target import module_debuginfo, open_target
from kcrash.analysis.triage import log_lines, printk_records, symbolize_trace
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import FaultError
from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.helpers.linux.module import for_each_module, module_base, module_name
from kcrash.helpers.linux.panic import panic_cpu_or_none
from kcrash.helpers.linux.sched import for_each_task, task_state_to_char
from kcrash.helpers.linux.stack import stack_trace
from kcrash.types.object import Object
from kcrash.types.program import Program
from support.drgn_oracle import (
    KDUMP_KCRASH,
    case_id,
    drgn_program,
    is_kdump,
    lab_info,
    skip_kdump_pair,
    skip_lost_slab,
)

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

_USER_TOP = 0xFFFF800000000000
#: (kind, kernel, KASLR): both kernels, KASLR on and off; each is read from ELF and kdump
CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), ("HUNG_ABBA", "6.12", False), ("BUG", "5.10", True),
         ("SYSRQ", "7", False), *KDUMP_KCRASH]
FORMATS = ("vmcore.elf", "vmcore.kdump")
SAMPLES = 10_000


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, dict[str, Any]]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    info = lab_info(out)
    vmlinux = lab_vmlinux_dbg(kernel)
    dprog = drgn_program(out, vmlinux, other_modules=True)
    return out, dprog, info


@pytest.fixture(params=FORMATS)
def prog(request: pytest.FixtureRequest, crash: tuple[Path, Any, dict[str, Any]],
         tmp_path: Path) -> Iterator[Program]:
    if request.param == "vmcore.kdump":
        skip_kdump_pair(crash[0])
    with open_target(crash[0] / request.param, tmp_path) as target:
        yield target


def _task(prog: Program, address: int) -> Object:
    return Object(prog, prog.pointer_type("struct task_struct"), address)


def _needs_module_btf(lab: dict[str, Any]) -> None:
    if not lab["module"]:
        pytest.skip("the lab module does not build for this kernel (see kcrash.lab.debian): nothing is planted")
    if not lab["module"]["btf"]:
        pytest.skip("the lab module was built without BTF for this kernel (its headers carry no vmlinux BTF), "
                    "so its planted types are unknown without debuginfo")


def test_task_set_is_identical(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks
    from drgn.helpers.linux.sched import task_state_to_char as drgn_state

    dprog = crash[1]
    theirs = sorted((t.pid.value_(), t.comm.string_(), drgn_state(t)) for t in drgn_tasks(dprog))
    walk = for_each_task(prog)
    ours = sorted((int(t.pid), t.comm.string_(), task_state_to_char(t)) for t in walk)
    assert walk.truncated is None
    assert len(ours) > 50
    assert ours == theirs


def test_dmesg_is_identical_line_for_line(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.printk import get_dmesg

    theirs = get_dmesg(crash[1]).decode("utf-8", "backslashreplace").split("\n")
    ours = [*"\n".join(line.formatted() for line in log_lines(printk_records(prog))).split("\n"), ""]
    assert len(ours) > 200
    assert ours == theirs


def test_module_list_is_identical(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.module import for_each_module as drgn_modules
    from drgn.helpers.linux.module import module_address_regions

    theirs = [(m.name.string_().decode(), module_address_regions(m)[0][0]) for m in drgn_modules(crash[1])]
    ours = [(module_name(m), module_base(m)) for m in for_each_module(prog)]
    assert ours == theirs
    loaded, truncated = module_debuginfo(prog)
    assert truncated is None and all(i.error is None and i.num_symbols for i in loaded)
    # module BTF exists since v5.11 (CONFIG_DEBUG_INFO_BTF_MODULES); the lab builds its module with BTF
    # exactly when the kernel has it
    if crash[2]["module"]:
        assert all(bool(i.btf_size) == crash[2]["module"]["btf"] for i in loaded)


def _classify(table: SymbolTable, dprog: Any, address: int) -> str:
    # exact, or one of the documented kallsyms-vs-ELF differences (see test_kallsyms_drgn.py)
    ours = table.symbolize(address)[0]
    try:
        theirs = dprog.symbol(address)
    except LookupError:
        theirs = None
    if theirs is not None and (theirs.name, theirs.address) == (ours.name, ours.address):
        return "exact"
    if theirs is not None and theirs.address == ours.address:
        return "alias" if theirs.name in {s.name for s in table.get_aliases(ours)} else "bad alias"
    elf = [s for s in dprog.symbols(ours.name) if s.address == ours.address]
    if theirs is not None and theirs.address < ours.address < theirs.address + theirs.size and elf:
        return "nested"
    if theirs is None and elf and address >= elf[0].address + max(s.size for s in elf):
        return "gap"
    return "unexplained"


def test_symbol_lookup_agrees_for_random_text_addresses(prog: Program, crash: tuple[Path, Any, dict[str, Any]],
                                                         tmp_path: Path) -> None:
    if is_kdump(crash[0]):
        pytest.skip("10,000 symbol lookups (~40 s a dump) of the kernel's own kallsyms: read on its QEMU dumps")
    table = prog.symbols
    assert isinstance(table, SymbolTable)
    if prog.dump is not None and Path(prog.dump.path).name != "vmcore.elf":
        # The kdump file holds the same memory as the ELF one: its table must be the ELF reading's,
        # symbol for symbol (drgn is asked the 10,000 addresses once per crash, on the ELF file).
        with open_target(crash[0] / "vmcore.elf", tmp_path) as elf:
            assert isinstance(elf.symbols, SymbolTable)
            assert [(s.name, s.address, s.kind, s.module) for s in table.iter_symbols()] == \
                [(s.name, s.address, s.kind, s.module) for s in elf.symbols.iter_symbols()]
        return
    stext, etext = table.address_of("_stext"), table.address_of("_etext")
    rng = random.Random(4)
    counts = collections.Counter(_classify(table, crash[1], rng.randrange(stext, etext)) for _ in range(SAMPLES))
    print(f"\n  symbols: {dict(counts)}")
    assert counts["unexplained"] == counts["bad alias"] == 0
    assert counts["exact"] + counts["alias"] >= 0.8 * SAMPLES


def _drgn_frames(trace: Any) -> list[tuple[int, str | None]]:
    frames = []
    for frame in trace:
        if frame.is_inline:
            continue
        if frame.pc < _USER_TOP:
            break
        try:
            name = frame.symbol().name
        except LookupError:
            name = None
        frames.append((frame.pc, name))
    return frames


def _names_agree(table: SymbolTable, dprog: Any, pc: int, kind: str, theirs: str | None) -> bool:
    # same name, or the alias / nested-label rules of test_kallsyms_drgn.py (the kernel's own %pS,
    # like kcrash, names entry_SYSCALL_64_after_hwframe, a label inside drgn's sized entry_SYSCALL_64)
    lookup = pc - 1 if kind in ("call", "scan") else pc
    found = table.symbolize_or_none(lookup)
    if theirs is None or found is None:
        return theirs is None
    ours = found[0]
    if ours.name == theirs or theirs in {s.name for s in table.get_aliases(ours)}:
        return True
    elf = dprog.symbol(lookup)
    return bool(elf.name == theirs and elf.address < ours.address < elf.address + elf.size)


def test_crashed_thread_backtrace_is_identical(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    dprog = crash[1]
    cpu = panic_cpu_or_none(prog)
    assert cpu is not None
    ours = symbolize_trace(prog, stack_trace(prog, cpu))
    theirs = _drgn_frames(dprog.crashed_thread().stack_trace())
    assert [f.pc for f in ours.frames] == [pc for pc, _ in theirs]
    table = prog.symbols
    assert isinstance(table, SymbolTable)
    named = [(f.function, name) for f, (_, name) in zip(ours.frames, theirs, strict=True) if name is not None]
    assert len(named) == len(theirs), "drgn names every kernel frame of the crashed thread"
    for f, (pc, name) in zip(ours.frames, theirs, strict=True):
        assert _names_agree(table, dprog, pc, f.kind, name), (f.text, name)
    # a kdump panic's registers come from crash_setup_regs() in __crash_kexec(), which has no ORC: the
    # unwinder resumes at the caller a verified stack scan finds (unwind.arch.x86_64) and marks it '?'
    recovered = [1] if is_kdump(crash[0]) and ours.frames[0].function == "__crash_kexec" else []
    assert [i for i, f in enumerate(ours.frames) if not f.reliable] == recovered and ours.truncated is None


def test_all_task_backtraces_match(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks

    dprog = crash[1]
    tasks = list(drgn_tasks(dprog))
    bad = [t.pid.value_() for t in tasks
           if list(stack_trace(prog, _task(prog, t.value_())).pcs) != [pc for pc, _ in
                                                                       _drgn_frames(dprog.stack_trace(t))]]
    rate = 1 - len(bad) / len(tasks)
    print(f"\n  task backtraces: {len(tasks) - len(bad)}/{len(tasks)} identical ({rate:.1%}); differ: {bad}")
    assert rate >= 0.95


def test_planted_objects_by_typed_walks(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    _needs_module_btf(crash[2])
    planted = crash[2]["planted"]
    dprog = crash[1]
    # the addresses come from the module's own symbol table in memory, the types from its split BTF
    address = prog.symbol_address(planted["list"])
    assert address == planted["list_address"] == dprog[planted["list"]].address_
    walk = list_for_each_entry(f"struct {planted['object_struct']}", prog.object("struct list_head", address), "node")
    objs = list(walk)
    assert walk.truncated is None and len(objs) == planted["object_count"]
    assert {int(o.magic) for o in objs} == {planted["object_magic"]}
    assert sorted(int(o.id) for o in objs) == list(range(planted["object_count"]))
    assert all(o.tag.string_() == f"obj-{int(o.id)}".encode() for o in objs)
    glob = prog.object("struct kcrash_test_planted", prog.symbol_address(planted["global"]))
    theirs = dprog[planted["global"]]
    for field, expected in planted["global_values"].items():
        got = glob.member_(field).string_().decode() if field == "name" else glob.member_(field).value_()
        want = theirs.member_(field).string_().decode() if field == "name" else theirs.member_(field).value_()
        assert got == expected == want, field


def test_planted_corruption_ends_in_a_marked_truncation(prog: Program,
                                                        crash: tuple[Path, Any, dict[str, Any]]) -> None:
    _needs_module_btf(crash[2])
    planted = crash[2]["planted"]
    head = prog.object("struct list_head", prog.symbol_address(planted["cycle_list"]))
    walk = list_for_each_entry(f"struct {planted['object_struct']}", head, "node")
    ids = [int(o.id) for o in walk]
    assert ids == [1000, 1001, 1002] and len(ids) == planted["cycle_objects"]
    assert walk.truncated is not None and walk.truncated.startswith("cycle")
    dangling = prog.object(f"struct {planted['object_struct']} *", prog.symbol_address(planted["dangling_pointer"]))
    assert int(dangling) == crash[1][planted["dangling_pointer"]].value_()
    with pytest.raises(FaultError):
        int(dangling.magic)
