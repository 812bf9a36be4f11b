"""Property tests of the kdump bitmap (``_bitmap.Bitmap``) on arbitrary bytes and bit counts:
every query answers as a plain bit-by-bit reading does, for any position, and never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.dumps._bitmap import Bitmap
from support.fuzzing import parse_or_kcrash_error


def _bit(data: bytes, nbits: int, bit: int) -> bool:
    return 0 <= bit < nbits and bit >> 3 < len(data) and bool(data[bit >> 3] >> (bit & 7) & 1)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 3000), st.lists(st.integers(-70, 3100), max_size=12))
def test_queries_agree_with_a_bit_by_bit_reading(data: bytes, nbits: int, probes: list[int]) -> None:
    bm = parse_or_kcrash_error(lambda: Bitmap(data, nbits))
    assert isinstance(bm, Bitmap)
    bits = [_bit(data, nbits, i) for i in range(nbits)]
    assert bm.count() == sum(bits)
    runs = bm.runs()
    assert sum(e - s for s, e in runs) == sum(bits)
    assert all(bits[i] for s, e in runs for i in range(s, e))
    for p in probes:
        assert bm.test(p) == _bit(data, nbits, p)
        clamped = min(max(p, 0), nbits)
        assert bm.rank(clamped) == sum(bits[:clamped])
        for q in probes:
            assert bm.count_range(clamped, q) == sum(bits[clamped:max(min(q, nbits), clamped)])
        if p >= 0:
            count = min(64, max(nbits - p, 0))
            assert bm.all_set(p, count) == (p + count <= nbits and all(bits[p:p + count]))
