"""Crash signatures: the same bug gives the same signature across consoles, dumps and builds."""

from __future__ import annotations

import re
from pathlib import Path

from kcrash.oops import parse

FIXTURE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "oops" / "x86_64" / "002.txt"


def _log() -> str:
    return FIXTURE.read_text(encoding="latin-1").split("\n\n", 1)[1]


def _signature(log: str) -> str:
    rep = parse(log)
    assert rep is not None
    return rep.signature


def test_signature_is_stable_across_boots_and_builds() -> None:
    log = _log()
    other = re.sub(r"\[ *\d+\.\d+\]", "[ 4711.000001]", log)
    other = re.sub(r"ffff[0-9a-f]{12}", "ffff9999aaaabbbb", other)
    other = other.replace("PID: 998", "PID: 31337").replace("CPU: 0", "CPU: 3")
    other = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "+0x42/0x99", other)
    other = other.replace("6.1.0-18-amd64", "6.1.0-21-amd64")
    assert _signature(other) == _signature(log)


def test_console_caller_ids_and_vmcore_dmesg_agree() -> None:
    dmesg = _log()
    console = re.sub(r"^(\[ *\d+\.\d+\])", r"\1[  T998]", dmesg, flags=re.M)
    syslog = re.sub(r"^\[ *\d+\.\d+\] ", "Jan  2 03:04:05 debian kernel: ", dmesg, flags=re.M)
    serial = "noise from the bootloader\nDebian GNU/Linux 12 debian ttyS0\n\n" + dmesg
    expected = _signature(dmesg)
    assert _signature(console) == expected
    assert _signature(syslog) == expected
    assert _signature(serial) == expected


def test_different_bugs_differ() -> None:
    log = _log()
    assert _signature(log.replace("kcrash_test_level2", "other_function")) != _signature(log)


def test_title_without_function_uses_stack() -> None:
    log = (Path(FIXTURE).parent / "005.txt").read_text(encoding="latin-1").split("\n\n", 1)[1]
    changed = log.replace("sysrq_handle_crash", "another_crash_handler")
    assert _signature(changed) != _signature(log)
