"""Pure parts of a crash run: the command line and the facts read back from the console."""

from __future__ import annotations

from kcrash.lab.crash import _console_facts, kernel_cmdline, planted_facts
from kcrash.lab.kinds import get_kind

CONSOLE = """\
[    0.000000] Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1))
[    1.673560] kcrash_test: planted 100 objects at ffffffffc0209060, global at ffffffffc0209080
[    1.685349] Kernel panic - not syncing: sysrq triggered crash
"""


def test_cmdline_selects_kind_and_kaslr() -> None:
    line = kernel_cmdline(get_kind("bug"), kaslr=False)
    assert "kcrash_kind=BUG" in line.split() and "nokaslr" in line.split() and "oops=panic" in line.split()
    assert "nokaslr" not in kernel_cmdline(get_kind("bug"), kaslr=True).split()
    assert "kcrash_kind=none" in kernel_cmdline(None, kaslr=False).split()


def test_planted_facts_read_the_printed_addresses() -> None:
    facts = planted_facts(CONSOLE)
    assert facts["list_address"] == 0xFFFFFFFFC0209060
    assert facts["global_address"] == 0xFFFFFFFFC0209080
    assert facts["planted_count_printed"] == facts["object_count"] == 100
    assert len(facts["hostile_task"]) <= 15 and "<" in facts["hostile_task"]


def test_planted_facts_without_console_output() -> None:
    assert "list_address" not in planted_facts("")


def test_console_facts() -> None:
    facts = _console_facts(CONSOLE)
    assert facts == {"panic_line": "sysrq triggered crash", "panic_uptime_s": 1.685349,
                     "release_booted": "6.1.0-56-amd64"}
