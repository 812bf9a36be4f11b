"""Oracle: issue 17's slab caches. kcrash opens each lab dump with NO vmlinux (kallsyms, in-memory BTF)
and is compared with drgn's slab helpers given the Debian -dbg vmlinux and the lab module's .ko:

* every cache on ``slab_caches``: kcrash's counts from the slab pages (``slab_cache_usage``) against
  drgn's ``slab_cache_usage`` (node counters, node partial lists, per-CPU freelists and partial
  slabs), and against the kernel's own node counters (``slab_cache_node_counts``);
* every object drgn's ``slab_cache_for_each_allocated_object`` yields for kcrash_test_cache and the
  three biggest caches is allocated in kcrash's view, and kcrash allocates nothing more;
* ``slab_object_info`` of >= 1,000 sampled addresses per dump (objects of random slabs at random
  offsets, and random direct-map addresses) equals drgn's;
* the lab module's planted truth: the 100 objects on ``kcrash_test_objects`` are allocated, the 20
  in ``kcrash_test_freed`` are free;
* each slab's place (a CPU's slab or partial slab, a node's partial list) equals drgn's walk;
* the kdump file gives the ELF file's counts;
* ``kcrash kmem -s``/``-S`` text and JSON.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kcrash.analysis.target import open_target
from kcrash.cli.app import kcrash
from kcrash.errors import CliError
from kcrash.helpers.linux.slab import (
    _slab_index,
    _slub,
    find_slab_cache,
    for_each_slab_cache,
    slab_cache_for_each_allocated_object,
    slab_cache_for_each_object,
    slab_cache_info,
    slab_cache_node_counts,
    slab_cache_slab_locations,
    slab_cache_usage,
    slab_object_info,
)
from kcrash.types.program import Program
from support.drgn_oracle import (
    KDUMP_READABLE,
    LAB_CASES,
    case_id,
    drgn_program,
    lab_info,
    skip_kdump_pair,
    skip_lost_slab,
    skip_unless_first_kdump,
)
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_READABLE
SAMPLES = 1_000
#: struct kcrash_test_obj (src/kcrash/lab/kmod/kcrash_test.c): u32 magic, u32 id, char tag[16], then
#: the list_head ``node`` (at 24); the 5.10 module has no BTF, so the offset comes from the source
_NODE_OFFSET = 24
_NR_ALLOCATED, _NR_FREED = 100, 20


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, dict[str, Any]]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    info = lab_info(out)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    return out, dprog, info


@pytest.fixture(scope="module")
def prog(crash: tuple[Path, Any, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with open_target(crash[0] / "vmcore.elf", tmp_path_factory.mktemp("cache")) as target:
        yield target


def _drgn_missed(dprog: Any, cache: Any) -> tuple[set[int], int]:
    # What drgn's slab_cache_usage leaves out, computed with drgn's own SLUB helper (private API:
    # _get_slab_cache_helper, _slub_get_freelist, _num_cpu_partial_list_free_objs):
    # 1. the CPUs a panic took offline: stop_this_cpu() (arch/x86/kernel/process.c) clears the CPU's
    #    online bit while its per-CPU freelist, active slab and partial slabs keep their objects;
    #    drgn walks for_each_online_cpu only, so on these dumps it counts one CPU of two;
    # 2. objects freed into a CPU's active slab by another CPU: __slab_free (mm/slub.c) chains them
    #    on slab->freelist of the frozen slab, which drgn's usage does not walk.
    # Returns (the free objects of 1's freelists and sheaves, the number of free objects 1 and 2 add).
    from drgn.helpers.linux.cpumask import for_each_online_cpu, for_each_possible_cpu
    from drgn.helpers.linux.percpu import per_cpu_ptr
    from drgn.helpers.linux.slab import _get_slab_cache_helper

    helper = _get_slab_cache_helper(cache)
    online = set(for_each_online_cpu(dprog))
    objects: set[int] = set()
    count = 0
    for cpu in for_each_possible_cpu(dprog):
        if hasattr(cache, "cpu_slab"):
            cpu_slab = per_cpu_ptr(cache.cpu_slab, cpu)
            slab = cpu_slab.slab if hasattr(cpu_slab, "slab") else cpu_slab.page
            if slab and slab.slab_cache == cache:
                count += len(helper._slub_get_freelist(lambda: "active slab", slab.freelist))
                if cpu not in online:
                    objects |= helper._slub_get_freelist(lambda: "cpu", cpu_slab.freelist)
            if cpu not in online:
                count += helper._num_cpu_partial_list_free_objs(cpu, cpu_slab)
        if hasattr(cache, "cpu_sheaves") and cache.cpu_sheaves and cpu not in online:
            sheaves = per_cpu_ptr(cache.cpu_sheaves, cpu)
            for sheaf in (sheaves.main, sheaves.spare):
                if sheaf:
                    helper._sheaf_get_objects(sheaf, objects)
    return objects, count + len(objects)


def _drgn_usage(dprog: Any) -> dict[int, tuple[str, tuple[int, int, int]]]:
    from drgn.helpers.linux.slab import for_each_slab_cache as drgn_caches
    from drgn.helpers.linux.slab import slab_cache_usage as drgn_usage

    out = {}
    for cache in drgn_caches(dprog):
        usage = drgn_usage(cache)
        missed = _drgn_missed(dprog, cache)[1]
        out[cache.value_()] = (cache.name.string_().decode(),
                               (usage.num_slabs, usage.num_objs, usage.free_objs + missed))
    return out


def _ours(prog: Program) -> dict[int, tuple[str, tuple[int, int, int]]]:
    out = {}
    for cache in for_each_slab_cache(prog):
        usage = slab_cache_usage(prog, cache)
        out[int(cache)] = (slab_cache_info(prog, cache).name, (usage.num_slabs, usage.num_objs, usage.free_objs))
    return out


def _truly_free(prog: Program, cache: int) -> int:
    # The truth drgn's usage can miss: objects freed into a CPU's active slab by another CPU (mm/slub.c
    # __slab_free puts them on slab->freelist, not on the CPU's freelist), counted object by object.
    return sum(1 for o in slab_cache_for_each_object(prog, cache) if o.allocated is False)


def test_every_cache_counts_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    # drgn's counts with what it leaves out added back (_drgn_missed), cache by cache
    theirs, ours = _drgn_usage(crash[1]), _ours(prog)
    assert ours.keys() == theirs.keys() and len(ours) > 100
    for address, (name, counts) in ours.items():
        assert theirs[address] == (name, counts)
        assert counts[:2] == slab_cache_node_counts(prog, address), name  # the kernel's own counters
        assert counts[2] == _truly_free(prog, address), name  # the object walk agrees with the count


def test_kdump_file_counts_equal_elf(prog: Program, crash: tuple[Path, Any, dict[str, Any]],
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    # the compressed kdump file (free, cache and user pages left out) keeps every slab page
    skip_kdump_pair(crash[0])
    with open_target(crash[0] / "vmcore.kdump", tmp_path_factory.mktemp("kdump")) as kdump:
        assert _ours(kdump) == _ours(prog)
        assert _slab_index(_slub(kdump)).missing is None


def test_report_slab_summary_agrees(prog: Program) -> None:
    # the report's biggest caches (node counters) and kmem -s (slab pages) give one answer
    from kcrash.analysis.memory_summary import slab_caches

    caches, truncated = slab_caches(prog)
    ours = _ours(prog)
    assert truncated is None and len(caches) == len(ours)
    assert [(c.name, c.slabs, c.objects) for c in caches] == [(n, u[0], u[1]) for n, u in ours.values()]


def test_allocated_objects_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.slab import find_slab_cache as drgn_find
    from drgn.helpers.linux.slab import slab_cache_for_each_allocated_object as drgn_allocated

    skip_unless_first_kdump(crash[0], "drgn's object walk of four caches, ~20 s a dump")
    ours = _ours(prog)
    biggest = sorted(ours.values(), key=lambda v: -v[1][1])[:3]
    names = [name for name, _ in biggest] + (["kcrash_test_cache"] if crash[2]["module"] else [])
    for name in names:
        cache = find_slab_cache(prog, name)
        assert cache is not None, name
        dcache = drgn_find(crash[1], name)
        # drgn calls the objects on the freelists of CPUs a panic took offline allocated (_drgn_missed)
        theirs = {o.value_() for o in drgn_allocated(dcache, "char")} - _drgn_missed(crash[1], dcache)[0]
        assert set(slab_cache_for_each_allocated_object(prog, cache)) == theirs, name


def _drgn_locations(dprog: Any, cache: Any) -> dict[int, str]:
    # where drgn finds each slab: the CPUs' slabs and partial chains, the nodes' partial lists
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    from drgn.helpers.linux.list import list_for_each_entry
    from drgn.helpers.linux.percpu import per_cpu_ptr

    try:
        dprog.type("struct slab")
        slab_type = "struct slab"
    except LookupError:
        slab_type = "struct page"
    out: dict[int, str] = {}
    for cpu in for_each_possible_cpu(dprog):
        if not hasattr(cache, "cpu_slab"):  # 7.0 removed kmem_cache_cpu
            break
        cpu_slab = per_cpu_ptr(cache.cpu_slab, cpu)
        slab = cpu_slab.slab if slab_type == "struct slab" else cpu_slab.page
        if slab:
            out.setdefault(slab.value_(), f"cpu {cpu}")
        partial = cpu_slab.partial
        while partial and partial.value_() not in out:
            out[partial.value_()] = f"cpu {cpu} partial"
            partial = partial.next
    nodes = cache.per_node if hasattr(cache, "per_node") else cache.node
    for i in range(dprog["nr_node_ids"].value_()):
        node = nodes[i].node if hasattr(cache, "per_node") else nodes[i]
        for slab in list_for_each_entry(slab_type, node.partial.address_of_(), "slab_list"):
            out.setdefault(slab.value_(), f"node {i} partial")
    return out


def test_slab_locations_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.slab import for_each_slab_cache as drgn_caches

    for dcache in drgn_caches(crash[1]):
        assert slab_cache_slab_locations(prog, dcache.value_()) == _drgn_locations(crash[1], dcache), \
            dcache.name.string_()


def _samples(prog: Program, count: int, seed: int) -> list[int]:
    # random offsets in objects of random slabs (of random caches), and random direct-map addresses
    rng = random.Random(seed)
    slub = _slub(prog)
    slabs = [(cache, int(row[0])) for cache, rows in _slab_index(slub).by_cache.items() for row in rows]
    out = []
    for _ in range(count * 9 // 10):
        cache, slab = rng.choice(slabs)
        out.append(slub.page_to_virt(slab) + rng.randrange(slab_cache_info(prog, cache).slab_size))
    top = slub.mm.max_pfn << slub.mm.page_shift
    out += [slub.mm.page_offset + rng.randrange(top) for _ in range(count - len(out))]
    return out


def test_slab_object_info_equals_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    from drgn.helpers.linux.slab import slab_object_info as drgn_info

    dprog = crash[1]
    same = compared = 0
    diffs = []
    offline_free: dict[int, set[int]] = {}
    for address in _samples(prog, SAMPLES, 17):
        theirs = drgn_info(dprog, address)
        if theirs is not None and theirs.allocated:
            cache = theirs.slab_cache
            if cache.value_() not in offline_free:
                offline_free[cache.value_()] = _drgn_missed(dprog, cache)[0]
            if theirs.address in offline_free[cache.value_()]:  # see _drgn_missed
                theirs.allocated = False
        mine = slab_object_info(prog, address)
        compared += 1
        if theirs is None or mine is None:
            ok = theirs is None and mine is None
        else:
            inside = 0 <= mine.address - _slub(prog).page_to_virt(mine.slab) - \
                slab_cache_info(prog, mine.cache).red_left_pad < \
                slab_cache_info(prog, mine.cache).objects_per_slab * slab_cache_info(prog, mine.cache).size
            ok = (mine.cache, mine.slab, mine.address) == (theirs.slab_cache.value_(), theirs.slab.value_(),
                                                           theirs.address) and \
                (mine.allocated == theirs.allocated or not inside)
        same += ok
        if not ok:
            diffs.append((hex(address), mine, theirs))
    assert compared == SAMPLES
    assert same >= compared * 99 // 100, diffs[:5]


def _list_entries(prog: Program, head: int, limit: int = 1000) -> list[int]:
    out, pos = [], prog.read_u64(head)
    while pos != head and len(out) < limit:
        out.append(pos - _NODE_OFFSET)
        pos = prog.read_u64(pos)
    return out


def test_planted_objects(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    if not crash[2]["module"]:
        pytest.skip("no lab module on this kernel: nothing is planted")
    cache = find_slab_cache(prog, "kcrash_test_cache")
    assert cache is not None
    allocated = _list_entries(prog, prog.symbol_address("kcrash_test_objects"))
    freed = [prog.read_u64(prog.symbol_address("kcrash_test_freed") + 8 * i) for i in range(_NR_FREED)]
    assert len(allocated) == _NR_ALLOCATED and len(set(freed)) == _NR_FREED
    for address, state in [*((a, True) for a in allocated), *((a, False) for a in freed)]:
        info = slab_object_info(prog, address + 8)
        assert info is not None and info.cache == int(cache) and info.address == address and info.offset == 8
        assert info.allocated is state, hex(address)
    usage = slab_cache_usage(prog, cache)
    assert usage.active_objs == _NR_ALLOCATED and usage.error is None
    assert set(slab_cache_for_each_allocated_object(prog, cache)) == set(allocated)


def test_kmem_cli(crash: tuple[Path, Any, dict[str, Any]], prog: Program) -> None:
    if crash[2]["kernel"]["flavour"] != "6.12":
        pytest.skip("the CLI is checked on one dump")
    path = str(crash[0] / "vmcore.elf")
    runner = CliRunner()
    text = runner.invoke(kcrash, ["kmem", path, "-s"])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0].split() == ["CACHE", "OBJSIZE", "ALLOCATED", "TOTAL", "SLABS", "SSIZE", "NAME"]
    ours = _ours(prog)
    assert len(lines) == 1 + len(ours)
    row = next(line.split() for line in lines if line.endswith(" kcrash_test_cache"))
    cache = find_slab_cache(prog, "kcrash_test_cache")
    assert cache is not None
    assert int(row[0], 16) == int(cache) and row[2:5] == [str(_NR_ALLOCATED), str(ours[int(cache)][1][1]),
                                                          str(ours[int(cache)][1][0])]
    as_json = from_hex(json.loads(runner.invoke(kcrash, ["kmem", path, "-s", "--json", "kcrash_test_cache"]).output))
    assert as_json["caches"][0]["allocated"] == _NR_ALLOCATED and as_json["caches"][0]["cache"] == int(cache)
    objects = runner.invoke(kcrash, ["kmem", path, "-S", "kcrash_test_cache"])
    assert objects.exit_code == 0
    marked = [line.strip() for line in objects.output.splitlines() if line.strip().startswith("[")]
    assert len(marked) == _NR_ALLOCATED
    titles = [line for line in objects.output.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert titles[0].startswith("CPU ") and titles[0].endswith(" SLAB:")
    detail = from_hex(json.loads(runner.invoke(kcrash, ["kmem", path, "-S", "--json", "kcrash_test_cache"]).output))
    assert {s["where"] for s in detail["caches"][0]["slab_list"]} == \
        {None, *slab_cache_slab_locations(prog, cache).values()}
    states = [o["allocated"] for s in detail["caches"][0]["slab_list"] for o in s["objects"]]
    assert states.count(True) == _NR_ALLOCATED and states.count(False) == ours[int(cache)][1][2]
    bad = runner.invoke(kcrash, ["kmem", path, "-S", "no_such_cache"])
    assert isinstance(bad.exception, CliError) and bad.exception.exit_code == 1
    assert str(bad.exception) == "no slab cache named 'no_such_cache'"
