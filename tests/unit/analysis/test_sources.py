"""kcrash.analysis.sources: source lines of a disassembly's instructions (issue 18's frame blocks),
only where debug information covers the code. The symbolizer is a stand-in answering from a table
(the DWARF side is tested in tests/unit/debuginfo and against addr2line in tests/oracle)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from kcrash.analysis.sources import annotate_disassembly
from kcrash.debuginfo.symbolizer import SourceLocation
from kcrash.errors import KcrashError
from kcrash.report import model

TEXT = 0xFFFFFFFF81000000
ANSWERS = {
    TEXT + 0x10: (SourceLocation("get_current", "arch/x86/include/asm/current.h", 47, inlined=True),
                  SourceLocation("vfs_write", "fs/read_write.c", 688)),
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
    return model.Disassembly(TEXT + 0x18, "vfs_write", (
        model.Instruction(TEXT + 0x10, "65488b3c25", "mov r15, qword ptr gs:[...]", False),
        model.Instruction(TEXT + 0x18, "e800000000", "call x", True),
        model.Instruction(TEXT + 0x1000, "90", "nop", False)), None)  # past the covered text


def test_instructions_get_their_inline_chain_where_covered() -> None:
    symbolizer = _Symbolizer()
    dis = annotate_disassembly(_dis(), symbolizer)  # type: ignore[arg-type]
    first, at, outside = dis.instructions
    assert first.source == (model.SourceLine("get_current", "arch/x86/include/asm/current.h", 47, True),
                            model.SourceLine("vfs_write", "fs/read_write.c", 688, False))
    assert at.source == (model.SourceLine("vfs_write", "fs/read_write.c", 681, False),)
    assert outside.source == () and symbolizer.asked == [TEXT + 0x10, TEXT + 0x18]
    assert [i.text for i in dis.instructions] == [i.text for i in _dis().instructions]


def test_a_symbolizer_error_leaves_the_block_as_it_was() -> None:
    assert annotate_disassembly(_dis(), _Symbolizer(fail=True)) == _dis()  # type: ignore[arg-type]
