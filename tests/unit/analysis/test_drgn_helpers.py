"""drgn-named helpers on synthetic kernels: find_task/for_each_task in PID order, per_cpu(var, cpu),
get_kconfig's IKCONFIG blob and its absence, drgn's module layout and the shell's names."""

from __future__ import annotations

import gzip

import pytest

from kcrash.analysis import drgn_helpers
from kcrash.analysis.drgn_compat import drgn_program
from kcrash.analysis.drgn_helpers import drgn_modules, find_task, for_each_task, get_kconfig, shell_names
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import SymbolNotFoundError
from kcrash.types.object import Object
from support.task_kernel import BASE, INIT_TASK, Kernel


def _kernel() -> tuple[Kernel, int, int]:
    k = Kernel()
    init = k.task(1, 1, b"init")
    kthreadd = k.task(2, 2, b"kthreadd")
    k.ring(INIT_TASK + 32, [kthreadd + 32, init + 32])
    return k, init, kthreadd


def test_find_task_and_for_each_task_in_pid_order() -> None:
    k, init, kthreadd = _kernel()
    assert int(find_task(k.prog, 2)) == kthreadd and int(find_task(k.prog, 1).pid) == 1
    missing = find_task(k.prog, 99)
    assert int(missing) == 0 and missing.type_.type_name() == "struct task_struct *"
    assert [int(t) for t in for_each_task(k.prog)] == [init, kthreadd]


def test_get_kconfig_reads_the_ikconfig_blob() -> None:
    k = Kernel()
    blob = b"IKCFG_ST" + gzip.compress(b"# comment\nCONFIG_SMP=y\nCONFIG_HZ=250\n# CONFIG_X is not set\n") + b"IKCFG_ED"
    start = BASE + 0x3000
    k.put(start, blob)
    names = ["_stext", "kernel_config_data", "kernel_config_data_end", "_end"]
    k.prog.symbols = SymbolTable(names, [BASE, start, start + len(blob), BASE + 0x4000], "TddD")
    prog = drgn_program(k.prog)
    assert get_kconfig(prog) == {"CONFIG_SMP": "y", "CONFIG_HZ": "250"}
    assert "kconfig" in prog.cache


def test_get_kconfig_without_ikconfig_is_a_lookup_error() -> None:
    with pytest.raises(SymbolNotFoundError, match="CONFIG_IKCONFIG"):
        get_kconfig(Kernel().prog)


def test_drgn_modules_follow_drgns_layout() -> None:
    prog = drgn_program(_kernel()[0].prog)
    mods = drgn_modules(prog)
    assert mods["drgn.helpers.linux.pid"].find_task is find_task
    assert mods["drgn.helpers.linux"].list_for_each_entry is mods["drgn.helpers.linux.list"].list_for_each_entry
    assert mods["drgn"].Program is type(prog) and callable(mods["drgn"].container_of)
    assert "per_cpu" in mods["drgn.helpers.linux.percpu"].__all__
    assert mods["drgn.helpers.linux.percpu"].per_cpu is drgn_helpers.per_cpu


def test_shell_names_stack_trace_takes_a_pid_with_or_without_prog(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = drgn_program(_kernel()[0].prog)
    names = shell_names(prog)
    calls: list[object] = []
    monkeypatch.setattr(type(prog), "stack_trace", lambda self, thread: calls.append(thread))
    names["stack_trace"](151)
    names["stack_trace"](prog, 151)
    assert calls == [151, 151] and names["prog"] is prog and names["find_task"] is find_task
    with pytest.raises(TypeError):
        names["stack_trace"]()


def test_xa_to_value_is_an_unsigned_long_object_as_drgns() -> None:
    prog = Kernel().prog
    value = drgn_helpers.xa_to_value(Object(prog, prog.pointer_type("void"), 0xB5))
    assert str(value) == "(unsigned long)90" and value.value_() == 90


def test_drgn_modules_carry_the_other_subsystems_under_drgns_names() -> None:
    mods = drgn_modules(drgn_program(Kernel().prog))
    assert {"for_each_file", "fget", "for_each_mount", "d_path"} <= set(mods["drgn.helpers.linux.fs"].__all__)
    assert mods["drgn.helpers.linux.mm"].page_to_pfn is drgn_helpers.page_to_pfn
    assert mods["drgn.helpers.linux.wait"].waitqueue_for_each_entry is drgn_helpers.waitqueue_for_each_entry
    assert "swait_for_each_task" in mods["drgn.helpers.linux.swait"].__all__
    assert "for_each_netdev" in mods["drgn.helpers.linux.net"].__all__
    assert all(mod.__kcrash_drgn__ for mod in mods.values())
