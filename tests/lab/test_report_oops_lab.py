"""The report's oops header and ``Code:`` line on real lab crashes (issue 18): read from the printk
log inside the dump (no vmlinux), they equal the lines the serial console printed (``console.log``
of the lab run, timestamps included), from ``kernel BUG at …/kcrash_test.c:NNN!`` through the
``RIP:`` line, which names the lab's crash function; the JSON report's log tail starts at
the oops; the terminal report prints the header before the system facts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main
from support.jsonout import from_hex

pytestmark = pytest.mark.lab

CASES = [("BUG", "6.1", True), ("BUG", "6.12", False), ("BUG", "5.10", True)]
_STAMP = re.compile(r"^\[\s*\d+\.\d+\] ")


def _console_oops(console: str) -> tuple[list[str], str]:
    lines = [line.rstrip("\r") for line in console.splitlines() if _STAMP.match(line)]
    first = next(i for i, line in enumerate(lines) if _STAMP.sub("", line).startswith("kernel BUG at "))
    rip = next(i for i in range(first, len(lines)) if _STAMP.sub("", lines[i]).startswith("RIP: "))
    code = next(line for line in lines[rip:] if _STAMP.sub("", line).startswith("Code: "))
    return lines[first:rip + 1], code


def stamp(line: dict[str, int]) -> str:
    return f"[{line['ts_nsec'] // 10**9:5d}.{line['ts_nsec'] % 10**9 // 1000:06d}] "


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_oops_header_equals_the_console(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        case: tuple[str, str, bool]) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    out = lab_crash(*case)
    header, code = _console_oops((out / "console.log").read_text(errors="replace"))
    doc = from_hex(json.loads(_run(capsys, "report", str(out / "vmcore.kdump"), "--json")))
    oops = doc["oops"]
    assert [stamp(line) + line["text"] for line in oops["lines"]] == header
    assert stamp(oops["code"]) + oops["code"]["text"] == code
    info = json.loads((out / "lab.json").read_text())
    assert re.fullmatch(r"kernel BUG at \S+/kcrash_test\.c:\d+!", oops["lines"][0]["text"])
    assert f":{info['crash_function']}+0x" in oops["lines"][-1]["text"]  # RIP: 0010:kcrash_test_do_bug+0x9/0x10
    assert doc["log_tail"][0]["seq"] == oops["lines"][0]["seq"]  # the tail opens with the oops
    assert oops["first_seq"] == oops["lines"][0]["seq"] < oops["code"]["seq"] <= oops["last_seq"]
    text = _run(capsys, "report", str(out / "vmcore.kdump"))
    assert text.index("\nOops\n") < text.index(header[0]) < text.index("\nSystem\n")
