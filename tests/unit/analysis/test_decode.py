"""Decoding console oopses: frames by symbol+offset, Code: disassembly, bad input."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kcrash.analysis.decode import DecodedFrame, decode_log_text, disassemble, disassemble_code_line, source_roots
from kcrash.debuginfo.symbolizer import open_symbolizers
from kcrash.debuginfo.symbols import lookup_address
from kcrash.errors import KcrashError, OopsParseError
from kcrash.oops import CodeBytes
from kcrash.oops.corpus import iter_report_cases
from kcrash.oops.details import parse_code

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


@pytest.fixture()
def module(tmp_path: Path) -> Path:
    """``m.ko``: SOURCE built with DWARF (a relocatable object, as a module is)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (tmp_path / "m.c").write_text(SOURCE)
    subprocess.run(["gcc", "-O2", "-g", "-c", "-o", "m.ko", "m.c"], cwd=tmp_path, check=True)
    return tmp_path / "m.ko"


def test_log_frames_of_a_module_get_source_lines(module: Path) -> None:
    log = (
        "[    1.0] divide error: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[    1.0] CPU: 0 PID: 1 Comm: init Tainted: G           OE      6.1.0-56-amd64 #1\n"
        "[    1.0] RIP: 0010:crash_here+0x2/0x10 [m]\n"
        "[    1.0] Call Trace:\n"
        "[    1.0]  <TASK>\n"
        "[    1.0]  caller+0x4/0x10 [m]\n"
        "[    1.0]  ? not_in_module+0x1/0x2 [m]\n"
        "[    1.0]  </TASK>\n")
    symbolizer = open_symbolizers(None, {"m": (module, 0)}, cache_dir=None)
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


# The two Code: lines of the real lab BUG log of Debian 6.12 (console.log): the kernel's, after
# ``RIP: 0010:``, and the user's, after ``RIP: 0033:`` in the syscall entry's registers.
KERNEL_CODE = ("c0 e8 0b fa ea c0 0f 0b c3 cc cc cc cc 0f 1f 40 00 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90"
               " f3 0f 1e fa 0f 1f 44 00 00 <0f> 0b 0f 1f 44 00 00 90 90 90 90 90 90 90 90 90 90 90 90 90 90 90")
USER_CODE = ("40 00 48 c7 c2 e0 ff ff ff f7 d8 64 89 02 48 c7 c0 ff ff ff ff eb b7 0f 1f 00 80 3d e8 85 16 00 00"
             " 74 17 b8 01 00 00 00 0f 05 <48> 3d 00 f0 ff ff 77 58 c3 0f 1f 80 00 00 00 00 48 83 ec 28 48 89")


def test_each_code_line_is_decoded_from_its_own_bytes_at_its_own_rip() -> None:
    log = (
        "[    8.27] Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
        "[    8.27] RIP: 0010:kcrash_test_do_bug+0x9/0x10 [kcrash_test]\n"
        f"[    8.27] Code: {KERNEL_CODE}\n"
        "[    8.27] Call Trace:\n"
        "[    8.27]  <TASK>\n"
        "[    8.27]  entry_SYSCALL_64_after_hwframe+0x76/0x7e\n"
        "[    8.28] RIP: 0033:0x47b7a0\n"
        f"[    8.28] Code: {USER_CODE}\n"
        "[    8.28]  </TASK>\n")
    symbolizer = open_symbolizers(None, {}, cache_dir=None)
    decoded = decode_log_text(log, symbolizer)
    assert len(decoded.code) == 2
    kernel, user = ([i for i in block if i.faulting] for block in decoded.code)
    assert [i.text for i in kernel] == ["ud2"] and kernel[0].address == 42  # no debug info: offsets
    assert [(i.address, i.text) for i in user] == [(0x47B7A0, "cmp rax, -0x1000")]
    assert any(i.text == "syscall" for i in decoded.code[1])
    listing = "\n".join(decoded.lines)
    assert listing.count("All code") == 2
    assert listing.index("47b7a0:*") > listing.index("RIP: 0033:0x47b7a0")


def test_trace_frames_are_looked_up_at_the_call_site_the_rip_at_itself(module: Path) -> None:
    log = ("[    1.0] divide error: 0000 [#1] PREEMPT SMP NOPTI\n"
           "[    1.0] RIP: 0010:caller+0x4/0x10 [m]\n"
           "[    1.0] Call Trace:\n"
           "[    1.0]  caller+0x4/0x10 [m]\n")
    symbolizer = open_symbolizers(None, {"m": (module, 0)}, cache_dir=None)
    try:
        decoded = decode_log_text(log, symbolizer)
        rip = decoded.frames["caller+0x4/0x10"]
        address = symbolizer.locate("caller", 4, "m")
        assert rip.interrupted and rip.locations == symbolizer.object_for("m").symbolize(address)
        call_line = next(line for line in decoded.lines if line.endswith(")") and "RIP" not in line)
        at_call_site = symbolizer.object_for("m").symbolize(lookup_address(address, interrupted=False))
        assert call_line.endswith(DecodedFrame("caller", 4, 16, "m", address, at_call_site).annotation(
            source_roots(symbolizer)["m"]))
    finally:
        symbolizer.close()


CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus" / "syzkaller-linux-reports"


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared syzkaller corpus is not here")
def test_corpus_user_code_lines_are_decoded_at_their_own_rip() -> None:
    # Every report of the corpus with a user-mode RIP: each Code: line gives one block, and the
    # block after "RIP: 0033:0x…" traps at that address (kernel blocks, without debug info, at offsets)
    symbolizer = open_symbolizers(None, {}, cache_dir=None)
    user_blocks = 0
    for case in iter_report_cases(CORPUS.parent):
        if "RIP: 0033:0x" not in case.log or "Code: " not in case.log:
            continue
        decoded = decode_log_text(case.log, symbolizer)
        lines = case.log.splitlines()
        codes = [c for line in lines if "Code: " in line and (c := parse_code(line[line.find("Code: "):]))]
        assert len(decoded.code) == len(codes), case.name
        blocks, rip = iter(decoded.code), None
        for line in lines:
            if "RIP: " in line:
                user = re.search(r"RIP: [0-9a-f]{4}:0x([0-9a-f]+)", line)
                rip = int(user.group(1), 16) if user else None
            elif "Code: " in line and parse_code(line[line.find("Code: "):]) is not None:
                faulting = [i.address for i in next(blocks) if i.faulting]
                if rip is not None and faulting:
                    assert faulting == [rip], case.name
                    user_blocks += 1
                rip = None
    assert user_blocks >= 100
