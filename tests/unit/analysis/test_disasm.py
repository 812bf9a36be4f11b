"""Naming what instructions refer to (kcrash dis): kernel and module symbols, gdb-style labels."""

from __future__ import annotations

from kcrash.analysis.disasm import TargetLabel, target_labels
from kcrash.analysis.x86_disasm import disassemble
from kcrash.debuginfo.symbols import Symbol, SymbolTable
from kcrash.types.program import Program

TEXT = 0xFFFFFFFF81000000
MODULE = 0xFFFFFFFFC0200000


def _table() -> SymbolTable:
    table = SymbolTable(
        ["_stext", "printk", "schedule", "_etext"],
        [TEXT, TEXT + 0x100, TEXT + 0x200, TEXT + 0x1000],
        ["T", "T", "T", "T"],
    )
    table.add_module(
        "mod", MODULE, 0x1000, [Symbol("mod_fn", MODULE, 0, "t"), Symbol("mod_data", MODULE + 0x800, 0, "d")]
    )
    return table


def test_branches_and_rip_operands_are_named_in_kernel_and_module() -> None:
    # at MODULE+0x10: call printk; jmp mod_fn+4; mov rax, [rip + X] (-> mod_data+8); call 0x1000 (no symbol)
    at = MODULE + 0x10
    call = (TEXT + 0x100 - (at + 5)) & 0xFFFFFFFF
    jmp = (MODULE + 4 - (at + 10)) & 0xFFFFFFFF
    rip = MODULE + 0x808 - (at + 17)
    lost = (0x1000 - (at + 22)) & 0xFFFFFFFF
    code = (
        b"\xe8"
        + call.to_bytes(4, "little")
        + b"\xe9"
        + jmp.to_bytes(4, "little")
        + b"\x48\x8b\x05"
        + rip.to_bytes(4, "little")
        + b"\xe8"
        + lost.to_bytes(4, "little")
        + b"\xc3"
    )
    insns = disassemble(code, at)
    labels = target_labels(insns, _table())
    assert labels[at] == TargetLabel(TEXT + 0x100, True, "printk", 0, None)
    assert labels[at].text() == "<printk>"
    assert labels[at + 5] == TargetLabel(MODULE + 4, True, "mod_fn", 4, "mod")
    assert labels[at + 5].text() == "<mod_fn+4>"
    assert labels[at + 10] == TargetLabel(MODULE + 0x808, False, "mod_data", 8, "mod")
    assert labels[at + 17] == TargetLabel(0x1000, True) and labels[at + 17].text() == ""
    assert at + 22 not in labels  # ret refers to nothing
    assert target_labels(insns, None)[at] == TargetLabel(TEXT + 0x100, True)


def _long_function_program() -> tuple[Program, int]:
    # "big" is 0x3000 bytes of nops with a call at 0x2ff0 (past the 4 KiB lead of a guess): its
    # return address is decoded from the function's start, not 32 bytes before it (issue 18).
    from kcrash.memory import MemoryReader, SegmentMap

    code = bytearray(b"\x90" * 0x3100)
    code[0x2FF0:0x2FF5] = b"\xe8" + (0x100 - 0x2FF5).to_bytes(4, "little", signed=True)
    segments = SegmentMap()
    segments.add_segment(TEXT, len(code), lambda a, n: bytes(code[a - TEXT : a - TEXT + n]), physical=False)
    table = SymbolTable(["_stext", "big", "_etext"], [TEXT, TEXT + 0x100, TEXT + 0x3100], ["T", "T", "T"])
    return Program(MemoryReader(segments), table), TEXT + 0x100 + 0x2FF5 - 0x100


def test_long_function_decoded_from_its_start_and_frames_once_per_pc() -> None:
    from kcrash import model
    from kcrash.analysis.disasm import disassemble_around, frame_disassemblies

    prog, ret = _long_function_program()
    dis = disassemble_around(prog, ret)
    assert dis.function == "big" and dis.error is None
    at = [i.faulting for i in dis.instructions].index(True)
    assert dis.instructions[at].address == ret and dis.instructions[at - 1].text.startswith("call")
    frame = model.Frame(0, ret, 0, "big", ret - TEXT - 0x100, None, "big+0x2ef5/0x3000", True, "call")
    blocks = frame_disassemblies(prog, [model.Trace((frame, frame), None), model.Trace((frame,), None)])
    assert [b.ip for b in blocks] == [ret]


def test_dis_targets_whole_function_offset_address_and_reverse() -> None:
    import pytest

    from kcrash.analysis.disasm import DisTarget, resolve_dis_target
    from kcrash.errors import MissingDebugInfoError, SymbolNotFoundError

    table = _table()
    assert resolve_dis_target(table, symbol="printk") == DisTarget(
        TEXT + 0x100, TEXT + 0x200, "printk", TEXT + 0x100, "", whole=True
    )
    assert resolve_dis_target(table, symbol="mod_fn", offset=4, explicit_offset=True, count=2) == DisTarget(
        MODULE + 4, MODULE + 4 + 32, "mod_fn", MODULE, "mod"
    )
    assert resolve_dis_target(table, address=TEXT + 0x210, reverse=True) == DisTarget(
        TEXT + 0x200, TEXT + 0x220, "schedule", TEXT + 0x200, "", last=TEXT + 0x210
    )
    assert resolve_dis_target(None, address=0x1000) == DisTarget(0x1000, 0x1010, "", 0x1000, "")
    with pytest.raises(MissingDebugInfoError, match="no kallsyms"):
        resolve_dis_target(None, symbol="printk")
    with pytest.raises(SymbolNotFoundError, match="-r needs the function start"):
        resolve_dis_target(None, address=0x1000, reverse=True)


def test_dis_selects_a_function_an_address_or_up_to_the_address() -> None:
    from kcrash.analysis.disasm import DisTarget, disassemble_target

    prog, ret = _long_function_program()
    memory = prog.memory
    whole = disassemble_target(memory, DisTarget(TEXT + 0x100, TEXT + 0x110, "big", TEXT + 0x100, "", whole=True))
    assert [i.text for i in whole] == ["nop"] * 16
    assert len(disassemble_target(memory, DisTarget(TEXT + 0x100, TEXT + 0x130, "big", TEXT + 0x100, ""), count=3)) == 3
    upto = disassemble_target(memory, DisTarget(ret - 0x10, ret + 16, "big", TEXT + 0x100, "", last=ret - 5))
    assert upto[-1].address == ret - 5 and upto[-1].text.startswith("call")
