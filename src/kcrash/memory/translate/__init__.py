"""
kcrash.memory.translate
=======================

Virtual → physical translation, one module per architecture (:mod:`.x86_64`). A translator takes a
physical reader and a page-table root and offers ``walk(vaddr)`` and ``translate(vaddr)``.
"""

from kcrash.memory.translate.x86_64 import PageTableEntry, PageWalk, X86_64PageTables

__all__ = ["PageTableEntry", "PageWalk", "X86_64PageTables"]
