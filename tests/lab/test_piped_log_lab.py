"""``kcrash log DUMP > f`` on a real dump (issue 22, item 8): one line per printk record, none split.

The lab's console banner (``Linux version ...``, 228 columns on Debian 6.12) and its ``Code:`` lines are
longer than the 200 columns rich used to wrap piped output at. The records come from ``log --json`` (the
same ring read), and every line printed must also be a line of the serial console the guest wrote, as the
kernel printed it (the serial console is the oracle for the text; it may lack the last records, see
``test_oops_lab.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from kcrash.cli.app import kcrash
from support.jsonout import from_hex

pytestmark = pytest.mark.lab


def test_piped_log_has_one_line_per_record(lab_crash: Callable[..., Path]) -> None:
    crash = lab_crash("BUG", "6.12", False)
    vmcore = str(crash / "vmcore.elf")
    text = CliRunner().invoke(kcrash, ["log", vmcore])
    records = from_hex(json.loads(CliRunner().invoke(kcrash, ["log", "--json", vmcore]).stdout))
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert len(lines) == len(records) > 100
    # the kernel's text as is, tabs included (``rcu: \tRCU restricting CPUs``)
    assert lines == [_dmesg(r["ts_nsec"], r["text"]) for r in records]
    assert any("\t" in line for line in lines)
    long = [line for line in lines if len(line) > 200]
    assert any("Linux version" in line for line in long) and any("Code: " in line for line in long)
    console = set((crash / "console.log").read_text(errors="replace").splitlines())
    assert all(line in console for line in long), [line for line in long if line not in console]
    # the serial console lacks the records printed once the guest is paused inside panic()
    assert sum(line in console for line in lines) >= 0.95 * len(lines)


def _dmesg(ns: int, text: str) -> str:
    return f"[{ns // 1_000_000_000:5d}.{ns % 1_000_000_000 // 1000:06d}] {text}"


def test_piped_log_reads_back_with_oops_parse(lab_crash: Callable[..., Path], tmp_path: Path) -> None:
    # the 200-column wrap cut the Code: line, so the report read back from `log > f` lost code bytes
    crash = lab_crash("BUG", "6.12", False)
    log = tmp_path / "log.txt"
    log.write_text(CliRunner().invoke(kcrash, ["log", str(crash / "vmcore.elf")]).stdout)
    piped = from_hex(json.loads(CliRunner().invoke(kcrash, ["oops", "parse", "--json", str(log)]).stdout))
    serial = from_hex(json.loads(
        CliRunner().invoke(kcrash, ["oops", "parse", "--json", str(crash / "console.log")]).stdout))
    assert piped[0]["title"] == serial[0]["title"] == "kernel BUG in kcrash_test_do_bug"
    assert piped[0]["details"] == serial[0]["details"]
    assert len(piped[0]["details"]["code"]["data"]) == 2 * 64
