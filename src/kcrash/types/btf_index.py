"""
kcrash.types.btf_index
======================

The array indexes behind :mod:`kcrash.types.btf`, computed with numpy instead of Python loops over
the ~100k records and strings of a vmlinux BTF: the word offset of every record of a type section
(:func:`record_offsets`), the check of such an index read back from a cache
(:func:`check_record_offsets`), and lookup keys for strings (:func:`string_keys`: the first 24
bytes of a string mixed into one 64-bit word, so a search by name is one array comparison plus a
byte check of the few candidates). Words are little-endian ``uint32`` arrays; offsets are in words.
Bad sections raise :class:`~kcrash.errors.CorruptDumpError` with the file offset of the record.
No I/O, no types: :mod:`kcrash.types.btf` builds those.
"""

from __future__ import annotations

import contextlib

import numpy as np
import numpy.typing as npt

from kcrash.errors import CorruptDumpError

__all__ = ["MAX_KIND", "check_record_offsets", "record_offsets", "string_key", "string_keys"]

#: the highest BTF kind number (``BTF_KIND_ENUM64``); 0 and higher numbers are not record kinds
MAX_KIND = 19
# Words after the 3-word ``struct btf_type``: fixed part, and per vlen entry, by the top byte of its
# info word (the kind is the low 5 bits of that byte), as bytes.translate tables.
_FIXED = bytes([3, 4, 3, 6, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 4, 3, 3] + [3] * 12) * 8
_PER = bytes([0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3] + [0] * 12) * 8
_KNOWN = bytes(int(1 <= k <= 19) for k in range(32)) * 8
# string keys: bytes read per string, and the odd multipliers that mix its three words
_KEY_BYTES = 24
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_ONES, _HIGHS = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080)


def record_offsets(words: npt.NDArray[np.uint32], file_start: int) -> tuple[npt.NDArray[np.int64],
                                                                          npt.NDArray[np.uint8]]:
    """The word offset and the kind of each record of the type section ``words`` (which starts at
    file offset ``file_start``): the chain of record sizes from word 0, which must end exactly at
    the end, through records of known kinds."""
    if len(words) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
    offsets = _offsets_among_candidates(words)
    if offsets is None:
        offsets = _walked_offsets(words, file_start)
    kinds = words.view(np.uint8)[7::4][offsets] & np.uint8(0x1F)
    _check_kinds(kinds, offsets, file_start)
    return offsets, kinds


def check_record_offsets(offsets: npt.NDArray[np.int64], words: npt.NDArray[np.uint32],
                         file_start: int) -> npt.NDArray[np.uint8]:
    """The kind of each record if ``offsets`` is exactly :func:`record_offsets` of ``words`` (word 0
    first, each record starting where the one before ends, the last ending at the end); else raise
    CorruptDumpError."""
    n = len(words)
    # in range before anything is read; then each record ending where the next starts makes the
    # offsets increase, and makes them the one chain from word 0
    if not len(offsets) or offsets[0] != 0 or int(offsets.min()) < 0 or int(offsets.max()) + 3 > n:
        raise CorruptDumpError("BTF record index does not fit the type section", file_start)
    info = words[offsets + 1]
    ends = _ends(offsets, info.view(np.uint8)[3::4], info.view("<u2")[::2])
    if not np.array_equal(ends[:-1], offsets[1:]) or int(ends[-1]) != n:
        raise CorruptDumpError("BTF record index does not fit the type section", file_start)
    kinds = info.view(np.uint8)[3::4] & np.uint8(0x1F)
    _check_kinds(kinds, offsets, file_start)
    return kinds


def _offsets_among_candidates(words: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64] | None:
    # A record can start only at a word whose next word (its info) has a known kind: in a vmlinux
    # about 115k of 720k words, 113k of them records. Where a candidate's record ends at the next
    # candidate the chain goes on without a decision; only from the other candidates ("breaks",
    # a few thousand) does it jump, and those jumps are followed in Python. None when the chain
    # leaves the candidates or the section's end: a damaged section, left to the plain walk.
    n = len(words)
    top = words.view(np.uint8)[7::4]  # the kind byte of a record at each word (but the last)
    candidates = np.flatnonzero(np.frombuffer(top.tobytes().translate(_KNOWN), dtype=np.bool_))
    if not len(candidates) or candidates[0] != 0:
        return None
    ends = _ends(candidates, top[candidates], words.view("<u2")[2::2][candidates])
    breaks = np.append(np.flatnonzero(ends[:-1] != candidates[1:]), len(candidates) - 1)
    jumps = np.searchsorted(candidates, ends[breaks])  # candidate index of each break's end
    landed = candidates[np.minimum(jumps, len(candidates) - 1)] == ends[breaks]
    # the run after break k starts at candidate jumps[k] and ends at break following[k]
    following = np.where(landed, np.searchsorted(breaks, jumps), len(breaks))
    taken = _chain(following.astype(np.int32))[:-1]
    if ends[breaks[taken[-1]]] != n:
        return None
    marks = np.zeros(len(candidates) + 1, dtype=np.int8)  # +1 where a run starts, -1 after it
    marks[np.concatenate(([0], jumps[taken[:-1]]))] += 1
    marks[breaks[taken] + 1] -= 1
    return candidates[np.cumsum(marks[:-1], dtype=np.int8).view(np.bool_)]


def _walked_offsets(words: npt.NDArray[np.uint32], file_start: int) -> npt.NDArray[np.int64]:
    # Every word's record end, then the chain from word 0 (whatever the kinds): exact errors.
    starts = _chain(_record_ends(words))
    if starts[-1] != len(words):
        raise CorruptDumpError("BTF type section ends inside a record", file_start + 4 * int(starts[-2]))
    return starts[:-1]


def _ends(starts: npt.NDArray[np.int64], kinds: npt.NDArray[np.uint8],
          vlens: npt.NDArray[np.uint16]) -> npt.NDArray[np.int64]:
    # Where records starting at ``starts`` end, from their kind bytes and vlens.
    kind_bytes = kinds.tobytes()
    ends = np.multiply(vlens, np.frombuffer(kind_bytes.translate(_PER), dtype=np.uint8), dtype=np.int64)
    ends += np.frombuffer(kind_bytes.translate(_FIXED), dtype=np.uint8)
    ends += starts
    return ends


def _record_ends(words: npt.NDArray[np.uint32]) -> npt.NDArray[np.int32]:
    # ends[p]: the word where a record starting at word p would end (n + 1 for the last word, which
    # has no info word after it). Tables are applied with bytes.translate: a fancy index would first
    # widen the 700k kind bytes to 64-bit indexes.
    n = len(words)
    kinds = words.view(np.uint8)[7::4].tobytes()  # the kind byte of the info word after each word
    vlens = words.view("<u2")[2::2]  # the low half of that info word
    ends = np.arange(n, dtype=np.int32)
    body = ends[:n - 1]
    body += np.multiply(np.frombuffer(kinds.translate(_PER), dtype=np.uint8), vlens, dtype=np.int32)
    body += np.frombuffer(kinds.translate(_FIXED), dtype=np.uint8)
    ends[n - 1] = n + 1
    return ends


def _chain(ends: npt.NDArray[np.int32]) -> npt.NDArray[np.int64]:
    # [0, ends[0], ends[ends[0]], ...] up to and including the first value >= len(ends).
    table = ends.data
    chain = [0]
    # extend() appends each value as map() reads it from the same list, so the walk runs in C;
    # it stops when a value past the table is looked up (that value is already in the list).
    with contextlib.suppress(IndexError):
        chain.extend(map(table.__getitem__, chain))
    return np.array(chain, dtype=np.int64)


def _check_kinds(kinds: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64], file_start: int) -> None:
    bad = np.flatnonzero((kinds == 0) | (kinds > MAX_KIND))
    if len(bad):
        i = int(bad[0])
        raise CorruptDumpError(f"BTF type id {i + 1}: unknown kind {int(kinds[i])}", file_start + 4 * int(offsets[i]))


def string_keys(buffer: bytes, offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    """A key for the NUL-terminated string at each offset (at most ``len(buffer)``) of ``buffer``:
    equal strings have equal keys; unequal ones rarely do (only when their first 24 bytes match, or
    by chance), so a match must still be checked against the bytes."""
    if len(buffer) < _KEY_BYTES:
        return _keys(buffer + bytes(_KEY_BYTES), offsets)
    # Strings in the last 24 bytes are read from a zero-padded copy of those bytes, the rest in place.
    tail = len(buffer) - _KEY_BYTES
    near_end = offsets > tail
    keys = _keys(buffer, np.minimum(offsets, tail))
    if bool(near_end.any()):
        keys[near_end] = _keys(buffer[tail:] + bytes(_KEY_BYTES), offsets[near_end] - tail)
    return keys


def _keys(buffer: bytes, offsets: npt.NDArray[np.int64]) -> npt.NDArray[np.uint64]:
    # string_keys for offsets at least 24 bytes before the end of ``buffer``
    words = np.ndarray((len(buffer) - 7,), dtype="<u8", buffer=buffer, strides=(1,))  # at every byte
    keys = np.zeros(len(offsets), dtype=np.uint64)
    before_nul = np.ones(len(offsets), dtype=bool)
    for i, mix in enumerate(_MIX):
        word = words[offsets + 8 * i]
        # a high bit in each zero byte (bytes after the first zero may be flagged too, never before)
        zeros = (word - _ONES) & ~word & _HIGHS
        word &= ((zeros & (~zeros + np.uint64(1))) >> np.uint64(7)) - np.uint64(1)  # keep the bytes before it
        word *= before_nul
        keys += word * mix
        before_nul &= zeros == 0
    return keys


def string_key(name: bytes) -> int:
    """The :func:`string_keys` key of ``name`` (no NUL inside), computed without numpy (one name)."""
    head = name[:_KEY_BYTES].ljust(_KEY_BYTES, b"\0")
    words = (int.from_bytes(head[i:i + 8], "little") for i in range(0, _KEY_BYTES, 8))
    return sum(word * int(mix) for word, mix in zip(words, _MIX, strict=True)) & 0xFFFFFFFFFFFFFFFF
