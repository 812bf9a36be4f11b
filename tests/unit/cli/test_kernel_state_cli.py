"""CLI: kcrash dev, irq, timer and runq on the synthetic two-CPU kernel (tests/support/state_kernel.py)
put in place of the opened dump: crash-style text, --json equal to the analysis, warnings for what
the kernel lacks, and a one-line error with exit status 1 when the state cannot be read."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kcrash.analysis import kernel_state
from kcrash.cli import kernel_state as state_cli
from kcrash.cli import main
from kcrash.errors import SymbolNotFoundError
from kcrash.report.json import json_ready
from kcrash.types.program import Program
from support.state_kernel import BLOCK_SP, CLASS_KSET, Kernel, sample


@pytest.fixture
def dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Kernel, dict[str, int]]:
    k, named = sample()

    @contextmanager
    def opened(path: str, *, orc: bool = True) -> Iterator[Program]:
        yield k.prog

    monkeypatch.setattr(state_cli, "opened_target", opened)
    path = tmp_path / "vmcore"
    path.write_bytes(b"")
    return path, k, named


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _asdict(value: object) -> object:
    # as --json writes it: addresses and other 64-bit values as "0x..." strings (json_ready's rule)
    return json.loads(json.dumps(json_ready(dataclasses.asdict(value)), default=str))  # type: ignore[call-overload]


def test_timer_text_and_json(dump: tuple[Path, Kernel, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    path, k, named = dump
    code, out, _ = _run(capsys, "timer", path)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "JIFFIES: 5000"
    row = next(line for line in lines if f"{named['timer_b']:016x}" in line)
    assert row.split()[:2] == ["5050", "50"] and row.endswith("<delayed_work_timer_fn>")
    assert "CPU: 1  BASE_DEF" in out and "[no timers queued]" in out
    code, out, _ = _run(capsys, "timer", path, "--json")
    assert code == 0 and json.loads(out) == _asdict(kernel_state.timers(k.prog))
    code, out, _ = _run(capsys, "timer", path, "-r")
    assert code == 0 and "[HRTIMER_BASE_MONOTONIC]" in out and "<hrtimer_wakeup>" in out
    assert f"{named['hrtimer_a']:016x}" in out


def test_runq_text_and_json(dump: tuple[Path, Kernel, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    path, k, named = dump
    code, out, _ = _run(capsys, "runq", path)
    assert code == 0
    assert f"CPU 0 RUNQUEUE: {k.rq(0):016x}\n" in out and f"CPU 1 RUNQUEUE: {k.rq(1):016x}  (offline)" in out
    assert f'CURRENT: PID: 1       TASK: {named["init"]:016x}  COMMAND: "init"' in out
    assert f'[  0] PID: 30      TASK: {named["rt"]:016x}  COMMAND: "migration/0"' in out
    assert '[120] PID: 21' in out and '[ -1] PID: 40' in out
    assert out.count("STOP:") == 1 and f'PID: 22      TASK: {named["stop0"]:016x}' in out
    code, out, _ = _run(capsys, "runq", path, "--json")
    assert code == 0 and json.loads(out) == _asdict(kernel_state.runqueues(k.prog))


def test_irq_text_stats_and_json(dump: tuple[Path, Kernel, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    path, k, named = dump
    code, out, _ = _run(capsys, "irq", path)
    assert code == 0
    assert out.splitlines()[1:] == [
        f"   0  {named['irq0']:016x}  IO-APIC      0,1        timer <timer_interrupt>",
        f"   3  {named['irq3']:016x}  IO-APIC      1          eth0 <timer_interrupt+0x4>, (no name) <irq_thread_fn>"]
    code, out, _ = _run(capsys, "irq", path, "-s")
    assert out.splitlines()[0].split() == ["CPU0", "CPU1"]
    assert out.splitlines()[1].split()[:5] == ["0:", "120", "3", "IO-APIC", "edge"]
    code, out, _ = _run(capsys, "irq", path, "-s", "-a")
    assert len(out.splitlines()) == 5  # the header and all four descriptors
    code, out, _ = _run(capsys, "irq", path, "--json")
    assert code == 0 and json.loads(out) == _asdict(kernel_state.irqs(k.prog))


def test_dev_and_dev_d(dump: tuple[Path, Kernel, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    path, k, named = dump
    code, out, err = _run(capsys, "dev", path)
    assert code == 0
    assert f"     1  0-255          mem                  {named['mem']:016x}  <memory_fops>" in out
    assert "   259  blkext" in out and err == ""
    code, out, err = _run(capsys, "dev", path, "-d")
    assert code == 0 and err == ""
    assert out.splitlines()[1:] == [
        f"  253     0  {named['vda']:016x}  vda          {k.word(named['vda'], 8):016x}  mq   -              "
        "<tty_fops>",
        f"    1     0  {named['ram0']:016x}  ram0         {k.word(named['ram0'], 8):016x}  bio  2/3            "
        "<tty_fops>"]
    k.ring(BLOCK_SP + 32, [])
    code, out, err = _run(capsys, "dev", path, "-d")
    assert code == 0 and out.startswith("no disks")
    k.u64(CLASS_KSET, 0x7000_0000_0000)
    code, out, err = _run(capsys, "dev", path, "-d")
    assert code == 0 and out.startswith("no disks") and err.startswith("kcrash: warning: block_class:")
    code, out, _ = _run(capsys, "dev", path, "-d", "--json")
    assert json.loads(out) == _asdict(kernel_state.devices(k.prog, disks=True))


def test_unreadable_state_is_one_line(dump: tuple[Path, Kernel, dict[str, int]], capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path, _, _ = dump

    def missing(prog: Program, **options: bool) -> None:
        raise SymbolNotFoundError("symbol 'jiffies_64' not found")

    monkeypatch.setattr(kernel_state, "timers", missing)
    code, out, err = _run(capsys, "timer", path)
    assert code == 1 and out == ""
    assert err.strip().splitlines() == ["kcrash: error: timer: symbol 'jiffies_64' not found"]


def test_missing_dump_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "runq", tmp_path / "nope")
    assert code == 2 and "does not exist" in err


def test_timer_queues_are_laid_out_as_crash_does(dump: tuple[Path, Kernel, dict[str, int]],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # each base: its header line, then (indented) the column header and a row a timer, or the note
    path, _, named = dump
    _, out, _ = _run(capsys, "timer", path)
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if f"{named['timer_b']:016x}" in line)
    header = next(line for line in reversed(lines[:at]) if "EXPIRES" in line)
    assert header == f"  {'EXPIRES':>12} {'TTE':>12}  {'TIMER_LIST':<16}  FUNCTION" and lines[at].startswith("  ")
    assert "  [no timers queued]" in lines
    _, out, _ = _run(capsys, "timer", path, "-r")
    lines = out.splitlines()
    assert f"    {'SOFTEXPIRES':>20} {'EXPIRES':>20}  {'HRTIMER':<16}  FUNCTION" in lines
    assert any(line.startswith("    ") and f"{named['hrtimer_a']:016x}" in line for line in lines)
