"""
kcrash.unwind
=============

Stack unwinding from a dump's own data, with no vmlinux: one unwinder per machine behind one
interface (:mod:`~kcrash.unwind.arch`: :func:`~kcrash.unwind.arch.arch_unwinder`), the x86-64 ORC
unwinder (:mod:`~kcrash.unwind.arch.x86_64`, ORC tables read from kernel memory by
:mod:`~kcrash.unwind.orc`) and the arm64 frame-record unwinder (:mod:`~kcrash.unwind.arch.arm64`),
the frame-pointer and stack-scan fallbacks (:mod:`~kcrash.unwind.frame_pointer`) and the result model
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
