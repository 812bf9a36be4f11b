"""
kcrash.analysis.disasm
======================

The instructions around a faulting IP for the report, decoded (capstone, through
:func:`kcrash.analysis.x86_disasm.disassemble`) from the kernel text in the dump itself. x86 code has
no fixed instruction boundaries, so decoding starts at the start of the function holding the IP
(from the symbol table) when it is near, and otherwise a little before the IP (then the first
instructions may be misdecoded and the IP may fall inside one; the model says so in ``error``).
:func:`target_labels` names what instructions refer to (``call 0x… <printk>``) for ``kcrash dis``.
Nothing here prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kcrash.analysis.x86_disasm import Instruction, branch_target, disassemble, rip_relative_target
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import KcrashError
from kcrash.report import model
from kcrash.types.program import Program

__all__ = ["TargetLabel", "disassemble_around", "frame_disassemblies", "target_labels"]

_MAX_LEAD = 4096
_MAX_FUNCTION = 1 << 16
_GUESS_LEAD = 32
_TAIL = 48


def _start(prog: Program, ip: int) -> tuple[int, str | None]:
    table = prog.symbols if isinstance(prog.symbols, SymbolTable) else None
    found = table.symbolize_or_none(ip) if table is not None else None
    if found is None:
        return ip - _GUESS_LEAD, None
    symbol, offset = found
    # A long function (ksm_scan_thread is 9 KiB) is still decoded from its start when the symbol's
    # size (the next kallsyms symbol's address) covers the IP; a gap past the last symbol is not.
    inside = symbol.size is not None and offset < symbol.size <= _MAX_FUNCTION
    if offset > _MAX_LEAD and not inside:
        return ip - _GUESS_LEAD, None
    return symbol.address, symbol.name


def disassemble_around(prog: Program, ip: int, *, before: int = 12, after: int = 8) -> model.Disassembly:
    """Up to ``before`` instructions before the one at ``ip`` and ``after`` from it on."""
    start, function = _start(prog, ip)
    try:
        data = prog.read(start, ip - start + _TAIL)
    except KcrashError as exc:
        return model.Disassembly(ip, function, (), f"cannot read the code at {start:#x}: {exc}")
    decoded = disassemble(data, start)
    at = next((i for i, insn in enumerate(decoded) if insn.address == ip), None)
    error = None
    if at is None:
        error = f"no instruction starts at {ip:#x} when decoding from {start:#x}"
        at = next((i for i, insn in enumerate(decoded) if insn.address > ip), len(decoded))
    elif function is None:
        error = f"the function of {ip:#x} is unknown: decoding started {_GUESS_LEAD} bytes before it"
    window = decoded[max(0, at - before):at + after]
    return model.Disassembly(ip, function, tuple(model.Instruction(i.address, i.data.hex(), i.text, i.address == ip)
                                                 for i in window), error)


def frame_disassemblies(prog: Program, traces: Iterable[model.Trace], *,
                        limit: int = 4096) -> tuple[model.Disassembly, ...]:
    """The instructions around the pc of every frame of ``traces``, one per distinct pc (at most
    ``limit``), by address; for a return address the instruction at the pc is the one after the call.

    >>> [d.ip for d in frame_disassemblies(prog, [trace])]  # doctest: +SKIP
    [18446744072635812112]
    """
    pcs = sorted({frame.pc for trace in traces for frame in trace.frames})[:limit]
    return tuple(disassemble_around(prog, pc) for pc in pcs)


@dataclass(frozen=True, slots=True)
class TargetLabel:
    """What an instruction refers to: the ``target`` of a direct branch (``branch``) or of a
    RIP-relative operand (not ``branch``), and the symbol covering it (``symbol`` empty: none)."""

    target: int
    branch: bool
    symbol: str = ""
    offset: int = 0
    module: str | None = None

    def text(self) -> str:
        """``<sym+off>`` (gdb's and crash's form, decimal offset; ``<sym>`` at offset 0)."""
        if not self.symbol:
            return ""
        return f"<{self.symbol}+{self.offset}>" if self.offset else f"<{self.symbol}>"


def target_labels(insns: Iterable[Instruction], symbols: SymbolTable | None) -> dict[int, TargetLabel]:
    """By instruction address, the branch or RIP-relative target of each instruction that has one,
    with its symbol (kernel or module) from ``symbols``."""
    labels = {}
    for insn in insns:
        target, branch = branch_target(insn), True
        if target is None:
            target, branch = rip_relative_target(insn), False
        if target is None:
            continue
        found = symbols.symbolize_or_none(target) if symbols is not None else None
        labels[insn.address] = TargetLabel(target, branch) if found is None else \
            TargetLabel(target, branch, found[0].name, found[1], found[0].module)
    return labels
