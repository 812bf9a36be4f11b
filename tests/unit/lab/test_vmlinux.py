"""Recovering the ELF vmlinux from a compressed kernel image."""

from __future__ import annotations

import gzip
import lzma

import pytest
import zstandard

from kcrash.errors import KernelPackageError
from kcrash.lab.vmlinux import extract_vmlinux

ELF = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 40


@pytest.mark.parametrize("compress", [
    lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    lambda d: zstandard.ZstdCompressor().compress(d),
    lambda d: gzip.compress(d),
], ids=["xz", "zstd", "gzip"])
def test_finds_the_payload_after_a_setup_header(compress) -> None:  # type: ignore[no-untyped-def]
    image = b"MZ" + bytes(5000) + compress(ELF) + b"trailing junk" * 10
    assert extract_vmlinux(image) == ELF


def test_skips_false_magics_before_the_real_payload() -> None:
    image = b"\xfd7zXZ\x00 not really xz " + lzma.compress(ELF, format=lzma.FORMAT_XZ)
    assert extract_vmlinux(image) == ELF


def test_compressed_non_elf_is_refused() -> None:
    with pytest.raises(KernelPackageError, match="no compressed ELF vmlinux"):
        extract_vmlinux(b"MZ" + lzma.compress(b"not an elf" * 100, format=lzma.FORMAT_XZ))


def test_garbage_is_refused() -> None:
    with pytest.raises(KernelPackageError):
        extract_vmlinux(bytes(range(256)) * 100)
