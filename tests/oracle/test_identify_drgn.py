"""Oracle: issue 17's ``kmem ADDR`` and ``kmem -i``. kcrash opens each dump with NO vmlinux and is
compared with drgn given the Debian -dbg vmlinux (and the lab module's .ko), on BUG 6.1 (KASLR), BUG
6.12, BUG 5.10 (KASLR) and sid's 7.2 (SYSRQ, no lab module):

* 1,000 addresses per dump, drawn with drgn's own helpers from slab pages (allocated and free
  objects, and the planted freed objects of kcrash_test_cache), ``struct page``\\ s, task stacks
  and task structs, kernel text, vmalloc areas and module memory: kcrash's
  :func:`~kcrash.analysis.identify.identify_address` must equal drgn's ``identify_address`` (its
  string mapped to kind, name and offset) for >= 99 %; the disagreements are printed;
* the planted truth: ``kcrash_test_vmalloc_buf`` is a 4-page vmalloc area (+ guard) of a vmalloc
  caller in kcrash_test's (freed) init code, its pages are the ones the page tables map;
  ``kcrash_test_percpu_counter`` on each CPU is that CPU's per-CPU variable holding
  0x1000 * (cpu + 1) + 0x2a; the freed objects are free slab objects of kcrash_test_cache;
* ``kmem -i`` against the counters drgn computes from the -dbg vmlinux (``totalram_pages``,
  ``global_zone_page_state``/``global_node_page_state``, ``vm_commit_limit``, ``hstates``,
  ``nr_swapfiles``) and, where crash(8) is installed and reads the kernel, against ``crash -s``.
"""

from __future__ import annotations

import collections
import contextlib
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.identify import AddressIdentity, identify_address
from kcrash.analysis.memory_usage import memory_usage
from kcrash.analysis.target import open_target
from kcrash.helpers.linux.percpu import per_cpu_offset
from kcrash.helpers.linux.vmalloc import find_vmap_area, vmalloc_to_pfn
from kcrash.types.program import Program
from support.drgn_oracle import (
    KDUMP_KCRASH,
    LAB_CASES,
    case_id,
    drgn_program,
    is_kdump,
    lab_info,
    module_kallsyms_symbol,
    skip_kdump_pair,
    skip_lost_slab,
)

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_KCRASH
SAMPLES = 1000
#: how many of the samples come from each source (the rest: slab pages)
_SHARES = {"page": 150, "stack": 120, "task": 30, "text": 150, "vmap": 150, "module": 100}
_NO_ANSWER = ("percpu", "direct_map", "user", "unknown")


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, dict[str, Any], Path]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    info = lab_info(out)
    vmlinux = lab_vmlinux_dbg(kernel)
    dprog = drgn_program(out, vmlinux, other_modules=True)
    return out, dprog, info, vmlinux


@pytest.fixture(scope="module")
def prog(crash: tuple[Path, Any, dict[str, Any], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with open_target(crash[0] / "vmcore.elf", tmp_path_factory.mktemp("cache")) as target:
        yield target


# -- drgn's answer as (kind, key...) -----------------------------------------------------------------

_DRGN_PATTERNS = [
    (re.compile(r"(?:function |object )?symbol: (?P<name>\S+)\+0x(?P<off>[0-9a-f]+)$"), "symbol"),
    (re.compile(r"task: (?P<pid>\d+) \((?P<comm>.*)\)(?: \+0x(?P<off>[0-9a-f]+))?$"), "task"),
    (re.compile(r"task stack: (?P<pid>\d+) \((?P<comm>.*)\) \+0x(?P<off>[0-9a-f]+)$"), "task_stack"),
    (re.compile(r"(?P<state>free |corrupted |)slab object: (?P<name>.+)\+0x(?P<off>[0-9a-f]+)$"), "slab"),
    (re.compile(r"page: pfn (?P<pfn>\d+)(?: \+0x(?P<off>[0-9a-f]+))?$"), "page"),
    (re.compile(r"vmap: 0x(?P<start>[0-9a-f]+)-0x(?P<end>[0-9a-f]+)(?: caller (?P<caller>\S+))?$"), "vmap"),
]


def drgn_key(address: int, text: str | None) -> tuple[Any, ...]:
    """drgn's identify_address string as a comparable tuple (a symbol by its start address, as
    kallsyms and the ELF symbol table may name aliases differently)."""
    if text is None:
        return ("none",)
    for pattern, kind in _DRGN_PATTERNS:
        m = pattern.match(text)
        if m is None:
            continue
        off = int(m.group("off") or "0", 16) if "off" in pattern.groupindex else 0
        if kind == "symbol":
            return ("symbol", address - off)
        if kind in ("task", "task_stack"):
            return (kind, int(m.group("pid")), off)
        if kind == "slab":
            return ("slab", m.group("name"), off, {"": True, "free ": False, "corrupted ": None}[m.group("state")])
        if kind == "page":
            return ("page", int(m.group("pfn")), off)
        return ("vmap", int(m.group("start"), 16), int(m.group("end"), 16), m.group("caller"))
    raise AssertionError(f"unparsed drgn answer {text!r}")


def kcrash_key(found: AddressIdentity) -> tuple[Any, ...]:
    """kcrash's answer as :func:`drgn_key` makes drgn's."""
    if found.kind in _NO_ANSWER:
        return ("none",)
    if found.kind == "symbol":
        return ("symbol", found.start)
    if found.kind in ("task", "task_stack"):
        return (found.kind, found.pid, found.offset)
    if found.kind == "slab":
        return ("slab", found.name, found.offset, found.allocated)
    if found.kind == "page":
        return ("page", found.pfn, found.offset)
    caller = found.caller.split(" [", 1)[0] if found.caller else None
    return ("vmap", found.start, found.end, caller)


# -- the sample, drawn with drgn's helpers ------------------------------------------------------------


def _slab_addresses(dprog: Any, rng: random.Random, count: int) -> list[int]:
    from drgn.helpers.linux.mm import PageSlab, for_each_page, page_to_virt

    pages = []
    for page in for_each_page(dprog):
        try:
            if PageSlab(page):
                pages.append(page_to_virt(page).value_())
        except drgn.FaultError:
            continue
    return [rng.choice(pages) + rng.randrange(4096) for _ in range(count)]


def _page_addresses(dprog: Any, rng: random.Random, count: int) -> list[int]:
    from drgn.helpers.linux.mm import for_each_valid_page_range

    ranges = list(for_each_valid_page_range(dprog))
    out = []
    for _ in range(count):
        start, end, mem_map = rng.choice(ranges)
        out.append((mem_map + rng.randrange(start, end)).value_() + rng.randrange(64))
    return out


def _task_addresses(dprog: Any, rng: random.Random, stacks: int, tasks: int) -> list[int]:
    from drgn.helpers.linux.pid import for_each_task

    all_tasks = list(for_each_task(dprog))
    size = dprog["THREAD_SIZE"].value_()
    out = [rng.choice(all_tasks).stack.value_() + rng.randrange(size) for _ in range(stacks)]
    return out + [rng.choice(all_tasks).value_() + rng.randrange(64) for _ in range(tasks)]


def _text_addresses(dprog: Any, rng: random.Random, count: int) -> list[int]:
    start, end = dprog.symbol("_stext").address, dprog.symbol("_etext").address
    return [rng.randrange(start, end) for _ in range(count)]


def _vmap_addresses(dprog: Any, rng: random.Random, count: int) -> list[int]:
    from drgn.helpers.linux.mm import for_each_vmap_area

    areas = [(va.va_start.value_(), va.va_end.value_()) for va in for_each_vmap_area(dprog) if va.vm]
    return [rng.randrange(*rng.choice(areas)) for _ in range(count)]


def _module_addresses(dprog: Any, rng: random.Random, count: int) -> list[int]:
    from drgn.helpers.linux.module import for_each_module

    regions = []
    for mod in for_each_module(dprog):
        try:
            regions.extend((r.base.value_(), r.size.value_()) for r in mod.mem if r.size)
        except AttributeError:  # before v6.4: core_layout
            regions.append((mod.core_layout.base.value_(), mod.core_layout.size.value_()))
    return [base + rng.randrange(size) for base, size in (rng.choice(regions) for _ in range(count))]


def _planted_freed(dprog: Any) -> list[int]:
    try:
        return [p.value_() for p in dprog["kcrash_test_freed"]]
    except KeyError:
        return []


def sample(dprog: Any, seed: int) -> list[int]:
    """SAMPLES addresses: the planted freed objects, then draws from every source."""
    rng = random.Random(seed)
    out = _planted_freed(dprog)
    out += _page_addresses(dprog, rng, _SHARES["page"])
    out += _task_addresses(dprog, rng, _SHARES["stack"], _SHARES["task"])
    out += _text_addresses(dprog, rng, _SHARES["text"])
    out += _vmap_addresses(dprog, rng, _SHARES["vmap"])
    out += _module_addresses(dprog, rng, _SHARES["module"])
    return out + _slab_addresses(dprog, rng, SAMPLES - len(out))


# -- the tests --------------------------------------------------------------------------------------


def _swab64(value: int) -> int:
    return int.from_bytes(value.to_bytes(8, "little"), "big")


def _on_cpu_freelist(dprog: Any, address: int) -> bool:
    # Whether the slab object holding ``address`` is on a CPU's lockless freelist (c->freelist of
    # kmem_cache.cpu_slab), walked here by hand with drgn's reads: with CONFIG_SLAB_FREELIST_HARDENED
    # a free pointer at p is stored as ptr ^ s->random ^ swab(p) (mm/slub.c freelist_ptr_decode).
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr
    from drgn.helpers.linux.slab import slab_object_info as drgn_slab_object_info

    info = drgn_slab_object_info(dprog, address)
    if info is None:
        return False
    cache = info.slab_cache
    try:
        random_ = cache.random.value_()
    except AttributeError:
        random_ = None
    offset = cache.offset.value_()
    if not cache.type_.type.has_member("cpu_slab"):  # v7.0 dropped the CPU slabs for sheaves
        return info.address in _sheaf_objects(dprog, cache)
    for cpu in for_each_possible_cpu(dprog):
        pointer, seen = per_cpu_ptr(cache.cpu_slab, cpu).freelist.value_(), 0
        while pointer and seen < 1 << 15:
            if pointer == info.address:
                return True
            where = pointer + offset
            raw = dprog.read_u64(where)
            pointer = raw if random_ is None else raw ^ random_ ^ _swab64(where)
            seen += 1
    return False


def _sheaf_objects(dprog: Any, cache: Any) -> set[int]:
    # Every object cached in a sheaf of ``cache`` (mm/slub.c, v6.18+): each possible CPU's main,
    # spare and rcu_free sheaves (objects[:size]) and the full sheaves of each node's barn.
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.list import list_for_each_entry as drgn_list
    from drgn.helpers.linux.percpu import per_cpu_ptr

    sheaves = []
    for cpu in for_each_possible_cpu(dprog):
        pcs = per_cpu_ptr(cache.cpu_sheaves, cpu)
        sheaves += [sheaf for sheaf in (pcs.main, pcs.spare, pcs.rcu_free) if sheaf]
    for node in range(dprog["nr_node_ids"].value_()):
        barn = cache.per_node[node].barn
        if barn:
            sheaves += list(drgn_list("struct slab_sheaf", barn.sheaves_full.address_of_(), "barn_list"))
    return {sheaf.objects[i].value_() for sheaf in sheaves for i in range(sheaf.size.value_())}


def classify(dprog: Any, address: int, ours: AddressIdentity, theirs_text: str | None) -> str:
    """``exact``, one of the documented differences (each checked), or ``disagree``:

    * ``gap``: in the kernel image only, kcrash names the symbol below as the kernel's kallsyms does
      (kallsyms keep no sizes: a symbol runs to the next one), drgn finds no ELF symbol there (the
      address is at or past the ELF end of that same symbol, which drgn knows by name at the same
      address) and says nothing (test_kallsyms_drgn.py has the same rule): mostly the ~1 MiB of int3
      after the SRSO alias thunk up to a 2 MiB boundary, else a function's alignment fill; nothing in
      the dump (kallsyms, BTF, ORC) tells where a vmlinux function ends. Module symbols keep their
      ELF sizes in memory, so a module address past its symbol is no gap: kcrash, too, says the
      module's vmap area there;
    * ``label``: drgn names a symbol kallsyms does not keep (a compiler ``.L`` label) or a sized symbol
      strictly containing kcrash's, which drgn knows by name at kcrash's address; or, in a module,
      drgn names a ``.L`` label (a string literal: the kernel drops ``.L`` symbols from a module's
      in-memory symbol table, ``is_mapping_symbol``) where kcrash says the module's vmap area;
    * ``cpu freelist``: kcrash says free and drgn allocated, and the object is on a CPU's lockless
      freelist (``kmem_cache_cpu.freelist``) or in a sheaf, walked by hand: it is free. drgn 0.3.0 reads the
      freelists of online CPUs only, and after panic() the stopped CPUs are offline
      (``stop_this_cpu`` clears them from ``cpu_online_mask``): on the BUG dumps only CPU 1 is.
      A task_struct there is no task (drgn names the pid that lived there). Since v6.18 (no CPU
      slabs from v7.0) the same holds for objects cached in a CPU's sheaves or a node's barn;
    * ``slab tail``: kcrash says the address is in no object (allocated unknown), drgn names an
      object whose index is past ``slab->objects``: the slab's unused tail;
    * ``module kallsyms``: in a module drgn has no debug .ko of (the kdump guest's 9p, netfs and
      virtio modules: the lab unpacks the debug .ko of the QEMU guest's modules only), drgn says the
      module's vmap area and kcrash names the symbol that drgn's own ``module_kallsyms`` reading of
      the module's in-memory symbol table gives there (or names a vmap area's caller in such a module
      that drgn leaves out): an answer drgn confirms, counted apart;
    * ``idle stack``: kcrash names the vmap'd stack of an offline CPU's idle task (``fork_idle``'s
      area, checked against drgn's ``idle_task(cpu).stack``), which drgn, again counting online CPUs
      only, leaves a bare vmap area.
    """
    theirs = drgn_key(address, theirs_text)
    if kcrash_key(ours) == theirs:
        return "exact"
    if ours.kind == "symbol" and ours.module is not None and theirs[0] == "vmap" \
            and module_kallsyms_symbol(dprog, address) == (ours.name, ours.start):
        return "module kallsyms"
    if ours.kind == "vmap" and theirs[0] == "vmap" and _module_caller(dprog, ours, theirs):
        return "module kallsyms"
    if ours.kind == "symbol":
        elf = [sym for sym in dprog.symbols(ours.name) if sym.address == ours.start]
        if not elf:
            return "disagree"
        if ours.module is None and theirs == ("none",) and address >= ours.start + max(sym.size for sym in elf):
            return "gap"
        if theirs[0] == "symbol":
            sym = dprog.symbol(address)
            if sym.name.startswith(".L") or sym.address < ours.start < sym.address + sym.size:
                return "label"
    if ours.kind == "vmap" and theirs[0] == "symbol" and _module_label(dprog, address, ours):
        return "label"
    drgn_allocated = theirs[:3] == ("slab", ours.name, ours.offset) and theirs[3] is True
    drgn_task = theirs[0] == "task" and ours.name == "task_struct" and theirs[2] == ours.offset
    if (ours.kind == "slab" and ours.allocated is False and (drgn_allocated or drgn_task)
            and _on_cpu_freelist(dprog, address)):
        return "cpu freelist"
    if ours.kind == "slab" and ours.allocated is None and theirs[:3] == ("slab", ours.name, ours.offset) \
            and _past_last_object(dprog, address):
        return "slab tail"
    if ours.kind == "task_stack" and ours.pid == 0 and theirs[0] == "vmap" and _idle_stack(dprog, ours.start):
        return "idle stack"
    return "disagree"


def _module_label(dprog: Any, address: int, ours: AddressIdentity) -> bool:
    # drgn's symbol is a .L label of the module whose memory kcrash's vmap area is
    from drgn.helpers.linux.module import address_to_module

    sym = dprog.symbol(address)
    module = address_to_module(dprog, address)
    return (sym.name.startswith(".L") and bool(module) and ours.start is not None and ours.end is not None
            and ours.start <= address < ours.end)


def _module_caller(dprog: Any, ours: AddressIdentity, theirs: tuple[Any, ...]) -> bool:
    # a vmap area drgn gives without its caller (a function of a module drgn has no debug .ko of) and
    # kcrash names that caller as drgn's module_kallsyms does
    if ours.vmap is None or theirs[:3] != ("vmap", ours.start, ours.end) or theirs[3] is not None:
        return False
    found = module_kallsyms_symbol(dprog, ours.vmap.caller)
    module = drgn_module_name(dprog, ours.vmap.caller)
    return found is not None and ours.caller == f"{found[0]}+{ours.vmap.caller - found[1]:#x} [{module}]"


def drgn_module_name(dprog: Any, address: int) -> str | None:
    from drgn.helpers.linux.module import address_to_module

    module = address_to_module(dprog, address)
    return module.name.string_().decode() if module else None


def _past_last_object(dprog: Any, address: int) -> bool:
    # The "object" drgn names starts at or past slab->objects * s->size from the slab's first byte:
    # the unused tail of the slab, no object at all (drgn divides without checking the index).
    from drgn.helpers.linux.mm import page_to_virt
    from drgn.helpers.linux.slab import slab_object_info as drgn_slab_object_info

    info = drgn_slab_object_info(dprog, address)
    first = page_to_virt(drgn.cast("struct page *", info.slab)).value_()
    size = info.slab_cache.size.value_()
    return (info.address - first - info.slab_cache.red_left_pad.value_()) // size >= info.slab.objects.value_()


def _idle_stack(dprog: Any, stack: int | None) -> bool:
    # the stack of a possible CPU's idle task (drgn 0.3.0 looks at online CPUs' idle tasks only)
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.sched import idle_task

    return any(idle_task(dprog, cpu).stack.value_() == stack for cpu in for_each_possible_cpu(dprog))


@pytest.fixture(scope="module")
def addresses(crash: tuple[Path, Any, dict[str, Any], Path]) -> list[int]:
    found = sample(crash[1], seed=17)
    assert len(found) == SAMPLES
    return found


def test_identify_address_agrees_with_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path],
                                           addresses: list[int]) -> None:
    from drgn.helpers.common.memory import identify_address as drgn_identify

    dprog = crash[1]
    cache: dict[Any, Any] = {}
    counts: collections.Counter[str] = collections.Counter()
    for address in addresses:
        ours = identify_address(prog, address)
        theirs_text = drgn_identify(dprog, address, cache=cache)
        kind = classify(dprog, address, ours, theirs_text)
        counts[kind] += 1
        if kind != "exact":
            print(f"{kind}: {address:#x}: kcrash {ours.describe()!r}, drgn {theirs_text!r}")
    print(dict(counts))
    assert counts["disagree"] <= 0.01 * SAMPLES
    # Issue 17's bar: >= 99 % identical where drgn is right (its offline-CPU and slab-tail answers are
    # wrong, each shown above). Measured 99.4-99.9 % (98.0-98.9 % of all 1,000); what is left is nop fill
    # after core-kernel functions (kallsyms has no sizes) and compiler .L labels kept only in the .ko.
    drgn_wrong = counts["cpu freelist"] + counts["slab tail"] + counts["idle stack"]
    assert counts["exact"] + counts["module kallsyms"] >= 0.99 * (SAMPLES - drgn_wrong)
    assert counts["gap"] <= 0.01 * SAMPLES


def test_kdump_answers_equal_the_elf_ones(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path],
                                         addresses: list[int], tmp_path: Path) -> None:
    # the kdump file (free, cache, user and zero pages left out) holds every page these answers read
    skip_kdump_pair(crash[0])
    with open_target(crash[0] / "vmcore.kdump", tmp_path) as kdump:
        theirs = [identify_address(kdump, a) for a in addresses]
    assert theirs == [identify_address(prog, a) for a in addresses]


def test_planted_vmalloc_buffer(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path]) -> None:
    info = crash[2]
    if not info["module"]:
        pytest.skip("no lab module on this kernel: nothing is planted")
    dprog = crash[1]
    buf = prog.read_u64(prog.symbol_address("kcrash_test_vmalloc_buf"))
    area = find_vmap_area(prog, buf + 4096 * 3 + 5)
    assert area is not None and area.start == buf
    assert area.nr_pages == 4 and area.end - area.start == 5 * 4096 and area.size == 5 * 4096
    assert "vmalloc" in area.flag_names
    # The caller is kcrash_test_init's call of vmalloc(): module init text, freed once init returned,
    # so neither kcrash nor drgn can name it; it lies in the module area, past the module's live text.
    assert area.caller >= 0xFFFFFFFFC0000000
    words = [int.from_bytes(prog.read(buf + 8 * i, 8), "little") for i in (0, 1, 2, 1234, 2047)]
    assert words == [0xFEEDFACE0BADC0DE, 0x6B63766D00000001, 0x6B63766D00000002, 0xFEEDFACE0BADC0DE,
                     0x6B63766D000007FF]
    from drgn.helpers.linux.mm import vmalloc_to_pfn as drgn_vmalloc_to_pfn

    assert [vmalloc_to_pfn(prog, buf + 4096 * i) for i in range(4)] == \
        [drgn_vmalloc_to_pfn(dprog, buf + 4096 * i).value_() for i in range(4)]
    found = identify_address(prog, buf + 8 * 1234)
    assert found.kind == "vmap" and found.start == buf and found.offset == 8 * 1234


def test_planted_percpu_counter(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path]) -> None:
    if not crash[2]["module"]:
        pytest.skip("no lab module on this kernel: nothing is planted")
    offset = prog.symbol_address("kcrash_test_percpu_counter")
    for cpu in (0, 1):
        address = (offset + per_cpu_offset(prog, cpu)) & ((1 << 64) - 1)
        assert prog.read_u64(address) == 0x1000 * (cpu + 1) + 0x2A
        found = identify_address(prog, address + 3)
        assert (found.kind, found.cpu, found.name, found.offset, found.module) == \
            ("percpu", cpu, "kcrash_test_percpu_counter", 3, "kcrash_test")


def test_planted_slab_objects(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path]) -> None:
    if not crash[2]["module"]:
        pytest.skip("no lab module on this kernel: nothing is planted")
    dprog = crash[1]
    freed = _planted_freed(dprog)
    assert len(freed) == 20
    for address in freed:
        found = identify_address(prog, address + 8)
        assert (found.kind, found.name, found.offset, found.allocated) == ("slab", "kcrash_test_cache", 8, False)
    from drgn.helpers.linux.list import list_for_each_entry as drgn_list

    live = [obj.value_() for obj in drgn_list("struct kcrash_test_obj", dprog["kcrash_test_objects"].address_of_(),
                                               "node")]
    assert len(live) == 100
    for address in live:
        found = identify_address(prog, address)
        assert (found.kind, found.name, found.offset, found.allocated) == ("slab", "kcrash_test_cache", 0, True)


# -- kmem -i ---------------------------------------------------------------------------------------


def _drgn_usage(dprog: Any) -> dict[str, int]:
    from drgn.helpers.linux.mm import totalram_pages, vm_commit_limit
    from drgn.helpers.linux.vmstat import global_node_page_state, global_zone_page_state

    def item(name: str) -> Any:
        return dprog[name]

    def node_state(*names: str) -> int:
        for name in names:
            with contextlib.suppress(KeyError):
                return int(global_node_page_state(item(name)))
        raise KeyError(names)

    slab = node_state("NR_SLAB_RECLAIMABLE_B", "NR_SLAB_RECLAIMABLE") + \
        node_state("NR_SLAB_UNRECLAIMABLE_B", "NR_SLAB_UNRECLAIMABLE")
    return {"total": totalram_pages(dprog), "free": int(global_zone_page_state(item("NR_FREE_PAGES"))),
            "file": node_state("NR_FILE_PAGES"), "slab": slab, "commit_limit": vm_commit_limit(dprog),
            "committed": max(dprog["vm_committed_as"].count.value_(), 0),
            "nr_swapfiles": dprog["nr_swapfiles"].value_(),
            "huge": sum(h.nr_huge_pages.value_() << h.order.value_()
                        for h in dprog["hstates"][:dprog["hugetlb_max_hstate"].value_()])}


def test_memory_usage_agrees_with_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path]) -> None:
    usage = memory_usage(prog, shared=True)
    theirs = _drgn_usage(crash[1])
    assert usage.notes == ()
    assert (usage.total, usage.free, usage.slab, usage.commit_limit, usage.committed, usage.huge_total) == \
        (theirs["total"], theirs["free"], theirs["slab"], theirs["commit_limit"], theirs["committed"], theirs["huge"])
    assert theirs["nr_swapfiles"] == 0 and (usage.swap_total, usage.swap_used) == (0, 0)
    # no swap: cached is the file pages less the block devices' (buffers)
    assert usage.cached == theirs["file"] - (usage.buffers or 0)


def _crash_kmem_i(vmlinux: Path, vmcore: Path) -> dict[str, int] | None:
    # crash -s VMLINUX VMCORE with "kmem -i" piped in: {label: pages}; None when crash cannot read it
    try:
        run = subprocess.run(["crash", "-s", str(vmlinux), str(vmcore)], input="kmem -i\nquit\n",
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    rows = dict(re.findall(r"^\s*([A-Z][A-Z ]+?)\s{2,}(\d+)\s", run.stdout, re.M))
    return {label: int(pages) for label, pages in rows.items()} if "TOTAL MEM" in rows else None


def test_memory_usage_agrees_with_crash(prog: Program, crash: tuple[Path, Any, dict[str, Any], Path]) -> None:
    if shutil.which("crash") is None:
        pytest.skip("crash(8) is not installed")
    if is_kdump(crash[0]):
        pytest.skip("crash(8) runs 40-90 s a dump: it reads the QEMU dumps only (drgn's counters are the kdump oracle)")
    theirs = _crash_kmem_i(crash[3], crash[0] / "vmcore.elf")
    if theirs is None:
        pytest.skip("crash(8) cannot read this kernel's dump")
    usage = memory_usage(prog, shared="SHARED" in theirs)
    ours = {row.label: row.pages for group in usage.groups() for row in group}
    # crash 8.0.2 prints SLAB from its mem_map walk when its vm_stat table fails (it assumes
    # vm_node_stat follows vm_zone_stat in memory; on 6.1 it lies 48 words before): the pages with
    # PG_slab set, head pages only (2187 on BUG 6.1, where NR_SLAB_RECLAIMABLE_B +
    # NR_SLAB_UNRECLAIMABLE_B, /proc/meminfo's Slab, is 3888). kcrash reports the kernel's counters,
    # checked against drgn above; crash's SLAB is compared only when it came from them.
    if "SHARED" in theirs:
        theirs.pop("SLAB", None)
        ours.pop("SLAB", None)
    assert {k: v for k, v in ours.items() if k in theirs} == theirs
