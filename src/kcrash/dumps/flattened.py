"""
kcrash.dumps.flattened
======================

The makedumpfile flattened format (pipe/SSH output, and what QEMU 7.2 writes for ``kdump-*``): a
4 KiB big-endian ``makedumpfile_header`` then ``{int64 offset; int64 buf_size}`` records, each
followed by ``buf_size`` bytes meant for ``offset`` of the rebuilt file, until ``offset == -1``.
Records are not in offset order. :class:`FlatFile` indexes them once and then serves positional
reads of the *rebuilt* file directly (no ``makedumpfile -R`` step); gaps read as zeros. A read across
records takes one ``preadv`` per run of records that follow each other in the file. A file cut short
(no end record) is indexed as far as its records go, the last one's data as far as it is present;
:meth:`FlatFile.covers` then tells which bytes of the rebuilt file were written before the cut.
"""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

from kcrash._binary import flat_structs
from kcrash.dumps._io import PlainFile
from kcrash.errors import CorruptDumpError

__all__ = ["FLAT_HEADER_SIZE", "FlatFile", "sniff_flattened"]

FLAT_HEADER_SIZE = 4096
_SIGNATURE = b"makedumpfile\0\0\0\0"
_TYPE_FLAT_HEADER = 1
_END_FLAG_FLAT_HEADER = -1
_RECORD_HEADER = 16  # sizeof(struct makedumpfile_data_header)
_MAX_IOV = 1000  # buffers per preadv (the kernel's IOV_MAX is 1024)


def sniff_flattened(head: bytes) -> bool:
    """Return True if ``head`` starts with a flattened-format header."""
    return head[:16] == _SIGNATURE


class FlatFile:
    """Positional reads of the rebuilt file, served from the flattened file's record index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = PlainFile(path)
        try:
            self._check_header()
            #: True when the file ends before its end record (cut short)
            self.truncated = False
            self._starts, self._ends, self._file_offsets = self._index()
        except BaseException:
            self._file.close()
            raise
        #: size of the rebuilt file
        self.size = self._ends[-1] if self._ends else 0
        self.num_records = len(self._starts)
        #: bytes of the rebuilt file that records hold
        self.stored = sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def _check_header(self) -> None:
        layout = flat_structs().makedumpfile_header
        hdr = layout.unpack(self._file.pread(0, layout.size), file_offset=0)
        if hdr.raw("signature") != _SIGNATURE or hdr["type"] != _TYPE_FLAT_HEADER:
            raise CorruptDumpError("not a makedumpfile flattened header", 0, str(self.path))

    def _index(self) -> tuple[list[int], list[int], list[int]]:
        # One 16-byte pread and a plain struct unpack per record (thousands of records: QEMU
        # writes one per 16 KiB). The loop advances by at least a record header per step and
        # ends at the file's end, so a record size read from the file never bounds it.
        header = flat_structs().makedumpfile_data_header.struct
        read, size = self._file.pread, self._file.size
        records: list[tuple[int, int, int]] = []
        pos = FLAT_HEADER_SIZE
        self.truncated = True
        while pos + header.size <= size:
            offset, buf_size = header.unpack(read(pos, header.size))
            if offset == _END_FLAG_FLAT_HEADER:
                self.truncated = False
                break
            if offset < 0 or buf_size < 0 or offset + buf_size >= 1 << 63:
                raise CorruptDumpError(f"bad flattened record (offset {offset}, buf_size {buf_size})",
                                       pos, str(self.path))
            present = min(buf_size, size - pos - header.size)  # the last record of a cut file: its head
            if present:
                records.append((offset, offset + present, pos + header.size))
            pos += header.size + buf_size
        return self._sorted(records)

    def _sorted(self, records: list[tuple[int, int, int]]) -> tuple[list[int], list[int], list[int]]:
        # Later records win where records overlap (as ``makedumpfile -R`` would write them). The
        # one overlap a well-formed file has is a record repeated for the same range (a streamed
        # writer's final header replacing the "incomplete" one it sent first): the later copy is
        # kept. Other overlaps are refused. (The sort is stable: equal ranges stay in file order.)
        records.sort(key=lambda r: (r[0], r[1]))
        records = [r for i, r in enumerate(records) if i + 1 == len(records) or records[i + 1][:2] != r[:2]]
        for prev, cur in itertools.pairwise(records):
            if cur[0] < prev[1]:
                raise CorruptDumpError(f"flattened records overlap at rebuilt offset {cur[0]:#x}",
                                       cur[2] - 16, str(self.path))
        return [r[0] for r in records], [r[1] for r in records], [r[2] for r in records]

    def pread(self, offset: int, n: int) -> bytes:
        """Return up to ``n`` bytes of the rebuilt file at ``offset`` (gaps are zeros)."""
        end = min(offset + n, self.size)
        if offset < 0 or end <= offset:
            return b""
        i = max(bisect.bisect_right(self._starts, offset) - 1, 0)
        if self._starts[i] <= offset and end <= self._ends[i]:  # one record: the common case
            return self._file.pread(self._file_offsets[i] + offset - self._starts[i], end - offset)
        return self._gather(i, offset, end)

    def covers(self, offset: int, n: int) -> bool:
        """Whether every byte of ``[offset, offset + n)`` of the rebuilt file was written (always,
        inside the rebuilt size, for a whole file; only where records are, for a cut one)."""
        return n <= 0 or self.covered(offset, n) == n

    def covered(self, offset: int, n: int) -> int:
        """How many bytes of ``[offset, offset + n)``, from ``offset`` on without a hole, were written."""
        if offset < 0 or n <= 0 or offset >= self.size:
            return 0
        end = min(offset + n, self.size)
        if not self.truncated:
            return end - offset
        at = offset
        i = bisect.bisect_right(self._starts, at) - 1
        while 0 <= i < len(self._starts) and self._starts[i] <= at < end:
            at = max(at, self._ends[i])
            i += 1
        return min(at, end) - offset

    def _gather(self, i: int, offset: int, end: int) -> bytes:
        # The pieces of the records that cover [offset, end); runs of pieces that follow each
        # other in the file (only a record header between) are read by one preadv.
        out = bytearray(end - offset)
        view, header = memoryview(out), memoryview(bytearray(_RECORD_HEADER))  # headers: read, unused
        run: list[memoryview] = []
        run_start = run_end = -1
        while i < len(self._starts) and self._starts[i] < end:
            lo, hi = max(self._starts[i], offset), min(self._ends[i], end)
            if lo < hi:
                at = self._file_offsets[i] + lo - self._starts[i]
                if at != run_end + _RECORD_HEADER or len(run) >= _MAX_IOV:
                    self._read_run(run, run_start)
                    run, run_start = [], at
                else:
                    run.append(header)
                run.append(view[lo - offset:hi - offset])
                run_end = at + hi - lo
            i += 1
        self._read_run(run, run_start)
        return bytes(out)

    def _read_run(self, buffers: list[memoryview], at: int) -> None:
        if buffers:
            want = sum(len(b) for b in buffers)
            if self._file.preadv(buffers, at) != want:
                raise CorruptDumpError("short read of flattened record data", at, str(self.path))

    def close(self) -> None:
        """Close the file."""
        self._file.close()
