"""Real lab dumps with kcrash alone (no vmlinux): kallsyms + in-memory BTF give typed objects.

The lab module's planted data is found by typed walks: its split BTF comes from the built ``.ko``
(until the in-memory module walk lands) and the addresses of its two globals from lab.json (until
module symbols land); everything else comes from the dump.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from kcrash.helpers.linux.list import list_for_each_entry, validate_list
from kcrash.types.cexpr import evaluate
from kcrash.types.percpu import per_cpu
from kcrash.types.program import Program, open_program

pytestmark = pytest.mark.lab

CRASHES = [("6.1", True), ("6.12", False)]


def _open(out: Path, tmp_path: Path) -> tuple[Program, dict[str, Any]]:
    info = json.loads((out / "lab.json").read_text())
    prog = open_program(out / "vmcore.elf", tmp_path)
    with open(info["module"]["path"], "rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        assert section is not None, "the lab module has no .BTF section"
        prog.add_module_types(info["module"]["name"], section.data())
    return prog, info


@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES)
def test_planted_objects_by_typed_walks(lab_crash: Callable[..., Path], tmp_path: Path,
                                        kernel: str, kaslr: bool) -> None:
    prog, info = _open(lab_crash("BUG", kernel, kaslr), tmp_path)
    planted = info["planted"]
    head = prog.object("struct list_head", planted["list_address"])
    walk = list_for_each_entry(f"struct {planted['object_struct']}", head, "node")
    objs = list(walk)
    assert walk.truncated is None
    assert len(objs) == planted["object_count"] == validate_list(head)
    assert {o.magic.value_() for o in objs} == {planted["object_magic"]}
    assert sorted(o.id.value_() for o in objs) == list(range(100))
    assert all(o.tag.string_() == f"obj-{o.id.value_()}".encode() for o in objs)
    glob = prog.object("struct kcrash_test_planted",
                       planted["global_address"])
    for field, expected in planted["global_values"].items():
        value = glob.member_(field)
        got = value.string_().decode() if field == "name" else value.value_()
        assert got == expected, field
    assert glob.self.value_() == planted["global_address"]
    assert glob.first.value_() == objs[0].value_()
    assert glob.raw.string_() == b"raw\xff\xfe<>"
    assert (glob.mode.bit_field_size_, glob.level.bit_field_size_) == (3, 4)


@pytest.mark.parametrize(("kernel", "kaslr"), CRASHES)
def test_tasks_percpu_and_expressions(lab_crash: Callable[..., Path], tmp_path: Path,
                                      kernel: str, kaslr: bool) -> None:
    out = lab_crash("BUG", kernel, kaslr)
    start = time.perf_counter()
    prog, info = _open(out, tmp_path)
    assert time.perf_counter() - start < 10
    init = prog["init_task"]
    assert init.comm.string_() == b"swapper/0"
    tasks = {int(t.pid): t.comm.string_() for t in list_for_each_entry("struct task_struct", init.tasks, "tasks")}
    planted = info["planted"]
    names = set(tasks.values())
    assert {planted["sleeper_task"].encode(), planted["hostile_task"].encode(),
            bytes.fromhex(planted["nonutf8_task_hex"]), b"init", b"kthreadd"} <= names
    assert prog["init_uts_ns"].name.release.string_().decode() == info["kernel"]["release"]
    ncpu = prog["nr_cpu_ids"].value_()
    assert ncpu == info["smp"]
    for cpu in range(ncpu):
        assert per_cpu(prog, "runqueues", cpu).cpu.value_() == cpu
        current = _current_task(prog, cpu)
        assert int(current.pid) in tasks or current.comm.string_().startswith(b"swapper/")
    assert evaluate(prog, "init_task.tasks.next->prev").value_() == init.tasks.address_of_().value_()
    assert evaluate(prog, f"((struct task_struct *){init.address_of_().value_():#x})->comm").string_() == b"swapper/0"
    modules = [m.name.string_() for m in list_for_each_entry("struct module", prog["modules"], "list")]
    assert b"kcrash_test" in modules


def _current_task(prog: Program, cpu: int) -> Any:
    # Probe, never version-check: current_task was folded into struct pcpu_hot (commit e57ef2ed97c1).
    if "pcpu_hot" in prog:
        return per_cpu(prog, "pcpu_hot", cpu).current_task
    return per_cpu(prog, "current_task", cpu)


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_cached_btf_indexes_answer_like_a_fresh_scan(lab_crash: Callable[..., Path], tmp_path: Path,
                                                     kernel: str) -> None:
    # open twice with one cache directory: the second open's BTF uses the cached record index;
    # it must be the record chain a plain Python walk of the words finds, and name lookups must
    # give what a scan of every record's name gives
    out = lab_crash("BUG", kernel, False)
    with open_program(out / "vmcore.elf", tmp_path):
        pass
    (cached,) = (tmp_path / "btf-index").glob("*.bin")
    inode = cached.stat().st_ino  # a rebuilt index would be a new file (written, then renamed)
    with open_program(out / "vmcore.elf", tmp_path) as warm:
        assert cached.stat().st_ino == inode
        btf = warm.btf
        assert btf is not None
        words, pos, walked = btf._words, 0, []
        extra, per = {1: 1, 3: 3, 14: 1, 17: 1}, {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}  # words after the header
        while pos < len(words):
            walked.append(pos)
            kind, vlen = words[pos + 1] >> 24 & 0x1F, words[pos + 1] & 0xFFFF
            pos += 3 + extra.get(kind, 0) + vlen * per.get(kind, 0)
        assert pos == len(words) and btf._offsets.tolist() == walked == type(btf)(btf.data)._offsets.tolist()
        by_name: dict[str, list[int]] = {}
        for type_id in range(btf.first_id, btf.end_id):
            by_name.setdefault(btf.string(btf._record(type_id)[1]), []).append(type_id)
        by_name.pop("")
        long = [n for n in by_name if len(n) > 24]
        assert len(by_name) > 50_000 and len(long) > 1000
        names = sorted(by_name)[::13] + long[::7] + ["task_struct", "no_such_type_name", long[0][:24], long[0] + "x"]
        for name in names:
            assert btf.ids_named(name, range(1, 20)) == by_name.get(name, []), name


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_enum_constants_match_the_enum_types(lab_crash: Callable[..., Path], tmp_path: Path, kernel: str) -> None:
    # find_enumerator_or_none reads the words directly; every constant must give what the built enum
    # Type says, for the first enum (by id) that defines it
    with open_program(lab_crash("BUG", kernel, False) / "vmcore.elf", tmp_path) as prog:
        btf = prog.btf
        first: dict[str, tuple[int, int]] = {}
        for type_id in range(btf.first_id, btf.end_id):
            kind = (btf._record(type_id)[2])
            if kind in (6, 19):  # ENUM, ENUM64
                for e in btf.type_by_id(type_id).enumerators or ():
                    first.setdefault(e.name, (type_id, e.value))
        assert len(first) > 1000
        for name, (type_id, value) in list(first.items())[::7]:
            found = btf.find_enumerator_or_none(name)
            assert found is not None and (found[0].type_id, found[1]) == (type_id, value), name
