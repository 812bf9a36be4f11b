"""Oracle (issue 21): Debian's 6.1 arm64 kernel, whose kallsyms holds text symbols only (no
``CONFIG_KALLSYMS_ALL``), read by kcrash with NO symbol file — ``__start_BTF``/``__stop_BTF``,
``init_task``, ``modules``, ``__per_cpu_offset``, the per-CPU variables and the exported symbols
(``__ksymtab``) recovered from the dump by structure (:mod:`kcrash.types.recover`) — against drgn 0.3.0
with the -dbg vmlinux and the lab module.

Compared, per dump file (QEMU's ELF and the flattened kdump file; drgn reads the ELF): every recovered
symbol's address with the -dbg vmlinux's (KASLR-moved, by drgn); the task set (pid, comm, state
letter); dmesg line for line; the module list (name, base); the crashed thread's backtrace pcs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.analysis.target import open_target
from kcrash.analysis.triage import log_lines, printk_records
from kcrash.dumps import DumpWarning
from kcrash.helpers.linux.module import for_each_module, module_base, module_name
from kcrash.helpers.linux.panic import panic_cpu_or_none
from kcrash.helpers.linux.sched import for_each_task, task_state_to_char
from kcrash.helpers.linux.stack import stack_trace
from kcrash.types.program import Program
from support.drgn_oracle import drgn_program

drgn = pytest.importorskip("drgn")

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

KINDS = ("BUG", "SYSRQ", "PANIC", "WARNING", "NULL_READ", "NULL_WRITE", "OOM", "SOFTLOCKUP", "SPINLOCKUP",
         "HUNG_ABBA", "INITEXIT", "STACK_OVERFLOW")
CASES = [*((kind, False) for kind in KINDS), ("BUG", True)]
FORMATS = ("vmcore.elf", "vmcore.kdump")
_USER_TOP = 0xFFFF000000000000


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"{c[0]}-6.1-arm64{'-kaslr' if c[1] else ''}")
def crash(request: pytest.FixtureRequest, lab_crash: Callable[..., Path],
          lab_vmlinux_dbg: Callable[..., Path]) -> tuple[Path, Any]:
    kind, kaslr = request.param
    out = lab_crash(kind, "6.1", kaslr, "arm64")
    return out, drgn_program(out, lab_vmlinux_dbg("6.1", arch="arm64"))


@pytest.fixture(params=FORMATS)
def prog(request: pytest.FixtureRequest, crash: tuple[Path, Any], tmp_path: Path) -> Iterator[Program]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target = open_target(crash[0] / request.param, tmp_path)
    with target:
        assert target.machine == "aarch64"
        # the warning names what was recovered, and kallsyms had none of it
        text = " ".join(str(w.message) for w in caught if issubclass(w.category, DumpWarning))
        assert "kallsyms holds text symbols only" in text and "init_task at" in text
        yield target


def test_recovered_symbols_are_the_vmlinux_ones(prog: Program, crash: tuple[Path, Any]) -> None:
    dprog = crash[1]
    names = ["__start_BTF", "__stop_BTF", "init_task", "modules", "__per_cpu_offset", "__per_cpu_start",
             "runqueues", "__entry_task", "init_uts_ns", "prb", "__cpu_online_mask", "__cpu_present_mask",
             "nr_cpu_ids", "system_wq", "jiffies", "taint_flags"]
    ours = {name: prog.symbol_address(name) for name in names}
    theirs = {name: dprog.symbol(name).address for name in names}
    assert ours == theirs


def test_task_set_is_identical(prog: Program, crash: tuple[Path, Any]) -> None:
    from drgn.helpers.linux.pid import for_each_task as drgn_tasks
    from drgn.helpers.linux.sched import task_state_to_char as drgn_state

    theirs = sorted((t.pid.value_(), t.comm.string_(), drgn_state(t)) for t in drgn_tasks(crash[1]))
    walk = for_each_task(prog)
    ours = sorted((int(t.pid), t.comm.string_(), task_state_to_char(t)) for t in walk)
    assert walk.truncated is None
    assert len(ours) > 50
    assert ours == theirs


def test_dmesg_is_identical_line_for_line(prog: Program, crash: tuple[Path, Any]) -> None:
    from drgn.helpers.linux.printk import get_dmesg

    theirs = get_dmesg(crash[1]).decode("utf-8", "backslashreplace").split("\n")
    ours = [*"\n".join(line.formatted() for line in log_lines(printk_records(prog))).split("\n"), ""]
    assert len(ours) > 200
    assert ours == theirs


def test_module_list_is_identical(prog: Program, crash: tuple[Path, Any]) -> None:
    from drgn.helpers.linux.module import for_each_module as drgn_modules

    theirs = [(m.name.string_().decode(), m.core_layout.base.value_()) for m in drgn_modules(crash[1])]
    ours = [(module_name(m), module_base(m)) for m in for_each_module(prog)]
    assert len(ours) >= 2 and "kcrash_test" in {name for name, _ in ours}
    assert ours == theirs


def test_crashed_thread_backtrace_is_drgns(prog: Program, crash: tuple[Path, Any]) -> None:
    dprog = crash[1]
    crashed = dprog.crashed_thread()
    cpu = panic_cpu_or_none(prog)
    assert cpu is not None
    ours = stack_trace(prog, cpu)
    theirs = []
    for frame in crashed.stack_trace():
        if frame.is_inline:
            continue
        if frame.pc < _USER_TOP:
            break
        theirs.append(frame.pc)
    # drgn's trace may stop early or go on where its CFI does (see test_arm64_bt_drgn.py); the first
    # frames, through panic(), are the same
    assert len(ours.pcs) >= 4
    assert list(ours.pcs)[:4] == theirs[:4]
