"""
kcrash.memory.arch
==================

The per-architecture knowledge of a kernel's address space (:class:`~kcrash.memory.layout.KernelArch`):
:mod:`.x86_64` and :mod:`.aarch64`. :func:`kernel_arch` picks one by the dump's machine.
"""

from kcrash.errors import UnsupportedDumpFormat
from kcrash.memory.arch.aarch64 import Aarch64Kernel
from kcrash.memory.arch.x86_64 import X86_64Kernel
from kcrash.memory.layout import KernelArch

__all__ = ["kernel_arch"]

_ARCHES: dict[str, KernelArch] = {"x86_64": X86_64Kernel(), "aarch64": Aarch64Kernel()}


def kernel_arch(machine: str) -> KernelArch:
    """Return the :class:`~kcrash.memory.layout.KernelArch` of ``machine`` (``"x86_64"``,
    ``"aarch64"``); another machine raises UnsupportedDumpFormat."""
    found = _ARCHES.get(machine)
    if found is None:
        raise UnsupportedDumpFormat(f"kernel dumps of machine {machine!r} are not supported "
                                    "(x86_64 and aarch64 are)")
    return found
