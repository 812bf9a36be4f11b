"""Oracle: ``kcrash p``/``whatis`` expressions and ``kcrash dis`` (issue 17). kcrash opens each dump with
NO vmlinux (kallsyms, in-memory BTF, module symbols and BTF) and is compared with drgn given the Debian
-dbg vmlinux and the lab module's .ko, on BUG 6.1 (KASLR), BUG 6.12, BUG 5.10 (KASLR; no module BTF
there, so module globals are read through kernel types only) and SYSRQ 7.2 (no lab module):

* C expressions (arithmetic, comparisons, logic, sizeof, casts, &, *, [], ->, pointer arithmetic,
  container_of spelled in C) evaluate to drgn's values (``prog[...]``, ``drgn.Object`` arithmetic,
  ``drgn.cast``, ``drgn.sizeof``), and to drgn's C types where both name one;
* per-CPU variables: ``runqueues:N`` members and ``&runqueues:N`` equal drgn's ``per_cpu``/``per_cpu_ptr``
  on every possible CPU, ``p runqueues`` lists drgn's per-CPU addresses, and the module's per-CPU
  counter is the planted 0x1000*(cpu+1)+0x2a (a module per-CPU variable: its symbol is a per-CPU
  pointer below the kernel half);
* the lab module's globals, which BTF does not type (pahole emits VARs for per-CPU variables only),
  read through casts equal drgn's typed reads and the planted values;
* ``whatis`` member offsets and function prototypes equal drgn's (DWARF) ones;
* ``dis`` of the module's functions: every instruction ``objdump -dr`` of the .ko shows starts where
  kcrash's does, with the same mnemonic except at sites the kernel patches at load (ftrace's
  ``__fentry__`` calls, return and indirect-branch thunks); each call whose relocation names a function
  is labelled with that function; and every labelled branch target, in the module and in vmlinux
  (``schedule``), is drgn's symbol at that address with the same offset;
* ``dis -l`` of a module function with only its .ko: each instruction's source line is addr2line's.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.target import open_target
from kcrash.cli import main
from kcrash.types.btf import BTF_KIND
from kcrash.types.cexpr import evaluate
from kcrash.types.program import Program
from support.drgn_oracle import KDUMP_KCRASH, LAB_CASES, case_id, drgn_program, lab_info, skip_lost_slab
from support.jsonout import from_hex

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = LAB_CASES + KDUMP_KCRASH[:2]
MAGIC = 0xFEEDFACE0BADC0DE
# Sites the kernel rewrites when it loads a module: ftrace turns "call __fentry__" into a NOP, the
# return thunk becomes "ret; int3", retpoline thunks become indirect branches (arch/x86/kernel/alternative.c).
PATCHED = re.compile(r"^(__fentry__|__x86_return_thunk|__x86_indirect_thunk_\w+|__x86_indirect_call_thunk_\w+)$")


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(request: pytest.FixtureRequest, lab_case: Callable[..., Path],
          lab_vmlinux_dbg: Callable[[str], Path]) -> tuple[Path, Any, dict[str, Any]]:
    kernel = request.param[1]
    skip_lost_slab(request.param)  # drgn places the module's sections by its slab-allocated sect_attrs
    out = lab_case(request.param)
    info = lab_info(out)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    return out, dprog, info


@pytest.fixture(scope="module")
def prog(crash: tuple[Path, Any, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with open_target(crash[0] / "vmcore.kdump", tmp_path_factory.mktemp("cache"), orc=False) as target:
        yield target


def _container_of(d: Any, ptr: Any, type_name: str, member: str) -> Any:
    return drgn.container_of(ptr, d.type(type_name), member)


# (kcrash expression, drgn's value of it, compare C type names too)
KERNEL: list[tuple[str, Callable[[Any], Any], bool]] = [
    ("init_task.pid + 1", lambda d: d["init_task"].pid + 1, True),
    ("-init_task.pid - 1", lambda d: -d["init_task"].pid - 1, True),
    ("sizeof(struct task_struct)", lambda d: drgn.sizeof(d.type("struct task_struct")), False),
    ("sizeof(struct rq) * 2 + sizeof init_task.comm", lambda d: 2 * drgn.sizeof(d.type("struct rq")) + 16, False),
    ("sizeof init_task.comm / sizeof init_task.comm[0]", lambda d: 16, False),
    ("(unsigned long)&init_task", lambda d: d["init_task"].address_, False),
    ("&init_task + 2", lambda d: d["init_task"].address_of_() + 2, True),
    ("(char *)&init_task.tasks - (char *)&init_task", lambda d: drgn.offsetof(d.type("struct task_struct"), "tasks"),
     False),
    ("&init_task.comm[5] - &init_task.comm[1]", lambda d: 4, False),
    ("init_task.tasks.next->prev == &init_task.tasks", lambda d: 1, False),
    ("((struct task_struct *)((unsigned long)init_task.tasks.next"
     " - (unsigned long)&((struct task_struct *)0)->tasks))->pid",
     lambda d: _container_of(d, d["init_task"].tasks.next, "struct task_struct", "tasks").pid, True),
    ("init_task.prio - 100", lambda d: d["init_task"].prio - 100, True),
    ("init_task.prio > 100 && init_task.pid == 0 || 0", lambda d: int(d["init_task"].prio > 100), True),
    ("!init_task.mm", lambda d: int(not d["init_task"].mm), False),
    ("init_task.flags & 0x200000 | 1 << 3", lambda d: (d["init_task"].flags & 0x200000) | 8, True),
    ("init_task.flags >> 4 ^ ~0u", lambda d: (d["init_task"].flags >> 4) ^ drgn.Object(d, "unsigned int", 0xFFFFFFFF),
     True),
    ("jiffies - 100", lambda d: d["jiffies"] - 100, False),
    ("jiffies % 1000 * 3 / 7", lambda d: d["jiffies"] % 1000 * 3 / 7, False),
    ("(int)jiffies_64 < 0", lambda d: int(drgn.cast("int", d["jiffies_64"]) < 0), False),
    ("(unsigned char)init_task.comm[2]", lambda d: drgn.cast("unsigned char", d["init_task"].comm[2]), True),
    ("__per_cpu_offset[1] - __per_cpu_offset[0]", lambda d: d["__per_cpu_offset"][1] - d["__per_cpu_offset"][0],
     False),
    ("nr_cpu_ids * 2 + 1", lambda d: d["nr_cpu_ids"] * 2 + 1, False),
    ("init_task.signal->nr_threads", lambda d: d["init_task"].signal.nr_threads, True),
    ("*init_task.comm", lambda d: d["init_task"].comm[0], True),
    ("((struct list_head *)init_task.tasks.next)->next != 0", lambda d: 1, False),
    ("PIDTYPE_MAX - 1", lambda d: d["PIDTYPE_MAX"].value_() - 1, False),
]

PER_CPU: list[tuple[str, Callable[[Any, int], Any]]] = [
    ("runqueues:{cpu}.cpu", lambda d, c: _per_cpu(d, "runqueues", c).cpu),
    ("runqueues:{cpu}.nr_running + runqueues:{cpu}.nr_switches", lambda d, c: _per_cpu(d, "runqueues", c).nr_running
     + _per_cpu(d, "runqueues", c).nr_switches),
    ("(unsigned long)&runqueues:{cpu}", lambda d, c: _per_cpu(d, "runqueues", c).address_),
    ("runqueues:{cpu}.curr->pid", lambda d, c: _per_cpu(d, "runqueues", c).curr.pid),
    ("runqueues:{cpu}.idle == runqueues:{cpu}.curr", lambda d, c: int(_per_cpu(d, "runqueues", c).idle
                                                                       == _per_cpu(d, "runqueues", c).curr)),
]

# the lab module's globals (no BTF VAR): read through casts, with kernel types only (5.10 has no module BTF)
MODULE_KERNEL_TYPES: list[tuple[str, Callable[[Any], Any]]] = [
    ("*(u64 *)&kcrash_test_percpu_counter:0", lambda d: _per_cpu(d, "kcrash_test_percpu_counter", 0)),
    ("*(u64 *)&kcrash_test_percpu_counter:1", lambda d: _per_cpu(d, "kcrash_test_percpu_counter", 1)),
    ("*(int *)((char *)&kcrash_test_global + 4) == 42", lambda d: int(d["kcrash_test_global"].answer == 42)),
    ("(unsigned long)kcrash_test_freed", lambda d: d["kcrash_test_freed"][0]),
    ("((unsigned long *)&kcrash_test_freed)[3]", lambda d: d["kcrash_test_freed"][3]),
    ("(*(u64 **)&kcrash_test_vmalloc_buf)[1234]", lambda d: d["kcrash_test_vmalloc_buf"][1234]),
    ("(*(u64 **)&kcrash_test_vmalloc_buf)[5]", lambda d: d["kcrash_test_vmalloc_buf"][5]),
    ("((struct rb_root *)&kcrash_test_rbtree)->rb_node",  lambda d: d["kcrash_test_rbtree"].rb_node),
]

# with the module's BTF (5.11+)
MODULE_TYPES: list[tuple[str, Callable[[Any], Any]]] = [
    ("kcrash_test_percpu_counter:1 - kcrash_test_percpu_counter:0",
     lambda d: _per_cpu(d, "kcrash_test_percpu_counter", 1) - _per_cpu(d, "kcrash_test_percpu_counter", 0)),
    ("((struct kcrash_test_planted *)&kcrash_test_global)->answer == 42",
     lambda d: int(d["kcrash_test_global"].answer == 42)),
    ("((struct kcrash_test_planted)kcrash_test_global).big", lambda d: d["kcrash_test_global"].big),
    ("(*(struct kcrash_test_planted *)&kcrash_test_global).mode * 10 + "
     "(*(struct kcrash_test_planted *)&kcrash_test_global).level",
     lambda d: d["kcrash_test_global"].mode * 10 + d["kcrash_test_global"].level),
    ("((struct kcrash_test_planted *)&kcrash_test_global)->self == &kcrash_test_global",
     lambda d: int(d["kcrash_test_global"].self == d["kcrash_test_global"].address_of_())),
    ("((struct kcrash_test_planted *)&kcrash_test_global)->first->id",
     lambda d: d["kcrash_test_global"].first.id),
    ("((struct kcrash_test_obj **)&kcrash_test_freed)[3]", lambda d: d["kcrash_test_freed"][3]),
    ("((struct kcrash_test_obj **)&kcrash_test_freed)[19] - ((struct kcrash_test_obj **)&kcrash_test_freed)[0]",
     lambda d: d["kcrash_test_freed"][19] - d["kcrash_test_freed"][0]),
    ("sizeof(struct kcrash_test_obj)", lambda d: drgn.sizeof(d.type("struct kcrash_test_obj"))),
    ("((struct kcrash_test_rb *)((struct rb_root *)&kcrash_test_rbtree)->rb_node)->key",
     lambda d: _container_of(d, d["kcrash_test_rbtree"].rb_node, "struct kcrash_test_rb", "rb").key),
]


def _per_cpu(d: Any, name: str, cpu: int) -> Any:
    from drgn.helpers.linux.percpu import per_cpu

    return per_cpu(d[name], cpu)


def _possible_cpus(d: Any) -> list[int]:
    from drgn.helpers.linux.cpumask import for_each_possible_cpu

    return list(for_each_possible_cpu(d))


def _same(ours: Any, theirs: Any, text: str, types: bool = False) -> None:
    value = theirs.value_() if isinstance(theirs, drgn.Object) else theirs
    assert ours.value_() == value, text
    if types and isinstance(theirs, drgn.Object):
        assert ours.type_.type_name() == theirs.type_.type_name(), text


def _needs_module(lab: dict[str, Any]) -> None:
    if not lab["module"]:
        pytest.skip("the lab module does not build for this kernel: nothing is planted")


def test_kernel_expressions_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    for text, theirs, types in KERNEL:
        _same(evaluate(prog, text), theirs(crash[1]), text, types)


def test_per_cpu_expressions_equal_drgn_on_every_cpu(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    cpus = _possible_cpus(crash[1])
    assert len(cpus) == 2
    for cpu in cpus:
        for text, theirs in PER_CPU:
            _same(evaluate(prog, text.format(cpu=cpu)), theirs(crash[1], cpu), text)


def test_p_of_a_per_cpu_variable_lists_drgns_addresses(crash: tuple[Path, Any, dict[str, Any]],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from drgn.helpers.linux.percpu import per_cpu_ptr

    d = crash[1]
    assert main(["p", str(crash[0] / "vmcore.kdump"), "runqueues", "--json"]) == 0
    data = from_hex(json.loads(capsys.readouterr().out))
    theirs = [{"cpu": c, "address": per_cpu_ptr(d["runqueues"].address_of_(), c).value_()} for c in _possible_cpus(d)]
    assert data["cpus"] == theirs and data["declaration"] == "struct rq runqueues"
    assert main(["p", str(crash[0] / "vmcore.kdump"), "runqueues:a", "--json"]) == 0
    values = from_hex(json.loads(capsys.readouterr().out))
    assert [(v["cpu"], v["address"], v["value"]["cpu"]) for v in values] == \
        [(t["cpu"], t["address"], t["cpu"]) for t in theirs]


def test_module_globals_through_casts_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]]) -> None:
    _needs_module(crash[2])
    d = crash[1]
    for text, theirs in MODULE_KERNEL_TYPES:
        _same(evaluate(prog, text), theirs(d), text)
    # the planted truth, whatever drgn says
    assert [evaluate(prog, f"*(u64 *)&kcrash_test_percpu_counter:{c}").value_() for c in (0, 1)] == [0x102A, 0x202A]
    assert evaluate(prog, "(*(u64 **)&kcrash_test_vmalloc_buf)[0]").value_() == MAGIC
    assert evaluate(prog, "(*(u64 **)&kcrash_test_vmalloc_buf)[7]").value_() == 0x6B63766D00000007


def test_module_typed_expressions_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _needs_module(crash[2])
    if not crash[2]["module"]["btf"]:
        pytest.skip("no module BTF before v5.11: module types are unknown without debuginfo")
    for text, theirs in MODULE_TYPES:
        _same(evaluate(prog, text), theirs(crash[1]), text)
    dump = str(crash[0] / "vmcore.kdump")
    assert main(["p", dump, "kcrash_test_percpu_counter:a", "--json"]) == 0
    assert [v["value"] for v in from_hex(json.loads(capsys.readouterr().out))] == [0x102A, 0x202A]
    assert main(["p", dump, "kcrash_test_global"]) == 1
    err = capsys.readouterr().err
    assert "cast it: (TYPE)kcrash_test_global or *(TYPE *)&kcrash_test_global" in err and "declare(" not in err
    assert main(["p", "--declare", "struct kcrash_test_obj *kcrash_test_freed[20]", dump,
                 "kcrash_test_freed[3]", "--json"]) == 0
    assert from_hex(json.loads(capsys.readouterr().out))["value"] == crash[1]["kcrash_test_freed"][3].value_()


@pytest.mark.parametrize(("type_name", "member"), [("task_struct", "pid"), ("task_struct", "se.vruntime"),
                                                   ("rq", "nr_running"), ("list_head", "prev")])
def test_whatis_member_offsets_equal_drgn(crash: tuple[Path, Any, dict[str, Any]], capsys: pytest.CaptureFixture[str],
                                          type_name: str, member: str) -> None:
    assert main(["whatis", str(crash[0] / "vmcore.kdump"), f"{type_name}.{member}", "--json"]) == 0
    data = from_hex(json.loads(capsys.readouterr().out))
    t = crash[1].type(f"struct {type_name}")
    assert (data["kind"], data["offset"]) == ("member", drgn.offsetof(t, member))
    assert data["size"] == drgn.sizeof(t.member(member.split(".")[0]).type) or "." in member


@pytest.mark.parametrize("function", ["schedule", "strcmp", "panic", "kcrash_test_do_bug"])
def test_whatis_function_prototypes_equal_drgn(prog: Program, crash: tuple[Path, Any, dict[str, Any]],
                                               function: str) -> None:
    if function.startswith("kcrash_test") and not (crash[2]["module"] and crash[2]["module"]["btf"]):
        pytest.skip("no lab module with BTF on this kernel")
    from kcrash.analysis.expressions import whatis

    found = whatis(prog, function)
    if not any(b.ids_named(function, (BTF_KIND["FUNC"],)) for b in (prog.btf, *prog.module_btf.values()) if b):
        # 5.10's BTF has no FUNC for the lib/string.c functions: the symbol is then of unknown type
        assert found.kind == "symbol" and "type unknown" in found.declaration
        return
    assert found.kind == "function"
    # drgn names the prototype ("int (const char *cs, const char *ct)"); whatis declares the function
    assert found.declaration == crash[1][function].type_.type_name().replace("(", f"{function}(", 1)


def _objdump(ko: str, function: str) -> tuple[list[tuple[int, str]], dict[int, str]]:
    # (offset in the function, mnemonic) of each instruction, and the relocations (offset -> symbol)
    text = subprocess.run(["objdump", "-dr", "--no-show-raw-insn", "-M", "intel", f"--disassemble={function}", ko],
                          capture_output=True, text=True, check=True).stdout
    start = int(re.search(rf"^([0-9a-f]+) <{function}>:", text, re.M).group(1), 16)  # type: ignore[union-attr]
    insns = [(int(m.group(1), 16) - start, m.group(2))
             for m in re.finditer(r"^\s*([0-9a-f]+):\t(\S+)", text, re.M)]
    relocs = {int(m.group(1), 16) - start: m.group(3)
              for m in re.finditer(r"^\s+([0-9a-f]+): (R_X86_64_\w+)\t([\w.]+)", text, re.M)}
    return insns, relocs


def _dis(dump: Path, function: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    assert main(["dis", str(dump), function, "--json"]) == 0
    return from_hex(json.loads(capsys.readouterr().out))  # type: ignore[no-any-return]


@pytest.mark.parametrize("function", ["kcrash_test_do_bug", "kcrash_test_level1", "kcrash_test_level2",
                                      "kcrash_test_sleep_deep", "kcrash_test_free_objects"])
def test_dis_of_module_functions_equals_objdump_and_drgn(crash: tuple[Path, Any, dict[str, Any]],
                                                         capsys: pytest.CaptureFixture[str], function: str) -> None:
    _needs_module(crash[2])
    ours = _dis(crash[0] / "vmcore.kdump", function, capsys)
    if not ours:
        pytest.fail(f"nothing disassembled for {function}")
    start = ours[0]["address"]
    by_offset = {i["address"] - start: i for i in ours}
    insns, relocs = _objdump(crash[2]["module"]["path"], function)
    patched = {o for o, _ in insns if any(PATCHED.match(relocs.get(o + k, "")) for k in range(1, 3))}
    assert {o for o, _ in insns} <= set(by_offset), "an instruction objdump shows does not start where ours does"
    checked_calls = 0
    for offset, mnemonic in insns:
        if offset in patched:
            continue
        assert by_offset[offset]["text"].split()[0] == mnemonic, (function, offset)
        symbol = relocs.get(offset + 1)
        if mnemonic in ("call", "jmp") and symbol is not None and not symbol.startswith("."):
            assert by_offset[offset]["target"]["symbol"] == symbol, (function, offset)
            checked_calls += 1
    # ours may start more instructions inside a patched site ("ret; int3" for a 5-byte jmp) and in the
    # padding after the function's ELF size (kallsyms sizes run to the next symbol)
    last = max(o for o, _ in insns)
    extra = set(by_offset) - {o for o, _ in insns}
    assert all(o > last or any(p <= o < p + 5 for p in patched) for o in extra), \
        "instructions of ours objdump does not have"
    _targets_are_drgns(crash[1], ours)
    if function == "kcrash_test_level2":
        assert checked_calls >= 1


def test_dis_of_a_kernel_function_names_drgns_targets(crash: tuple[Path, Any, dict[str, Any]],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ours = _dis(crash[0] / "vmcore.kdump", "schedule", capsys)
    assert _targets_are_drgns(crash[1], ours) >= 2


def _targets_are_drgns(d: Any, ours: list[dict[str, Any]]) -> int:
    checked = 0
    for insn in ours:
        target = insn["target"]
        if target is None or not target["branch"] or not target["symbol"]:
            continue
        theirs = d.symbol(target["target"])
        assert (target["symbol"], target["offset"]) == (theirs.name, target["target"] - theirs.address), insn
        checked += 1
    return checked


def test_dis_l_of_a_module_function_equals_addr2line(crash: tuple[Path, Any, dict[str, Any]],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # dis -l with the module's .ko only (no vmlinux): the text base is read from the dump, and every
    # instruction's innermost source line is addr2line's for the same .text offset of the .ko
    _needs_module(crash[2])
    ko = crash[2]["module"]["path"]
    assert main(["dis", str(crash[0] / "vmcore.kdump"), "kcrash_test_level2", "-l", "--debuginfo", ko, "--json"]) == 0
    ours = from_hex(json.loads(capsys.readouterr().out))
    nm = subprocess.run(["nm", ko], capture_output=True, text=True, check=True).stdout
    start = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" kcrash_test_level2"))
    offsets = [hex(i["address"] - ours[0]["address"] + start) for i in ours]
    theirs = subprocess.run(["addr2line", "-e", ko, *offsets], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert len(ours) == len(theirs) > 10
    for insn, line in zip(ours, theirs, strict=True):
        path, number = line.split()[0].rsplit(":", 1)
        assert insn["source"], insn
        assert (Path(insn["source"][0]["file"]).name, insn["source"][0]["line"]) == (Path(path).name, int(number))
