"""One crash-time rule (issue 22): VMCOREINFO's CRASHTIME, else the timekeeper's xtime_sec, else
None; ``dump info`` and ``sys`` both use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.analysis import dumpinfo
from kcrash.analysis.dumpinfo import crash_time_or_none, dump_facts
from kcrash.dumps import open_dump
from kcrash.dumps.cpustate import CpuState, PrStatus, QemuCpuState
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.types.program import Program
from support.synthetic import make_synthetic_kernel


def test_crashtime_comes_first_then_the_timekeeper(monkeypatch: pytest.MonkeyPatch) -> None:
    prog = object.__new__(Program)  # never read: the timekeeper is stubbed
    monkeypatch.setattr(dumpinfo, "_timekeeper_seconds_or_none", lambda p: 1796647110 if p is prog else None)
    with_crashtime = parse_vmcoreinfo("OSRELEASE=6.12.0\nCRASHTIME=1700000000\n")
    without = parse_vmcoreinfo("OSRELEASE=6.12.0\n")
    assert crash_time_or_none(with_crashtime, prog) == 1700000000
    assert crash_time_or_none(without, prog) == 1796647110
    assert crash_time_or_none(None, prog) == 1796647110
    assert crash_time_or_none(without) is None and crash_time_or_none(None) is None


def test_dump_facts_use_the_rule(tmp_path: Path) -> None:
    make_synthetic_kernel().write_elf(tmp_path / "vmcore.elf")
    dump = open_dump([str(tmp_path / "vmcore.elf")])
    try:
        facts = dump_facts(dump)
        assert facts["crash_time"] == crash_time_or_none(dump.vmcoreinfo_or_none()) == 1700000000
    finally:
        dump.close()


def test_pr_pid_is_named_for_its_writer() -> None:
    # issue 22: QEMU's dump-guest-memory stores cpu_index + 1 (dump/dump.c cpu_index()), the
    # kernel's crash_save_cpu() current->pid; a dump with QEMU's QEMUCPUState notes is QEMU's
    regs = {"rip": 0xFFFFFFFF81000000, "rsp": 0xFFFFC90000013790}
    qemu = QemuCpuState(1, regs, {"gs": 0xFFFF88803EC00000}, {"gs": 0}, (0x80050033, 0, 0, 0x1000, 0x3606F0), None)
    by_qemu = dumpinfo._cpu_row(CpuState(2, PrStatus(3, 0, regs), qemu))
    assert (by_qemu["cpu"], by_qemu["qemu_cpu_index"], by_qemu["cr3"]) == (2, 2, 0x1000)
    assert "pid" not in by_qemu and "pr_pid" not in by_qemu
    by_kernel = dumpinfo._cpu_row(CpuState(0, PrStatus(4242, 0, regs), None))
    assert by_kernel == {"cpu": 0, "pid": 4242, "registers": regs}
