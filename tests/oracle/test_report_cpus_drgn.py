"""Oracle for issue 18's report sections: what every CPU and every task was doing, and the frames'
disassembly. kcrash builds the report of each lab dump with NO vmlinux (kallsyms, BTF and module
symbols from the dump); drgn opens the same ELF vmcore with the Debian -dbg vmlinux and the
module's .ko:

* ``cpus``: one entry per possible CPU (drgn's ``for_each_possible_cpu``), the panic CPU (drgn's
  ``crashed_thread()``) first; each CPU's task is drgn's ``cpu_curr`` (address, PID, comm) and its
  frame pcs equal drgn's ``prog.stack_trace(cpu_curr(cpu))`` (physical frames, up to the first
  user-space pc: at a user-mode ``pt_regs`` kcrash stops, as the kernel does); every frame's
  function is drgn's symbol of its pc (of pc - 1 for a return address, as ``%pS``);
* ``task_traces``: every task's frame pcs equal drgn's ``stack_trace(task)`` (at least 95%, as the
  unwinder's own oracle; mismatches printed);
* ``frame_disassembly``: one block per distinct frame pc; every instruction's bytes are the bytes
  drgn reads at its address, the instruction at the pc starts exactly there, and the block's
  function is drgn's symbol of the pc;
* ``oops``: the header and ``Code:`` lines are lines of drgn's ``get_dmesg``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash import model
from kcrash.analysis.target import open_target
from kcrash.analysis.triage import build_report
from support.drgn_oracle import KDUMP_KCRASH, case_id, drgn_program, skip_lost_slab

drgn = pytest.importorskip("drgn")
from drgn.helpers.linux.cpumask import for_each_possible_cpu  # noqa: E402
from drgn.helpers.linux.printk import get_dmesg  # noqa: E402
from drgn.helpers.linux.sched import cpu_curr  # noqa: E402

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), *KDUMP_KCRASH]
_USER_TOP = 0xFFFF800000000000


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def crash(
    request: pytest.FixtureRequest,
    lab_case: Callable[..., Path],
    lab_vmlinux_dbg: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[model.CrashReport, Any, float]:
    skip_lost_slab(request.param)
    kernel = request.param[1]
    out = lab_case(request.param)
    dprog = drgn_program(out, lab_vmlinux_dbg(kernel))
    with open_target(out / "vmcore.elf", tmp_path_factory.mktemp("cache")) as prog:
        start = time.perf_counter()
        report = build_report(prog, str(out / "vmcore.elf"))
        elapsed = time.perf_counter() - start
    return report, dprog, elapsed


def _drgn_pcs(trace: Any) -> list[int]:
    pcs = []
    for frame in trace:
        if frame.is_inline:
            continue
        if frame.pc < _USER_TOP:
            break
        pcs.append(frame.pc)
    return pcs


def _symbol_name(dprog: Any, address: int) -> str | None:
    try:
        return str(dprog.symbol(address).name)
    except LookupError:
        return None


def _names_agree(dprog: Any, ours: str | None, address: int) -> bool | None:
    # None: drgn has no symbol there (a module whose .ko drgn was not given: pvpanic, ...).
    # kallsyms has no sizes, so kcrash (like the kernel's %pS) names the nearest symbol at or before
    # the address; an ELF label inside a sized function (common_startup_64 inside
    # secondary_startup_64, arch/x86/kernel/head_64.S) is then named where drgn names the function.
    try:
        theirs = dprog.symbol(address)
    except LookupError:
        return None
    if ours == theirs.name:
        return True
    try:
        label = dprog.symbol(ours) if ours else None
    except LookupError:
        return False
    return label is not None and theirs.address <= label.address <= address


def test_every_possible_cpu_panic_cpu_first(crash: tuple[model.CrashReport, Any, float]) -> None:
    report, dprog, _ = crash
    panic_cpu = dprog["panic_cpu"].counter.value_()
    assert report.system.panic_cpu == panic_cpu
    possible = list(for_each_possible_cpu(dprog))
    assert [c.cpu for c in report.cpus] == [panic_cpu, *(c for c in possible if c != panic_cpu)]
    assert [c.panic for c in report.cpus] == [True] + [False] * (len(possible) - 1)
    assert report.cpus[0].task.task == dprog.crashed_thread().object.value_()
    assert report.cpus[0].trace == report.backtrace  # the crashed thread's trace is the panic CPU's


def test_every_cpus_task_is_drgns_cpu_curr(crash: tuple[model.CrashReport, Any, float]) -> None:
    report, dprog, _ = crash
    for c in report.cpus:
        task = cpu_curr(dprog, c.cpu)
        assert (c.task.task, c.task.pid, c.task.comm) == (
            task.value_(),
            task.pid.value_(),
            task.comm.string_().decode(),
        ), f"CPU {c.cpu}"
        assert c.task.active and c.task.cpu == c.cpu and c.registers_from == "NT_PRSTATUS"


def test_every_cpus_frames_are_drgns(crash: tuple[model.CrashReport, Any, float],
                                     request: pytest.FixtureRequest) -> None:
    report, dprog, _ = crash
    kdump = len(request.node.callspec.params["crash"]) == 4
    for c in report.cpus:
        ours = [f.pc for f in c.trace.frames]
        assert ours == _drgn_pcs(dprog.stack_trace(cpu_curr(dprog, c.cpu))), f"CPU {c.cpu}"
        if len(ours) == 1 and kdump and c.trace.frames[0].function == "asm_exc_page_fault":
            # kdump's NMI stop caught this CPU at a user-mode page fault's first instruction, its sp on
            # the CPU entry area's entry stack: drgn too stops after that frame (the pcs agree above)
            assert c.trace.truncated is not None and "on no known stack" in c.trace.truncated
            continue
        assert len(ours) >= 4 and c.trace.truncated is None, f"CPU {c.cpu}"
        agree = [
            _names_agree(dprog, f.function, f.pc - 1 if f.kind in ("call", "scan") else f.pc) for f in c.trace.frames
        ]
        assert False not in agree, (c.cpu, [(f.text, a) for f, a in zip(c.trace.frames, agree, strict=True)])
        assert agree.count(True) >= len(agree) - 2, agree  # only the pvpanic frames unknown to drgn


def test_every_tasks_frames_are_drgns(
    crash: tuple[model.CrashReport, Any, float], capsys: pytest.CaptureFixture[str]
) -> None:
    report, dprog, elapsed = crash
    assert len(report.task_traces) == len(report.tasks) > 50
    mismatches = []
    for entry in report.task_traces:
        task = drgn.Object(dprog, "struct task_struct *", entry.task.task)
        if [f.pc for f in entry.trace.frames] != _drgn_pcs(dprog.stack_trace(task)):
            mismatches.append((entry.task.pid, entry.task.comm, entry.trace.truncated))
    rate = 1 - len(mismatches) / len(report.task_traces)
    with capsys.disabled():
        print(
            f"\n  report task traces: {len(report.task_traces) - len(mismatches)}/{len(report.task_traces)} "
            f"equal drgn's ({rate:.1%}); build_report took {elapsed:.2f} s; mismatches: {mismatches}"
        )
    assert rate >= 0.95, mismatches


def test_frame_disassembly_is_drgns_memory(crash: tuple[model.CrashReport, Any, float]) -> None:
    report, dprog, _ = crash
    traces = [report.backtrace, *(c.trace for c in report.cpus), *(t.trace for t in report.task_traces)]
    pcs = {f.pc for t in traces for f in t.frames}
    assert [d.ip for d in report.frame_disassembly] == sorted(pcs)
    modules = {f.pc: f.module for t in traces for f in t.frames}
    unknown: list[tuple[str | None, str | None]] = []
    excluded = 0
    init = (dprog.symbol("__init_begin").address, dprog.symbol("__init_end").address)
    for block in report.frame_disassembly:
        if block.error is not None and init[0] <= block.ip < init[1]:
            # init text (start_kernel, x86_64_start_reservations) was freed after boot: a -d 31 kdump
            # file leaves the page out if it is still free (and drgn cannot read it either), else holds
            # what reused it
            if block.error.endswith("excluded by dump level 31"):
                with pytest.raises(drgn.FaultError):
                    dprog.read(block.ip, 1)
            else:
                assert block.error.startswith("no instruction starts at"), block.error
            excluded += 1
            continue
        assert block.error is None, (hex(block.ip), block.error)
        at = [i for i in block.instructions if i.faulting]
        assert len(at) == 1 and at[0].address == block.ip, hex(block.ip)
        for insn in block.instructions:
            assert bytes.fromhex(insn.hex) == dprog.read(insn.address, len(insn.hex) // 2), hex(insn.address)
        # a return address may lie just past its (noreturn) caller's end: panic, rest_init, ...
        agree = _names_agree(dprog, block.function, block.ip) or _names_agree(dprog, block.function, block.ip - 1)
        if agree is None:
            unknown.append((block.function, modules[block.ip]))
        else:
            assert agree, (hex(block.ip), block.function)
    # drgn was given vmlinux and kcrash_test.ko only: the other modules' pcs have no drgn symbol
    assert all(module not in (None, "kcrash_test") for _, module in unknown), unknown
    assert len(report.frame_disassembly) - len(unknown) - excluded > 40


def test_oops_lines_are_drgns_dmesg_lines(crash: tuple[model.CrashReport, Any, float],
                                          request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params["crash"][0] != "BUG":
        pytest.skip("a BUG's oops header: SYSRQ panics without one")
    report, dprog, _ = crash
    assert report.oops is not None and report.oops.code is not None
    dmesg = get_dmesg(dprog).decode(errors="replace").splitlines()
    ours = [line.formatted() for line in (*report.oops.lines, report.oops.code)]
    start = dmesg.index(ours[0])
    assert dmesg[start : start + len(ours) - 1] == ours[:-1]
    assert ours[-1] in dmesg[start + len(ours) - 1 :]
    assert report.oops.lines[0].text.startswith("kernel BUG at ") and report.oops.lines[-1].text.startswith("RIP: ")
