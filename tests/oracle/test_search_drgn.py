"""Oracle: ``kcrash search``, ``rd -s`` and ``sym`` patterns (issue 17) against drgn given the Debian
-dbg vmlinux and the lab module's .ko, on lab dumps of 6.1 (KASLR), 6.12 and Debian 11's 5.10 (KASLR).
kcrash reads the dumps with NO vmlinux.

* ``search`` finds every planted 0xFEEDFACE0BADC0DE: words 0 and 1234 of ``kcrash_test_vmalloc_buf``
  at their vmalloc addresses and direct-map aliases (``-k``) and physical addresses (``-p``: drgn's
  ``vmalloc_to_pfn``), and ``payload[1]`` of each of the 100 objects on ``kcrash_test_objects``
  (drgn's list walk; ``virt_to_phys``);
* the hits equal what drgn's own reads of the same ranges hold: every physical segment of the ELF
  file (``-p``) and every virtual run kcrash's page-table walk reports (``-k``), searched with numpy
  over drgn's ``prog.read``; and drgn translates sampled addresses of those runs (``follow_phys``
  through ``init_mm``) to the physical addresses the walk gives;
* a masked search over the vmalloc buffer equals the masked compare of drgn's read of it;
* ``rd -s`` names each word as drgn's ``prog.symbol(word)`` does (kallsyms-vs-ELF aliases allowed);
* ``sym`` glob/regex results equal the matching names of drgn's ``prog.symbols()`` less what kallsyms
  never holds (scripts/kallsyms.c ``is_ignored_symbol``: ``__crc_``/``__kstrtab_``/``__kstrtabns_``
  names, file and section symbols) and the module's init symbols (freed after loading:
  kernel/module/kallsyms.c keeps only core symbols).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kcrash.cli import main
from kcrash.dumps import open_dump
from kcrash.memory.kernel import KernelMemory, open_kernel_memory
from kcrash.memory.search import X86_64_ESPFIX_AREA, Pattern, search_physical, search_virtual
from kcrash.memory.translate.x86_64 import MappingWalk
from support.drgn_oracle import (
    KDUMP_EXCLUDES,
    KDUMP_KCRASH,
    case_id,
    drgn_program,
    is_kdump,
    lab_info,
    skip_kdump_pair,
    skip_lost_slab,
    skip_unless_first_kdump,
)
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), ("BUG", "5.10", True), *KDUMP_KCRASH[:2]]
FORMATS = ("vmcore.elf", "vmcore.kdump")
PLANTED = 0xFEEDFACE0BADC0DE
KERNEL_HALF = 0xFFFF800000000000
MODULES_VADDR = 0xFFFFFFFFA0000000  # at or above: module space (below it KASLR'd text stays under 1 GiB)
_NOT_IN_KALLSYMS = ("__crc_", "__kstrtab_", "__kstrtabns_", "__efistub_", ".L", "$")


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, dict[str, Any]]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    info = lab_info(out)
    if not info["module"]:
        pytest.skip("the lab module does not build for this kernel: nothing is planted")
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    return out, dprog, info


@pytest.fixture(scope="module")
def planted(crash: tuple[Path, Any, dict[str, Any]]) -> dict[str, set[int]]:
    """Where drgn says the planted value lies: virtual (vmalloc and direct map) and physical."""
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.mm import phys_to_virt, virt_to_phys, vmalloc_to_pfn

    dprog = crash[1]
    buf = dprog["kcrash_test_vmalloc_buf"].value_()
    words = [buf, buf + 8 * 1234]
    phys = {(vmalloc_to_pfn(dprog, w).value_() << 12) | (w & 0xFFF) for w in words}
    objects = list(list_for_each_entry("struct kcrash_test_obj", dprog["kcrash_test_objects"].address_of_(), "node"))
    assert len(objects) == 100 and all(o.payload[1].value_() == PLANTED for o in objects)
    slots = {o.payload[1].address_of_().value_() for o in objects}
    phys |= {virt_to_phys(dprog, s).value_() for s in slots}
    direct = {phys_to_virt(dprog, p).value_() for p in phys}
    return {"vmalloc": set(words), "objects": slots, "physical": phys, "virtual": set(words) | direct}


@pytest.fixture(scope="module", params=FORMATS)
def memory(request: pytest.FixtureRequest, crash: tuple[Path, Any, dict[str, Any]]) -> Iterator[KernelMemory]:
    if request.param == "vmcore.kdump":
        skip_kdump_pair(crash[0])
    dump = open_dump(crash[0] / request.param)
    try:
        yield open_kernel_memory(dump)
    finally:
        dump.close()


def _physical(memory: KernelMemory, pattern: Pattern) -> dict[int, int]:
    found = search_physical(lambda a, n: memory.read(a, n, physical=True), memory.segments.ranges(physical=True),
                            pattern)
    return {h.address: h.value for h in found}


def _kernel(memory: KernelMemory, pattern: Pattern, start: int = KERNEL_HALF, end: int = 1 << 64) -> dict[int, int]:
    assert memory.page_tables is not None
    found = search_virtual(memory.page_tables, pattern, start, end, skip=[X86_64_ESPFIX_AREA],
                           physical=memory.segments.ranges(physical=True))
    hits = {h.address: h.value for h in found}
    assert found.truncated is None
    return hits


def test_search_finds_every_planted_value(memory: KernelMemory, planted: dict[str, set[int]]) -> None:
    physical = _physical(memory, Pattern(PLANTED))
    assert planted["physical"] <= set(physical)
    kernel = _kernel(memory, Pattern(PLANTED))
    assert planted["virtual"] <= set(kernel)
    assert len(planted["objects"]) == 100 and planted["objects"] <= set(kernel)
    assert set(physical.values()) == set(kernel.values()) == {PLANTED}


def _numpy_hits(read: Callable[[int, int], bytes], start: int, end: int, value: int, mask: int = 0,
                chunk: int = 4 << 20) -> set[int]:
    # the reference scan: aligned 64-bit words of drgn's reads, compared with numpy
    hits: set[int] = set()
    keep = np.uint64(((1 << 64) - 1) & ~mask)
    for pos in range(start, end, chunk):
        size = min(chunk, end - pos)
        try:
            words = np.frombuffer(read(pos, size), dtype="<u8")
        except drgn.FaultError:
            words = None
        if words is None and chunk <= 4096:  # a page the dump leaves out (a -d 31 kdump file's free page)
            continue
        if words is None:  # a hole inside the chunk: page by page
            for page in range(pos, pos + size, 4096):
                with contextlib.suppress(drgn.FaultError):
                    hits |= _numpy_hits(read, page, page + 4096, value, mask, 4096)
            continue
        hits.update(pos + 8 * i for i in np.flatnonzero((words & keep) == np.uint64(value & ~mask)).tolist())
    return hits


def test_physical_hits_equal_drgns_reads_of_every_segment(crash: tuple[Path, Any, dict[str, Any]]) -> None:
    skip_unless_first_kdump(crash[0], "drgn's reads of all memory, ~10 s a dump")
    dprog = crash[1]
    dump = open_dump(crash[0] / "vmcore.elf")
    try:
        memory = open_kernel_memory(dump)
        ours = set(_physical(memory, Pattern(PLANTED)))
        ranges = memory.segments.ranges(physical=True)
    finally:
        dump.close()
    theirs: set[int] = set()
    for lo, hi in ranges:
        theirs |= _numpy_hits(lambda a, n: dprog.read(a, n, True), lo, hi, PLANTED)
    assert ours == theirs


def test_kernel_hits_equal_drgns_reads_of_the_mapped_runs(crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.mm import follow_phys

    skip_unless_first_kdump(crash[0], "drgn's reads of all mapped memory, ~10 s a dump")

    dprog = crash[1]
    dump = open_dump(crash[0] / "vmcore.elf")
    try:
        memory = open_kernel_memory(dump)
        assert memory.page_tables is not None
        ours = set(_kernel(memory, Pattern(PLANTED)))
        runs = [r for r in MappingWalk(memory.page_tables, KERNEL_HALF)
                if not X86_64_ESPFIX_AREA[0] <= r.vaddr < X86_64_ESPFIX_AREA[1]]
        ram = memory.segments.ranges(physical=True)
    finally:
        dump.close()
    theirs: set[int] = set()
    for run in runs:
        for lo, hi in ram:  # the parts of the run that are RAM in the dump, read virtually by drgn
            a, b = max(run.paddr, lo), min(run.paddr + run.size, hi)
            if a < b:
                delta = run.vaddr - run.paddr
                theirs |= _numpy_hits(lambda x, n: dprog.read(x, n), a + delta, b + delta, PLANTED)
    assert ours == theirs
    rng = random.Random(17)
    init_mm = dprog["init_mm"].address_of_()
    for run in rng.sample(runs, min(300, len(runs))):
        vaddr = run.vaddr + rng.randrange(run.size)
        assert follow_phys(init_mm, vaddr).value_() == run.paddr + (vaddr - run.vaddr)


def test_masked_search_of_the_vmalloc_buffer(memory: KernelMemory, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    dprog = crash[1]
    buf = dprog["kcrash_test_vmalloc_buf"].value_()
    data = np.frombuffer(dprog.read(buf, 4 * 4096), dtype="<u8")
    for value, mask in ((0xFEEDFACE00000000, 0xFFFFFFFF), (0x6B63766D00000000, 0xFFFFFFFF),
                        (0x6B63766D00000400, 0x3FF)):
        ours = _kernel(memory, Pattern(value, mask=mask), buf, buf + 4 * 4096)
        keep = np.uint64(((1 << 64) - 1) & ~mask)
        found = np.flatnonzero((data & keep) == np.uint64(value & ~mask)).tolist()
        expected = {buf + 8 * i: int(data[i]) for i in found}
        assert ours == expected and expected
    assert len(_kernel(memory, Pattern(0x6B63766D00000000, mask=0xFFFFFFFF), buf, buf + 4 * 4096)) == 4 * 512 - 2


def _cli_json(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Any:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return from_hex(json.loads(out))


@pytest.mark.parametrize("where", [("sys_call_table", 128), ("init_task", 400), ("__this_module", 120)])
def test_rd_s_names_words_as_drgn_does(crash: tuple[Path, Any, dict[str, Any]], capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      where: tuple[str, int]) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    dprog = crash[1]
    name, count = where
    data = _cli_json(capsys, "rd", crash[0] / "vmcore.elf", "-s", name, "-n", str(count), "--json")
    named = 0
    for value, ours in zip(data["values"], data["symbols"], strict=True):
        try:
            theirs = dprog.symbol(value)
        except LookupError:
            theirs = None
        if ours is None or theirs is None:
            assert (ours is None and theirs is None) or _outside_elf_sizes(ours, theirs), (hex(value), ours)
            continue
        named += 1
        assert ours["offset"] == value - ours["address"]
        if ours["name"] != theirs.name:  # an alias at the same address (kallsyms keeps another name)
            assert theirs.address == ours["address"], (hex(value), ours, theirs)
    assert named > 0


def _outside_elf_sizes(ours: dict[str, Any] | None, theirs: Any) -> bool:
    # kallsyms sizes run to the next symbol, ELF sizes are st_size: a word in the gap past an ELF
    # symbol's end is named by kcrash only (the documented difference of test_kallsyms_drgn.py)
    return ours is not None and theirs is None


@pytest.fixture(scope="module")
def kernel_symbols(crash: tuple[Path, Any, dict[str, Any]]) -> Any:
    from kcrash.cli.sym import symbol_table

    return symbol_table(str(crash[0] / "vmcore.elf"))


@pytest.mark.parametrize("query", [("glob", "kcrash_test_*"), ("glob", "__x64_sys_read*"), ("glob", "jiffies*"),
                                   ("glob", "*_slab_*"), ("regex", r"^(schedule|do_exit|panic)$"),
                                   ("regex", r"^kcrash_test_(level\d|do_bug)$")])
def test_sym_patterns_equal_drgns_symbols(crash: tuple[Path, Any, dict[str, Any]], kernel_symbols: Any,
                                          capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, query: tuple[str, str]) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    kind, text = query
    args = (text,) if kind == "glob" else ("-r", text)
    (row,) = _cli_json(capsys, "sym", crash[0] / "vmcore.elf", *args, "--json")
    ours = {m["name"] for m in row["matches"]}
    match = re.compile(fnmatch.translate(text)).match if kind == "glob" else re.compile(text).search
    kinds = (drgn.SymbolKind.FILE, drgn.SymbolKind.SECTION)
    theirs = {s.name for s in crash[1].symbols() if match(s.name) and s.kind not in kinds
              and not s.name.startswith(_NOT_IN_KALLSYMS)
              # a module's init symbols lie in memory freed after loading: no image holds them
              and not (s.address >= MODULES_VADDR and kernel_symbols.symbolize_or_none(s.address) is None)}
    assert ours == theirs and ours


def test_user_search_equals_drgns_reads_of_the_vmas(crash: tuple[Path, Any, dict[str, Any]],
                                                    capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # search -u 1 for the first word of an ELF header (every mapped binary and library starts with
    # it) equals drgn's page-by-page reads of init's VMAs through its page tables (access_remote_vm)
    from drgn.helpers.linux.mm import access_remote_vm, for_each_vma
    from drgn.helpers.linux.pid import find_task

    if is_kdump(crash[0]):
        pytest.skip(f"no user pages to search: {KDUMP_EXCLUDES}")
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    dprog = crash[1]
    mm = find_task(dprog, 1).mm
    first = int.from_bytes(access_remote_vm(mm, mm.start_code.value_() & ~0xFFF, 8), "little")
    theirs: set[int] = set()
    for vma in for_each_vma(mm):
        for page in range(vma.vm_start.value_(), vma.vm_end.value_(), 4096):
            with contextlib.suppress(drgn.FaultError):
                words = np.frombuffer(access_remote_vm(mm, page, 4096), dtype="<u8")
                theirs.update(page + 8 * i for i in np.flatnonzero(words == np.uint64(first)).tolist())
    data = _cli_json(capsys, "search", crash[0] / "vmcore.elf", "-u", "1", f"{first:#x}", "--json")
    assert data["space"] == "user" and data["truncated"] is None
    assert {h["address"] for h in data["hits"]} == theirs and theirs
