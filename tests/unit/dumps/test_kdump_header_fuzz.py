"""Property tests of the kdump-compressed headers (``disk_dump_header``, ``kdump_sub_header``) on
hostile bytes: a validated header or a CorruptDumpError with the file offset, in bounded time and
memory, whatever the sizes and offsets say; and of the whole reader (bitmaps, page descriptors)
on damaged files."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.dumps.kdump_header import KdumpHeader, read_kdump_header
from kcrash.errors import UnsupportedDumpFormat
from support.dumpfuzz import original, read_everything
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

_BLOCK = 4096


class _BytesView:
    # A FileView over bytes (``size`` may claim more than there is, as a file of holes would).
    def __init__(self, data: bytes, size: int | None = None) -> None:
        self.path = Path("fuzzed.kdump")
        self.data = data
        self.size = len(data) if size is None else size
        self.truncated = False

    def pread(self, offset: int, n: int) -> bytes:
        assert 0 <= n <= 1 << 26, f"read of {n} bytes"
        return self.data[offset:offset + n]

    def covers(self, offset: int, n: int) -> bool:
        return offset >= 0 and offset + n <= self.size

    def covered(self, offset: int, n: int) -> int:
        return max(0, min(n, self.size - offset)) if offset >= 0 else 0

    def close(self) -> None:
        pass


_WORDS = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2, 6, 512, 4096, 2**31, 2**32 - 1]))
_QWORDS = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, 1, 4096, 2**62, 2**63, 2**64 - 1]))


@st.composite
def _headers(draw: st.DrawFn) -> tuple[bytes, int]:
    # The synthetic file's two header blocks with some fields of either set to hostile values.
    data = bytearray(original("kdump")[0][:2 * _BLOCK])
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):  # disk_dump_header: 8 signature, 6*65 utsname, then 4-byte fields
            pos = draw(st.integers(8, 500))
            struct.pack_into("<I", data, pos, draw(_WORDS))
        else:  # kdump_sub_header: 8-byte fields
            pos = _BLOCK + 8 * draw(st.integers(0, 20))
            struct.pack_into("<Q", data, pos, draw(_QWORDS))
    if draw(st.booleans()):
        pos = draw(st.integers(8, len(data) - 1))
        data[pos:pos + 64] = draw(st.binary(min_size=1, max_size=64))
    return bytes(data[:2 * _BLOCK]), draw(st.sampled_from([2 * _BLOCK, 1 << 20, 1 << 40]))


@settings(max_examples=250, deadline=None)
@given(_headers())
def test_hostile_headers_give_a_header_or_an_offset(case: tuple[bytes, int]) -> None:
    data, size = case
    result = parse_or_kcrash_error(lambda: read_kdump_header(_BytesView(data, size)), need_offset=True)
    if isinstance(result, KdumpHeader):
        assert 0 < result.page_desc_offset <= size
        assert 0 < (result.max_mapnr + 7) // 8 <= result.bitmap_len
        for offset, n in ((result.offset_note, result.size_note), (result.offset_vmcoreinfo, result.size_vmcoreinfo)):
            assert n == 0 or offset + n <= size


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([b"KDUMP   ", b"DISKDUMP"]), st.binary(max_size=2 * _BLOCK))
def test_random_bytes_after_the_signature(signature: bytes, rest: bytes) -> None:
    result = parse_or_kcrash_error(lambda: read_kdump_header(_BytesView(signature + rest)), need_offset=True)
    assert not isinstance(result, UnsupportedDumpFormat)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_damaged_bitmaps_and_descriptors(data: st.DataObject) -> None:
    raw, layout = original("kdump")
    assert layout is not None
    buf = bytearray(raw)
    area = data.draw(st.sampled_from(["bitmap", "page_desc", "both"]))
    spans = {"bitmap": [(layout.bitmap_offset, 2 * layout.bitmap_len)],
             "page_desc": [(layout.page_desc_offset, layout.data_offset - layout.page_desc_offset)]}
    for start, length in spans.get(area, spans["bitmap"] + spans["page_desc"]):
        for _ in range(data.draw(st.integers(1, 12))):
            pos = start + data.draw(st.integers(0, length - 1))
            junk = data.draw(st.binary(min_size=1, max_size=24))
            buf[pos:pos + len(junk)] = junk
    parse_or_kcrash_error(lambda: read_everything(bytes(buf)), seconds=2.0, need_offset=True)


def _patched(offset: int, fmt: str, value: int) -> bytes:
    buf = bytearray(original("kdump")[0])
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


def test_absurd_sizes_are_cheap() -> None:
    for offset, fmt, value in [
        (_BLOCK + 96, "<Q", 2**63 - 1),   # max_mapnr_64
        (_BLOCK + 56, "<Q", 2**40),       # size_note
        (_BLOCK + 40, "<Q", 2**40),       # size_vmcoreinfo
        (436, "<I", 2**31 - 2),           # bitmap_blocks
        (432, "<I", 2**31 - 1),           # sub_hdr_size
        (428, "<i", 1 << 20),             # block_size at the largest accepted
    ]:
        data = _patched(offset, fmt, value)
        assert peak_allocation(lambda d=data: read_everything(d)) < MEMORY_CAP, (offset, value)
