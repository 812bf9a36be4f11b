"""
kcrash.dumps.registry
=====================

Opening dumps: formats register with :func:`register_format`, and :func:`open_dump` picks one by
sniffing the first bytes of the file, never by its name. Several files given together form a
``--split`` set.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, Self

from kcrash.dumps.base import DumpFormat
from kcrash.dumps.elf_vmcore import ElfVmcore
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.split import SplitDump
from kcrash.errors import DumpFormatError, UnsupportedDumpFormat

__all__ = ["HEAD_SIZE", "open_dump", "register_format", "registered_formats", "sniff_format"]

#: bytes handed to ``sniff`` (a flattened file's inner header starts at 4112)
HEAD_SIZE = 8192


class _Openable(Protocol):
    @classmethod
    def sniff(cls, head: bytes) -> bool: ...

    @classmethod
    def open(cls, path: Path, *, zero_fill: bool = False) -> Self: ...


_FORMATS: dict[str, type[_Openable]] = {}


def register_format(name: str, cls: type[_Openable]) -> None:
    """Register ``cls`` (with ``sniff(head)`` and ``open(path, zero_fill=)``) under ``name``."""
    _FORMATS[name] = cls


def registered_formats() -> list[str]:
    """Return the registered format names, in sniffing order."""
    return list(_FORMATS)


def sniff_format(head: bytes) -> str:
    """Return the name of the first registered format whose ``sniff`` accepts ``head``."""
    for name, cls in _FORMATS.items():
        if cls.sniff(head):
            return name
    raise UnsupportedDumpFormat("not a kernel dump kcrash can read (unknown signature)")


def _open_one(path: Path, zero_fill: bool) -> DumpFormat:
    with path.open("rb") as f:
        head = f.read(HEAD_SIZE)
    try:
        name = sniff_format(head)
    except UnsupportedDumpFormat:
        raise UnsupportedDumpFormat(f"{path}: not a kernel dump kcrash can read "
                                    f"(starts with {head[:8]!r})") from None
    dump: DumpFormat = _FORMATS[name].open(path, zero_fill=zero_fill)  # type: ignore[assignment]
    return dump


def open_dump(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
              zero_fill: bool = False) -> DumpFormat:
    """Open one dump file, or several files of one ``--split`` set.

    :param zero_fill: read excluded and lost pages as zeros instead of raising FaultError.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = [Path(p) for p in paths]
    if not files:
        raise DumpFormatError("no dump file given")
    dumps = [_open_one(p, zero_fill) for p in files]
    if len(dumps) == 1:
        return dumps[0]
    try:
        parts = [d for d in dumps if isinstance(d, KdumpCompressed)]
        if len(parts) != len(dumps):
            raise DumpFormatError("several files form a dump only as a kdump-compressed --split set")
        return SplitDump(parts)
    except BaseException:
        for d in dumps:
            d.close()
        raise


register_format("kdump-compressed", KdumpCompressed)
register_format("elf", ElfVmcore)
