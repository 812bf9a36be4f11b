"""One crash-time rule (issue 22): VMCOREINFO's CRASHTIME, else the timekeeper's xtime_sec, else
None; ``dump info`` and ``sys`` both use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.analysis import dumpinfo
from kcrash.analysis.dumpinfo import crash_time_or_none, dump_facts
from kcrash.dumps import open_dump
from kcrash.dumps.vmcoreinfo import parse_vmcoreinfo
from kcrash.dumps.write.synthetic import make_synthetic_kernel
from kcrash.types.program import Program


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
