"""
kcrash.unwind.arch
==================

One unwinder per architecture behind one interface, chosen by the dump's machine (``"x86_64"``,
``"aarch64"``, as :attr:`kcrash.dumps.base.DumpFormat.machine` spells it): :class:`ArchUnwinder`
says which registers hold the pc and sp, how a sleeping task's saved context becomes starting
registers, and unwinds one stack. :mod:`kcrash.unwind.arch.x86_64` (ORC) and
:mod:`kcrash.unwind.arch.arm64` (frame records) implement it; :func:`arch_unwinder` looks one up.
Finding stacks, saved contexts and kernel text needs symbols and types and is the caller's job
(:mod:`kcrash.helpers.linux.stack`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from kcrash.errors import UnwindError
from kcrash.unwind.arch import arm64, x86_64
from kcrash.unwind.context import UnwindContext
from kcrash.unwind.frame import Registers, Trace

__all__ = ["ARCH_UNWINDERS", "Aarch64Unwinder", "ArchUnwinder", "X86_64Unwinder", "arch_unwinder"]


class ArchUnwinder(Protocol):
    """One architecture's unwinder."""

    @property
    def machine(self) -> str:
        """The machine name (``"x86_64"``, ``"aarch64"``)."""
        ...

    @property
    def pc_register(self) -> str:
        """The name of the program counter in :class:`~kcrash.unwind.frame.Registers`."""
        ...

    @property
    def sp_register(self) -> str:
        """The name of the stack pointer in :class:`~kcrash.unwind.frame.Registers`."""
        ...

    def unwind(self, regs: Registers, ctx: UnwindContext, *, interrupted: bool = True,
               scan: bool = False) -> Trace:
        """Unwind the stack whose innermost frame has ``regs`` (``interrupted``: a CPU's or an
        exception's registers, not a return address); ``scan`` adds stack-scan guesses after an early stop."""
        ...


@dataclass(frozen=True, slots=True)
class X86_64Unwinder:
    """The x86-64 ORC unwinder (:func:`kcrash.unwind.arch.x86_64.unwind`)."""

    machine: str = "x86_64"
    pc_register: str = "rip"
    sp_register: str = "rsp"

    def unwind(self, regs: Registers, ctx: UnwindContext, *, interrupted: bool = True,
               scan: bool = False) -> Trace:
        """Unwind with ORC."""
        return x86_64.unwind(regs, ctx, interrupted=interrupted, scan=scan)


@dataclass(frozen=True, slots=True)
class Aarch64Unwinder:
    """The arm64 frame-record unwinder (:func:`kcrash.unwind.arch.arm64.unwind`) with what it knows
    of the kernel (``kernel``: PAC mask, ``pt_regs`` layout, entry text, function starts)."""

    kernel: arm64.Aarch64Kernel = field(default_factory=arm64.Aarch64Kernel)
    machine: str = "aarch64"
    pc_register: str = "pc"
    sp_register: str = "sp"

    def unwind(self, regs: Registers, ctx: UnwindContext, *, interrupted: bool = True,
               scan: bool = False) -> Trace:
        """Unwind by frame records."""
        return arm64.unwind(regs, ctx, self.kernel, interrupted=interrupted, scan=scan)


#: the unwinder of each machine, with no kernel-specific knowledge
ARCH_UNWINDERS: Mapping[str, ArchUnwinder] = {"x86_64": X86_64Unwinder(), "aarch64": Aarch64Unwinder()}


def arch_unwinder(machine: str) -> ArchUnwinder:
    """Return the unwinder of ``machine``.

    :param machine: ``"x86_64"`` or ``"aarch64"``
    :return: its unwinder
    :raises UnwindError: for a machine kcrash cannot unwind

    >>> arch_unwinder("aarch64").pc_register
    'pc'
    """
    found = ARCH_UNWINDERS.get(machine)
    if found is None:
        raise UnwindError(f"no unwinder for machine {machine!r} (kcrash unwinds x86_64 and aarch64)")
    return found
