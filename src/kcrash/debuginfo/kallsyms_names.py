"""
kcrash.debuginfo.kallsyms_names
===============================

The names of ``kallsyms_names`` kept as the kernel keeps them: compressed, one length prefix and
a run of token ids per symbol (``scripts/kallsyms``; ids index ``kallsyms_token_table``). Nothing
is expanded up front; a name is expanded when it is asked for (``kallsyms_expand_symbol``), and
lookups by name go through a 32-bit hash of every name, computed with numpy from per-token hashes
(a token's hash and its multiplier compose, so a name's hash needs no expansion), each hit being
confirmed by expanding the name. The kind letter (``nm`` type) is the first character of a
symbol's first token.

* :func:`walk_names` finds every length prefix (one byte, or since 6.1 one or two bytes);
  :func:`walk_names_by_markers` does it 256 chunks at a time from ``kallsyms_markers``;
* :func:`layout_from_heads` derives where each name's tokens lie and checks the prefixes chain;
* :func:`check_names` validates a reading (every token used is printable, every kind letter known,
  no empty name), :class:`KallsymsNames` is the lazy sequence with hash lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt

__all__ = ["KIND_CHARS", "KallsymsNames", "NameLayout", "check_names", "kind_letters", "layout_from_heads",
           "name_hash", "name_hashes", "walk_names", "walk_names_by_markers"]

#: the ``nm`` letters kallsyms uses
KIND_CHARS = frozenset("ABCDGINRSTUVWabcdginprstuvw?")
_MULT = 0x01000193  # the hash: h = h * _MULT + byte, modulo 2**32, over a name's bytes
_MASK = 0xFFFFFFFF
_PRINTABLE = frozenset(range(0x21, 0x7F))


def name_hash(name: bytes) -> int:
    """The 32-bit hash :func:`name_hashes` computes for every name."""
    h = 0
    for c in name:
        h = (h * _MULT + c) & _MASK
    return h


def walk_names(data: bytes, num: int, *, big: bool) -> tuple[list[int], int, bool] | None:
    """Positions of the ``num`` length prefixes, the end of the table and whether a prefix had bit 7
    set (``big``: such a prefix takes two bytes, ``(b0 & 0x7f) | b1 << 7``); None when the walk
    leaves ``data``."""
    if num > len(data):  # every name takes at least its length byte: do not allocate for a bogus count
        return None
    heads = [0] * num
    pos = 0
    high = False
    try:
        for i in range(num):
            heads[i] = pos
            length = data[pos]
            if length & 0x80:
                high = True
                if big:
                    length = (length & 0x7F) | (data[pos + 1] << 7)
                    pos += 1
            pos += 1 + length
    except IndexError:
        return None
    return (heads, pos, high) if pos <= len(data) else None


def walk_names_by_markers(data: bytes, markers: npt.NDArray[np.int64], num: int, *, big: bool,
                          limit: int) -> tuple[npt.NDArray[np.int64], int, bool] | None:
    """Like :func:`walk_names`, with ``kallsyms_markers`` (the offset of every 256th name): the
    chunks are walked side by side, and each must end exactly where the next marker says, the last
    by ``limit``; None when one does not (or the markers do not fit ``num``)."""
    chunks = len(markers)
    if num > len(data) or chunks != (num + 255) // 256 or not chunks or int(markers[0]) != 0 or \
            bool(np.any(markers[1:] <= markers[:-1])) or int(markers[-1]) >= limit:
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    heads = np.empty(chunks * 256, dtype=np.int64)
    pos = markers.copy()
    high = False
    for j in range(256):
        live = pos if j < num - 256 * (chunks - 1) else pos[:-1]  # the last chunk may be short
        if not len(live) or int(live.max()) >= len(arr) - 1:
            return None
        heads[j::256][:len(live)] = live
        counts, prefix, wide = _prefixes(arr, live, big=big)
        high = high or wide
        live += prefix + counts
    end = int(pos[-1])
    if bool(np.any(pos[:-1] != markers[1:])) or end > limit:
        return None
    return heads[:num], end, high


@dataclass(frozen=True, slots=True)
class NameLayout:
    """Where each name lies in ``kallsyms_names``: its length prefix (``heads``), its first token id
    (``bodies``), its number of tokens (``counts``); ``end`` is just past the last name."""

    heads: npt.NDArray[np.int64]
    bodies: npt.NDArray[np.int64]
    counts: npt.NDArray[np.int64]
    end: int


def layout_from_heads(data: bytes, heads: npt.NDArray[np.int64], end: int, *, big: bool) -> NameLayout | None:
    """The layout given the prefix positions, or None when they do not chain: every name must end
    where the next prefix starts and the last one at ``end``."""
    if not len(heads) or not 0 < end <= len(data) or int(heads[0]) != 0 or int(heads.max()) >= end:
        return None
    counts, prefix, _ = _prefixes(np.frombuffer(data, dtype=np.uint8, count=end), heads, big=big)
    bodies = heads + prefix
    stops = bodies + counts
    if int(stops[-1]) != end or bool(np.any(stops[:-1] != heads[1:])):
        return None
    return NameLayout(heads, bodies, counts, end)


def _prefixes(arr: npt.NDArray[np.uint8], at: npt.NDArray[np.int64], *,
              big: bool) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64] | int, bool]:
    # The token counts and prefix sizes of the length prefixes at ``at``, and whether one had bit 7
    # set; with ``big`` such a prefix takes two bytes and its count 7 + 8 bits.
    counts = arr[at].astype(np.int64)
    wide = (counts & 0x80) != 0
    high = bool(wide.any())
    if not (big and high):
        return counts, 1, high
    second = arr[np.minimum(at + 1, len(arr) - 1)].astype(np.int64)
    return np.where(wide, (counts & 0x7F) | (second << 7), counts), 1 + wide, high


def _per_token(tokens: Sequence[bytes], test: Callable[[bytes], bool]) -> npt.NDArray[np.bool_]:
    # test() of every token id (ids past the table: False)
    return np.array([bool(t) and test(t) for t in tokens] + [False] * (256 - len(tokens)), dtype=bool)


def check_names(data: bytes, layout: NameLayout, tokens: Sequence[bytes]) -> bool:
    """Whether every name decodes: only printable non-empty tokens used, a known kind letter first,
    and a name after it."""
    arr = np.frombuffer(data, dtype=np.uint8, count=layout.end)
    if not len(layout.counts) or int(layout.counts.min()) < 1:
        return False
    # bytes that are not usable token ids may only be length prefixes
    unusable = ~_per_token(tokens, _PRINTABLE.issuperset)
    suspects = np.flatnonzero(unusable[arr]) if bool(unusable.any()) else ()
    if len(suspects):
        prefix = np.zeros(layout.end, dtype=bool)
        prefix[layout.heads] = True
        prefix[layout.bodies - 1] = True
        if not bool(np.all(prefix[suspects])):
            return False
    first = arr[layout.bodies]
    kind_ok = _per_token(tokens, lambda t: chr(t[0]) in KIND_CHARS)
    long_first = _per_token(tokens, lambda t: len(t) >= 2)
    return bool(np.all(kind_ok[first])) and bool(np.all((layout.counts >= 2) | long_first[first]))


def kind_letters(data: bytes, layout: NameLayout, tokens: Sequence[bytes]) -> str:
    """The kind letter of every symbol (the first character of its first token)."""
    arr = np.frombuffer(data, dtype=np.uint8, count=layout.end)
    firsts = np.array([t[0] if t else 0x3F for t in tokens] + [0x3F] * (256 - len(tokens)), dtype=np.uint8)
    return firsts[arr[layout.bodies]].tobytes().decode("ascii")


def name_hashes(data: bytes, layout: NameLayout, tokens: Sequence[bytes]) -> npt.NDArray[np.uint32]:
    """:func:`name_hash` of every name (the kind letter excluded), from per-token hashes: tokens
    are folded in position by position over the names still that long (longest names first)."""
    arr = np.frombuffer(data, dtype=np.uint8, count=layout.end)
    whole, step = _token_hashes(tokens, skip_first=False)
    first, _ = _token_hashes(tokens, skip_first=True)
    order = np.argsort(-layout.counts.astype(np.int16), kind="stable")  # radix sort: ≤ 2**14 tokens
    at = layout.bodies[order]  # where each name's next token is
    n = len(order)
    longer = n - np.cumsum(np.bincount(layout.counts[order], minlength=1))  # names with > k tokens
    hashes = first[arr[at]]
    ids, factor = np.empty(n, dtype=np.uint8), np.empty(n, dtype=np.uint32)
    for k in range(1, int(layout.counts[order[0]])):
        live = int(longer[k])
        here, h, t, f = at[:live], ids[:live], hashes[:live], factor[:live]
        here += 1
        np.take(arr, here, out=h)
        np.take(step, h, out=f)
        t *= f
        np.take(whole, h, out=f)
        t += f
    out = np.empty(n, dtype=np.uint32)
    out[order] = hashes
    return out


def _token_hashes(tokens: Sequence[bytes], *,
                  skip_first: bool) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    # per token id: the hash of its characters and _MULT ** its length (mod 2**32)
    parts = [t[1:] if skip_first else t for t in tokens] + [b""] * (256 - len(tokens))
    return (np.array([name_hash(p) for p in parts], dtype=np.uint32),
            np.array([pow(_MULT, len(p), 1 << 32) for p in parts], dtype=np.uint32))


class KallsymsNames(Sequence[str]):
    """The symbol names, expanded on access from the compressed table; :meth:`positions_of` finds
    every symbol of a name through the name hashes."""

    def __init__(self, data: bytes, layout: NameLayout, tokens: Sequence[bytes],
                 hashes: npt.NDArray[np.uint32]) -> None:
        self._data = data
        self._bodies = layout.bodies
        self._counts = layout.counts
        self._tokens = [t.decode("latin-1") for t in tokens]
        self.hashes = hashes

    def __len__(self) -> int:
        return len(self._bodies)

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start = int(self._bodies[i])
        ids = self._data[start:start + int(self._counts[i])]
        return "".join(map(self._tokens.__getitem__, ids))[1:]

    def positions_of(self, name: str) -> list[int]:
        """Every position holding ``name``, ascending."""
        if not name.isascii() or "\0" in name:
            return []
        hits = np.flatnonzero(self.hashes == name_hash(name.encode("ascii"))).tolist()
        return [i for i in hits if self[i] == name]

    def index(self, value: object, start: int = 0, stop: int | None = None) -> int:
        found = self.positions_of(value) if isinstance(value, str) else []
        for i in found:
            if start <= i and (stop is None or i < stop):
                return i
        raise ValueError(f"{value!r} is not in the list")

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and bool(self.positions_of(value))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]
