"""kcrash.analysis.sources: source lines of a disassembly's instructions (issue 18's frame blocks),
only where debug information covers the code. The symbolizer is a stand-in answering from a table
(the DWARF side is tested in tests/unit/debuginfo and against addr2line in tests/oracle)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kcrash import model
from kcrash.analysis.sources import (
    SNIPPET_NOTE,
    annotate_disassembly,
    annotate_trace,
    find_snippet,
    log_source_line_or_none,
)
from kcrash.debuginfo.symbolizer import SourceLocation
from kcrash.debuginfo.symbols import lookup_address
from kcrash.errors import KcrashError

TEXT = 0xFFFFFFFF81000000
ANSWERS = {
    TEXT + 0x10: (
        SourceLocation("get_current", "arch/x86/include/asm/current.h", 47, inlined=True),
        SourceLocation("vfs_write", "fs/read_write.c", 688),
    ),
    TEXT + 0x18: (SourceLocation("vfs_write", "fs/read_write.c", 681),),
}


class _Symbolizer:
    def __init__(self, fail: bool = False) -> None:
        self.modules: dict[str, Any] = {}
        self.vmlinux = SimpleNamespace(text_ranges=lambda: [(TEXT, TEXT + 0x1000)])
        self.kaslr_offset = 0
        self.asked: list[int] = []
        self.fail = fail

    def symbolize_many(self, addresses: Sequence[int]) -> list[tuple[SourceLocation, ...]]:
        if self.fail:
            raise KcrashError("no line table")
        self.asked += addresses
        return [ANSWERS.get(a, (SourceLocation("??", "??", 0),)) for a in addresses]


def _dis() -> model.Disassembly:
    return model.Disassembly(
        TEXT + 0x18,
        "vfs_write",
        (
            model.Instruction(TEXT + 0x10, "65488b3c25", "mov r15, qword ptr gs:[...]", False),
            model.Instruction(TEXT + 0x18, "e800000000", "call x", True),
            model.Instruction(TEXT + 0x1000, "90", "nop", False),
        ),
        None,
    )  # past the covered text


def test_instructions_get_their_inline_chain_where_covered() -> None:
    symbolizer = _Symbolizer()
    dis = annotate_disassembly(_dis(), symbolizer)  # type: ignore[arg-type]
    first, at, outside = dis.instructions
    assert first.source == (
        model.SourceLine("get_current", "arch/x86/include/asm/current.h", 47, True),
        model.SourceLine("vfs_write", "fs/read_write.c", 688, False),
    )
    assert at.source == (model.SourceLine("vfs_write", "fs/read_write.c", 681, False),)
    assert outside.source == () and symbolizer.asked == [TEXT + 0x10, TEXT + 0x18]
    assert [i.text for i in dis.instructions] == [i.text for i in _dis().instructions]


def test_a_symbolizer_error_leaves_the_block_as_it_was() -> None:
    assert annotate_disassembly(_dis(), _Symbolizer(fail=True)) == _dis()  # type: ignore[arg-type]


def test_trace_frames_are_looked_up_where_decode_looks_them_up() -> None:
    # One rule for bt --debuginfo and decode: a return address ("call"/"scan") one byte back, the
    # interrupted IP ("regs"/"partial") as it is (kcrash.debuginfo.symbolizer.lookup_address).
    kinds = ("regs", "call", "scan", "partial")
    frames = tuple(model.Frame(i, TEXT + 0x19, 0, "vfs_write", 0x19, None, "", True, k) for i, k in enumerate(kinds))
    symbolizer = _Symbolizer()
    annotate_trace(model.Trace(frames, None), symbolizer)  # type: ignore[arg-type]
    assert symbolizer.asked == [lookup_address(TEXT + 0x19, interrupted=k in ("regs", "partial")) for k in kinds]
    assert symbolizer.asked == [TEXT + 0x19, TEXT + 0x18, TEXT + 0x18, TEXT + 0x19]


# -- the IP's source snippet with --source-dir (issue 22, item 10) ------------------------------------

_BUILD = "/nonexistent/kmod/6.12.118+deb12-amd64-x.build"
_SOURCE = "".join(f"line {n}\n" for n in range(1, 21)).replace("line 12\n", "\tBUG();\n")


def _ctx(
    ip_text: str = "kcrash_test_do_bug+0x9/0x10 [kcrash_test]", ip_source: tuple[model.SourceLine, ...] = ()
) -> model.CrashingContext:
    return model.CrashingContext(1, 1, "init", 0, 0xFFFFFFFFC02BC589, ip_text, 0, (), "pt_regs", ip_source)


def _oops(rip: str = "kcrash_test_do_bug+0x9/0x10 [kcrash_test]") -> model.OopsHeader:
    texts = [
        f"kernel BUG at {_BUILD}/kcrash_test.c:12!",
        "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        f"RIP: 0010:{rip}",
    ]
    return model.OopsHeader(tuple(model.LogLine(i, 0, None, t) for i, t in enumerate(texts)), None, 0, 2)


def test_the_log_oops_line_gives_the_file_when_there_is_no_debug_information(tmp_path: Path) -> None:
    (tmp_path / "kcrash_test.c").write_text(_SOURCE)
    snippet, reason = find_snippet(_ctx(), _oops(), [str(tmp_path)])
    assert reason == "" and snippet is not None
    assert (snippet.file, snippet.line, snippet.first) == (str(tmp_path / "kcrash_test.c"), 12, 7)
    assert snippet.lines[snippet.line - snippet.first] == "\tBUG();"


def test_an_absolute_debug_info_path_is_found_by_its_tail_under_the_source_dir(tmp_path: Path) -> None:
    (tmp_path / "drivers" / "x").mkdir(parents=True)
    (tmp_path / "drivers" / "x" / "y.c").write_text(_SOURCE)
    line = model.SourceLine("f", "/build/linux-6.12/drivers/x/y.c", 12, False)
    snippet, _ = find_snippet(_ctx(ip_source=(line,)), None, [str(tmp_path)])
    assert snippet is not None and snippet.file == str(tmp_path / "drivers" / "x" / "y.c")


def test_an_oops_of_another_ip_names_no_file() -> None:
    assert log_source_line_or_none(_ctx(), _oops("other_function+0x9/0x10")) is None
    assert log_source_line_or_none(_ctx(), None) is None
    line = log_source_line_or_none(_ctx(), _oops())
    assert line is not None and (line.function, line.file, line.line) == (
        "kcrash_test_do_bug",
        f"{_BUILD}/kcrash_test.c",
        12,
    )


def test_the_reason_says_what_was_looked_for_and_where(tmp_path: Path) -> None:
    snippet, reason = find_snippet(_ctx(), _oops(), [str(tmp_path)])
    assert snippet is None
    assert reason == (f"{SNIPPET_NOTE}: kcrash_test.c ({_BUILD}/kcrash_test.c:12) not found under {tmp_path}")
    snippet, reason = find_snippet(_ctx(), _oops("other_function+0x9/0x10"), [str(tmp_path)])
    assert snippet is None and reason.startswith(f"{SNIPPET_NOTE}: neither debug information")
