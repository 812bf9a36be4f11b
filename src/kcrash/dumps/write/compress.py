"""
kcrash.dumps.write.compress
===========================

Page compression for the kdump-compressed writer, as makedumpfile does it: zlib level 1
(``Z_BEST_SPEED``, a zlib-wrapped stream), LZO1X-1 (``lzo1x_1_compress``), raw snappy, zstd level 1,
or ``none``; a page is stored compressed only when that makes it smaller than a page.

LZO goes through the system's ``liblzo2`` with :mod:`ctypes` when it is installed (the library
makedumpfile itself links; about ten times faster than the ``lzallright`` binding, which uses a
slower LZO1X variant); otherwise ``lzallright``. :meth:`PageCompressor.pack` compresses a chunk of
pages (whole pages back to back, as read) into one blob: LZO straight from the chunk's buffer into
one output buffer (no Python object per page), ``none`` as one numpy gather. One
:class:`PageCompressor` serves one process; the writers spread chunks over processes
(:mod:`kcrash.dumps.write.workers`), not threads: the GIL serialises the Python around each page.
Decompression lives in
:mod:`kcrash.dumps.codecs`.
"""

from __future__ import annotations

import ctypes
import functools
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from kcrash.dumps.codecs import CODEC_FLAGS

__all__ = ["CODECS", "PageCompressor", "lzo_backend"]

#: every codec name the writers accept
CODECS = ("zlib", "lzo", "snappy", "zstd", "none")
_Compress = Callable[[bytes | memoryview], bytes]
_TAKES_BUFFERS = frozenset({"zlib", "zstd"})  # the others get each page as bytes


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
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                   ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


def lzo_backend() -> str:
    """Return ``"liblzo2"`` (ctypes) or ``"lzallright"``: which LZO1X compressor is used."""
    return "liblzo2" if _liblzo2() is not None else "lzallright"


class _LzoCtypes:
    # One instance per process: it owns the output and work buffers.
    def __init__(self, fn: Any, page_size: int) -> None:
        self._fn = fn
        self._bs = page_size
        self._bound = page_size + page_size // 16 + 64 + 3  # LZO1X's worst case for one page
        self._out = ctypes.create_string_buffer(self._bound)
        self._work = ctypes.create_string_buffer(16384 * ctypes.sizeof(ctypes.c_void_p))
        self._len = ctypes.c_size_t()
        self._ref = ctypes.byref(self._len)
        self._view = memoryview(self._out).cast("B")  # copies out without ctypes.string_at's call layers
        self._chunk = ctypes.create_string_buffer(0)
        self._chunk_view = memoryview(self._chunk).cast("B")

    def __call__(self, page: bytes | memoryview) -> bytes:
        page = page if isinstance(page, bytes) else page.tobytes()
        if self._fn(page, len(page), self._out, self._ref, self._work) != 0:
            return page  # cannot happen for LZO1X-1; stored raw if it ever does
        return self._view[:self._len.value].tobytes()

    def pack(self, data: bytes | memoryview, index: Sequence[int], flag: int) -> tuple[list[int], list[int], bytes]:
        # Every page at ``index`` of ``data`` compressed into one buffer, page after page; a page
        # that does not shrink is copied raw (flags 0).
        bs, fn, ref, work, length = self._bs, self._fn, self._ref, self._work, self._len
        need = len(index) * self._bound
        if len(self._chunk) < need:
            self._chunk = ctypes.create_string_buffer(need)
            self._chunk_view = memoryview(self._chunk).cast("B")
        src = int(np.frombuffer(data, dtype=np.uint8).ctypes.data)  # ``data`` outlives the loop
        dst = ctypes.addressof(self._chunk)
        memmove = ctypes.memmove
        pos = 0
        sizes, flags = [], []
        for i in index:
            page = src + i * bs
            if fn(page, bs, dst + pos, ref, work) == 0 and length.value < bs:
                sizes.append(length.value)
                flags.append(flag)
                pos += length.value
            else:
                memmove(dst + pos, page, bs)
                sizes.append(bs)
                flags.append(0)
                pos += bs
        return sizes, flags, self._chunk_view[:pos].tobytes()


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
        return lambda page: page if isinstance(page, bytes) else page.tobytes()
    raise ValueError(f"unknown codec {codec!r} (one of {', '.join(CODECS)})")


class PageCompressor:
    """Compress pages with ``codec`` in this process (one codec state; see :meth:`pack`)."""

    def __init__(self, codec: str, page_size: int = 4096) -> None:
        self._fn = _make(codec, page_size)  # validates the name and loads the binding now
        self.codec = codec
        self.flag = CODEC_FLAGS.get(codec, 0)
        self.page_size = page_size

    def compress(self, pages: Sequence[bytes]) -> list[tuple[bytes, int]]:
        """Return ``(stored bytes, page_desc flags)`` per page: compressed, or raw with flags 0."""
        fn = self._fn
        size, flag = self.page_size, self.flag
        out = []
        for page in pages:
            packed = fn(page)
            out.append((packed, flag) if len(packed) < size and flag else (page, 0))
        return out

    def pack(self, data: bytes | memoryview, index: npt.NDArray[np.intp]
             ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], bytes | memoryview]:
        """Compress the pages ``index`` of ``data`` (whole pages back to back) into one blob.

        :param data: a chunk of pages as read
        :param index: which of its pages to store, in order
        :return: (stored size per page, page_desc flags per page, the stored bytes back to back)
        """
        bs, flag = self.page_size, self.flag
        n = len(index)
        if not flag:  # none: the pages as they are
            arr = np.frombuffer(data, dtype=np.uint8).reshape(-1, bs)
            blob = data if n == arr.shape[0] else arr[index].tobytes()
            return np.full(n, bs, dtype=np.uint32), np.zeros(n, dtype=np.uint32), blob
        fn = self._fn
        if isinstance(fn, _LzoCtypes):
            sizes, flags, blob = fn.pack(data, index.tolist(), flag)
        else:
            parts: list[bytes | memoryview] = []
            sizes, flags = [], []
            copy = isinstance(data, memoryview) and self.codec not in _TAKES_BUFFERS
            for i in index.tolist():
                page = data[i * bs:(i + 1) * bs]
                packed = fn(page.tobytes() if copy and isinstance(page, memoryview) else page)
                if len(packed) < bs:
                    parts.append(packed)
                    sizes.append(len(packed))
                    flags.append(flag)
                else:
                    parts.append(page)
                    sizes.append(bs)
                    flags.append(0)
            blob = b"".join(parts)
        return np.array(sizes, dtype=np.uint32), np.array(flags, dtype=np.uint32), blob
