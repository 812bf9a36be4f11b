"""
kcrash.dumps.write.output
=========================

Where a dump writer's bytes go, crash-safely. :class:`DumpOutput` writes into a temporary file next
to the final path (``.NAME.kcrash-tmp-PID``) and renames it only in :meth:`DumpOutput.commit`, so a
killed writer never leaves a file under the final name. Writes are positional (``pwrite``); in the
flattened format (makedumpfile's pipe format) each one becomes an ``{offset, size}`` record
instead. :meth:`DumpOutput.patch` rewrites bytes that were already written *in place* (for a
flattened file, inside the record that holds them), which needs no new disk blocks: that is how the
writers clear the "incomplete" mark they set first, or leave it set when the disk fills up.
A failed write is recorded (:attr:`DumpOutput.failure`) instead of raised when it is ``ENOSPC``,
``EDQUOT`` or ``EFBIG``: the caller then stops, and the file stays readable up to that point. When
not even the headers fit, there is nothing to keep: :meth:`DumpOutput.abandon` deletes the file and
raises the error as an ``OSError`` naming the final path.

:class:`StreamOutput` writes the flattened format to a pipe or terminal (``makedumpfile -F``):
records go out in order and nothing can be rewritten, so :meth:`StreamOutput.patch` appends a new
record for the same offsets; ``makedumpfile -R`` and kcrash's reader let the later record win, so
the "incomplete" mark set first is cleared by a final header record only when every page went out.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import NoReturn

from kcrash._binary import flat_structs

__all__ = ["DumpOutput", "OutputFull", "StreamOutput", "temporary_path"]

_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_FLAT_HEADER = 4096


class OutputFull(Exception):
    """The output device is full (raised by :meth:`DumpOutput.write`; the writer catches it)."""


def temporary_path(final: Path) -> Path:
    """Return the temporary name a dump is written under before it is renamed to ``final``."""
    return final.with_name(f".{final.name}.kcrash-tmp-{os.getpid()}")


class DumpOutput:
    """A dump file under construction. ``flattened`` selects makedumpfile's flattened format."""

    def __init__(self, final: Path, *, flattened: bool = False) -> None:
        self.final = Path(final)
        self.path = temporary_path(self.final)
        self.flattened = flattened
        self.failure: str | None = None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._pos = 0
        self._records: list[tuple[int, int, int]] = []  # (offset, size, file position of data)
        if flattened:
            header = flat_structs().makedumpfile_header.pack(signature=b"makedumpfile", type=1, version=1)
            try:
                self._append(header.ljust(_FLAT_HEADER, b"\0"))
            except OutputFull:
                self.abandon()

    def _append(self, data: bytes | memoryview) -> None:
        # Append at the end of a flattened file; on a short write, cut back so no partial record is left.
        self._pos += self._pwrite(data, self._pos, self._pos)

    def _pwrite(self, data: bytes | memoryview, offset: int, truncate_to: int | None) -> int:
        # One positioned write of all of ``data``; a full disk or a short write ends in OutputFull.
        try:
            done = os.pwrite(self._fd, data, offset)
        except OSError as exc:
            self._fail(exc, truncate_to)
        if done != len(data):
            self._fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), truncate_to)
        return done

    def _fail(self, exc: OSError, truncate_to: int | None) -> NoReturn:
        if exc.errno not in _FULL:
            raise exc
        if truncate_to is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, truncate_to)
        self.failure = exc.strerror or str(exc)
        raise OutputFull(self.failure) from exc

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` of the (rebuilt) dump; raise :class:`OutputFull` when full."""
        if not len(data):
            return
        if not self.flattened:
            self._pwrite(data, offset, None)
            return
        record = flat_structs().makedumpfile_data_header.pack(offset=offset, buf_size=len(data))
        start = self._pos
        self._append(record + bytes(data) if len(data) < 65536 else record)
        if len(data) >= 65536:
            try:
                self._append(data)
            except OutputFull:
                os.ftruncate(self._fd, start)
                self._pos = start
                raise
        self._records.append((offset, len(data), self._pos - len(data)))

    def patch(self, offset: int, data: bytes) -> None:
        """Rewrite already-written bytes at dump offset ``offset`` in place."""
        if not self.flattened:
            os.pwrite(self._fd, data, offset)
            return
        for start, size, where in self._records:
            if start <= offset and offset + len(data) <= start + size:
                os.pwrite(self._fd, data, where + offset - start)
                return
        raise ValueError(f"no record holds dump offset {offset:#x}")

    def commit(self) -> Path:
        """Finish the file (end marker when flattened), close it and rename it to the final name."""
        if self.flattened:
            end = flat_structs().makedumpfile_data_header.pack(offset=-1, buf_size=-1)
            with contextlib.suppress(OutputFull):
                self._append(end)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.path, self.final)
        return self.final

    def abandon(self) -> NoReturn:
        """Delete the file (it is too short to be read as a dump) and raise why as an ``OSError``."""
        self.discard()
        raise OSError(errno.ENOSPC, self.failure or os.strerror(errno.ENOSPC), str(self.final))

    def discard(self) -> None:
        """Close and delete the temporary file."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.unlink(missing_ok=True)


class StreamOutput(DumpOutput):
    """A flattened dump written in order to an open file descriptor (a pipe, ``-F``), never renamed."""

    def __init__(self, fd: int, name: str = "<stdout>") -> None:  # no super(): there is no file to create
        self.final = Path(name)
        self.path = self.final
        self.flattened = True
        self.failure = None
        self._fd = fd
        self._pos = 0
        self._records = []
        header = flat_structs().makedumpfile_header.pack(signature=b"makedumpfile", type=1, version=1)
        try:
            self._append(header.ljust(_FLAT_HEADER, b"\0"))
        except OutputFull:
            self.abandon()

    def _pwrite(self, data: bytes | memoryview, offset: int, truncate_to: int | None) -> int:
        # Sequential writes (a pipe cannot seek); a closed reader (EPIPE) or a full disk ends the dump.
        view, done = memoryview(data), 0
        while done < len(view):
            try:
                done += os.write(self._fd, view[done:])
            except OSError as exc:
                if exc.errno not in _FULL | {errno.EPIPE}:
                    raise
                self.failure = exc.strerror or str(exc)
                raise OutputFull(self.failure) from exc
        return done

    def write(self, offset: int, data: bytes | memoryview) -> None:
        """Append one record holding ``data`` for dump offset ``offset``."""
        if len(data):
            record = flat_structs().makedumpfile_data_header.pack(offset=offset, buf_size=len(data))
            self._append(record + bytes(data))

    def patch(self, offset: int, data: bytes) -> None:
        """Append a record that replaces ``data``'s bytes at dump offset ``offset``."""
        with contextlib.suppress(OutputFull):
            self.write(offset, data)

    def commit(self) -> Path:
        """Write the end marker; the descriptor stays open (it belongs to the caller)."""
        end = flat_structs().makedumpfile_data_header.pack(offset=-1, buf_size=-1)
        with contextlib.suppress(OutputFull):
            self._append(end)
        return self.final

    def abandon(self) -> NoReturn:
        """Raise why the stream ended before the headers were out."""
        raise OSError(errno.ENOSPC if self.failure is None else errno.EIO, self.failure or "output full",
                      str(self.final))

    def discard(self) -> None:
        """Nothing to delete on a stream."""
