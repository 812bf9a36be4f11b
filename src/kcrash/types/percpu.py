"""
kcrash.types.percpu
===================

Per-CPU variables (``include/linux/percpu-defs.h``): a per-CPU symbol's address is an offset
into each CPU's per-CPU area, and ``__per_cpu_offset[cpu]`` is where that CPU's area starts.
:func:`per_cpu_ptr` and :func:`per_cpu` follow the kernel macros of the same names. Which CPUs
exist is a helper's business (``__cpu_online_mask``), not this module's. :func:`is_percpu_address`
tells a per-CPU variable's address (an offset) from an ordinary one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kcrash.errors import ExpressionError, MissingDebugInfoError, SymbolNotFoundError
from kcrash.types.model import TypeKind
from kcrash.types.object import Object

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["is_percpu_address", "per_cpu", "per_cpu_offset", "per_cpu_ptr"]

# x86-64 kernel addresses start here; below is the user half.
_KERNEL_HALF = 0xFFFF800000000000


def per_cpu_offset(prog: Program, cpu: int) -> int:
    """``__per_cpu_offset[cpu]``."""
    if cpu < 0:
        raise ExpressionError(f"bad CPU number {cpu}")
    return int(prog["__per_cpu_offset"][cpu])


def per_cpu_ptr(prog: Program, ptr: Object, cpu: int) -> Object:
    """``per_cpu_ptr(ptr, cpu)``: the same pointer type, moved to ``cpu``'s per-CPU area.

    :param ptr: a pointer to a per-CPU variable (``&runqueues``)
    """
    if ptr.type_.strip_typedefs().kind is not TypeKind.POINTER:
        raise ExpressionError(f"per_cpu_ptr needs a pointer, not {ptr.type_.type_name()}")
    return Object(prog, ptr.type_, int(ptr) + per_cpu_offset(prog, cpu))


def per_cpu(prog: Program, var: Object | str, cpu: int) -> Object:
    """``per_cpu(var, cpu)``: the variable itself on ``cpu``.

    :param var: a per-CPU variable (``prog["runqueues"]``) or its name
    """
    obj = prog[var] if isinstance(var, str) else var
    return per_cpu_ptr(prog, obj.address_of_(), cpu)[0]


def is_percpu_address(prog: Program, address: int) -> bool:
    """True if a global symbol's ``address`` is a per-CPU variable's: inside vmlinux's
    ``.data..percpu`` (``__per_cpu_start`` .. ``__per_cpu_end``), or, where that section is linked
    at 0 (x86-64 SMP, ``PERCPU_VADDR`` in ``arch/x86/kernel/vmlinux.lds.S``), anywhere below the
    kernel half: a module's static per-CPU data lives in the first chunk's reserved area after
    vmlinux's, and its symbols hold per-CPU pointers of that zero-based space (``mod->percpu``,
    ``kernel/module/main.c``). The lab's Linux 7.2 links the section at a kernel address instead;
    there only the section's range counts (module per-CPU variables are known from their BTF).
    """
    try:
        start, end = prog.symbol_address("__per_cpu_start"), prog.symbol_address("__per_cpu_end")
    except (SymbolNotFoundError, MissingDebugInfoError):
        return False
    return start <= address < end or (start == 0 and address < _KERNEL_HALF)
