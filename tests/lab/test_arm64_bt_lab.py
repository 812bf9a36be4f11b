"""``kcrash bt``, ``bt -a``, ``foreach bt`` and ``report`` on arm64 lab dumps (ELF and QEMU kdump), with
no vmlinux: the crashed thread goes from the panic through the BUG's exception frame (crash's arm64
register block, the pc in the lab module's crash function) down to the system call's user registers;
every CPU and every task unwinds without a truncation; the report names the crashing function and
says its disassembly is x86-64 only. The frames themselves are checked against drgn in
tests/oracle/test_arm64_bt_drgn.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from support.jsonout import from_hex

pytestmark = pytest.mark.lab


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    return out


@pytest.fixture(scope="module")
def crash(lab_crash: Callable[..., Path]) -> tuple[Path, dict[str, Any]]:
    out = lab_crash("BUG", "6.12", arch="arm64")
    return out, json.loads((out / "lab.json").read_text())


@pytest.mark.parametrize("dump", ["vmcore.elf", "vmcore.kdump"])
def test_bt_of_the_crashed_thread(crash: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str],
                                  dump: str) -> None:
    out, lab = crash
    text = _run(capsys, "bt", str(out / dump))
    lines = text.splitlines()
    assert "panic+" in text and "<- pt_regs" in text
    assert f"[exception PC: {lab['crash_function']}+" in text
    assert any(line.strip().startswith("PC:") and "LR:" in line for line in lines)
    frames = [line for line in lines if line.startswith(" #")]
    assert "el0t_64_sync+" in frames[-1]  # the write() system call's entry
    assert "PSTATE:" in lines[-1]  # then its user registers


def test_bt_every_cpu_and_task(crash: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = crash
    details = json.loads(_run(capsys, "bt", "-a", "--json", str(out / "vmcore.elf")))
    assert len(details) >= 2
    assert all(d["trace"]["truncated"] is None and len(d["frames"]) >= 3 for d in details)
    irq = [d for d in details if d["frames"][0]["stack"].startswith("IRQ ")]
    assert irq and all(any(f["leaves"] == "IRQ stack" for f in d["frames"]) for d in irq)
    text = _run(capsys, "foreach", str(out / "vmcore.elf"), "bt")
    assert text.count("PID:") >= 50 and "truncated" not in text.lower()


def test_report(crash: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]) -> None:
    out, lab = crash
    report = from_hex(json.loads(_run(capsys, "report", str(out / "vmcore.kdump"), "--json")))
    assert report["verdict"]["crashing_function"] == lab["crash_function"]
    assert report["context"]["registers_from"] == "pt_regs"
    assert "x86-64 only" in (report["disassembly"]["error"] or "")
    text = _run(capsys, "report", str(out / "vmcore.elf"))
    assert f"PC: {lab['crash_function']}+" in text


ARM64_KINDS = ("BUG", "SYSRQ", "PANIC", "WARNING", "NULL_READ", "NULL_WRITE", "OOM", "SOFTLOCKUP", "SPINLOCKUP",
               "HUNG_ABBA", "INITEXIT", "STACK_OVERFLOW")


@pytest.mark.parametrize("kind", ARM64_KINDS)
def test_report_names_the_crashing_function_of_every_kind(lab_crash: Callable[..., Path],
                                                           capsys: pytest.CaptureFixture[str], kind: str) -> None:
    # as tests/lab/test_report_lab.py on x86-64: lab.json's crash_function, for a hung-task panic
    # its blocked_function; the CPUs' and the crashed thread's traces end normally
    out = lab_crash(kind, "6.12", arch="arm64")
    lab = json.loads((out / "lab.json").read_text())
    report = from_hex(json.loads(_run(capsys, "report", str(out / "vmcore.elf"), "--json")))
    assert report["verdict"]["crashing_function"] == (lab.get("blocked_function") or lab["crash_function"])
    assert all(c["trace"]["truncated"] is None and c["trace"]["frames"] for c in report["cpus"])
