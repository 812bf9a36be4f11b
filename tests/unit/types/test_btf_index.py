"""The vectorised BTF indexes against their definitions: record offsets against the records a blob
was written with and against a plain walk (on fuzzed sections too), string keys against the keys of
the strings alone."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.errors import CorruptDumpError
from kcrash.types.btf_index import (
    _offsets_among_candidates,
    _walked_offsets,
    check_record_offsets,
    record_offsets,
    string_key,
    string_keys,
)

# words after the 3-word record header: fixed, and per vlen entry (include/uapi/linux/btf.h)
EXTRA = {1: 1, 3: 3, 14: 1, 17: 1}
PER = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}
START = 24  # file offset of the type section in these tests


def _words(words: list[int]) -> npt.NDArray[np.uint32]:
    return np.array(words, dtype="<u4")


def _plain_walk(words: list[int]) -> tuple[list[int], str | None, int]:
    # The definition, one record at a time: offsets, and the error a section earns (or None) with
    # the word offset of the record to blame.
    offsets: list[int] = []
    pos = 0
    while pos < len(words):
        offsets.append(pos)
        if pos + 1 >= len(words):
            return offsets, "ends inside a record", pos
        kind, vlen = words[pos + 1] >> 24 & 0x1F, words[pos + 1] & 0xFFFF
        pos += 3 + EXTRA.get(kind, 0) + vlen * PER.get(kind, 0)
    if pos != len(words):
        return offsets, "ends inside a record", offsets[-1]
    for p in offsets:
        if not 1 <= words[p + 1] >> 24 & 0x1F <= 19:
            return offsets, "unknown kind", p
    return offsets, None, 0


# A record: kind, vlen, kind_flag and the words after the header (random: kind-like top bytes in
# member offsets, enum values and ids make candidate starts that are not records).
_WORD = st.one_of(st.integers(0, 2 ** 32 - 1), st.integers(1, 19).map(lambda k: k << 24 | 5),
                  st.integers(0, 64))


@st.composite
def _records(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    words: list[int] = []
    starts: list[int] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.integers(1, 19))
        vlen = draw(st.integers(0, 6)) if kind in PER else draw(st.integers(0, 0xFFFF))
        size = 3 + EXTRA.get(kind, 0) + vlen * PER.get(kind, 0)
        starts.append(len(words))
        info = draw(st.booleans()) << 31 | kind << 24 | vlen
        words += [draw(_WORD), info, *draw(st.lists(_WORD, min_size=size - 2, max_size=size - 2))]
    return words, starts


@settings(max_examples=200, deadline=None)
@given(_records())
def test_record_offsets_are_the_records_written(section: tuple[list[int], list[int]]) -> None:
    words, starts = section
    offsets, kinds = record_offsets(_words(words), START)
    assert offsets.tolist() == starts
    assert kinds.tolist() == [words[p + 1] >> 24 & 0x1F for p in starts]
    found = _offsets_among_candidates(_words(words))  # the shortcut handles every valid section
    assert found is not None and found.tolist() == starts
    assert check_record_offsets(offsets, _words(words), START).tolist() == kinds.tolist()


@settings(max_examples=300, deadline=None)
@given(_records(), st.data())
def test_damaged_sections_get_what_a_plain_walk_gets(section: tuple[list[int], list[int]],
                                                     data: st.DataObject) -> None:
    words = list(section[0])
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(words) - 1))
        words[i] = data.draw(_WORD)
    words = words[:data.draw(st.integers(1, len(words)))]
    offsets, error, bad = _plain_walk(words)
    if error is None:
        assert record_offsets(_words(words), START)[0].tolist() == offsets
        return
    with pytest.raises(CorruptDumpError, match=error) as exc:
        record_offsets(_words(words), START)
    assert exc.value.offset == START + 4 * bad
    assert _offsets_among_candidates(_words(words)) is None  # left to the walk, for its exact errors


def test_the_shortcut_declines_what_it_cannot_place() -> None:
    # word 0 not a record of a known kind; a chain leaving the candidates; a chain past the end
    for words in ([0, 0, 0], [0, 1 << 24, 0, 0, 0x1F << 24, 0], [0, 6 << 24 | 9, 0, 0, 0]):
        assert _offsets_among_candidates(_words(words)) is None
        with pytest.raises(CorruptDumpError, match=_plain_walk(words)[1]):
            record_offsets(_words(words), START)
    assert _walked_offsets(_words([0, 0, 0]), START).tolist() == [0]  # the walk alone ignores kinds
    assert record_offsets(_words([]), START)[0].tolist() == []


def test_a_cached_index_must_be_the_chain() -> None:
    words = _words([0, 2 << 24, 1, 0, 4 << 24 | 1, 8, 0, 0, 0, 0, 8 << 24, 1])
    good = np.array([0, 3, 9], dtype=np.int64)
    assert check_record_offsets(good, words, START).tolist() == [2, 4, 8]
    for bad in ([0, 3], [0, 9], [0, 3, 6, 9], [3, 9], [0, 4, 9], [0, 3, 10], [0, -3, 9]):
        with pytest.raises(CorruptDumpError, match="record index"):
            check_record_offsets(np.array(bad, dtype=np.int64), words, START)
    unknown = _words([0, 2 << 24, 1, 0, 25 << 24, 0])
    with pytest.raises(CorruptDumpError, match="unknown kind") as exc:
        check_record_offsets(np.array([0, 3], dtype=np.int64), unknown, START)
    assert exc.value.offset == START + 12


_STRING = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"\1"))


@settings(max_examples=300, deadline=None)
@given(st.lists(_STRING, min_size=1, max_size=20), st.binary(max_size=30), st.binary(max_size=30))
def test_a_string_key_depends_on_the_string_alone(strings: list[bytes], before: bytes, after: bytes) -> None:
    # strings anywhere in a buffer, followed by anything (the last ones near the buffer's end)
    buffer = before + b"".join(s + b"\0" for s in strings) + after.replace(b"\0", b"") + b"\0"
    offsets, at = [], len(before)
    for s in strings:
        offsets.append(at)
        at += len(s) + 1
    keys = string_keys(buffer, np.array(offsets, dtype=np.int64)).tolist()
    assert keys == [string_key(s) for s in strings]
    assert string_keys(buffer, np.array([len(buffer)], dtype=np.int64)).tolist() == [string_key(b"")]


def test_string_keys_tell_short_names_apart() -> None:
    names = [b"", b"a", b"b", b"ab", b"task_struct", b"task_struc", b"task_structs", b"x" * 7, b"x" * 8,
             b"x" * 9, b"x" * 16, b"x" * 23, b"x" * 24, b"module", b"modules", "\u00e9".encode()]
    assert len({string_key(n) for n in names}) == len(names)
    long = b"same_first_twenty_four_b"
    assert string_key(long + b"1") == string_key(long + b"22")  # collisions the byte check settles
