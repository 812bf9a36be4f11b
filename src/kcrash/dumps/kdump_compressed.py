"""
kcrash.dumps.kdump_compressed
=============================

Reader of kdump-compressed dumps (makedumpfile ``-c/-l/-p/-z``, QEMU ``kdump-*``), plain or in the
makedumpfile flattened format (read directly through a record index). Pages are found through the
2nd bitmap's rank and ``page_desc``; zlib, lzo, snappy and zstd pages and raw pages may mix; zero
pages share ``pd_zero``. Pages missing from the dump raise :class:`~kcrash.errors.FaultError` with the
reason (hole, excluded by the dump level, lost in an incomplete dump, in another part of a split
dump) unless the dump was opened with ``zero_fill``. Decompressed pages live in a bounded LRU cache;
long reads bypass it and decode their pages together (one read of their data; zlib on two threads
when a CPU is idle, see :func:`~kcrash.dumps.codecs.decompress_pages`).
It exposes one physical :class:`~kcrash.dumps.base.MemorySegment`; it knows nothing of virtual
addresses.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from kcrash.dumps._bitmap import Bitmap
from kcrash.dumps._cache import LruCache
from kcrash.dumps._io import FileView, PlainFile, read_exact
from kcrash.dumps.base import (
    MACHINE_AARCH64,
    MACHINE_X86_64,
    DumpDescription,
    DumpWarning,
    MemorySegment,
    PageCounts,
    machine_from_notes_or_none,
    machine_from_uname,
    missing_pages_warning,
)
from kcrash.dumps.codecs import codec_name, decompress, decompress_pages
from kcrash.dumps.flattened import FLAT_HEADER_SIZE, FlatFile, sniff_flattened
from kcrash.dumps.kdump_header import (
    DUMP_DH_COMPRESSED_INCOMPLETE,
    KdumpHeader,
    read_kdump_header,
    sniff_kdump,
    status_flag_names,
)
from kcrash.dumps.notes import Note, parse_notes
from kcrash.dumps.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo
from kcrash.errors import CorruptDumpError, FaultError
from kcrash.metrics import COUNTERS

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_CACHE_PAGES", "KdumpCompressed"]

#: decompressed pages kept by default (8 MiB of 4 KiB pages)
DEFAULT_CACHE_PAGES = 2048
_DESC_SIZE = 24
_DESC_CHUNK = 1024
_BATCH = 256
_STATS_CHUNK = 1 << 16
# (file offset, stored size, flags) of one page_desc
_Desc = tuple[int, int, int]


class KdumpCompressed:
    """One kdump-compressed file (plain or flattened). Open with :meth:`open` or ``open_dump``."""

    format_name: ClassVar[str] = "kdump-compressed"

    def __init__(self, path: Path, view: FileView, header: KdumpHeader, *, zero_fill: bool = False,
                 flattened: bool = False, cache_pages: int = DEFAULT_CACHE_PAGES) -> None:
        self.path = path
        self.header = header
        self.flattened = flattened
        self.zero_fill = zero_fill
        self._view = view
        self._bs = header.block_size
        self._zero_page = bytes(self._bs)
        self._bm1, self._bm2 = self._read_bitmaps()
        self._start_pfn, self._end_pfn = (header.start_pfn, header.end_pfn) if header.split \
            else (0, header.max_mapnr)
        # A split part's descriptors count set bits from its start_pfn (only its range is dumpable).
        start, end = self.pfn_range()
        self._rank_base = self._bm2.rank(start)
        self._num_dumpable = self._bm2.count_range(start, end)
        self._pd = struct.Struct(("<" if header.little_endian else ">") + "qIIQ")
        available = max(0, (view.size - header.page_desc_offset) // _DESC_SIZE)
        self._available = min(self._num_dumpable, available)
        self._data_start = header.page_desc_offset + self._num_dumpable * _DESC_SIZE
        self._pages: LruCache[int, bytes] = LruCache(cache_pages)
        self._desc_chunks: LruCache[int, list[tuple[int, int, int, int]]] = LruCache(32)
        self._notes: list[Note] | None = None
        self._stats: tuple[PageCounts, tuple[str, ...]] | None = None
        flagged = bool(header.status & DUMP_DH_COMPRESSED_INCOMPLETE)
        self.incomplete = flagged or self._looks_cut()
        if self.incomplete:
            why = "dump is flagged incomplete (makedumpfile ran out of space?)" if flagged \
                else "dump is cut short"
            lost = self._page_stats()[0].lost
            warnings.warn(missing_pages_warning(path, why, lost, self._num_dumpable), DumpWarning, stacklevel=3)

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Return True for ``KDUMP   ``/``DISKDUMP`` files and flattened files that hold one."""
        if sniff_kdump(head):
            return True
        record = FLAT_HEADER_SIZE + 16
        return sniff_flattened(head) and sniff_kdump(head[record:record + 8])

    @classmethod
    def open(cls, path: Path, *, zero_fill: bool = False, cache_pages: int = DEFAULT_CACHE_PAGES) -> Self:
        """Open ``path`` (plain or flattened)."""
        with Path(path).open("rb") as f:
            head = f.read(16)
        flattened = sniff_flattened(head)
        view: FileView = FlatFile(Path(path)) if flattened else PlainFile(Path(path))
        try:
            header = read_kdump_header(view)
            return cls(Path(path), view, header, zero_fill=zero_fill, flattened=flattened,
                       cache_pages=cache_pages)
        except BaseException:
            view.close()
            raise

    def _looks_cut(self) -> bool:
        # Page data is written in descriptor order, so a whole file holds the last page with data
        # of its own (zero pages share pd_zero's); only a file that fails this test gets all its
        # descriptors scanned. The backward walk reads as many chunks as there are trailing zero pages.
        if self._view.truncated or self._available < self._num_dumpable or self._bitmap_end < self.header.max_mapnr:
            return True
        end = self._available
        while end > 0:
            first = max(0, end - _DESC_CHUNK)
            for offset, size, flags, _ in reversed(list(self._pd.iter_unpack(self._desc_bytes(first, end - first)))):
                if offset != 0 and not (offset == self._data_start and flags == 0):
                    return not self._view.covers(offset, size)
            end = first
        return False

    def _read_bitmaps(self) -> tuple[Bitmap, Bitmap]:
        # A cut flattened file may lack bitmap records: bits past the first hole are unknown, so the
        # dump ends there (a page above it is missing, never "excluded" or read through a wrong rank).
        # Only the bytes max_mapnr needs are read, and never more than the file stores.
        h = self.header
        length = h.bitmap_len
        need = min(length, (h.max_mapnr + 7) // 8)
        if 2 * need > self._view.stored:
            raise CorruptDumpError(f"page bitmaps of {need} bytes each do not fit in the {self._view.stored} bytes "
                                   "the file stores", h.bitmap_offset, str(self.path))
        kept = min(self._view.covered(h.bitmap_offset, need), self._view.covered(h.bitmap_offset + length, need))
        if kept == 0 and need:
            raise CorruptDumpError("the page bitmaps are missing (the file is cut short)", h.bitmap_offset,
                                   str(self.path))
        self._bitmap_end = min(kept * 8, h.max_mapnr)
        first, second = self._view.pread(h.bitmap_offset, kept), self._view.pread(h.bitmap_offset + length, kept)
        return Bitmap(first, h.max_mapnr), Bitmap(second, h.max_mapnr)

    def close(self) -> None:
        """Close the file."""
        self._view.close()

    # -- protocol ------------------------------------------------------------------------------

    def segments(self) -> Sequence[MemorySegment]:
        """Return a physical segment per run of RAM (1st bitmap) in the pfns this file covers."""
        bs = self._bs
        return [MemorySegment(start * bs, (end - start) * bs, self.read, True)
                for start, end in self.ram_runs()]

    @property
    def machine(self) -> str:
        """Return the canonical machine of the header's ``utsname.machine``; when that names no machine
        kcrash knows (QEMU writes ``"Unknown"`` for aarch64), the one the CPU notes' layout implies."""
        machine = machine_from_uname(self.header.utsname.get("machine", ""))
        if machine in (MACHINE_X86_64, MACHINE_AARCH64):
            return machine
        return machine_from_notes_or_none(self.notes()) or machine

    def ram_runs(self) -> list[tuple[int, int]]:
        """Return the ``[start, end)`` pfn runs of RAM this file covers (excluded pages included)."""
        lo, hi = self.pfn_range()
        runs = [(max(s, lo), min(e, hi)) for s, e in self._bm1.runs()]
        return [(s, e) for s, e in runs if s < e]

    def pfn_range(self) -> tuple[int, int]:
        """Return the ``[start, end)`` pfns this file is responsible for (a split part covers less)."""
        return self._start_pfn, self._end_pfn

    def notes(self) -> Sequence[Note]:
        """Return the ELF notes copied after the sub-header (header_version ≥ 4)."""
        if self._notes is None:
            h = self.header
            self._notes = []
            if h.size_note:
                data = read_exact(self._view, h.offset_note, h.size_note, "ELF notes")
                self._notes = parse_notes(data, h.offset_note, little_endian=h.little_endian)
        return self._notes

    def vmcoreinfo_or_none(self) -> VmcoreInfo | None:
        """Return VMCOREINFO from the sub-header (≥ v3) or from the notes, else None."""
        h = self.header
        if h.size_vmcoreinfo:
            return parse_vmcoreinfo(read_exact(self._view, h.offset_vmcoreinfo, h.size_vmcoreinfo,
                                               "VMCOREINFO"))
        for note in self.notes():
            if note.name == "VMCOREINFO":
                return parse_vmcoreinfo(note.desc)
        return None

    def describe(self) -> DumpDescription:
        """Return the header facts and page counts (scans the page descriptors once)."""
        h = self.header
        counts, codecs = self._page_stats()
        fmt = self.format_name + (" (flattened)" if self.flattened else "")
        return DumpDescription(
            path=str(self.path), format=fmt, codecs=codecs, pages=counts, dump_level=h.dump_level,
            header_version=h.header_version, nr_cpus=h.nr_cpus, status=h.status,
            status_flags=status_flag_names(h.status), incomplete=self.incomplete, utsname=h.utsname,
            timestamp=h.timestamp, phys_base=h.phys_base,
            split=(h.start_pfn, h.end_pfn) if h.split else None, files=(str(self.path),))

    # -- reading -------------------------------------------------------------------------------

    def read(self, address: int, size: int) -> bytes:
        """Read ``size`` bytes of physical memory at ``address``."""
        bs = self._bs
        first, last = address // bs, (address + size - 1) // bs
        offset = address - first * bs
        if first == last:
            return self.read_page(first)[offset:offset + size]
        parts: list[bytes] = []
        pfn = first
        while pfn <= last:
            count = min(last + 1 - pfn, _BATCH)
            parts.extend(self._read_pages(pfn, count))
            pfn += count
        if not parts:  # size 0 at a page boundary
            return b""
        # Trim the end pages, then one join: the result is copied once.
        parts[0] = parts[0][offset:]
        parts[-1] = parts[-1][:(address + size) - last * bs]
        return b"".join(parts)

    def read_page(self, pfn: int) -> bytes:
        """Return the page of ``pfn`` (cached), or raise FaultError saying why it is missing."""
        page = self._pages.get(pfn)
        if page is not None:
            COUNTERS.page_cache_hits += 1
            return page
        COUNTERS.page_cache_misses += 1
        index = self._index_of(pfn)
        if index is None:
            return self._zero_page
        desc = self._desc(index)
        if desc is None:
            return self._absent(pfn, "lost: dump incomplete", fillable=True)
        try:
            page = self._load(index, desc)
        except CorruptDumpError as exc:  # one damaged page, not a damaged dump
            return self._absent(pfn, f"unreadable: {exc}", fillable=True)
        self._pages.put(pfn, page)
        return page

    def _index_of(self, pfn: int) -> int | None:
        # page_desc index of pfn; None when zero-filled; FaultError when absent.
        if pfn >= self._bitmap_end and pfn < self.header.max_mapnr:
            self._absent(pfn, "missing: the page bitmaps are cut short before it", fillable=True)
            return None
        if self._bm2.test(pfn) and self._in_range(pfn):
            return self._bm2.rank(pfn) - self._rank_base
        reason, fillable = self._absent_reason(pfn)
        self._absent(pfn, reason, fillable=fillable)
        return None

    def _in_range(self, pfn: int) -> bool:
        return self._start_pfn <= pfn < self._end_pfn

    def _absent_reason(self, pfn: int) -> tuple[str, bool]:
        if not 0 <= pfn < self.header.max_mapnr:
            return f"beyond the end of the dump (max_mapnr {self.header.max_mapnr})", False
        if not self._in_range(pfn):
            return "in another file of a split dump", False
        if not self._bm1.test(pfn):
            return "not in the dump: not RAM", False
        return f"excluded by dump level {self.header.dump_level}", True

    def _absent(self, pfn: int, reason: str, *, fillable: bool) -> bytes:
        if fillable and self.zero_fill:
            return self._zero_page
        raise FaultError(pfn * self._bs, True, reason)

    def _desc(self, index: int) -> _Desc | None:
        if index >= self._available:
            return None
        chunk_no = index // _DESC_CHUNK
        chunk = self._desc_chunks.get(chunk_no)
        if chunk is None:
            first = chunk_no * _DESC_CHUNK
            count = min(_DESC_CHUNK, self._available - first)
            chunk = list(self._pd.iter_unpack(self._desc_bytes(first, count)))
            self._desc_chunks.put(chunk_no, chunk)
        offset, size, flags, _ = chunk[index % _DESC_CHUNK]
        return None if offset == 0 else (offset, size, flags)

    def _desc_bytes(self, first: int, count: int) -> bytes:
        offset = self.header.page_desc_offset + first * _DESC_SIZE
        return read_exact(self._view, offset, count * _DESC_SIZE, "page_desc")

    def _check(self, index: int, desc: _Desc) -> None:
        offset, size, flags = desc
        where = self.header.page_desc_offset + index * _DESC_SIZE
        bad = (size != self._bs) if flags == 0 else not 0 < size <= self._bs
        if bad or offset < 0:
            raise CorruptDumpError(f"page_desc[{index}] is invalid (offset {offset:#x}, size {size}, "
                                   f"flags {flags:#x})", where, str(self.path))
        if not self._view.covers(offset, size):
            raise CorruptDumpError(f"page data [{offset:#x}, +{size:#x}) is missing: the file is cut short",
                                   where, str(self.path))

    def _is_zero_desc(self, desc: _Desc) -> bool:
        return desc[0] == self._data_start and desc[2] == 0

    def _load(self, index: int, desc: _Desc) -> bytes:
        self._check(index, desc)
        if self._is_zero_desc(desc):
            return self._zero_page
        return self._load_unchecked(desc)

    def _read_pages(self, pfn: int, count: int) -> list[bytes]:
        # Bulk path: every pfn present and every descriptor written → one read of descriptors
        # and one read of the page data they point to.
        if count < 4 or not self._in_range(pfn) or not self._in_range(pfn + count - 1) \
                or pfn + count > self._bitmap_end \
                or not self._bm2.all_set(pfn, count):
            return [self.read_page(p) for p in range(pfn, pfn + count)]
        first = self._bm2.rank(pfn) - self._rank_base
        if first + count > self._available:
            return [self.read_page(p) for p in range(pfn, pfn + count)]
        descs = [(o, s, f) for o, s, f, _ in self._pd.iter_unpack(self._desc_bytes(first, count))]
        try:
            for i, desc in enumerate(descs):
                if desc[0] == 0:
                    return [self.read_page(p) for p in range(pfn, pfn + count)]
                self._check(first + i, desc)
            return self._decode_span(descs)
        except CorruptDumpError:  # page by page: only the damaged pages fault
            return [self.read_page(p) for p in range(pfn, pfn + count)]

    def _decode_span(self, descs: list[_Desc]) -> list[bytes]:
        zero, data_start = self._zero_page, self._data_start
        data_descs = [d for d in descs if d[0] != data_start or d[2] != 0]
        if not data_descs:
            return [zero] * len(descs)
        lo = min(d[0] for d in data_descs)
        hi = max(d[0] + d[1] for d in data_descs)
        if hi - lo > 2 * len(descs) * self._bs:  # scattered: page by page
            return [zero if self._is_zero_desc(d) else self._load_unchecked(d) for d in descs]
        blob = self._view.pread(lo, hi - lo)
        view = memoryview(blob)
        out = [zero] * len(descs)
        packed: list[tuple[int, memoryview, int]] = []
        where: list[int] = []
        for i, (offset, size, flags) in enumerate(descs):
            if flags:
                packed.append((flags, view[offset - lo:offset - lo + size], offset))
                where.append(i)
            elif offset != data_start:
                out[i] = blob[offset - lo:offset - lo + size]
        COUNTERS.pages_read += len(data_descs)
        COUNTERS.pages_decompressed += len(packed)
        for i, page in zip(where, decompress_pages(packed, self._bs), strict=True):
            out[i] = page
        return out

    def _load_unchecked(self, desc: _Desc) -> bytes:
        offset, size, flags = desc
        data = self._view.pread(offset, size)
        COUNTERS.pages_read += 1
        if flags == 0:
            return data
        COUNTERS.pages_decompressed += 1
        return decompress(flags, data, self._bs, offset)

    # -- statistics ----------------------------------------------------------------------------

    def _page_stats(self) -> tuple[PageCounts, tuple[str, ...]]:
        if self._stats is None:
            self._stats = self._count_pages()
        return self._stats

    def _count_pages(self) -> tuple[PageCounts, tuple[str, ...]]:
        # lazy: +136 ms CPU to import it after this module (measured, loaded host)
        import numpy as np  # a descriptor table has one entry per dumped page: millions on big machines

        order = "<" if self.header.little_endian else ">"
        dtype = np.dtype([("offset", order + "i8"), ("size", order + "u4"), ("flags", order + "u4"),
                          ("page_flags", order + "u8")])
        zero = compressed = raw = 0
        seen: set[int] = set()
        for first in range(0, self._available, _STATS_CHUNK):
            count = min(_STATS_CHUNK, self._available - first)
            desc = np.frombuffer(self._desc_bytes(first, count), dtype=dtype)
            written = desc[desc["offset"] != 0]
            if self.incomplete:  # page data past the cut counts as lost
                written = written[self._present_mask(written)]
            is_zero = (written["offset"] == self._data_start) & (written["flags"] == 0)
            packed = written["flags"] != 0
            zero += int(np.count_nonzero(is_zero))
            compressed += int(np.count_nonzero(packed))
            raw += int(np.count_nonzero(~packed & ~is_zero))
            seen.update(int(f) for f in np.unique(written["flags"][packed]))
        lost = self._num_dumpable - (zero + compressed + raw)
        start, end = self.pfn_range()
        ram = self._bm1.count_range(start, end)
        dumped = self._bm2.count_range(start, end)
        codecs = tuple(sorted(codec_name(f) for f in seen)) + (("raw",) if raw else ())
        counts = PageCounts(self._bs, present=dumped - lost, excluded=max(ram - dumped, 0), zero=zero,
                            lost=lost, compressed=compressed, raw=raw)
        return counts, codecs

    def _present_mask(self, written: np.ndarray) -> np.ndarray:
        # lazy: +136 ms CPU to import it after this module (measured, loaded host)
        import numpy as np

        ends = written["offset"] + written["size"].astype(np.int64)
        mask = ends <= self._view.size
        if self._view.truncated:  # a cut flattened file also has holes where records are missing
            covers = self._view.covers
            mask &= np.fromiter((covers(int(o), int(n)) for o, n in zip(written["offset"], written["size"],
                                                                          strict=True)), bool, len(written))
        return mask
