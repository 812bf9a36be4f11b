"""
kcrash.memory
=============

Stage 2: address spaces. :class:`~kcrash.memory.segments.SegmentMap` is the one hook through which
memory enters; :class:`~kcrash.memory.reader.MemoryReader` reads physical and virtual addresses;
:func:`~kcrash.memory.kernel.open_kernel_memory` builds the x86-64 kernel address space of a dump;
:mod:`kcrash.memory.translate` holds the page-table walks.
"""

from kcrash.memory.kernel import KernelLayout, KernelMemory, open_kernel_memory
from kcrash.memory.reader import MemoryReader, Translator
from kcrash.memory.segments import SegmentMap

__all__ = ["KernelLayout", "KernelMemory", "MemoryReader", "SegmentMap", "Translator", "open_kernel_memory"]
