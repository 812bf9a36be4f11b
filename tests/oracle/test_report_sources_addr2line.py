"""Oracle for the source lines of the report's frame disassembly (issue 18), ``kcrash report
--vmlinux VMLINUX --debuginfo kcrash_test.ko`` on the lab's BUG dump of 6.12 (no KASLR, so runtime
addresses are link-time ones): every instruction of every frame's block inside vmlinux's text has
the inline chain binutils ``addr2line -f -i`` gives for its address (discriminators left out), and
every instruction of the module's blocks the innermost line of ``addr2line`` on the .ko at the
instruction's offset in the module's ``.text``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from support.addr2line import addr2line
from support.jsonout import from_hex

pytestmark = [pytest.mark.lab, pytest.mark.oracle]

_DISCRIMINATOR = re.compile(r" \(discriminator \d+\)$")


@pytest.fixture(scope="module")
def report(lab_crash: Callable[..., Path], lab_vmlinux_dbg: Callable[[str], Path],
           tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, Path]:
    out = lab_crash("BUG", "6.12", False)
    module = Path(json.loads((out / "lab.json").read_text())["module"]["path"])
    tmp = tmp_path_factory.mktemp("sources")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KCRASH_CACHE", str(tmp))
        assert main(["report", str(out / "vmcore.kdump"), "--vmlinux", str(lab_vmlinux_dbg("6.12")),
                     "--debuginfo", str(module), "--format", "json", "-o", str(tmp / "r.json")]) == 0
    return from_hex(json.loads((tmp / "r.json").read_text())), lab_vmlinux_dbg("6.12"), module


def _chain(insn: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["function"], f"{s['file']}:{s['line']}") for s in insn["source"]]


def test_vmlinux_instructions_have_addr2lines_inline_chain(report: tuple[dict[str, Any], Path, Path]) -> None:
    doc, vmlinux, _ = report
    modules = [(m["base"], m["base"] + m["size"]) for m in doc["modules"]]
    insns = {i["address"]: i for b in doc["frame_disassembly"] for i in b["instructions"]
             if not any(lo <= i["address"] < hi for lo, hi in modules)}
    addresses = sorted(insns)
    theirs = addr2line(vmlinux, addresses)
    expected = {a: [(f, _DISCRIMINATOR.sub("", where)) for f, where in chain] for a, chain in zip(addresses, theirs,
                                                                                                   strict=True)}
    # padding between functions (int3/nop after a noreturn call, __pfx_ stubs) has no line: addr2line
    # says "file:?" or "??:?" and kcrash "??:0"; those are left out
    covered = [a for a in addresses if expected[a] and not expected[a][0][1].endswith(":?")]
    assert len(covered) > 500 and len(covered) > 0.9 * len(addresses)
    wrong = [(hex(a), insns[a]["text"], _chain(insns[a]), expected[a]) for a in covered
             if _chain(insns[a]) != expected[a]]
    # Padding past a function's end (int3 after a noreturn call, the nops of the next function's
    # __pfx_ stub) lies in no subprogram: kcrash says ??:0, addr2line stretches the line-table row
    # before it. Anything else must agree.
    padding = [w for w in wrong if w[2] == [(w[2][0][0], "??:0")] and w[1].split()[0] in ("int3", "nop")]
    assert [w for w in wrong if w not in padding] == []
    assert len(padding) < 0.05 * len(covered)


def test_module_instructions_have_addr2lines_line(report: tuple[dict[str, Any], Path, Path]) -> None:
    doc, _, module = report
    base = next(m["base"] for m in doc["modules"] if m["name"] == "kcrash_test")
    insns = [i for b in doc["frame_disassembly"] if b["function"] and b["function"].startswith("kcrash_test_")
             for i in b["instructions"]]
    assert len(insns) > 40 and all(i["source"] for i in insns)
    # the module's .text is at the start of its core text mapping (the lab module has no .text.unlikely
    # before it: kcrash_test_do_bug's own address checks that)
    theirs = addr2line(module, [i["address"] - base for i in insns], section=".text")
    for insn, chain in zip(insns, theirs, strict=True):
        assert (insn["source"][0]["function"], f"{insn['source'][0]['file']}:{insn['source'][0]['line']}") == \
            (chain[0][0], _DISCRIMINATOR.sub("", chain[0][1])), hex(insn["address"])


def test_every_cpus_and_tasks_frames_have_source_lines(report: tuple[dict[str, Any], Path, Path]) -> None:
    doc = report[0]
    traces = [("cpu", c["trace"]) for c in doc["cpus"]] + [("task", t["trace"]) for t in doc["task_traces"]] + \
        [("blocked", b["trace"]) for b in doc["blocked"]]
    missing = [(where, f["text"]) for where, trace in traces for f in trace["frames"]
               if f["module"] in (None, "kcrash_test") and not f["source"]]
    assert not missing
    assert doc["blocked"] and all(f["source"] for b in doc["blocked"] for f in b["trace"]["frames"]
                                  if f["module"] is None)
