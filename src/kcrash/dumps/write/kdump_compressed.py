"""
kcrash.dumps.write.kdump_compressed
===================================

A writer of kdump-compressed files, for tests and synthetic fixtures: header versions 1–6, 64- or
32-bit layouts, any codec per page (stored raw when compression does not shrink it, as makedumpfile
does), the shared zero page, excluded pages, split parts, incomplete dumps, and the flattened
container with records out of offset order. Round-trips with :mod:`kcrash.dumps.kdump_compressed`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kcrash._binary import binary_structs, flat_structs
from kcrash.dumps.codecs import CODEC_FLAGS, compress
from kcrash.dumps.write.notes import build_note

__all__ = ["KdumpLayout", "KdumpSpec", "write_kdump"]

_INCOMPLETE = 0x8


@dataclass(slots=True)
class KdumpSpec:
    """What to write. ``pages`` maps pfn → page bytes (RAM that is dumped); ``excluded`` pfns are RAM
    (1st bitmap) left out of the dump (2nd bitmap clear)."""

    pages: Mapping[int, bytes]
    max_mapnr: int
    excluded: frozenset[int] = frozenset()
    codec: str = "zlib"
    block_size: int = 4096
    header_version: int = 6
    word_size: int = 8
    max_align: int | None = None
    little_endian: bool = True
    machine: str = "x86_64"
    release: str = ""
    dump_level: int = 1
    nr_cpus: int = 1
    phys_base: int = 0
    timestamp: int = 0
    notes: bytes = b""
    vmcoreinfo: str | None = None
    split: tuple[int, int] | None = None
    #: stop after writing this many page descriptors (the rest are lost) and set the incomplete flag
    incomplete_after: int | None = None
    #: pfns stored raw even if compressible
    raw_pfns: frozenset[int] = frozenset()
    flattened: bool = False
    signature: bytes = b"KDUMP   "
    extra_status: int = 0


@dataclass(slots=True)
class KdumpLayout:
    """Where the writer put things (file offsets of the rebuilt, non-flattened file)."""

    sub_header_offset: int = 0
    note_offset: int = 0
    vmcoreinfo_offset: int = 0
    bitmap_offset: int = 0
    bitmap_len: int = 0
    page_desc_offset: int = 0
    data_offset: int = 0
    page_offsets: dict[int, int] = field(default_factory=dict)
    size: int = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _bitmap(pfns: set[int], nbytes: int) -> bytearray:
    bm = bytearray(nbytes)
    for pfn in pfns:
        bm[pfn >> 3] |= 1 << (pfn & 7)
    return bm


def _notes_blob(spec: KdumpSpec) -> tuple[bytes, int, int]:
    # Returns (notes, offset of VMCOREINFO text within them, its size).
    notes = spec.notes
    if spec.vmcoreinfo is None or spec.header_version < 3:
        return notes, 0, 0
    text = spec.vmcoreinfo.encode()
    note = build_note("VMCOREINFO", 0, text, little_endian=spec.little_endian)
    return notes + note, len(notes) + 12 + 12, len(text)  # Nhdr + "VMCOREINFO\0" padded to 12


def _header(spec: KdumpSpec, sub_hdr_size: int, bitmap_blocks: int) -> bytes:
    s = binary_structs(spec.little_endian, spec.word_size, spec.max_align)
    status = CODEC_FLAGS[spec.codec] | spec.extra_status
    if spec.incomplete_after is not None:
        status |= _INCOMPLETE
    return s.disk_dump_header.pack(
        signature=spec.signature, header_version=spec.header_version, machine=spec.machine.encode(),
        release=spec.release.encode(), tv_sec=spec.timestamp, status=status, block_size=spec.block_size,
        sub_hdr_size=sub_hdr_size, bitmap_blocks=bitmap_blocks, max_mapnr=min(spec.max_mapnr, 0xFFFFFFFF),
        nr_cpus=spec.nr_cpus)


def _sub_header(spec: KdumpSpec, layout: KdumpLayout, notes_len: int, vmci: tuple[int, int]) -> bytes:
    s = binary_structs(spec.little_endian, spec.word_size, spec.max_align)
    start, end = spec.split or (0, spec.max_mapnr)
    mask = (1 << (8 * spec.word_size)) - 1
    return s.kdump_sub_header.pack(
        phys_base=spec.phys_base & mask, dump_level=spec.dump_level, split=1 if spec.split else 0,
        start_pfn=start & 0xFFFFFFFF, end_pfn=end & 0xFFFFFFFF,
        offset_vmcoreinfo=layout.note_offset + vmci[0] if vmci[1] else 0, size_vmcoreinfo=vmci[1],
        offset_note=layout.note_offset if notes_len else 0, size_note=notes_len,
        start_pfn_64=start, end_pfn_64=end, max_mapnr_64=spec.max_mapnr)


def _build(spec: KdumpSpec) -> tuple[list[tuple[int, bytes]], KdumpLayout]:
    """Return (offset, data) pieces of the rebuilt file, in the order makedumpfile writes them."""
    bs = spec.block_size
    s = binary_structs(spec.little_endian, spec.word_size, spec.max_align)
    layout = KdumpLayout()
    notes, vmci_off, vmci_size = _notes_blob(spec)
    sub_size = s.kdump_sub_header.size if spec.header_version >= 1 else 0
    sub_hdr_size = _ceil_div(sub_size + len(notes), bs) if spec.header_version >= 1 else 0
    bitmap_len = _ceil_div(_ceil_div(spec.max_mapnr, 8), bs) * bs
    bitmap_blocks = 2 * bitmap_len // bs
    layout.sub_header_offset = bs
    layout.note_offset = bs + sub_size
    layout.vmcoreinfo_offset = layout.note_offset + vmci_off if vmci_size else 0
    layout.bitmap_offset = (1 + sub_hdr_size) * bs
    layout.bitmap_len = bitmap_len
    layout.page_desc_offset = layout.bitmap_offset + 2 * bitmap_len
    pieces = [(0, _header(spec, sub_hdr_size, bitmap_blocks))]
    if spec.header_version >= 1:
        pieces.append((bs, _sub_header(spec, layout, len(notes), (vmci_off, vmci_size)) + notes))
    pieces += _bitmaps_and_pages(spec, layout)
    return pieces, layout


def _bitmaps_and_pages(spec: KdumpSpec, layout: KdumpLayout) -> list[tuple[int, bytes]]:
    bs = spec.block_size
    dumped = set(spec.pages)
    ram = dumped | set(spec.excluded)
    bm1 = _bitmap(ram, layout.bitmap_len)
    bm2 = _bitmap(dumped, layout.bitmap_len)
    start, end = spec.split or (0, spec.max_mapnr)
    order = sorted(p for p in dumped if start <= p < end)
    pd = struct.Struct(("<" if spec.little_endian else ">") + "qIIQ")
    layout.data_offset = layout.page_desc_offset + len(order) * pd.size
    zero = bytes(bs)
    descs = bytearray()
    data = bytearray(zero)  # pd_zero's data first
    flag = CODEC_FLAGS[spec.codec]
    for i, pfn in enumerate(order):
        if spec.incomplete_after is not None and i >= spec.incomplete_after:
            break
        page = spec.pages[pfn]
        assert len(page) == bs
        if page == zero:
            descs += pd.pack(layout.data_offset, bs, 0, 0)
            continue
        packed = compress(flag, page) if pfn not in spec.raw_pfns else page
        stored, fl = (packed, flag) if len(packed) < bs else (page, 0)
        offset = layout.data_offset + len(data)
        layout.page_offsets[pfn] = offset
        descs += pd.pack(offset, len(stored), fl, 0)
        data += stored
    layout.size = layout.data_offset + len(data)
    return [(layout.bitmap_offset, bytes(bm1)), (layout.bitmap_offset + layout.bitmap_len, bytes(bm2)),
            (layout.page_desc_offset, bytes(descs)), (layout.data_offset, bytes(data))]


def write_kdump(path: Path, spec: KdumpSpec) -> KdumpLayout:
    """Write ``spec`` to ``path`` (flattened if ``spec.flattened``) and return the layout."""
    pieces, layout = _build(spec)
    if spec.flattened:
        _write_flattened(path, pieces)
    else:
        with Path(path).open("wb") as f:
            for offset, data in pieces:
                f.seek(offset)
                f.write(data)
            if spec.incomplete_after is None:
                f.truncate(layout.size)
    return layout


def _write_flattened(path: Path, pieces: list[tuple[int, bytes]], chunk: int = 16384) -> None:
    fs = flat_structs()
    records: list[tuple[int, bytes]] = []
    for offset, data in pieces:
        records += [(offset + i, data[i:i + chunk]) for i in range(0, len(data), chunk)]
    # Interleave the tail (descriptors and data) so records are out of offset order, like QEMU.
    head, tail = records[:3], records[3:]
    tail = tail[1::2] + tail[0::2]
    with Path(path).open("wb") as f:
        f.write(fs.makedumpfile_header.pack(signature=b"makedumpfile", type=1, version=1).ljust(4096, b"\0"))
        for offset, data in head + tail:
            f.write(fs.makedumpfile_data_header.pack(offset=offset, buf_size=len(data)))
            f.write(data)
        f.write(fs.makedumpfile_data_header.pack(offset=-1, buf_size=-1))
