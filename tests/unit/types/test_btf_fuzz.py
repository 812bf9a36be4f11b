"""Property tests of the BTF parser on hostile header fields and type records: a parsed blob or a
CorruptDumpError/TypeLookupError, in bounded time and memory, whatever the section sizes, ``vlen``
and type ids say."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.errors import KcrashError
from kcrash.types.btf import Btf
from support.btf_write import BtfWriter
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation


def _blob() -> bytes:
    # A few of every kind (the suite's richer set is in conftest.build_types; this one stands alone).
    w = BtfWriter()
    i32, u64, char = w.add_int("int", 4, signed=True), w.add_int("long unsigned int", 8), w.add_int("char", 1)
    lh = w.next_id + 1
    lh_ptr = w.add_ptr(lh)
    w.add_struct("list_head", 16, [("next", lh_ptr, 0, 0), ("prev", lh_ptr, 64, 0)])
    w.add_enum("color", 4, [("RED", 0), ("BLUE", -1)], signed=True)
    name = w.add_array(char, 16, i32)
    w.add_struct("item", 40, [("id", w.add_typedef("u32", i32), 0, 0), ("name", name, 32, 0),
                              ("node", lh, 160, 0), ("flags", u64, 288, 3)])
    w.add_fwd("opaque")
    w.add_qualifier("CONST", char)
    return w.to_bytes()


_BLOB = _blob()
_U32 = st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 3, 24, 2**31, 2**32 - 1, 2**32 - 4]))


def _walk(blob: bytes) -> None:
    btf = Btf(blob)
    for type_id in range(min(btf.end_id, 200)):
        try:
            t = btf.type_by_id(type_id)
            t.type_name()
            for m in t.members or ():
                m.type.type_name()
        except KcrashError:
            continue
    for name in ("item", "list_head", "nope"):
        try:
            btf.ids_named(name, range(1, 20))
            btf.find_enumerator_or_none(name)
        except KcrashError:
            continue


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(4, 20).map(lambda i: i & ~3), _U32), min_size=1, max_size=3))
def test_hostile_header_fields(fields: list[tuple[int, int]]) -> None:
    blob = bytearray(_BLOB)
    for offset, value in fields:
        struct.pack_into("<I", blob, offset, value)
    parse_or_kcrash_error(lambda: _walk(bytes(blob)), need_offset=True)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_hostile_type_records(data: st.DataObject) -> None:
    # Whole words of the type section set to hostile values: info (kind, vlen, kind_flag), size/type, ids.
    blob = bytearray(_BLOB)
    hdr_len, type_off, type_len = struct.unpack_from("<III", blob, 4)
    start = hdr_len + type_off
    for _ in range(data.draw(st.integers(1, 6))):
        word = data.draw(st.integers(0, type_len // 4 - 1))
        struct.pack_into("<I", blob, start + 4 * word, data.draw(_U32))
    parse_or_kcrash_error(lambda: _walk(bytes(blob)), need_offset=True)


def test_absurd_sizes_are_cheap() -> None:
    hdr_len, type_off = struct.unpack_from("<II", _BLOB, 4)
    start = hdr_len + type_off
    for offset, value in ((8, 2**32 - 4), (12, 2**32 - 4), (20, 2**32 - 1), (start, 0x0400FFFF), (start, 0x1300FFFF)):
        blob = bytearray(_BLOB)
        struct.pack_into("<I", blob, offset, value)  # section sizes; the first record's vlen at 65535
        assert peak_allocation(lambda b=bytes(blob): _walk(b)) < MEMORY_CAP
