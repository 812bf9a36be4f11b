"""Oracle (issue 21): kcrash reads Debian's arm64 dumps with NO vmlinux — kallsyms from VMCOREINFO, BTF,
modules, tasks, dmesg, symbol lookups, ``rd``/``vtop`` — as drgn 0.3.0 does given the arm64 ``-dbg``
vmlinux and the lab module's .ko. Both dump files of each arm64 lab crash are read by kcrash (QEMU's ELF
and its flattened kdump-compressed file, whose header names the machine "Unknown"); drgn reads the ELF.

Compared, per dump: the task set (pid, comm, state letter); dmesg line for line; the module list
(name, base, size); 10,000 symbol lookups at addresses drawn from the -dbg vmlinux's ELF symbol table
(kcrash's kallsyms answer against drgn's, with test_kallsyms_drgn.py's alias/nested/gap rules and one
more, "omitted": symbols scripts/mksysmap leaves out of kallsyms, ``__efistub_*`` on arm64); and
1,000 addresses translated and read (linear map, kernel image, vmalloc'd stacks, module memory).

Debian's 6.1 arm64 kernel is built without ``CONFIG_KALLSYMS_ALL``: its kallsyms has only text symbols
(50,336: no ``init_task``, ``__start_BTF``, ``modules``), and its image package's System.map is a stub.
kcrash recovers the data symbols it needs from the dump by structure (:mod:`kcrash.types.recover`,
checked against drgn in test_arm64_nosyms_drgn.py); here the library part of 6.1 is read with the -dbg
vmlinux's ELF symbol table as ``symbol_file`` (symbols only: types still come from the dump's BTF, no
DWARF is read), so the comparison does not depend on the recovery, and the CLI commands run with no
symbol file. Its 10,000 lookups are drawn from text symbols, which its kallsyms does hold.
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.target import open_target
from kcrash.analysis.triage import log_lines, printk_records
from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps import open_dump
from kcrash.errors import FaultError
from kcrash.helpers.linux.module import for_each_module, module_base, module_name, module_size
from kcrash.helpers.linux.sched import for_each_task, task_state_to_char
from kcrash.memory import open_kernel_memory
from kcrash.memory.kernel import KernelMemory
from kcrash.types.program import Program
from support.drgn_oracle import drgn_program

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

#: (kind, kernel, KASLR): both kernels, KASLR off and on (KERNELOFFSET non-zero)
CASES = [("BUG", "6.12", False), ("SYSRQ", "6.12", False), ("BUG", "6.12", True), ("BUG", "6.1", False),
         ("SYSRQ", "6.1", False), ("BUG", "6.1", True)]
FORMATS = ("vmcore.elf", "vmcore.kdump")
#: kernels whose kallsyms lacks data symbols (CONFIG_KALLSYMS_ALL unset in Debian's arm64 config)
TEXT_ONLY_KALLSYMS = frozenset({"6.1"})
SAMPLES = 10_000
#: symbol prefixes scripts/mksysmap filters out of System.map and so out of kallsyms (the EFI stub's and
#: the nVHE hypervisor's private namespaces, position-independent early code): the kernel's %pS names
#: the nearest kallsyms symbol below, as kcrash does ("omitted" below)
MKSYSMAP_DROPS = ("__efistub_", "__kvm_nvhe_", "__pi_")
ADDRESSES = 1_000


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-{c[1]}-arm64{'-kaslr' if c[2] else ''}")
def crash(request: pytest.FixtureRequest, lab_crash: Callable[..., Path],
          lab_vmlinux_dbg: Callable[..., Path]) -> tuple[Path, Any, str, Path]:
    kind, kernel, kaslr = request.param
    out = lab_crash(kind, kernel, kaslr, "arm64")
    vmlinux = lab_vmlinux_dbg(kernel, arch="arm64")
    dprog = drgn_program(out, vmlinux, other_modules=True)
    assert dprog.platform.arch == drgn.Architecture.AARCH64
    return out, dprog, kernel, vmlinux


@pytest.fixture(params=FORMATS)
def prog(request: pytest.FixtureRequest, crash: tuple[Path, Any, str, Path], tmp_path: Path) -> Iterator[Program]:
    out, _, kernel, vmlinux = crash
    symbol_file = vmlinux if kernel in TEXT_ONLY_KALLSYMS else None
    with open_target(out / request.param, tmp_path, symbol_file=symbol_file) as target:
        assert target.machine == "aarch64"
        yield target


def test_task_set_is_identical(prog: Program, crash: tuple[Path, Any, str, Path]) -> None:
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks
    from drgn.helpers.linux.sched import task_state_to_char as drgn_state

    theirs = sorted((t.pid.value_(), t.comm.string_(), drgn_state(t)) for t in drgn_tasks(crash[1]))
    walk = for_each_task(prog)
    ours = sorted((int(t.pid), t.comm.string_(), task_state_to_char(t)) for t in walk)
    assert walk.truncated is None
    assert len(ours) > 50
    assert ours == theirs


def test_dmesg_is_identical_line_for_line(prog: Program, crash: tuple[Path, Any, str, Path]) -> None:
    from drgn.helpers.linux.printk import get_dmesg

    theirs = get_dmesg(crash[1]).decode("utf-8", "backslashreplace").split("\n")
    ours = [*"\n".join(line.formatted() for line in log_lines(printk_records(prog))).split("\n"), ""]
    assert len(ours) > 200
    assert ours == theirs


def test_module_list_is_identical(prog: Program, crash: tuple[Path, Any, str, Path]) -> None:
    from drgn.helpers.linux.module import for_each_module as drgn_modules
    from drgn.helpers.linux.module import module_address_regions

    dprog = crash[1]
    theirs = []
    for m in drgn_modules(dprog):
        regions = module_address_regions(m)
        enum = dprog.type("enum mod_mem_type") if "mem" in {f.name for f in m.type_.type.members} else None
        if enum is None:
            size = m.core_layout.size.value_()
        else:
            core = [v for n, v in enum.enumerators if not n.startswith("MOD_INIT_")
                    and 0 <= v < dprog["MOD_MEM_NUM_TYPES"]]
            size = sum(m.mem[v].size.value_() for v in core)
        theirs.append((m.name.string_().decode(), regions[0][0], size))
    ours = [(module_name(m), module_base(m), module_size(m)) for m in for_each_module(prog)]
    assert len(ours) >= 2 and "kcrash_test" in {name for name, _, _ in ours}
    assert ours == theirs


def _classify(table: SymbolTable, dprog: Any, address: int) -> str:
    # exact, or one of test_kallsyms_drgn.py's documented kallsyms-vs-ELF differences
    found = table.symbolize_or_none(address)
    if found is None:
        return "none"
    ours = found[0]
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
    if theirs is not None and theirs.name.startswith(MKSYSMAP_DROPS) and not table.has_symbol(theirs.name) \
            and ours.address <= address:
        return "omitted"
    return "unexplained"


@pytest.mark.parametrize("fmt", FORMATS)
def test_symbol_lookups_agree_with_drgn(crash: tuple[Path, Any, str, Path], fmt: str, tmp_path: Path) -> None:
    # the dump's own kallsyms (never a symbol file), asked at addresses inside the -dbg vmlinux's symbols
    out, dprog, kernel, _ = crash
    mem = open_kernel_memory(open_dump(out / fmt))
    table = load_kallsyms(mem, mem.vmcoreinfo, tmp_path)
    text_only = kernel in TEXT_ONLY_KALLSYMS
    if text_only:
        assert not table.has_symbol("init_task")
    kinds = (drgn.SymbolKind.FUNC,) if text_only else (drgn.SymbolKind.FUNC, drgn.SymbolKind.OBJECT)
    stext = table.address_of("_stext")
    pool = [s for s in dprog.symbols() if s.kind in kinds and s.size > 0 and s.address >= stext - 0x10000
            and s.binding != drgn.SymbolBinding.UNKNOWN and table.symbolize_or_none(s.address) is not None]
    assert len(pool) > 20_000
    rng = random.Random(21)
    counts = collections.Counter()
    for _ in range(SAMPLES):
        sym = rng.choice(pool)
        counts[_classify(table, dprog, sym.address + rng.randrange(sym.size))] += 1
    print(f"\n  {kernel} {fmt}: {table.num_symbols():,} kallsyms symbols, lookups {dict(counts)}")
    assert counts["unexplained"] == counts["bad alias"] == counts["none"] == 0
    assert counts["exact"] + counts["alias"] >= 0.8 * SAMPLES


def _drawn_addresses(dprog: Any) -> list[int]:
    # drawn by drgn: the linear map over RAM, the kernel image, vmalloc'd task stacks, module memory
    from drgn.helpers.linux.mm import phys_to_virt
    from drgn.helpers.linux.module import for_each_module as drgn_modules
    from drgn.helpers.linux.module import module_address_regions
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks

    rng = random.Random(1000)
    ram_start = dprog["memstart_addr"].value_()
    ram = (dprog["max_pfn"].value_() << 12) - ram_start
    # the image's end: the highest sized symbol above _stext (drgn leaves the linker's absolute _end
    # unrelocated under KASLR)
    stext = dprog.symbol("_stext").address
    end = max(s.address + s.size for s in dprog.symbols() if stext <= s.address < stext + (1 << 28))
    stacks = [t.stack.value_() for t in drgn_tasks(dprog)]
    regions = [(base, size) for m in drgn_modules(dprog) for base, size in module_address_regions(m) if size]
    return ([phys_to_virt(dprog, ram_start + rng.randrange(ram)).value_() for _ in range(300)]
            + [rng.randrange(stext, end) for _ in range(300)]
            + [rng.choice(stacks) + rng.randrange(16 << 10) for _ in range(200)]
            + [base + rng.randrange(size) for base, size in (rng.choice(regions) for _ in range(200))])


@pytest.mark.parametrize("fmt", FORMATS)
def test_rd_vtop_agree_with_drgn(crash: tuple[Path, Any, str, Path], fmt: str) -> None:
    from drgn.helpers.linux.mm import follow_phys

    out, dprog, kernel, _ = crash
    mem = open_kernel_memory(open_dump(out / fmt))
    assert isinstance(mem, KernelMemory) and mem.machine == "aarch64"
    init_mm = dprog["init_mm"].address_of_()
    addrs = _drawn_addresses(dprog)
    assert len(addrs) == ADDRESSES
    mapped = same_bytes = 0
    for addr in addrs:
        try:
            ours: int | None = mem.translate(addr)
        except FaultError:
            ours = None
        try:
            theirs = follow_phys(init_mm, addr).value_()
        except drgn.FaultError:
            theirs = None
        assert ours == theirs, hex(addr)
        if ours is None:
            continue
        mapped += 1
        assert mem.read(addr, 16) == dprog.read(addr, 16), hex(addr)
        assert mem.read(ours, 16, physical=True) == dprog.read(theirs, 16, True), hex(addr)
        same_bytes += 1
    print(f"\n  {kernel} {fmt}: {mapped} of {len(addrs)} mapped, bytes equal at {same_bytes}")
    assert mapped > 900


def _cli(*args: str) -> Any:
    from click.testing import CliRunner

    from kcrash.cli.app import kcrash

    return CliRunner().invoke(kcrash, list(args))


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_commands_on_arm64_dumps(crash: tuple[Path, Any, str, Path], fmt: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    # kcrash sys/ps/log/mod/rd/vtop/sym with no vmlinux and no symbol file, on 6.1 too
    from drgn.helpers.linux.mm import follow_phys
    from drgn.helpers.linux.module import for_each_module as drgn_modules
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks
    from drgn.helpers.linux.printk import get_dmesg

    out, dprog, _, _ = crash
    dump = str(out / fmt)
    uts = dprog["init_uts_ns"].address_of_().value_()
    # 6.1's text-only kallsyms: the data symbols are recovered from the dump by structure (types.recover)
    results = {name: _cli(name, dump) for name in ("sys", "ps", "mod")}
    assert all(r.exit_code == 0 for r in results.values()), {n: r.output for n, r in results.items()}
    assert "MACHINE: aarch64" in results["sys"].output
    assert f"RELEASE: {dprog['init_uts_ns'].name.release.string_().decode()}" in results["sys"].output
    # ps lists each CPU's idle task (pid 0) too; drgn's for_each_task walks init_task's list, without them
    # (stdout only: on 6.1 stderr has the one-line warning naming the recovered symbols)
    rows = [line.lstrip("> ").split() for line in results["ps"].stdout.strip().splitlines()[1:]]
    assert sorted(int(r[0]) for r in rows if r[0] != "0") == sorted(t.pid.value_() for t in drgn_tasks(dprog))
    assert sum(r[0] == "0" for r in rows) == 2  # the lab's two vCPUs
    names = {m.name.string_().decode() for m in drgn_modules(dprog)}
    assert {line.split()[0] for line in results["mod"].stdout.strip().splitlines()[1:]} == names
    log = _cli("log", dump)
    assert log.exit_code == 0
    assert log.stdout.rstrip("\n").splitlines()[-1] == get_dmesg(dprog).decode().rstrip("\n").splitlines()[-1]
    rd = _cli("rd", dump, "-64", "-n", "2", f"{uts:#x}")
    assert rd.exit_code == 0
    words = [int(w, 16) for w in rd.stdout.split()[1:3]]
    assert words == [int.from_bytes(dprog.read(uts + 8 * i, 8), "little") for i in range(2)]
    vtop = _cli("vtop", dump, f"{uts:#x}", "--json")
    assert vtop.exit_code == 0
    assert int(json.loads(vtop.stdout)["physical"], 16) == follow_phys(dprog["init_mm"].address_of_(), uts).value_()
    schedule = dprog.symbol("schedule").address
    sym = _cli("sym", dump, f"{schedule + 4:#x}")
    assert sym.exit_code == 0 and "schedule+0x4" in sym.output
    missing = _cli("sym", dump, "no_such_symbol_anywhere")
    assert missing.exit_code != 0 and "Traceback" not in missing.output


def test_current_and_page_layout_agree_with_drgn(prog: Program, crash: tuple[Path, Any, str, Path]) -> None:
    # arm64's current is sp_el0 (not saved): kcrash reads the per-CPU __entry_task, drgn's cpu_curr the
    # runqueue's curr; pfn <-> virtual <-> struct page through PHYS_OFFSET and VMEMMAP_START / SYMBOL(vmemmap)
    from drgn.helpers.linux.mm import pfn_to_page as drgn_pfn_to_page
    from drgn.helpers.linux.mm import pfn_to_virt as drgn_pfn_to_virt
    from drgn.helpers.linux.sched import cpu_curr

    from kcrash.helpers.linux.mm import pfn_to_page, pfn_to_virt, virt_to_pfn
    from kcrash.helpers.linux.percpu import this_cpu_current

    dprog = crash[1]
    assert [int(this_cpu_current(prog, cpu)) for cpu in (0, 1)] == [cpu_curr(dprog, cpu).value_() for cpu in (0, 1)]
    first = dprog["memstart_addr"].value_() >> 12
    rng = random.Random(7)
    for pfn in [first, *(first + rng.randrange(dprog["max_pfn"].value_() - first) for _ in range(200))]:
        virt = int(pfn_to_virt(prog, pfn))
        assert virt == drgn_pfn_to_virt(dprog, pfn).value_()
        assert virt_to_pfn(prog, virt) == pfn
        assert int(pfn_to_page(prog, pfn)) == drgn_pfn_to_page(dprog, pfn).value_()


def test_kallsyms_found_by_structure_without_vmcoreinfo_lines(crash: tuple[Path, Any, str, Path]) -> None:
    # kernels before 6.0 name no kallsyms_* in VMCOREINFO: the finder locates the tables in the arm64
    # image from SYMBOL(_stext) alone, and decodes the same table as the VMCOREINFO lines give
    from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo

    mem = open_kernel_memory(open_dump(crash[0] / "vmcore.elf"))
    assert mem.vmcoreinfo is not None
    stripped = parse_vmcoreinfo("\n".join(line for line in mem.vmcoreinfo.text.splitlines()
                                          if not line.startswith("SYMBOL(kallsyms_")))
    assert not any(name.startswith("kallsyms_") for name in stripped.symbols)
    found, given = load_kallsyms(mem, stripped, None), load_kallsyms(mem, mem.vmcoreinfo, None)
    assert [(s.name, s.address, s.kind) for s in found.iter_symbols()] == \
        [(s.name, s.address, s.kind) for s in given.iter_symbols()]
    assert found.num_symbols() > 50_000
