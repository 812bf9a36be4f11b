"""
kcrash.dumps.codecs
===================

Page codecs of the kdump-compressed format, by ``page_desc.flags`` / header ``status`` bit:
zlib (0x1, a zlib-wrapped stream), LZO1X (0x2, ``lzallright``), snappy (0x4, raw format,
``cramjam``), zstd (0x20, ``zstandard``). Decompression errors become CorruptDumpError with the
page's file offset. :func:`decompress_pages` decodes a run of pages; a long run of zlib pages is split
over two threads (CPython's zlib drops the GIL while it inflates; the lzo, snappy and zstd bindings
were measured slower on two threads for 4 KiB pages, so they stay on one). ``compress`` exists for the
writers in :mod:`kcrash.dumps.write`.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import zlib
from collections.abc import Callable, Sequence
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
    "decompress_pages",
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
#: zlib pages in one run from which a second thread helps to inflate them (~1 ms of work;
#: starting and joining a thread costs ~0.06 ms)
PARALLEL_MIN_PAGES = 64
_CHUNK = 16  # pages a thread takes at a time
# (page_desc flags, stored bytes, file offset) of one page to decode
_Packed = tuple[int, bytes | memoryview, int]


# The bindings are imported on first use: a zlib-only session never loads them.
@functools.cache
def _lzo() -> Any:
    # lazy: +1 ms CPU to import it after this module (measured, loaded host)
    import lzallright

    return lzallright.LZOCompressor()


_PER_THREAD = threading.local()


def _zstd_d() -> Any:
    # One decompressor per thread: zstandard's are not safe to share between threads.
    found = getattr(_PER_THREAD, "zstd", None)
    if found is None:
        # lazy: +4 ms CPU to import it after this module (measured, loaded host)
        import zstandard

        found = _PER_THREAD.zstd = zstandard.ZstdDecompressor()
    return found


def _snappy_mod() -> Any:
    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
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


def decompress_pages(pages: Sequence[_Packed], page_size: int) -> list[bytes]:
    """Decompress pages in order, as :func:`decompress` one by one would: same results, and the
    first bad page in order raises its error. Long runs of zlib pages use a second thread when the
    process may run on two CPUs or more."""
    if len(pages) >= PARALLEL_MIN_PAGES and all(flag == DUMP_DH_COMPRESSED_ZLIB for flag, _, _ in pages) \
            and _cpus() >= 2:
        return _decompress_on_two_threads(pages, page_size)
    return _decompress_run(pages, page_size)


def _decompress_run(pages: Sequence[_Packed], page_size: int) -> list[bytes]:
    return [decompress(flag, data, page_size, offset) for flag, data, offset in pages]


def _decompress_on_two_threads(pages: Sequence[_Packed], page_size: int) -> list[bytes]:
    # Both threads take chunks in order from a shared counter, so a thread that gets no CPU
    # (the other core busy) leaves the work to the other instead of holding it up. No pool is
    # kept: a live thread would stop the symbolizer from forking its workers. The error raised
    # is the first bad page's in page order, as one thread would raise it.
    chunks = [pages[i:i + _CHUNK] for i in range(0, len(pages), _CHUNK)]
    done: list[list[bytes] | None] = [None] * len(chunks)
    failed: dict[int, BaseException] = {}
    take = itertools.count().__next__  # atomic under the GIL

    def work() -> None:
        while not failed and (k := take()) < len(chunks):
            try:
                done[k] = _decompress_run(chunks[k], page_size)
            except BaseException as exc:  # raised by the caller, in page order
                failed[k] = exc

    worker = threading.Thread(target=work, name="kcrash-inflate", daemon=True)
    try:
        worker.start()
    except RuntimeError:  # no thread to be had (limits, interpreter shutting down): one thread
        return _decompress_run(pages, page_size)
    try:
        work()
    finally:
        worker.join()
    if failed:
        raise failed[min(failed)]
    return [page for chunk in done if chunk is not None for page in chunk]


@functools.cache
def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def compress(flag: int, data: bytes) -> bytes:
    """Compress one page with the codec of ``flag`` (level 1 / fastest, like makedumpfile)."""
    if flag == DUMP_DH_COMPRESSED_ZLIB:
        return zlib.compress(data, 1)
    if flag == DUMP_DH_COMPRESSED_LZO:
        return bytes(_lzo().compress(data))
    if flag == DUMP_DH_COMPRESSED_SNAPPY:
        return bytes(_snappy_mod().compress_raw(data))
    if flag == DUMP_DH_COMPRESSED_ZSTD:
        # lazy: +4 ms CPU to import it after this module (measured, loaded host)
        import zstandard

        return bytes(zstandard.ZstdCompressor(level=1).compress(data))
    raise ValueError(f"unknown codec flag {flag:#x}")
