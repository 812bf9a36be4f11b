"""
kcrash.dumps
============

Stage 1: dump files → memory segments and notes. Formats (ELF vmcore/kcore, kdump-compressed plain,
flattened and split) are chosen by sniffing (:func:`open_dump`); each gives
:class:`~kcrash.dumps.base.MemorySegment`\\ s, ELF :class:`~kcrash.dumps.notes.Note`\\ s, VMCOREINFO and a
:class:`~kcrash.dumps.base.DumpDescription`. This layer knows nothing of kernel symbols or virtual
address translation (see :mod:`kcrash.memory`).
"""

from kcrash.dumps.base import DumpDescription, DumpFormat, DumpWarning, MemorySegment, PageCounts
from kcrash.dumps.cpustate import CpuState, PrStatus, QemuCpuState, cpu_states
from kcrash.dumps.notes import Note
from kcrash.dumps.registry import open_dump, register_format
from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo

__all__ = [
    "CpuState",
    "DumpDescription",
    "DumpFormat",
    "DumpWarning",
    "MemorySegment",
    "Note",
    "PageCounts",
    "PrStatus",
    "QemuCpuState",
    "VmcoreInfo",
    "cpu_states",
    "open_dump",
    "parse_vmcoreinfo",
    "register_format",
]
