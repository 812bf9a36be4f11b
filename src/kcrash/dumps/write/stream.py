"""
kcrash.dumps.write.stream
=========================

The streaming dump writers behind ``kcrash dump convert`` and ``kcrash collect``: a filtered
kdump-compressed file (header version 6, plain or flattened, any codec, the shared zero page,
compression in worker processes) or a filtered ``/proc/vmcore``-shaped ELF64 file, written page run by
page run from a :class:`PageSource`, without holding the dump in memory.

Which pages go in is decided by the caller (:mod:`kcrash.collect`) as two bitmaps over pfns: RAM
(the kdump 1st bitmap) and *dumpable* (the 2nd). The kdump writer excludes all-zero pages itself
while writing (``dump_level & 1``: they keep their 2nd-bitmap bit and share ``pd_zero``, as
makedumpfile does); for ELF output the caller must have removed them from *dumpable* already.

Crash safety: the file is written under a temporary name and renamed when done
(:class:`~kcrash.dumps.write.output.DumpOutput`); the header says "incomplete"
(``DUMP_DH_COMPRESSED_INCOMPLETE`` / ELF ``e_flags`` ``DUMP_ELF_INCOMPLETE``) from the start and the
mark is cleared in place only once every page is written. When the disk fills up, or the writer is
interrupted, the pages written so far stay readable, later page descriptors read as lost, and the
file is still renamed, flagged incomplete; :class:`WriteResult` says so. When the disk fills up
before the headers are written, no file is left and ``OSError`` (``ENOSPC``) is raised.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from kcrash._binary import binary_structs
from kcrash.dumps.codecs import CODEC_FLAGS
from kcrash.dumps.notes import parse_notes
from kcrash.dumps.write.compress import PageCompressor
from kcrash.dumps.write.output import DumpOutput, OutputFull
from kcrash.dumps.write.workers import ForkPool

__all__ = ["DumpMeta", "ElfSegment", "PageSource", "Progress", "WriteResult", "page_runs", "write_elf_dump",
           "write_kdump_dump"]

DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
DUMP_ELF_INCOMPLETE = 0x1
_CHUNK_PAGES = 256
_DESC = np.dtype([("offset", "<i8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
_EHDR, _PHDR = 64, 56

#: ``progress(pages done, pages in total)``
Progress = Callable[[int, int], None]
Bits = npt.NDArray[np.bool_]


class PageSource(Protocol):
    """Physical pages to copy: ``read_pages(pfn, count)`` returns ``count`` whole pages."""

    page_size: int

    def read_pages(self, pfn: int, count: int) -> bytes | memoryview:
        """Return the pages ``[pfn, pfn + count)`` (all of them RAM)."""
        ...


@dataclass(frozen=True, slots=True)
class DumpMeta:
    """Header facts of the dump being written. ``notes`` are the raw ELF notes (PRSTATUS per CPU,
    QEMU CPU states, VMCOREINFO); ``utsname`` is the kernel's ``struct new_utsname`` (6 × 65 bytes)."""

    notes: bytes
    utsname: bytes = b""
    nr_cpus: int = 1
    phys_base: int = 0
    dump_level: int = 31
    timestamp: int = 0
    page_size: int = 4096


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What was written: the final path, whether it is complete, and page counts."""

    path: Path
    incomplete: bool
    reason: str | None
    pages_total: int
    pages_written: int
    zero_pages: int
    size: int


@dataclass(frozen=True, slots=True)
class ElfSegment:
    """One source ``PT_LOAD`` (physical start, virtual start, size) to filter into the ELF output."""

    p_paddr: int
    p_vaddr: int
    p_memsz: int


def page_runs(bits: Bits) -> list[tuple[int, int]]:
    """Return the ``[start, end)`` runs of set bits of ``bits``."""
    padded = np.concatenate(([False], bits, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


def _chunks(bits: Bits) -> list[tuple[int, int]]:
    out = []
    for start, end in page_runs(bits):
        out += [(p, min(_CHUNK_PAGES, end - p)) for p in range(start, end, _CHUNK_PAGES)]
    return out


def _packbits(bits: Bits, nbytes: int) -> bytes:
    return np.packbits(bits, bitorder="little").tobytes().ljust(nbytes, b"\0")


def _vmcoreinfo_span(notes: bytes) -> tuple[int, int]:
    # (offset of the VMCOREINFO desc inside ``notes``, its size), or (0, 0).
    for note in parse_notes(notes, 0):
        if note.name == "VMCOREINFO":
            return note.offset, len(note.desc)
    return 0, 0


# -- kdump-compressed ------------------------------------------------------------------------


@dataclass(slots=True)
class _KdumpLayout:
    bs: int
    sub_hdr_size: int
    bitmap_len: int
    pd_offset: int
    data_offset: int
    num_dumpable: int


def _kdump_layout(meta: DumpMeta, max_mapnr: int, num_dumpable: int) -> _KdumpLayout:
    bs = meta.page_size
    sub = binary_structs(True, 8).kdump_sub_header.size
    sub_hdr_size = -(-(sub + len(meta.notes)) // bs)
    bitmap_bytes = (max_mapnr + 7) // 8
    bitmap_len = (bitmap_bytes + bs - 1) // bs * bs
    pd_offset = (1 + sub_hdr_size) * bs + 2 * bitmap_len
    return _KdumpLayout(bs, sub_hdr_size, bitmap_len, pd_offset, pd_offset + num_dumpable * _DESC.itemsize,
                        num_dumpable)


def _kdump_headers(meta: DumpMeta, lay: _KdumpLayout, max_mapnr: int, status: int) -> tuple[bytes, bytes]:
    s = binary_structs(True, 8)
    uts = meta.utsname.ljust(6 * 65, b"\0")
    names = ("sysname", "nodename", "release", "version", "machine", "domainname")
    fields: dict[str, int | bytes] = {n: uts[i * 65:(i + 1) * 65] for i, n in enumerate(names)}
    if not uts[4 * 65:5 * 65].strip(b"\0"):
        fields["machine"] = b"x86_64"
    header = s.disk_dump_header.pack(
        signature=b"KDUMP   ", header_version=6, tv_sec=meta.timestamp, status=status, block_size=lay.bs,
        sub_hdr_size=lay.sub_hdr_size, bitmap_blocks=2 * lay.bitmap_len // lay.bs,
        max_mapnr=min(max_mapnr, 0xFFFFFFFF), nr_cpus=meta.nr_cpus, **fields)
    note_offset = lay.bs + s.kdump_sub_header.size
    vmci_off, vmci_size = _vmcoreinfo_span(meta.notes)
    sub = s.kdump_sub_header.pack(
        phys_base=meta.phys_base & (2**64 - 1), dump_level=meta.dump_level, split=0,  # start/end_pfn: split only
        offset_vmcoreinfo=note_offset + vmci_off if vmci_size else 0,
        size_vmcoreinfo=vmci_size, offset_note=note_offset if meta.notes else 0, size_note=len(meta.notes),
        max_mapnr_64=max_mapnr)
    return header, sub + meta.notes


_CHUNK_HEAD = struct.Struct("<qqq")  # pages, stored pages, blob bytes


class _Encoder:
    # Reads, zero-tests and compresses one chunk of pages; runs in the writing process or in a
    # worker process (then its answer travels as bytes: _CHUNK_HEAD, nonzero, sizes, flags, blob).
    def __init__(self, source: PageSource, comp: PageCompressor, exclude_zero: bool) -> None:
        self.source, self.comp, self.bs, self.exclude_zero = source, comp, comp.page_size, exclude_zero

    def encode(self, pfn: int, count: int
               ) -> tuple[Bits, npt.NDArray[np.uint32], npt.NDArray[np.uint32], bytes | memoryview]:
        data = self.source.read_pages(pfn, count)
        if self.exclude_zero:
            nonzero = np.asarray(np.frombuffer(data, dtype=np.uint64).reshape(count, self.bs // 8).any(axis=1))
        else:
            nonzero = np.ones(count, dtype=np.bool_)
        sizes, flags, blob = self.comp.pack(data, np.flatnonzero(nonzero))
        return nonzero, sizes, flags, blob

    def encode_parts(self, pfn: int, count: int) -> list[bytes | memoryview]:
        nonzero, sizes, flags, blob = self.encode(pfn, count)
        return [_CHUNK_HEAD.pack(count, len(sizes), len(blob)), nonzero.tobytes(), sizes.tobytes(), flags.tobytes(),
                blob]


def _decode(msg: memoryview) -> tuple[Bits, npt.NDArray[np.uint32], npt.NDArray[np.uint32], memoryview]:
    count, stored, size = _CHUNK_HEAD.unpack(msg[:_CHUNK_HEAD.size])
    pos = _CHUNK_HEAD.size
    nonzero = np.frombuffer(msg, dtype=np.bool_, count=count, offset=pos)
    pos += count
    sizes = np.frombuffer(msg, dtype=np.uint32, count=stored, offset=pos)
    flags = np.frombuffer(msg, dtype=np.uint32, count=stored, offset=pos + 4 * stored)
    pos += 8 * stored
    return nonzero, sizes, flags, msg[pos:pos + size]


class _KdumpWriter:
    # One kdump-compressed file being written; see write_kdump_dump.
    def __init__(self, out: DumpOutput, meta: DumpMeta, lay: _KdumpLayout) -> None:
        self.out, self.meta, self.lay = out, meta, lay
        self.exclude_zero = bool(meta.dump_level & 1)
        self.data_pos = lay.data_offset
        self.desc_index = 0
        self.zero_pages = 0
        self.written = 0

    def start(self) -> None:
        if self.exclude_zero:  # pd_zero's page comes first in the data area
            self.out.write(self.data_pos, bytes(self.lay.bs))
            self.data_pos += self.lay.bs

    def finish_chunk(self, nonzero: Bits, sizes: npt.NDArray[np.uint32], flags: npt.NDArray[np.uint32],
                     blob: bytes | memoryview) -> None:
        count = len(nonzero)
        descs = np.zeros(count, dtype=_DESC)
        descs["offset"] = self.lay.data_offset
        descs["size"] = self.lay.bs
        if len(sizes):
            where = np.flatnonzero(nonzero)
            ends = np.cumsum(sizes, dtype=np.int64)
            descs["offset"][where] = self.data_pos + ends - sizes
            descs["size"][where] = sizes
            descs["flags"][where] = flags
        self.out.write(self.data_pos, blob)
        self.out.write(self.lay.pd_offset + self.desc_index * _DESC.itemsize, descs.tobytes())
        self.data_pos += len(blob)
        self.desc_index += count
        self.zero_pages += count - len(sizes)
        self.written += count


def write_kdump_dump(path: Path, source: PageSource, ram: Bits, dumpable: Bits, meta: DumpMeta, *,
                     codec: str = "zlib", flattened: bool = False, threads: int = 1,
                     progress: Progress | None = None, output: DumpOutput | None = None) -> WriteResult:
    """Write a kdump-compressed file (header version 6) of the ``dumpable`` pages at ``path``.

    The file is the same whatever ``threads`` is: chunks are written in pfn order.

    :param ram: one bool per pfn, RAM (1st bitmap); its length is ``max_mapnr``
    :param dumpable: one bool per pfn, pages to write (2nd bitmap); a subset of ``ram``
    :param threads: how many processes read, zero-test and compress the pages: 1 does it in this
        process; more fork that many workers (:class:`~kcrash.dumps.write.workers.ForkPool`)
        while this process writes
    :param output: where to write instead of ``path`` (a :class:`~kcrash.dumps.write.output.StreamOutput`
        for ``makedumpfile -F``-style output to a pipe)
    """
    max_mapnr = len(ram)
    lay = _kdump_layout(meta, max_mapnr, int(np.count_nonzero(dumpable)))
    status = CODEC_FLAGS.get(codec, 0)
    header, sub = _kdump_headers(meta, lay, max_mapnr, status | DUMP_DH_COMPRESSED_INCOMPLETE)
    encoder = _Encoder(source, PageCompressor(codec, lay.bs), bool(meta.dump_level & 1))  # checks the codec
    out = output if output is not None else DumpOutput(path, flattened=flattened)
    writer = _KdumpWriter(out, meta, lay)
    _kdump_start(out, writer, header, sub, ram, dumpable)
    try:
        _pump(writer, encoder, _chunks(dumpable), threads, lay.num_dumpable, progress)
        done_header, _ = _kdump_headers(meta, lay, max_mapnr, status)
        out.patch(0, done_header)
    except OutputFull:
        pass
    except BaseException:
        out.commit()  # keep what was written, flagged incomplete
        raise
    return _result(out, lay.num_dumpable, writer.written, writer.zero_pages, writer.data_pos)


def _kdump_start(out: DumpOutput, writer: _KdumpWriter, header: bytes, sub: bytes, ram: Bits,
                 dumpable: Bits) -> None:
    # Headers and bitmaps; a file without all of them is no dump, so a full disk here leaves none.
    lay = writer.lay
    bm_off = (1 + lay.sub_hdr_size) * lay.bs
    try:
        out.write(0, header)
        out.write(lay.bs, sub)
        out.write(bm_off, _packbits(ram, lay.bitmap_len))
        out.write(bm_off + lay.bitmap_len, _packbits(dumpable, lay.bitmap_len))
        writer.start()
    except BaseException as exc:
        if isinstance(exc, OutputFull):
            out.abandon()
        out.discard()
        raise


def _pump(writer: _KdumpWriter, encoder: _Encoder, chunks: list[tuple[int, int]], workers: int, total: int,
          progress: Progress | None) -> None:
    if workers <= 1 or len(chunks) < 2:
        for pfn, count in chunks:
            writer.finish_chunk(*encoder.encode(pfn, count))
            if progress is not None:
                progress(writer.written, total)
        return
    pool = ForkPool(encoder.encode_parts, min(workers, len(chunks)))
    try:
        depth = 3 * pool.workers  # tasks in flight: each worker has its next chunk queued
        for pfn, count in chunks:
            pool.submit(pfn, count)
            while pool.in_flight > depth:
                writer.finish_chunk(*_decode(pool.result()))
                if progress is not None:
                    progress(writer.written, total)
        while pool.in_flight:
            writer.finish_chunk(*_decode(pool.result()))
            if progress is not None:
                progress(writer.written, total)
    finally:
        pool.close()


def _result(out: DumpOutput, total: int, written: int, zero: int, size: int) -> WriteResult:
    incomplete = written < total or out.failure is not None
    final = out.commit()
    reason = out.failure or ("interrupted" if incomplete else None)
    return WriteResult(final, incomplete, reason, total, written, zero, size)


# -- ELF ---------------------------------------------------------------------------------------


def _elf_loads(segments: Sequence[ElfSegment], dumpable: Bits, bs: int) -> list[tuple[int, int, int, int]]:
    # (p_paddr, p_vaddr, p_filesz, p_memsz) per output PT_LOAD: a run of dumpable pages, whose
    # p_memsz reaches to the next run so excluded pages read as zeros; a leading gap gets filesz 0.
    loads = []
    for seg in segments:
        first, last = seg.p_paddr // bs, (seg.p_paddr + seg.p_memsz) // bs
        aligned = seg.p_paddr % bs == 0 and seg.p_memsz % bs == 0 and last <= len(dumpable)
        runs = [(first + a, first + b) for a, b in page_runs(dumpable[first:last])] if aligned \
            else [(first, last)]
        starts = [r[0] for r in runs] + [last]
        if not runs or runs[0][0] > first:
            loads.append((first * bs, seg.p_vaddr, 0, (starts[0] - first) * bs))
        for (a, b), nxt in zip(runs, starts[1:], strict=True):
            vaddr = seg.p_vaddr + a * bs - seg.p_paddr
            size = (b - a) * bs if aligned else seg.p_memsz
            loads.append((a * bs if aligned else seg.p_paddr, vaddr, size, (nxt - a) * bs if aligned else size))
    return loads


def _elf_header(notes: bytes, loads: list[tuple[int, int, int, int]], e_flags: int) -> tuple[bytes, list[int]]:
    s = binary_structs(True, 8)
    phnum = 1 + len(loads)
    pos = _EHDR + phnum * _PHDR
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = s.Elf_Ehdr.pack(e_ident=ident, e_type=4, e_machine=62, e_version=1, e_phoff=_EHDR, e_flags=e_flags,
                           e_ehsize=_EHDR, e_phentsize=_PHDR, e_phnum=min(phnum, 0xFFFF))
    phdrs = [s.Elf_Phdr.pack(p_type=4, p_offset=pos, p_filesz=len(notes), p_memsz=len(notes))]
    pos += len(notes)
    offsets = []
    for paddr, vaddr, filesz, memsz in loads:
        phdrs.append(s.Elf_Phdr.pack(p_type=1, p_flags=7, p_offset=pos, p_vaddr=vaddr, p_paddr=paddr,
                                     p_filesz=filesz, p_memsz=memsz))
        offsets.append(pos)
        pos += filesz
    return ehdr + b"".join(phdrs) + notes, offsets


def write_elf_dump(path: Path, source: PageSource, segments: Sequence[ElfSegment], dumpable: Bits,
                   notes: bytes, *, progress: Progress | None = None) -> WriteResult:
    """Write a ``/proc/vmcore``-shaped ELF64 file of the ``dumpable`` pages of ``segments``.

    Excluded pages inside a segment become ``p_filesz < p_memsz`` tails (read as zeros), like
    ``makedumpfile -E``. If writing stops early, the program headers are cut to what was written and
    ``e_flags`` keeps ``DUMP_ELF_INCOMPLETE``, so readers report the rest as lost. More than 65534
    runs would need ``PN_XNUM`` and are refused.
    """
    bs = source.page_size
    loads = _elf_loads(segments, dumpable, bs)
    if len(loads) + 1 >= 0xFFFF:
        raise ValueError(f"{len(loads)} PT_LOAD segments: too many for an ELF header without PN_XNUM")
    head, offsets = _elf_header(notes, loads, DUMP_ELF_INCOMPLETE)
    total = sum(f for _, _, f, _ in loads) // bs
    out = DumpOutput(path)
    done_bytes = [0] * len(loads)
    try:
        out.write(0, head)
    except BaseException as exc:
        if isinstance(exc, OutputFull):
            out.abandon()
        out.discard()
        raise
    try:
        for i, ((paddr, _v, filesz, _m), offset) in enumerate(zip(loads, offsets, strict=True)):
            while done_bytes[i] < filesz:
                n = min(_CHUNK_PAGES * bs, filesz - done_bytes[i])
                out.write(offset + done_bytes[i], _read_span(source, paddr + done_bytes[i], n))
                done_bytes[i] += n
                if progress is not None:
                    progress(sum(done_bytes) // bs, total)
        out.patch(0, _elf_header(notes, loads, 0)[0][:_EHDR])
    except OutputFull:
        _cut_elf(out, notes, loads, done_bytes)
    except BaseException:
        _cut_elf(out, notes, loads, done_bytes)
        out.commit()
        raise
    written = sum(done_bytes) // bs
    return _result(out, total, written, 0, offsets[-1] + loads[-1][2] if loads else len(head))


def _cut_elf(out: DumpOutput, notes: bytes, loads: list[tuple[int, int, int, int]], done: list[int]) -> None:
    # Shrink every p_filesz to what reached the disk (same p_offset values: the header is rewritten in place).
    cut = [(paddr, vaddr, d, memsz) for (paddr, vaddr, _f, memsz), d in zip(loads, done, strict=True)]
    head, _ = _elf_header(notes, cut, DUMP_ELF_INCOMPLETE)
    s = binary_structs(True, 8)
    full_offsets = _elf_header(notes, loads, 0)[1]
    phdrs = [s.Elf_Phdr.pack(p_type=4, p_offset=_EHDR + (1 + len(loads)) * _PHDR, p_filesz=len(notes),
                             p_memsz=len(notes))]
    for (paddr, vaddr, d, memsz), offset in zip(cut, full_offsets, strict=True):
        phdrs.append(s.Elf_Phdr.pack(p_type=1, p_flags=7, p_offset=offset if d else 0, p_vaddr=vaddr, p_paddr=paddr,
                                     p_filesz=d, p_memsz=memsz))
    out.patch(0, head[:_EHDR] + b"".join(phdrs))


def _read_span(source: PageSource, paddr: int, size: int) -> bytes | memoryview:
    bs = source.page_size
    first = paddr // bs
    count = -(-(paddr + size) // bs) - first
    data = source.read_pages(first, count)
    return data[paddr - first * bs:paddr - first * bs + size]

