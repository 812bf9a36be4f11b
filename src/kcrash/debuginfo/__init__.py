"""
kcrash.debuginfo
================

Stage 3: symbols. :mod:`~kcrash.debuginfo.symbols` (:class:`Symbol`, :class:`SymbolTable`: lookup by
name and address, ``%pS``), :mod:`~kcrash.debuginfo.kallsyms` (the kernel's in-memory symbol table,
no vmlinux needed), :mod:`~kcrash.debuginfo.modules` (a loaded module's ELF symbol table),
:mod:`~kcrash.debuginfo.cache` (build-id keyed cache files); DWARF/ELF files are in
:mod:`~kcrash.debuginfo.finder` and :mod:`~kcrash.debuginfo.symbolizer`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kcrash.debuginfo.kallsyms import load_kallsyms
    from kcrash.debuginfo.modules import module_symbols
    from kcrash.debuginfo.symbols import Symbol, SymbolTable

__all__ = ["Symbol", "SymbolTable", "load_kallsyms", "module_symbols"]

_EXPORTS = {"Symbol": "symbols", "SymbolTable": "symbols", "load_kallsyms": "kallsyms", "module_symbols": "modules"}


def __getattr__(name: str) -> Any:
    # The exports are imported on first use: they need numpy (0.1 s), which the DWARF symbolizer
    # under ``kcrash decode`` does not.
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
