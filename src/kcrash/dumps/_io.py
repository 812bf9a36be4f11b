"""
kcrash.dumps._io
================

Positional reads of a dump file. :class:`PlainFile` reads with ``os.pread``; the flattened format
(:mod:`kcrash.dumps.flattened`) offers the same interface over its record index, so the
kdump-compressed reader does not care which one it has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from kcrash.errors import CorruptDumpError
from kcrash.metrics import COUNTERS

__all__ = ["FileView", "PlainFile"]


class FileView(Protocol):
    """A read-only file of ``size`` bytes with positional reads."""

    path: Path
    size: int
    #: bytes the file really stores (a flattened file's rebuilt ``size`` may have holes)
    stored: int
    #: the file is known to be cut short (a flattened file without its end record)
    truncated: bool

    def pread(self, offset: int, n: int) -> bytes:
        """Return up to ``n`` bytes at ``offset`` (short only at end of file)."""
        ...

    def covers(self, offset: int, n: int) -> bool:
        """Whether the file holds all of ``[offset, offset + n)`` (a cut file lacks some)."""
        ...

    def covered(self, offset: int, n: int) -> int:
        """How many bytes of ``[offset, offset + n)``, from ``offset`` on without a hole, the file holds."""
        ...

    def close(self) -> None:
        """Close the underlying descriptor."""
        ...


class PlainFile:
    """An ordinary file read with ``os.pread``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self.stored = self.size
        self.truncated = False  # a plain file cannot tell; its readers check offsets against size

    def pread(self, offset: int, n: int) -> bytes:
        """Return up to ``n`` bytes at ``offset``."""
        if offset < 0 or n < 0:
            raise CorruptDumpError(f"negative read ({n} bytes)", offset, str(self.path))
        data = os.pread(self._fd, n, offset)
        COUNTERS.dump_bytes_read += len(data)
        return data

    def covers(self, offset: int, n: int) -> bool:
        """Whether ``[offset, offset + n)`` lies inside the file."""
        return offset >= 0 and offset + n <= self.size

    def covered(self, offset: int, n: int) -> int:
        """How many bytes of ``[offset, offset + n)`` lie inside the file."""
        return max(0, min(n, self.size - offset)) if offset >= 0 else 0

    def preadv(self, buffers: list[memoryview], offset: int) -> int:
        """Fill ``buffers`` in turn from the file at ``offset``; return the bytes read."""
        if hasattr(os, "preadv"):
            n = os.preadv(self._fd, buffers, offset)
        else:  # one pread per buffer
            n = 0
            for buf in buffers:
                data = os.pread(self._fd, len(buf), offset + n)
                buf[:len(data)] = data
                n += len(data)
                if len(data) < len(buf):
                    break
        COUNTERS.dump_bytes_read += n
        return n

    def close(self) -> None:
        """Close the file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_exact(view: FileView, offset: int, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes or raise CorruptDumpError naming ``what``."""
    if offset < 0 or n < 0 or offset + n > view.size:
        raise CorruptDumpError(f"{what} ({n} bytes) lies outside the file ({view.size} bytes)",
                               offset, str(view.path))
    data = view.pread(offset, n)
    if len(data) != n:
        raise CorruptDumpError(f"short read of {what}", offset, str(view.path))
    return data
