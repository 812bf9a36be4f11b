"""Property tests of the makedumpfile flattened format on hostile records: the record index is built
or a CorruptDumpError names the record's offset, reads of the rebuilt file never raise anything else,
and record sizes read from the file bound neither time nor memory."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.dumps.flattened import FLAT_HEADER_SIZE, FlatFile
from support.dumpfuzz import original, read_everything
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

_HEADER = (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1)).ljust(FLAT_HEADER_SIZE, b"\0")
_INT64 = st.one_of(st.integers(-2, 64), st.integers(-(2**63), 2**63 - 1),
                   st.sampled_from([-1, 2**62, 2**63 - 1, 2**63 - 16]))


@st.composite
def _flat_files(draw: st.DrawFn) -> bytes:
    out = _HEADER
    for _ in range(draw(st.integers(0, 8))):
        offset, size = draw(_INT64), draw(_INT64)
        out += struct.pack(">qq", offset, size) + draw(st.binary(max_size=48))
    return out + draw(st.binary(max_size=20))


def _index_and_read(data: bytes, probes: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flat"
        path.write_bytes(data)
        flat = FlatFile(path)
        try:
            for offset, n in probes:
                got = flat.pread(offset, n)
                assert len(got) <= max(n, 0)
                covered = flat.covered(offset, n)
                assert 0 <= covered <= max(n, 0)
                assert flat.covers(offset, n) == (n <= 0 or covered == n)
        finally:
            flat.close()


@settings(max_examples=100, deadline=None)
@given(_flat_files(), st.lists(st.tuples(st.integers(-8, 200), st.integers(-8, 200)), max_size=6))
def test_hostile_records_index_or_name_their_offset(data: bytes, probes: list[tuple[int, int]]) -> None:
    parse_or_kcrash_error(lambda: _index_and_read(data, probes), need_offset=True)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_damaged_flattened_kdump(data: st.DataObject) -> None:
    buf = bytearray(original("flat")[0])
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(FLAT_HEADER_SIZE, len(buf) - 1))
        junk = data.draw(st.binary(min_size=1, max_size=16))
        buf[pos:pos + len(junk)] = junk
    parse_or_kcrash_error(lambda: read_everything(bytes(buf)), seconds=2.0, need_offset=True)


def test_absurd_record_sizes_are_cheap() -> None:
    for offset, size in ((0, 2**62), (2**62, 2**62 - 1), (2**63 - 2, 1), (0, 2**40)):
        data = _HEADER + struct.pack(">qq", offset, size) + bytes(64) + struct.pack(">qq", -1, 0)
        assert peak_allocation(lambda d=data: _index_and_read(d, [(0, 4096), (2**40, 4096)])) < MEMORY_CAP


def test_a_far_record_does_not_make_the_bitmaps_huge() -> None:
    # One byte at rebuilt offset 2**50 makes the rebuilt file that long; an absurd bitmap_blocks then
    # fits it on paper. The bitmaps are read only as far as max_mapnr needs and the file stores.
    data = bytearray(original("flat")[0])
    struct.pack_into("<I", data, 4096 + 16 + 436, 2**31 - 2)  # bitmap_blocks, in the first record
    data = data[:-16] + struct.pack(">qq", 1 << 50, 1) + b"x" + data[-16:]
    assert peak_allocation(lambda: read_everything(bytes(data))) < MEMORY_CAP
