"""x86-64 disassembly helpers: direct branch targets and RIP-relative operands, in both syntaxes."""

from __future__ import annotations

import capstone  # type: ignore[import-untyped]
import pytest

from kcrash.analysis import x86_disasm
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


@pytest.mark.parametrize("syntax", ["intel", "att"])
def test_the_c_library_path_agrees_with_the_capstone_package(syntax: str) -> None:
    # x86_disasm calls libcapstone through ctypes (the package's import costs +93 ms, bench/RESULTS.md);
    # it must give what capstone's own Cs.disasm_lite gives, up to the first byte that does not decode.
    lib = x86_disasm._capstone_lib_or_none()
    if lib is None:
        pytest.skip("the capstone package's library is not the 5.0 API: the package itself is used")
    engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    if syntax == "att":
        engine.syntax = capstone.CS_OPT_SYNTAX_ATT
    data = CODE + bytes.fromhex("0f0b" "f3c3" "ff" "90")  # ud2, repz ret, then a byte that does not decode
    assert lib.disasm_lite(data, AT, syntax == "att") == list(engine.disasm_lite(data, AT))
