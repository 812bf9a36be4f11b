"""
kcrash.dumps.codecs
===================

Page codecs of the kdump-compressed format, by ``page_desc.flags`` / header ``status`` bit:
zlib (0x1, a zlib-wrapped stream), LZO1X (0x2, ``lzallright``), snappy (0x4, raw format,
``cramjam``), zstd (0x20, ``zstandard``). Decompression errors become CorruptDumpError with the
page's file offset. ``compress`` exists for the writers in :mod:`kcrash.dumps.write`.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from typing import Any

from kcrash.errors import CorruptDumpError

__all__ = [
    "CODEC_FLAGS",
    "DUMP_DH_COMPRESSED_LZO",
    "DUMP_DH_COMPRESSED_SNAPPY",
    "DUMP_DH_COMPRESSED_ZLIB",
    "DUMP_DH_COMPRESSED_ZSTD",
    "codec_name",
    "compress",
    "decompress",
]

DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_ZSTD = 0x20

#: codec name -> flag value
CODEC_FLAGS: dict[str, int] = {
    "zlib": DUMP_DH_COMPRESSED_ZLIB,
    "lzo": DUMP_DH_COMPRESSED_LZO,
    "snappy": DUMP_DH_COMPRESSED_SNAPPY,
    "zstd": DUMP_DH_COMPRESSED_ZSTD,
}
_NAMES = {v: k for k, v in CODEC_FLAGS.items()}


# The bindings are imported on first use: a zlib-only session never loads them.
@functools.cache
def _lzo() -> Any:
    import lzallright

    return lzallright.LZOCompressor()


@functools.cache
def _zstd_d() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor()


def _snappy_mod() -> Any:
    import cramjam

    return cramjam.snappy


def codec_name(flag: int) -> str:
    """Return the codec name of one flag value (``"raw"`` for 0, ``"unknown(0x…)"`` otherwise)."""
    if flag == 0:
        return "raw"
    return _NAMES.get(flag, f"unknown({flag:#x})")


def _lzo_d(data: bytes | memoryview, size: int) -> bytes:
    return bytes(_lzo().decompress(data, size))


def _snappy(data: bytes | memoryview, size: int) -> bytes:
    snappy = _snappy_mod()
    if snappy.decompress_raw_len(data) > size:
        raise ValueError("snappy page larger than a page")
    return bytes(snappy.decompress_raw(data))


def _zstd(data: bytes | memoryview, size: int) -> bytes:
    # Stream so that a frame claiming a huge content size cannot make us allocate it.
    with _zstd_d().stream_reader(data) as reader:
        return bytes(reader.read(size + 1))


_DECODERS: dict[int, Callable[[bytes | memoryview, int], bytes]] = {
    DUMP_DH_COMPRESSED_LZO: _lzo_d,
    DUMP_DH_COMPRESSED_SNAPPY: _snappy,
    DUMP_DH_COMPRESSED_ZSTD: _zstd,
}


def decompress(flag: int, data: bytes | memoryview, page_size: int, file_offset: int) -> bytes:
    """Decompress one page; the result must be exactly ``page_size`` bytes."""
    if flag == DUMP_DH_COMPRESSED_ZLIB:
        try:  # fast path: one C call
            out = zlib.decompress(data, bufsize=page_size)
        except zlib.error as exc:
            raise CorruptDumpError(f"bad zlib page data: {exc}", file_offset) from None
    else:
        decoder = _DECODERS.get(flag)
        if decoder is None:
            raise CorruptDumpError(f"unknown page compression flags {flag:#x}", file_offset)
        try:
            out = decoder(data, page_size)
        except Exception as exc:  # the bindings raise their own error types
            raise CorruptDumpError(f"bad {codec_name(flag)} page data: {exc}", file_offset) from None
    if len(out) != page_size:
        raise CorruptDumpError(f"{codec_name(flag)} page decompressed to {len(out)} bytes, "
                               f"expected {page_size}", file_offset)
    return out


def compress(flag: int, data: bytes) -> bytes:
    """Compress one page with the codec of ``flag`` (level 1 / fastest, like makedumpfile)."""
    if flag == DUMP_DH_COMPRESSED_ZLIB:
        return zlib.compress(data, 1)
    if flag == DUMP_DH_COMPRESSED_LZO:
        return bytes(_lzo().compress(data))
    if flag == DUMP_DH_COMPRESSED_SNAPPY:
        return bytes(_snappy_mod().compress_raw(data))
    if flag == DUMP_DH_COMPRESSED_ZSTD:
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=1).compress(data))
    raise ValueError(f"unknown codec flag {flag:#x}")
