"""x86-64 disassembly helpers: direct branch targets and RIP-relative operands, in both syntaxes."""

from __future__ import annotations

import pytest

from kcrash.analysis.x86_disasm import branch_target, disassemble, rip_relative_target

AT = 0xFFFFFFFF81CEE1F2
# call rel32 -0xc27; mov rbx, [rip + 0x7e346fde]; jne rel8 +0x10; mov rbx, gs:[rip - 0x10]; ret
CODE = bytes.fromhex("e8d9f3ffff" "488b1dde6f347e" "7510" "65488b1df0ffffff" "c3")


@pytest.mark.parametrize("syntax", ["intel", "att"])
def test_targets_in_both_syntaxes(syntax: str) -> None:
    call, load, jne, gs_load, ret = disassemble(CODE, AT, syntax)
    assert branch_target(call) == AT + 5 - 0xC27
    assert branch_target(jne) == jne.address + 2 + 0x10
    assert branch_target(load) is None and branch_target(ret) is None
    assert rip_relative_target(load) == (load.address + 7 + 0x7E346FDE) & (1 << 64) - 1
    assert rip_relative_target(gs_load) == gs_load.address + 8 - 0x10
    assert rip_relative_target(call) is None and rip_relative_target(ret) is None


def test_rip_relative_wraps_modulo_2_64() -> None:
    # A gs: per-CPU load from kernel text: the target wraps to a small per-CPU offset.
    (insn,) = disassemble(bytes.fromhex("65488b1dde6f347e"), 0xFFFFFFFF81CEE1DA)
    assert rip_relative_target(insn) == 0x351C0
