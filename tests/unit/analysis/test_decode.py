"""Decoding console oopses: frames by symbol+offset, Code: disassembly, bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.analysis.decode import decode_log_text, disassemble, disassemble_code_line
from kcrash.debuginfo.symbolizer import open_symbolizers
from kcrash.errors import KcrashError, OopsParseError
from kcrash.oops import CodeBytes

# The Code: line of a real lab BUG (Debian 6.1, kcrash_test_do_bug+0x5): <0f> 0b is ud2.
BUG_CODE = bytes.fromhex(
    "cccccc66900f1f44000048c7c760f249c0e81f37c0c40f0bc3cccccccc0f1f8400000000000f1f4400000f0b66"
    "0f1f8400000000000f1f44000053 48bbffffff".replace(" ", ""))
SOURCE = """
static inline __attribute__((always_inline)) int inner(volatile int *p) { return *p / 0; }
__attribute__((noinline)) int crash_here(volatile int *p) { return inner(p) + 1; }
__attribute__((noinline)) int caller(volatile int *p) { return crash_here(p) * 3; }
"""


def test_faulting_instruction_is_marked_and_boundaries_found() -> None:
    code = CodeBytes(BUG_CODE, 42)
    insns = disassemble_code_line(code, 0xFFFFFFFFC049E330 - 42)
    faulting = [i for i in insns if i.faulting]
    assert len(faulting) == 1 and faulting[0].text == "ud2" and faulting[0].address == 0xFFFFFFFFC049E330
    assert sum(len(i.data) for i in insns if i.address < faulting[0].address) == 42 - (insns[0].address
                                                                                         - (0xFFFFFFFFC049E330 - 42))
    att = disassemble_code_line(code, None, "att")
    assert any(i.faulting and i.address == 42 for i in att)
    assert any("%" in i.text for i in att)
    with pytest.raises(KcrashError, match="syntax"):
        disassemble(b"\x90", 0, "masm")


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_log_frames_of_a_module_get_source_lines(tmp_path: Path) -> None:
    (tmp_path / "m.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-c", "-o", "m.ko", "m.c"], cwd=tmp_path, check=True)
    log = (
        "[    1.0] divide error: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[    1.0] CPU: 0 PID: 1 Comm: init Tainted: G           OE      6.1.0-56-amd64 #1\n"
        "[    1.0] RIP: 0010:crash_here+0x2/0x10 [m]\n"
        "[    1.0] Call Trace:\n"
        "[    1.0]  <TASK>\n"
        "[    1.0]  caller+0x4/0x10 [m]\n"
        "[    1.0]  ? not_in_module+0x1/0x2 [m]\n"
        "[    1.0]  </TASK>\n")
    symbolizer = open_symbolizers(None, {"m": (tmp_path / "m.ko", 0)}, cache_dir=None)
    try:
        decoded = decode_log_text(log, symbolizer)
    finally:
        symbolizer.close()
    rip = decoded.frames["crash_here+0x2/0x10"]
    assert rip.locations[0].file.endswith("m.c") and rip.locations[-1].function == "crash_here"
    assert decoded.frames["not_in_module+0x1/0x2"].error
    annotated = [line for line in decoded.lines if line.endswith(")") and "m.c:" in line]
    assert len(annotated) == 2


def test_log_without_a_trace_is_one_clear_error() -> None:
    symbolizer = open_symbolizers(None, {}, cache_dir=None)
    with pytest.raises(OopsParseError, match="no kernel call trace"):
        decode_log_text("just a boot log\nnothing crashed\n", symbolizer)
