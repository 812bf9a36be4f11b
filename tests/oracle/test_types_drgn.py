"""Oracle: kcrash's types and objects from the dump alone (kallsyms + in-memory BTF) against drgn
with the Debian -dbg vmlinux (DWARF) and the lab module's DWARF."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from kcrash.helpers.linux.list import list_for_each_entry
from kcrash.types.model import Type, TypeKind
from kcrash.types.program import Program, open_program
from support.drgn_oracle import KDUMP_CASES, case_id, drgn_program, skip_lost_slab

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CRASHES = [("BUG", "6.1", True), ("BUG", "6.12", False), KDUMP_CASES[0], KDUMP_CASES[4]]
STRUCTS = ["task_struct", "module", "list_head", "hlist_head", "hlist_node", "rq", "printk_ringbuffer",
           "prb_desc_ring", "printk_info", "mm_struct", "kmem_cache", "page", "uts_namespace", "cpumask",
           "pt_regs", "thread_struct", "inode", "file", "sk_buff", "mutex", "task_struct", "cfs_rq", "pid"]
ENUMS = ["pid_type", "module_state", "zone_type", "hrtimer_restart"]


def _section(path: Path | str, name: str) -> bytes:
    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(name)
        assert section is not None, f"{path} has no {name}"
        return bytes(section.data())


def _drgn(out: Path, vmlinux: Path, ko: str) -> Any:
    assert ko == json.loads((out / "lab.json").read_text())["module"]["path"]
    return drgn_program(out, vmlinux)


def _ours(out: Path, tmp_path: Path, ko: str) -> Program:
    prog = open_program(out / "vmcore.elf", tmp_path)
    prog.add_module_types("kcrash_test", _section(ko, ".BTF"))
    return prog


def _drgn_size(t: Any) -> int | None:
    # BTF encodes a flexible array member ``x[]`` as ``x[0]`` (no incomplete arrays), so DWARF's
    # incomplete array counts as size 0 here.
    if t.unqualified().kind == drgn.TypeKind.ARRAY and not t.is_complete():
        return 0
    try:
        return int(drgn.sizeof(t))
    except TypeError:
        return None


def _our_size(t: Type) -> int | None:
    return t.sizeof() if t.is_complete() else None


def _rows_drgn(t: Any, base: int = 0) -> list[tuple[str | None, int, int, int | None]]:
    rows = []
    for m in t.members:
        rows.append((m.name, base + m.bit_offset, m.bit_field_size or 0, _drgn_size(m.type)))
        inner = m.type.unqualified()
        while inner.kind == drgn.TypeKind.TYPEDEF:
            inner = inner.type
        if m.name is None and inner.kind in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION):
            rows.extend(_rows_drgn(inner, base + m.bit_offset))
    return rows


def _rows_ours(t: Type, base: int = 0) -> list[tuple[str | None, int, int, int | None]]:
    rows = []
    for m in t.members or ():
        rows.append((m.name, base + m.bit_offset, m.bit_field_size, _our_size(m.type)))
        inner = m.type.strip_typedefs()
        if m.name is None and inner.kind in (TypeKind.STRUCT, TypeKind.UNION):
            rows.extend(_rows_ours(inner, base + m.bit_offset))
    return rows


@pytest.mark.parametrize("case", CRASHES, ids=case_id)
def test_btf_and_layouts_match_dwarf(lab_case: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                                     tmp_path: Path, case: tuple[Any, ...]) -> None:
    kernel = case[1]
    out = lab_case(case)
    vmlinux = lab_vmlinux_dbg(kernel)
    ko = json.loads((out / "lab.json").read_text())["module"]["path"]
    ours = _ours(out, tmp_path, ko)
    assert ours.btf is not None
    assert ours.btf.data == _section(vmlinux, ".BTF")  # the in-memory BTF is the vmlinux section
    theirs = _drgn(out, vmlinux, ko)
    names = [*STRUCTS, "kcrash_test_obj", "kcrash_test_planted"]
    if ours.find_type_or_none("struct pcpu_hot") is not None:
        names.append("pcpu_hot")
    for name in names:
        t, d = ours.type(f"struct {name}"), theirs.type(f"struct {name}")
        assert t.sizeof() == drgn.sizeof(d), name
        assert _rows_ours(t) == _rows_drgn(d), name
    for name in ENUMS:
        t, d = ours.type(f"enum {name}"), theirs.type(f"enum {name}")
        assert [(e.name, e.value) for e in t.enumerators or ()] == [(e.name, e.value) for e in d.enumerators]


@pytest.mark.parametrize("case", CRASHES, ids=case_id)
def test_objects_match_drgn(lab_case: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
                            tmp_path: Path, case: tuple[Any, ...]) -> None:
    from drgn.helpers.linux.pid import for_each_task

    skip_lost_slab(case)
    kernel = case[1]
    out = lab_case(case)
    info = json.loads((out / "lab.json").read_text())
    ours = _ours(out, tmp_path, info["module"]["path"])
    theirs = _drgn(out, lab_vmlinux_dbg(kernel), info["module"]["path"])
    init = ours["init_task"]
    assert init.comm.string_() == b"swapper/0"
    assert init.address_ == theirs["init_task"].address_
    # drgn's for_each_task walks the pid IDR, which has no pid 0: the list head init_task is not in either.
    walked = {(int(t.pid), t.comm.string_()) for t in list_for_each_entry("struct task_struct", init.tasks, "tasks")}
    assert walked == {(int(t.pid), t.comm.string_()) for t in for_each_task(theirs)}
    for name in ("jiffies", "nr_cpu_ids", "tainted_mask", "panic_cpu"):
        ours_value, theirs_value = ours[name].value_(), theirs[name].value_()
        if isinstance(ours_value, dict):  # atomic_t
            ours_value, theirs_value = ours_value["counter"], theirs_value["counter"]
        assert ours_value == theirs_value, name
    glob_ours = ours.object("struct kcrash_test_planted", info["planted"]["global_address"])
    glob_theirs = theirs[info["planted"]["global"]]
    for member in glob_theirs.type_.members:
        assert glob_ours.member_(member.name).value_() == glob_theirs.member_(member.name).value_(), member.name
    rq_ours = ours["runqueues"]
    assert rq_ours.address_ == theirs["runqueues"].address_
    assert rq_ours.type_.sizeof() == drgn.sizeof(theirs["runqueues"].type_)
