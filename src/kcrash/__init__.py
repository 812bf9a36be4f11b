"""
kcrash
======

Linux kernel crash analysis and live kernel debugging from user space. The public API grows
layer by layer; for now it is the error hierarchy and the version.
"""

from __future__ import annotations

from kcrash.errors import (
    CorruptDumpError,
    DumpFormatError,
    FaultError,
    KcrashError,
    MissingDebugInfoError,
    SymbolNotFoundError,
    TypeLookupError,
)

__version__ = "0.1.0"

__all__ = [
    "CorruptDumpError",
    "DumpFormatError",
    "FaultError",
    "KcrashError",
    "MissingDebugInfoError",
    "SymbolNotFoundError",
    "TypeLookupError",
    "__version__",
]
