"""
kcrash.analysis.x86_disasm
==========================

x86-64 disassembly with capstone, for the report, ``kcrash dis`` and ``kcrash decode``. A leaf module:
it imports nothing else of kcrash but the errors, so disassembling does not pull in the DWARF
symbolizer or the oops parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import capstone  # type: ignore[import-untyped]

from kcrash.errors import KcrashError

__all__ = ["Instruction", "branch_target", "disassemble", "rip_relative_target"]

# A direct call/jump/loop with an absolute target (capstone prints the resolved address), in either syntax.
_BRANCH = re.compile(r"^(?:call|jmp|j[a-z]{1,4}|loop\w*|xbegin)q?\s+(?:\$)?(0x[0-9a-f]+)$")
# A RIP-relative memory operand: Intel "[rip + 0x10]", AT&T "0x10(%rip)".
_RIP_INTEL = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")
_RIP_ATT = re.compile(r"(-?)(0x[0-9a-f]+|\d+)\(%rip\)")


@dataclass(frozen=True, slots=True)
class Instruction:
    """One disassembled instruction; ``address`` is absolute when the faulting RIP is known, else
    relative to the first ``Code:`` byte. ``faulting`` marks the instruction at the ``<..>`` byte."""

    address: int
    data: bytes
    text: str
    faulting: bool = False


def branch_target(insn: Instruction) -> int | None:
    """The target of a direct ``call``/``jmp``/``jcc``/``loop``, else None."""
    m = _BRANCH.match(insn.text)
    return int(m.group(1), 16) if m else None


def rip_relative_target(insn: Instruction) -> int | None:
    """The address a RIP-relative operand refers to (the next instruction's address plus the
    displacement, modulo 2**64: a ``gs:`` one is then a per-CPU offset), else None."""
    m = _RIP_INTEL.search(insn.text)
    if m is not None:
        sign, disp = m.group(1), int(m.group(2), 0)
    else:
        m = _RIP_ATT.search(insn.text)
        if m is None:
            return None
        sign, disp = ("-" if m.group(1) else "+"), int(m.group(2), 0)
    end = insn.address + len(insn.data)
    return (end + disp if sign == "+" else end - disp) & 0xFFFFFFFFFFFFFFFF


def disassemble(data: bytes, address: int, syntax: str = "intel") -> tuple[Instruction, ...]:
    """x86-64 instructions of ``data`` placed at ``address`` (capstone), stopping at the first byte
    that does not decode.

    :raises KcrashError: ``syntax`` is neither ``intel`` nor ``att``.
    """
    if syntax not in ("intel", "att"):
        raise KcrashError(f"unknown assembler syntax {syntax!r} (intel or att)")
    engine = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    if syntax == "att":
        engine.syntax = capstone.CS_OPT_SYNTAX_ATT
    rows = engine.disasm_lite(bytes(data), address)
    return tuple(Instruction(a, bytes(data[a - address:a - address + size]), f"{m} {o}".strip())
                 for a, size, m, o in rows)

