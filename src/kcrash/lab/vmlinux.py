"""
kcrash.lab.vmlinux
==================

Recover the ELF ``vmlinux`` inside a compressed ``vmlinuz`` (bzImage), the way the kernel's
``scripts/extract-vmlinux`` does: find a compressed stream by its magic, decompress it, keep the
first result that is an ELF file. The stripped vmlinux still has its ``.BTF`` section, which is
all kbuild needs as the base for a module's split BTF. Supports the xz and zstd payloads Debian
uses (and gzip); it does not parse the bzImage header.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable, Iterator

import zstandard

from kcrash.errors import KernelPackageError

__all__ = ["extract_vmlinux"]

_ELF_MAGIC = b"\x7fELF"
_MAX_OUTPUT = 1 << 30


def _xz(data: bytes) -> bytes:
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data, _MAX_OUTPUT)


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


def _gzip(data: bytes) -> bytes:
    return zlib.decompressobj(wbits=31).decompress(data, _MAX_OUTPUT)


_CODECS: tuple[tuple[bytes, Callable[[bytes], bytes]], ...] = (
    (b"\xfd7zXZ\x00", _xz),
    (b"\x28\xb5\x2f\xfd", _zstd),
    (b"\x1f\x8b\x08", _gzip),
)


def _candidates(image: bytes) -> Iterator[tuple[int, Callable[[bytes], bytes]]]:
    for magic, codec in _CODECS:
        start = image.find(magic)
        while start >= 0:
            yield start, codec
            start = image.find(magic, start + 1)


def extract_vmlinux(image: bytes) -> bytes:
    """Return the ELF vmlinux embedded in a bzImage's compressed payload."""
    for start, codec in _candidates(image):
        try:
            out = codec(image[start:])
        except (lzma.LZMAError, zstandard.ZstdError, zlib.error, EOFError):
            continue
        if out.startswith(_ELF_MAGIC):
            return out
    raise KernelPackageError("no compressed ELF vmlinux found in the kernel image")
