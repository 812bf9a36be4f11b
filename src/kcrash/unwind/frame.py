"""
kcrash.unwind.frame
===================

The results of unwinding: :class:`Registers` (the x86-64 ``struct pt_regs`` register set, 21
words in ``arch/x86/include/asm/ptrace.h`` order, the same as the first 21 of ``NT_PRSTATUS``
``pr_reg``), :class:`Frame` (one stack frame: where it runs, how it was found and whether it can be
trusted) and :class:`Trace` (the frames of one stack, innermost first, and why the walk stopped
early if it did). Pure data: no memory access, no symbols.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from kcrash.dumps.cpustate import PRSTATUS_REGISTERS_X86_64

__all__ = [
    "FRAME_KINDS",
    "PT_REGS_NAMES",
    "PT_REGS_SIZE",
    "Frame",
    "Registers",
    "Trace",
    "WalkStop",
]

#: ``struct pt_regs`` members on x86-64, in memory order (``rip`` is ``ip``, ``eflags`` is ``flags``):
#: the first 21 of an ELF note's ``pr_reg`` (``elf_gregset_t`` begins with ``struct pt_regs``).
PT_REGS_NAMES: tuple[str, ...] = PRSTATUS_REGISTERS_X86_64[:21]
#: ``sizeof(struct pt_regs)`` on x86-64
PT_REGS_SIZE = 8 * len(PT_REGS_NAMES)
#: The values :attr:`Frame.kind` takes
FRAME_KINDS = ("call", "regs", "partial", "scan")
_PT_REGS = struct.Struct(f"<{len(PT_REGS_NAMES)}Q")


@dataclass(frozen=True, slots=True)
class Registers:
    """A register set by name (``rip``, ``rsp``, ``rbp``, ``cs`` ...); registers not known are absent."""

    values: tuple[tuple[str, int], ...]

    @classmethod
    def from_mapping(cls, regs: Mapping[str, int]) -> Registers:
        """Build from a name → value mapping (for example ``PrStatus.registers``)."""
        return cls(tuple(regs.items()))

    @classmethod
    def from_pt_regs(cls, data: bytes) -> Registers:
        """Decode a ``struct pt_regs`` (168 bytes, little-endian)."""
        return cls(tuple(zip(PT_REGS_NAMES, _PT_REGS.unpack_from(data), strict=True)))

    def as_dict(self) -> dict[str, int]:
        """Return the registers as a dict."""
        return dict(self.values)

    def get_or_none(self, name: str) -> int | None:
        """Return register ``name`` or None when it is not known."""
        for key, value in self.values:
            if key == name:
                return value
        return None

    def __getitem__(self, name: str) -> int:
        value = self.get_or_none(name)
        if value is None:
            raise KeyError(name)
        return value

    @property
    def user_mode(self) -> bool:
        """Whether the registers were saved in user mode (``user_mode(regs)``): on x86-64 ``cs & 3``,
        on arm64 (no ``cs``) ``pstate`` at EL0 (mode bits 0) or in AArch32 state."""
        cs = self.get_or_none("cs")
        if cs is not None:
            return cs & 3 != 0
        pstate = self.get_or_none("pstate")
        return pstate is not None and (pstate & 0x10 != 0 or pstate & 0xF == 0)


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame.

    ``pc`` is where the frame executes (a return address for ``kind="call"`` frames, the
    interrupted instruction for ``"regs"``/``"partial"``), ``sp`` the stack pointer in that frame.
    ``kind`` says how the frame was found: ``"regs"`` from a full register set (the starting
    registers or a ``struct pt_regs`` of an exception/interrupt, kept in ``regs``), ``"partial"``
    from an IRET frame (ip, cs, flags, sp, ss; those five kept in ``regs``), ``"call"`` from a
    return address, ``"scan"`` from a stack scan. ``reliable`` is False for guesses (scan,
    frame-pointer fallback); the kernel prints those with ``?``. ``regs_address`` is where the
    ``struct pt_regs`` (or IRET frame) of a ``"regs"``/``"partial"`` frame lies on the stack (None
    for the starting registers); ``stack`` is ``(lo, hi, name)`` of the known stack holding ``sp``
    (``"task 1"``, ``"IRQ 0"``, ``"NMI 0"`` …), None when ``sp`` is on none.
    """

    pc: int
    sp: int
    reliable: bool
    regs: Registers | None
    kind: str
    regs_address: int | None = None
    stack: tuple[int, int, str] | None = None


@dataclass(frozen=True, slots=True)
class Trace:
    """The frames of one stack, innermost first.

    ``truncated`` is None when the walk reached a normal end (an end-of-stack marker, or a user-mode
    ``struct pt_regs`` whose registers are then in ``user_regs``, saved at ``user_regs_address``),
    else the reason it stopped early.
    """

    frames: tuple[Frame, ...]
    truncated: str | None
    user_regs: Registers | None = None
    user_regs_address: int | None = None

    @property
    def pcs(self) -> tuple[int, ...]:
        """Return the program counters of all frames."""
        return tuple(f.pc for f in self.frames)

    def __len__(self) -> int:
        return len(self.frames)


class WalkStop(Exception):
    """Raised inside an unwinder to end its walk: ``reason`` None is a normal end (then ``user_regs``,
    saved at ``user_regs_address``, may hold the user-mode registers found there), else why it stopped
    early — what becomes :attr:`Trace.truncated`."""

    def __init__(self, reason: str | None, user_regs: Registers | None = None,
                 user_regs_address: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user_regs = user_regs
        self.user_regs_address = user_regs_address
