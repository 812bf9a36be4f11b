"""
kcrash.debuginfo
================

Stage 3: symbols. :mod:`~kcrash.debuginfo.symbols` (:class:`Symbol`, :class:`SymbolTable`: lookup by
name and address, ``%pS``), :mod:`~kcrash.debuginfo.kallsyms` (the kernel's in-memory symbol table,
no vmlinux needed), :mod:`~kcrash.debuginfo.modules` (a loaded module's ELF symbol table),
:mod:`~kcrash.debuginfo.cache` (build-id keyed cache files); DWARF/ELF files are in
:mod:`~kcrash.debuginfo.finder` and :mod:`~kcrash.debuginfo.symbolizer`.
"""

from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.modules import module_symbols
from kcrash.debuginfo.symbols import Symbol, SymbolTable

__all__ = ["Symbol", "SymbolTable", "load_kallsyms", "module_symbols"]
