"""
kcrash.dumps.write.compress
===========================

Page compression for the kdump-compressed writer, as makedumpfile does it: zlib level 1
(``Z_BEST_SPEED``, a zlib-wrapped stream), LZO1X-1 (``lzo1x_1_compress``), raw snappy, zstd level 1,
or ``none``; a page is stored compressed only when that makes it smaller than a page.

LZO goes through the system's ``liblzo2`` with :mod:`ctypes` when it is installed (the library
makedumpfile itself links; ``ctypes`` drops the GIL during the call, and it is about ten times faster
than the ``lzallright`` binding, which uses a slower LZO1X variant); otherwise ``lzallright``. zlib
(CPython's module), zstd (``zstandard``) and the ctypes LZO call release the GIL, so
:class:`PageCompressor` can spread batches over a thread pool. Decompression lives in
:mod:`kcrash.dumps.codecs`.
"""

from __future__ import annotations

import ctypes
import functools
import threading
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kcrash.dumps.codecs import CODEC_FLAGS

__all__ = ["CODECS", "PageCompressor", "lzo_backend"]

#: every codec name the writers accept
CODECS = ("zlib", "lzo", "snappy", "zstd", "none")
_Compress = Callable[[bytes], bytes]


@functools.cache
def _liblzo2() -> Any:
    # The library's soname first: ctypes.util.find_library runs ldconfig in a subprocess, and
    # importing ctypes.util costs more than a whole LZO conversion's compression.
    try:
        lib = ctypes.CDLL("liblzo2.so.2")
    except OSError:
        # lazy: +21 ms CPU to import it after this module (measured, loaded host)
        from ctypes.util import find_library

        name = find_library("lzo2")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
    try:
        # lzo_init() is a macro for __lzo_init_v2(LZO_VERSION, sizeof(short), ...); -1 skips a size check.
        if lib.__lzo_init_v2(ctypes.c_uint(0x20A0), *([-1] * 9)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    fn = lib.lzo1x_1_compress
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t),
                   ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def lzo_backend() -> str:
    """Return ``"liblzo2"`` (ctypes) or ``"lzallright"``: which LZO1X compressor is used."""
    return "liblzo2" if _liblzo2() is not None else "lzallright"


class _LzoCtypes:
    # One instance per thread: it owns the output and work buffers.
    def __init__(self, fn: Any, page_size: int) -> None:
        self._fn = fn
        self._out = ctypes.create_string_buffer(page_size + page_size // 16 + 64 + 3)
        self._work = ctypes.create_string_buffer(16384 * ctypes.sizeof(ctypes.c_void_p))
        self._len = ctypes.c_size_t()
        self._ref = ctypes.byref(self._len)
        self._view = memoryview(self._out).cast("B")  # copies out without ctypes.string_at's call layers

    def __call__(self, page: bytes) -> bytes:
        if self._fn(page, len(page), self._out, self._ref, self._work) != 0:
            return page  # cannot happen for LZO1X-1; stored raw if it ever does
        return self._view[:self._len.value].tobytes()


def _make(codec: str, page_size: int) -> _Compress:
    if codec == "zlib":
        return lambda page: zlib.compress(page, 1)
    if codec == "lzo":
        fn = _liblzo2()
        if fn is not None:
            return _LzoCtypes(fn, page_size)
        # lazy: +1 ms CPU to import it after this module (measured, loaded host)
        import lzallright

        lzo = lzallright.LZOCompressor()
        return lambda page: bytes(lzo.compress(page))
    if codec == "snappy":
        # lazy: +3 ms CPU to import it after this module (measured, loaded host)
        import cramjam

        return lambda page: bytes(cramjam.snappy.compress_raw(page))
    if codec == "zstd":
        # lazy: +4 ms CPU to import it after this module (measured, loaded host)
        import zstandard

        return zstandard.ZstdCompressor(level=1).compress
    if codec == "none":
        return lambda page: page
    raise ValueError(f"unknown codec {codec!r} (one of {', '.join(CODECS)})")


class PageCompressor:
    """Compress batches of pages; ``threads`` > 1 uses a pool (one codec state per thread)."""

    def __init__(self, codec: str, page_size: int = 4096, threads: int = 1) -> None:
        _make(codec, page_size)  # validate the name and load the binding now
        self.codec = codec
        self.flag = CODEC_FLAGS.get(codec, 0)
        self.page_size = page_size
        self.threads = max(1, threads)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _codec(self) -> _Compress:
        fn: _Compress | None = getattr(self._local, "fn", None)
        if fn is None:
            fn = self._local.fn = _make(self.codec, self.page_size)
        return fn

    def compress(self, pages: Sequence[bytes]) -> list[tuple[bytes, int]]:
        """Return ``(stored bytes, page_desc flags)`` per page: compressed, or raw with flags 0."""
        fn = self._codec()
        size, flag = self.page_size, self.flag
        out = []
        for page in pages:
            packed = fn(page)
            out.append((packed, flag) if len(packed) < size and flag else (page, 0))
        return out

    def submit(self, pages: Sequence[bytes]) -> Future[list[tuple[bytes, int]]]:
        """Compress ``pages`` on the pool (or now, without one) and return a future."""
        if self._pool is not None:
            return self._pool.submit(self.compress, pages)
        future: Future[list[tuple[bytes, int]]] = Future()
        future.set_result(self.compress(pages))
        return future

    def close(self) -> None:
        """Stop the pool."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
