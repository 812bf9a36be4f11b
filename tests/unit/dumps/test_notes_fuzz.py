"""Property tests of the ELF note parser on hostile bytes: a list of notes or a CorruptDumpError with
the file offset, in bounded time and memory, whatever the ``Nhdr`` sizes say."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.dumps.notes import Note, parse_notes
from kcrash.errors import CorruptDumpError
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation

_SIZES = st.one_of(st.integers(0, 64), st.sampled_from([2**31 - 1, 2**31, 2**32 - 4, 2**32 - 1]))


@st.composite
def _note_segments(draw: st.DrawFn) -> tuple[bytes, bool]:
    # Notes whose header sizes may lie about the bytes that follow, then random bytes.
    little = draw(st.booleans())
    order = "<" if little else ">"
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        namesz, descsz, n_type = draw(_SIZES), draw(_SIZES), draw(st.integers(0, 2**32 - 1))
        out += struct.pack(order + "III", namesz, descsz, n_type)
        out += draw(st.binary(max_size=80))
    return out + draw(st.binary(max_size=32)), little


@settings(max_examples=200, deadline=None)
@given(_note_segments(), st.integers(0, 2**40), st.booleans())
def test_hostile_notes_give_notes_or_an_offset(segment: tuple[bytes, bool], file_offset: int,
                                               partial: bool) -> None:
    data, little = segment
    result = parse_or_kcrash_error(lambda: parse_notes(data, file_offset, little_endian=little, partial=partial),
                                   need_offset=True)
    if isinstance(result, CorruptDumpError):
        assert file_offset <= (result.offset or 0) < file_offset + len(data)
        return
    assert isinstance(result, list)
    for note in result:
        assert isinstance(note, Note)
        assert file_offset <= note.offset <= file_offset + len(data)
        assert len(note.desc) <= len(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600), st.booleans(), st.booleans())
def test_random_bytes_are_notes_or_an_offset(data: bytes, little: bool, partial: bool) -> None:
    parse_or_kcrash_error(lambda: parse_notes(data, 0x1000, little_endian=little, partial=partial), need_offset=True)


def test_absurd_note_sizes_are_cheap() -> None:
    hdr = struct.pack("<III", 2**32 - 1, 2**32 - 1, 1) + b"CORE\0\0\0\0"
    many = struct.pack("<III", 0, 0, 1) * 4000  # 4000 empty notes of type 1 (not the terminator)
    for data in (hdr, hdr * 100, many):
        for partial in (False, True):
            assert peak_allocation(lambda d=data, p=partial: parse_notes(d, 0, partial=p)) < MEMORY_CAP
