"""
kcrash.collect.source
=====================

Physical pages of an opened dump, for the writers: which pfns are RAM, which of them the dump
actually holds (a filtered kdump file or an ELF file with ``p_filesz < p_memsz`` holds fewer), and
``read_pages(pfn, count)``. ELF input is read straight from the file (the ``/proc/vmcore`` path of a
capture kernel): a run of pages of 64 KiB or more through a read-only ``mmap`` window of its own,
which is unmapped when the last view of it goes (no copy into a new buffer, as makedumpfile maps
``/proc/vmcore``), a smaller one, or any whose ``mmap`` fails or lies past the end of the file, with
``pread``. Anything else is read through the dump's physical segments.
A raw guest-RAM image (QEMU's memory-backend file) is :class:`RamFileSource`.
"""

from __future__ import annotations

import bisect
import mmap
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kcrash.dumps.base import DumpFormat
from kcrash.dumps.elf_vmcore import ElfVmcore
from kcrash.dumps.flattened import FlatFile
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.write.stream import ElfSegment
from kcrash.errors import FaultError

__all__ = ["DumpPages", "RamFileSource", "RamRange", "dump_pages"]

Bits = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class RamRange:
    """Guest-physical ``[start, start + size)`` stored at ``file_offset`` of a RAM image."""

    start: int
    size: int
    file_offset: int


class RamFileSource:
    """Pages of a raw RAM image (QEMU ``memory-backend-file``) mapped at guest-physical ranges."""

    def __init__(self, path: Path, ranges: Sequence[RamRange], page_size: int = 4096) -> None:
        self.page_size = page_size
        self.ranges = sorted(ranges, key=lambda r: r.start)
        self._starts = [r.start for r in self.ranges]
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, address: int, size: int) -> bytes:
        """Read guest-physical memory (a :data:`~kcrash.dumps.base.ReadFn`)."""
        i = bisect.bisect_right(self._starts, address) - 1
        r = self.ranges[i] if i >= 0 else None
        if r is None or address + size > r.start + r.size:
            raise FaultError(address, True, "not guest RAM")
        return os.pread(self._fd, size, r.file_offset + address - r.start)

    def read_pages(self, pfn: int, count: int) -> bytes:
        """Return ``count`` pages from ``pfn`` (a run may cross RAM ranges)."""
        bs = self.page_size
        return _read_across(self.read, self._starts, self.ranges, pfn * bs, count * bs)

    def close(self) -> None:
        """Close the image."""
        os.close(self._fd)


def _read_across(read: Callable[[int, int], bytes], starts: list[int], ranges: Sequence[RamRange], address: int,
                 size: int) -> bytes:
    parts = []
    pos, end = address, address + size
    while pos < end:
        i = bisect.bisect_right(starts, pos) - 1
        r = ranges[i]
        n = min(end, r.start + r.size) - pos
        parts.append(read(pos, n))
        pos += n
    return b"".join(parts)


@dataclass(slots=True)
class DumpPages:
    """A dump's pages: ``ram`` and ``present`` bitmaps (one bool per pfn), ELF-style segments, and
    ``read_pages``."""

    page_size: int
    ram: Bits
    present: Bits
    segments: list[ElfSegment]
    _reader: _Reader

    def read_pages(self, pfn: int, count: int) -> bytes | memoryview:
        """Return ``count`` whole pages from ``pfn``; pages the dump lacks read as zeros."""
        return self._reader.read(pfn * self.page_size, count * self.page_size)

    def close(self) -> None:
        """Release file descriptors."""
        self._reader.close()


class _Reader:
    # Physical reads from (start, size, file offset | read_fn) pieces; absent bytes are zeros.
    def __init__(self, pieces: list[tuple[int, int, int]], fd: int | None, dump: DumpFormat) -> None:
        self.pieces = _disjoint(pieces)
        self.starts = [p[0] for p in self.pieces]
        self.fd = fd
        self.dump = dump
        self.file_size = os.fstat(fd).st_size if fd is not None else 0

    def read(self, address: int, size: int) -> bytes | memoryview:
        i = max(bisect.bisect_right(self.starts, address) - 1, 0)
        start, length, where = self.pieces[i] if self.pieces else (0, 0, 0)
        if start <= address and address + size <= start + length:  # the common case: one piece
            return self._piece(address, size, where + address - start)
        out = bytearray(size)
        while i < len(self.pieces) and self.pieces[i][0] < address + size:
            start, length, where = self.pieces[i]
            lo, hi = max(start, address), min(start + length, address + size)
            if lo < hi:
                out[lo - address:hi - address] = self._piece(lo, hi - lo, where + lo - start)
            i += 1
        return bytes(out)

    def _piece(self, address: int, size: int, file_offset: int) -> bytes | memoryview:
        if self.fd is not None:
            if size >= _MAP_MIN and file_offset + size <= self.file_size:
                view = _mapped(self.fd, file_offset, size)
                if view is not None:
                    return view
            return os.pread(self.fd, size, file_offset)
        try:
            return _segment_read(self.dump, address, size)
        except FaultError:
            return bytes(size)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_MAP_MIN = 64 * 1024


def _mapped(fd: int, offset: int, size: int) -> memoryview | None:
    # A read-only view of the file's bytes [offset, offset + size); the window is unmapped when the
    # view (and every array made from it) is gone.
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        window = mmap.mmap(fd, offset + size - start, prot=mmap.PROT_READ, offset=start)
    except (OSError, ValueError, OverflowError):
        return None
    return memoryview(window)[offset - start:]


def _disjoint(pieces: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    # /proc/vmcore repeats the kernel text as its own PT_LOAD inside a System RAM one (the same
    # bytes, kexec-tools' crash_create_elf64_headers). Each physical byte is kept once: with the text
    # piece left in, a read past its end (the rest of that RAM range) found no piece and read zeros.
    out: list[tuple[int, int, int]] = []
    for start, length, where in sorted(pieces, key=lambda p: (p[0], -p[1])):
        end = out[-1][0] + out[-1][1] if out else 0
        if start + length <= end:
            continue
        if start < end:
            start, length, where = end, length - (end - start), where + (end - start)
        out.append((start, length, where))
    return out


def _segment_read(dump: DumpFormat, address: int, size: int) -> bytes:
    for seg in dump.segments():
        if seg.physical and seg.start <= address and address + size <= seg.end:
            return seg.read_fn(address, size)
    raise FaultError(address, True, "not in the dump")


def _bits(n: int, runs: list[tuple[int, int]]) -> Bits:
    bits = np.zeros(n, dtype=np.bool_)
    for a, b in runs:
        bits[a:b] = True
    return bits


def _elf_pages(dump: ElfVmcore) -> DumpPages:
    bs = 4096
    no_paddr = (1 << (8 * dump.word_size)) - 1
    loads = [p for p in dump.loads() if p.p_paddr != no_paddr and p.p_memsz]
    max_pfn = max((-(-(p.p_paddr + p.p_memsz) // bs) for p in loads), default=0)
    ram = _bits(max_pfn, [(p.p_paddr // bs, -(-(p.p_paddr + p.p_memsz) // bs)) for p in loads])
    present = _bits(max_pfn, [(p.p_paddr // bs, (p.p_paddr + p.p_filesz) // bs) for p in loads])
    segments = [ElfSegment(p.p_paddr, p.p_vaddr, p.p_memsz) for p in loads]
    pieces = [(p.p_paddr, p.p_filesz, p.p_offset) for p in loads if p.p_filesz]
    reader = _Reader(pieces, os.open(dump.path, os.O_RDONLY), dump)
    return DumpPages(bs, ram, present, _merge_segments(segments), reader)


def _merge_segments(segments: list[ElfSegment]) -> list[ElfSegment]:
    # /proc/vmcore repeats the kernel text as its own PT_LOAD; the output keeps one copy of
    # each physical range (the first, lowest-address one wins).
    out: list[ElfSegment] = []
    for seg in sorted(segments, key=lambda s: (s.p_paddr, -s.p_memsz)):
        if out and seg.p_paddr < out[-1].p_paddr + out[-1].p_memsz:
            continue
        out.append(seg)
    return out


def _kdump_present(dump: KdumpCompressed) -> Bits:
    h = dump.header
    if dump.flattened:
        view = FlatFile(dump.path)
        try:
            raw = view.pread(h.bitmap_offset + h.bitmap_len, h.bitmap_len)
        finally:
            view.close()
    else:
        with dump.path.open("rb") as f:
            raw = os.pread(f.fileno(), h.bitmap_len, h.bitmap_offset + h.bitmap_len)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:h.max_mapnr]
    lo, hi = dump.pfn_range()
    bits[:lo] = 0
    bits[hi:] = 0
    return np.asarray(bits, dtype=np.bool_)


def dump_pages(dump: DumpFormat) -> DumpPages:
    """Return the pages of ``dump`` (ELF: read from the file; kdump: decompressed by the reader)."""
    if isinstance(dump, ElfVmcore):
        return _elf_pages(dump)
    bs = dump.describe().pages.page_size if not isinstance(dump, KdumpCompressed) else dump.header.block_size
    phys = [s for s in dump.segments() if s.physical]
    max_pfn = max((-(-s.end // bs) for s in phys), default=0)
    ram = _bits(max_pfn, [(s.start // bs, -(-s.end // bs)) for s in phys])
    present = _kdump_present(dump)[:max_pfn] & ram if isinstance(dump, KdumpCompressed) else ram.copy()
    segments = [ElfSegment(s.start, s.start, s.size) for s in phys]
    pieces = [(s.start, s.size, 0) for s in phys]
    return DumpPages(bs, ram, present, segments, _Reader(pieces, None, dump))
