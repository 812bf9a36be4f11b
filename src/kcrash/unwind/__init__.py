"""
kcrash.unwind
=============

Stack unwinding from a dump's own data, with no vmlinux: ORC tables read from kernel memory
(:mod:`~kcrash.unwind.orc`), the x86-64 ORC unwinder (:mod:`~kcrash.unwind.arch.x86_64`), the
frame-pointer and stack-scan fallbacks (:mod:`~kcrash.unwind.frame_pointer`) and the result model
(:mod:`~kcrash.unwind.frame`). The unwinder sees the target only through the small
:class:`~kcrash.unwind.context.UnwindContext` protocol; symbolizing frames is not done here.
"""

from kcrash.unwind.arch.x86_64 import inactive_task_frame_registers, unwind
from kcrash.unwind.context import MemoryUnwindContext, StackRange, UnwindContext
from kcrash.unwind.frame import Frame, Registers, Trace
from kcrash.unwind.orc import OrcEntry, OrcTable, OrcTables, detect_orc_format, vmlinux_orc_table

__all__ = [
    "Frame",
    "MemoryUnwindContext",
    "OrcEntry",
    "OrcTable",
    "OrcTables",
    "Registers",
    "StackRange",
    "Trace",
    "UnwindContext",
    "detect_orc_format",
    "inactive_task_frame_registers",
    "unwind",
    "vmlinux_orc_table",
]
