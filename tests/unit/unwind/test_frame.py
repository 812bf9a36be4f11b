"""kcrash.unwind.frame: the pt_regs layout (shared with the ELF note's pr_reg) and the register sets."""

from __future__ import annotations

from kcrash.dumps.cpustate import PRSTATUS_REGISTERS_X86_64
from kcrash.unwind.frame import PT_REGS_NAMES, PT_REGS_SIZE, Registers


def test_pt_regs_is_the_head_of_pr_reg() -> None:
    # arch/x86/include/asm/ptrace.h struct pt_regs: r15 first, ss last, 21 longs (168 bytes);
    # an NT_PRSTATUS note's elf_gregset_t starts with the same 21 and adds the segment bases.
    assert PT_REGS_NAMES[0] == "r15" and PT_REGS_NAMES[-1] == "ss" and PT_REGS_SIZE == 168
    assert PRSTATUS_REGISTERS_X86_64[len(PT_REGS_NAMES)] == "fs_base"
    assert len(set(PT_REGS_NAMES)) == len(PT_REGS_NAMES)
    regs = Registers(tuple((name, i) for i, name in enumerate(PT_REGS_NAMES)))
    assert regs["rip"] == 16 and regs.get_or_none("fs_base") is None
