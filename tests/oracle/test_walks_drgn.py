"""Oracle for issue 17's walks: ``vm``, ``vtop -c``, ``list`` and ``tree``. kcrash opens each lab
dump with NO vmlinux (kallsyms, in-memory BTF, module symbols/BTF from memory) and is compared
with drgn given the Debian -dbg vmlinux and the module's .ko:

* ``vm``: every VMA (address, start, end, flags, file path, ``vm_pgoff``) of every task with an mm
  equals drgn's ``for_each_vma`` (maple tree on 6.1+, the ``mmap`` list on 5.10), and its RSS
  counters drgn's ``task_rss`` (per-CPU counters since 6.2, per-thread caches before);
* ``vtop -c``: user addresses sampled in every VMA of every process translate as drgn's
  ``follow_phys`` does (the same physical address, or both unmapped);
* maple: ``mt_for_each`` over every ``mm->mm_mt`` (ranges and entries) and ``mtree_load`` equal drgn's;
* xarray: the planted ``kcrash_test_xarray`` gives indices 0,1,5,63,64,1000,4096,1<<20 with values
  ``index ^ 0x5a``; real multi-level xarrays (the pid IDR of ``init_pid_ns``, the page cache
  ``i_pages`` of every mapped file) equal drgn's ``xa_for_each``, and ``xa_load`` agrees;
* rbtree: ``kcrash_test_rbtree`` gives keys 0,7,...,217 in order, as drgn's
  ``rbtree_inorder_for_each_entry``;
* ``list``: ``kcrash_test_objects`` gives ids 0..99 in order, and the corrupt ``kcrash_test_cycle``
  ends with a marked cycle; these through the CLI's JSON.

The 7.2 dump has no lab module: only the address-space checks run there. On 5.10 the module has
no BTF (split module BTF came in 5.11), so the planted walks take the member offsets from drgn's
DWARF (``-o``) and the addresses from kcrash's own module symbols.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kcrash.analysis.target import open_target
from kcrash.analysis.vmas import task_vm, user_page_tables
from kcrash.cli.app import kcrash
from kcrash.errors import CliError
from kcrash.helpers.linux.mapletree import mt_for_each_range, mtree_load
from kcrash.helpers.linux.rbtree import rbtree_inorder_for_each
from kcrash.helpers.linux.sched import for_each_task
from kcrash.helpers.linux.vma import for_each_vma as vmas_of
from kcrash.helpers.linux.vma import task_rss
from kcrash.helpers.linux.xarray import xa_for_each_range, xa_load, xa_to_value
from kcrash.memory.kernel import KernelMemory
from kcrash.types.object import Object, offsetof
from kcrash.types.program import Program
from support.drgn_oracle import (
    KDUMP_READABLE,
    LAB_CASES,
    case_id,
    drgn_program,
    lab_info,
    skip_kdump_pair,
    skip_lost_slab,
)
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.fs import d_path  # noqa: E402
from drgn.helpers.linux.mapletree import mt_for_each  # noqa: E402
from drgn.helpers.linux.mapletree import mtree_load as drgn_mtree_load  # noqa: E402
from drgn.helpers.linux.mm import follow_phys, for_each_vma  # noqa: E402
from drgn.helpers.linux.mm import task_rss as drgn_task_rss  # noqa: E402
from drgn.helpers.linux.pid import find_task  # noqa: E402
from drgn.helpers.linux.rbtree import rbtree_inorder_for_each_entry  # noqa: E402
from drgn.helpers.linux.xarray import xa_for_each  # noqa: E402
from drgn.helpers.linux.xarray import xa_load as drgn_xa_load  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_READABLE
XA_KEYS = (0, 1, 5, 63, 64, 1000, 4096, 1 << 20)
SAMPLES_PER_VMA = 4


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


def _processes(prog: Program) -> dict[int, Object]:
    # one task per address space (threads share their mm)
    out: dict[int, Object] = {}
    for task in for_each_task(prog):
        mm = int(task.mm)
        if mm and mm not in out:
            out[mm] = task
    return out


def _drgn_vmas(dtask: Any) -> list[tuple[int, int, int, int, str | None, int]]:
    return [(v.value_(), v.vm_start.value_(), v.vm_end.value_(), v.vm_flags.value_(),
             d_path(v.vm_file.f_path).decode() if v.vm_file else None, v.vm_pgoff.value_())
            for v in for_each_vma(dtask.mm)]


def test_vm_equals_drgn_for_every_task(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    processes = _processes(prog)
    assert processes, "no task with an mm"
    compared = 0
    for task in for_each_task(prog):
        if not int(task.mm):
            continue
        space = task_vm(prog, task)
        assert space.truncated is None
        ours = [(v.address, v.start, v.end, v.flags, v.file, v.pgoff) for v in space.vmas]
        assert ours == _drgn_vmas(find_task(crash[1], int(task.pid))), int(task.pid)
        dtask = find_task(crash[1], int(task.pid))
        assert space.mm == dtask.mm.value_()
        ours_rss, theirs_rss = task_rss(task), drgn_task_rss(crash[1], dtask)
        assert (ours_rss.file, ours_rss.anon, ours_rss.shmem, ours_rss.swap) == tuple(theirs_rss)
        assert space.rss == theirs_rss.total
        compared += len(ours)
    assert compared >= 10 * len(processes)


def test_vtop_c_equals_drgn_follow_phys(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    memory = prog.memory
    assert isinstance(memory, KernelMemory)
    rng = random.Random(17)
    mapped = total = 0
    for task in _processes(prog).values():
        dmm = find_task(crash[1], int(task.pid)).mm
        tables = user_page_tables(prog, task)
        for vma in task_vm(prog, task).vmas:
            pages = (vma.end - vma.start) // 4096
            for address in {vma.start, vma.end - 8, *(vma.start + rng.randrange(pages) * 4096 + rng.randrange(4096)
                                                    for _ in range(SAMPLES_PER_VMA))}:
                walk = tables.walk(address)
                try:
                    theirs: int | None = follow_phys(dmm, address).value_()
                except drgn.FaultError:
                    theirs = None
                assert walk.physical == theirs, (int(task.pid), hex(address), walk.reason)
                mapped += theirs is not None
                total += 1
    assert total >= 50 and mapped >= total // 4, (mapped, total)


def test_maple_tree_of_every_mm_equals_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    if not prog.type("struct mm_struct").has_member("mm_mt"):
        pytest.skip("VMAs are on the mmap list before 6.1 (compared by test_vm_equals_drgn_for_every_task)")
    for task in _processes(prog).values():
        walk = mt_for_each_range(task.mm.mm_mt)
        ours = list(walk)
        dmt = find_task(crash[1], int(task.pid)).mm.mm_mt.address_of_()
        assert walk.truncated is None
        assert ours == [(first, last, entry.value_()) for first, last, entry in mt_for_each(dmt)]
        for first, last, _ in ours:
            for index in (first, last, (first + last) // 2, last + 1):
                assert int(mtree_load(task.mm.mm_mt, index)) == drgn_mtree_load(dmt, index).value_()


def _module_or_skip(crash: tuple[Path, Any, dict[str, Any]]) -> dict[str, Any]:
    if not crash[2]["module"]:
        pytest.skip("no lab module on this kernel")
    return crash[2]


def test_planted_xarray(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    _module_or_skip(crash)
    xa = prog.object("struct xarray", prog.symbol_address("kcrash_test_xarray"))
    walk = xa_for_each_range(xa)
    ours = list(walk)
    assert walk.truncated is None
    assert [(first, xa_to_value(entry)) for first, last, entry in ours] == [(k, k ^ 0x5A) for k in XA_KEYS]
    assert all(first == last for first, last, _ in ours)
    dxa = crash[1]["kcrash_test_xarray"].address_of_()
    assert [(first, entry) for first, _, entry in ours] == [(i, e.value_()) for i, e in xa_for_each(dxa)]
    for index in (*XA_KEYS, 2, 65, 4095, (1 << 20) + 1, 1 << 40):
        assert int(xa_load(xa, index)) == drgn_xa_load(dxa, index).value_(), index


def _compare_xarray(prog: Program, address: int, dxa: Any) -> list[tuple[int, int]]:
    xa = prog.object("struct xarray", address)
    walk = xa_for_each_range(xa)
    ours = [(first, entry) for first, _, entry in walk]
    assert walk.truncated is None
    assert ours == [(i, e.value_()) for i, e in xa_for_each(dxa)], hex(address)
    for index, entry in ours[:: max(1, len(ours) // 20)]:
        assert int(xa_load(xa, index)) == entry
    return ours


def test_real_xarrays_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    # the pid IDR (an xarray with pointer entries; pids above 63 need nodes of two levels)
    idr_at = prog.symbol_address("init_pid_ns") + offsetof(prog.type("struct pid_namespace"), "idr.idr_rt")
    pids = _compare_xarray(prog, idr_at, crash[1]["init_pid_ns"].idr.idr_rt.address_of_())
    assert len(pids) > 50 and pids[-1][0] >= 64
    # the page cache of every file mapped by a process
    files, pages = set(), 0
    for task in _processes(prog).values():
        for vma in vmas_of(task.mm):
            if int(vma.vm_file):
                mapping = int(vma.vm_file.f_mapping)
                if mapping not in files:
                    files.add(mapping)
                    at = mapping + offsetof(prog.type("struct address_space"), "i_pages")
                    dxa = drgn.Object(crash[1], "struct address_space", address=mapping).i_pages.address_of_()
                    pages += len(_compare_xarray(prog, at, dxa))
    assert files and pages > 64


def _offset(dprog: Any, type_name: str, member: str) -> int:
    return drgn.offsetof(dprog.type(type_name), member)


def test_planted_rbtree(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    _module_or_skip(crash)
    dprog = crash[1]
    key = _offset(dprog, "struct kcrash_test_rb", "key")
    walk = rbtree_inorder_for_each(prog.object("struct rb_root", prog.symbol_address("kcrash_test_rbtree")))
    nodes = [int(n) for n in walk]
    assert walk.truncated is None
    assert [prog.read_u64(n + key - _offset(dprog, "struct kcrash_test_rb", "rb")) for n in nodes] == \
        list(range(0, 218, 7))
    theirs = rbtree_inorder_for_each_entry("struct kcrash_test_rb", dprog["kcrash_test_rbtree"].address_of_(), "rb")
    assert nodes == [e.rb.address_of_().value_() for e in theirs]


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(kcrash, list(args))
    assert result.exit_code == 0, result.output
    return from_hex(json.loads(result.output))


def test_cli_tree_and_list_on_the_planted_structures(crash: tuple[Path, Any, dict[str, Any]]) -> None:
    info = _module_or_skip(crash)
    dump, dprog = str(crash[0] / "vmcore.elf"), crash[1]
    # rbtree: entries in key order (the link is the entry's first member; -s needs module BTF)
    btf = info["module"]["btf"]
    rb = _cli("tree", dump, "-t", "rbtree", "kcrash_test_rbtree", "--json",
              *(["-s", "kcrash_test_rb.key"] if btf else []))
    assert rb["truncated"] is None and len(rb["entries"]) == 32
    theirs = rbtree_inorder_for_each_entry("struct kcrash_test_rb", dprog["kcrash_test_rbtree"].address_of_(), "rb")
    assert [e["address"] for e in rb["entries"]] == [e.value_() for e in theirs]
    if btf:
        assert [e["struct"]["key"] for e in rb["entries"]] == list(range(0, 218, 7))
    xa = _cli("tree", dump, "-t", "xarray", "kcrash_test_xarray", "--json")
    assert [(e["index"], e["value"]) for e in xa["entries"]] == [(k, k ^ 0x5A) for k in XA_KEYS]
    # list: -H head, the link's offset by -l (module BTF) or -o (drgn's DWARF on 5.10)
    link = ["-l", "kcrash_test_obj.node"] if btf else ["-o", str(_offset(dprog, "struct kcrash_test_obj", "node"))]
    listed = _cli("list", dump, "-H", "kcrash_test_objects", *link, *(["-s", "kcrash_test_obj.id"] if btf else []),
                  "--json")
    assert listed["truncated"] is None and len(listed["entries"]) == 100
    ids_at = _offset(dprog, "struct kcrash_test_obj", "id")
    ids = [int.from_bytes(dprog.read(e["address"] + ids_at, 4), "little") for e in listed["entries"]]
    assert ids == list(range(100))
    if btf:
        assert [e["value"]["id"] for e in listed["entries"]] == ids
    cycle = _cli("list", dump, "-H", "kcrash_test_cycle", *link, "--json")
    assert len(cycle["entries"]) == 3 and cycle["truncated"].startswith("cycle")


def test_cli_vm_and_vtop_c(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    dump = str(crash[0] / "vmcore.elf")
    task = next(iter(_processes(prog).values()))
    pid = str(int(task.pid))
    (space,) = _cli("vm", dump, pid, "--json")
    assert [(v["start"], v["end"], v["flags"]) for v in space["vmas"]] == \
        [(v.vm_start.value_(), v.vm_end.value_(), v.vm_flags.value_()) for v in
         for_each_vma(find_task(crash[1], int(pid)).mm)]
    dmm = find_task(crash[1], int(pid)).mm
    for vma in space["vmas"]:
        with contextlib.suppress(drgn.FaultError):
            physical = follow_phys(dmm, vma["start"]).value_()
            break
    else:
        pytest.fail("no VMA with its first page mapped")
    out = _cli("vtop", dump, "-c", pid, hex(vma["start"]), "--json")
    assert out["vma"]["address"] == vma["address"] and out["physical"] == physical
    result = CliRunner().invoke(kcrash, ["vtop", dump, "-c", "2", hex(vma["start"])])
    assert isinstance(result.exception, CliError) and "kernel thread" in str(result.exception)


def test_vm_of_the_kdump_file_equals_the_elf_file(prog: Program, crash: tuple[Path, Any, dict[str, Any]],
                                                  tmp_path: Path) -> None:
    # the same memory in the compressed format (user data pages filtered out; page tables and VMAs kept)
    skip_kdump_pair(crash[0])
    with open_target(crash[0] / "vmcore.kdump", tmp_path) as kdump:
        for mm, task in _processes(prog).items():
            ours = task_vm(kdump, Object(kdump, kdump.pointer_type("struct task_struct"), int(task)))
            assert ours == task_vm(prog, task), hex(mm)
