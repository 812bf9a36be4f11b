"""
kcrash.types.btf
================

BTF (``include/uapi/linux/btf.h``) as a lazy :class:`~kcrash.types.model.TypeTable`. Parsing
indexes the record offsets in one pass over the type section; :class:`~kcrash.types.model.Type`
objects are built on demand and cached by id. Lookups: by name and kind (:meth:`Btf.find_type_or_none`),
global variables that BTF describes (``VAR``, in practice per-CPU ones in DATASEC ``.data..percpu``)
and enum constants. Split BTF (kernel modules) takes the vmlinux :class:`Btf` as ``base``: its type
ids and string offsets continue after the base's. Input is untrusted: a bad header, truncated record,
unknown kind, dangling id or offset raises :class:`~kcrash.errors.CorruptDumpError` with the offset
in the blob. Little-endian BTF only; no line info or CO-RE relocations (``.BTF.ext``).
With a cache directory and key (the kernel's build-id), the record offsets of a blob are kept
under ``cache_dir/btf-index/`` and reused when the blob's CRC-32 and size match.
"""

from __future__ import annotations

import bisect
import contextlib
import sys
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kcrash.debuginfo.cache import cache_path_or_none, read_cache_or_none, write_cache
from kcrash.errors import CorruptDumpError, TypeLookupError
from kcrash.types.model import Enumerator, Member, Parameter, Qualifiers, Type, TypeKind

__all__ = ["BTF_KIND", "Btf", "parse_btf"]

BTF_MAGIC = 0xEB9F
_HDR_LEN = 24

#: kind numbers of ``include/uapi/linux/btf.h``
BTF_KIND = {
    "INT": 1, "PTR": 2, "ARRAY": 3, "STRUCT": 4, "UNION": 5, "ENUM": 6, "FWD": 7, "TYPEDEF": 8,
    "VOLATILE": 9, "CONST": 10, "RESTRICT": 11, "FUNC": 12, "FUNC_PROTO": 13, "VAR": 14,
    "DATASEC": 15, "FLOAT": 16, "DECL_TAG": 17, "TYPE_TAG": 18, "ENUM64": 19,
}
_K = BTF_KIND
# Words after the 3-word ``struct btf_type``: fixed part, and per vlen entry (by kind number).
_FIXED = [3, 4, 3, 6, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 4, 3, 3] + [3] * 12
_PER = [0, 0, 0, 0, 3, 3, 2, 0, 0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 3] + [0] * 12
_QUALIFIER = {_K["CONST"]: Qualifiers.CONST, _K["VOLATILE"]: Qualifiers.VOLATILE,
              _K["RESTRICT"]: Qualifiers.RESTRICT, _K["TYPE_TAG"]: Qualifiers.NONE}
_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
# What a lookup by TypeKind accepts (FWD is matched separately, by its kind_flag).
_LOOKUP_KINDS = {
    TypeKind.STRUCT: (_K["STRUCT"],), TypeKind.UNION: (_K["UNION"],),
    TypeKind.ENUM: (_K["ENUM"], _K["ENUM64"]), TypeKind.TYPEDEF: (_K["TYPEDEF"],),
    TypeKind.INT: (_K["INT"],), TypeKind.BOOL: (_K["INT"],), TypeKind.FLOAT: (_K["FLOAT"],),
}
_VOID = Type(TypeKind.VOID, type_id=0)
_CACHE_KIND, _CACHE_VERSION = "btf-index", 2


def parse_btf(data: bytes, base: Btf | None = None, *, name: str = "vmlinux", cache_dir: Path | None = None,
              cache_key: str | None = None) -> Btf:
    """Index a BTF blob (``base``: the vmlinux BTF of a module's split BTF); with ``cache_dir`` and a
    hex ``cache_key`` (a build-id), the record index and the sorted string index are read from and
    written to the cache."""
    path = cache_path_or_none(cache_dir, _CACHE_KIND, cache_key)
    if path is None or sys.byteorder != "little":
        return Btf(data, base, name=name)
    facts = {"crc32": zlib.crc32(data), "size": len(data)}
    found = read_cache_or_none(path, _CACHE_KIND, _CACHE_VERSION)
    records = found[0].get("records") if found is not None else None
    if found is not None and {k: found[0].get(k) for k in facts} == facts and isinstance(records, int) \
            and records > 0 and len(found[1]) % 4 == 0:
        words = array("I", found[1])
        with contextlib.suppress(CorruptDumpError):  # a damaged cache file: index the blob again
            return Btf(data, base, name=name, offsets=words[:records], string_order=words[records:])
    btf = Btf(data, base, name=name)
    order = btf.string_order()
    write_cache(path, _CACHE_KIND, _CACHE_VERSION, {**facts, "records": btf.num_types()},
                array("I", btf._offsets).tobytes() + order.tobytes())
    return btf


class Btf:
    """One BTF blob: a lazily built type table with name lookups."""

    def __init__(self, data: bytes, base: Btf | None = None, *, name: str = "vmlinux",
                 pointer_size: int = 8, offsets: Sequence[int] | None = None,
                 string_order: array[int] | None = None) -> None:
        self.data = bytes(data)
        self.base: Btf | None = base
        self.name = name
        self.pointer_size = pointer_size
        self._type_start, type_len, self._strings = _parse_header(self.data)
        self._haystack = b"\0" + self._strings
        self.first_id: int = base.end_id if base is not None else 1
        self._str_base: int = len(base._strings) + base._str_base if base is not None else 0
        self._words = _words(self.data, self._type_start, type_len)
        # offsets: a record index computed earlier for these very bytes (the cache); still checked
        self._offsets = _index(self._words, self._type_start) if offsets is None else \
            _checked(offsets, self._words, self._type_start)
        self.end_id: int = self.first_id + len(self._offsets)
        self._cache: dict[int, Type] = {0: _VOID}
        self._building: set[int] = set()
        self._names: npt.NDArray[np.uint32] | None = None
        self._kinds: npt.NDArray[np.uint32] | None = None
        self._sorted: tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32]] | None = None
        self._enumerators: tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp], npt.NDArray[np.int64]] | None = None
        self._percpu: set[str] | None = None
        self._found_strings: dict[str, list[int]] = {}
        # local string offsets sorted by string (ties by offset): name searches bisect it
        self._string_order = _checked_order(string_order, self._strings) if string_order is not None else None

    def num_types(self) -> int:
        """Number of type records in this blob (not counting void or the base)."""
        return len(self._offsets)

    # -- ids -> types ---------------------------------------------------------------------------

    def type_by_id(self, type_id: int) -> Type:
        """Return the type with id ``type_id`` (0 = void)."""
        cached = self._cache.get(type_id)
        if cached is not None:
            return cached
        if type_id < self.first_id and self.base is not None:
            return self.base.type_by_id(type_id)
        if not self.first_id <= type_id < self.end_id:
            raise CorruptDumpError(f"BTF {self.name}: type id {type_id} out of range")
        if type_id in self._building:
            raise CorruptDumpError(f"BTF {self.name}: type id {type_id} refers to itself", self._file_offset(type_id))
        self._building.add(type_id)
        try:
            t = self._build(type_id)
        finally:
            self._building.discard(type_id)
        self._cache[type_id] = t
        return t

    def _file_offset(self, type_id: int) -> int:
        return self._type_start + 4 * self._offsets[type_id - self.first_id]

    def _record(self, type_id: int) -> tuple[int, int, int, int, int, int]:
        # (word offset, name_off, kind, vlen, kind_flag, size_or_type)
        p = self._offsets[type_id - self.first_id]
        w = self._words
        info = w[p + 1]
        return p, w[p], (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, w[p + 2]

    def _build(self, type_id: int) -> Type:
        p, name_off, kind, vlen, kflag, sot = self._record(type_id)
        name = self.string(name_off) or None
        builder = _BUILDERS.get(kind)
        if builder is None:
            raise CorruptDumpError(f"BTF {self.name}: type id {type_id} (kind {kind}) is not a type",
                                   self._file_offset(type_id))
        return builder(self, type_id, p, name, vlen, kflag, sot)

    # -- strings --------------------------------------------------------------------------------

    def string(self, offset: int) -> str:
        """The string at ``offset`` (offsets past the base's strings are this blob's)."""
        if offset < self._str_base and self.base is not None:
            return self.base.string(offset)
        local = offset - self._str_base
        end = self._strings.find(b"\0", local)
        if local < 0 or end < 0:
            raise CorruptDumpError(f"BTF {self.name}: string offset {offset} out of range")
        return self._strings[local:end].decode("utf-8", "replace")

    def _string_offsets(self, name: str) -> list[int]:
        # Offsets of every occurrence of ``name`` as a whole string, in this blob and its bases
        # (memoized: each search scans megabytes of strings).
        found = self._found_strings.get(name)
        if found is None:
            found = self._found_strings[name] = self._search_strings(name)
        return found

    def _search_strings(self, name: str) -> list[int]:
        out = list(self.base._string_offsets(name)) if self.base is not None else []
        if self._string_order is not None:
            return out + [off + self._str_base for off in self._sorted_hits(name.encode())]
        # A split blob's strings start right after the base's, with no leading NUL: search a copy
        # with one prepended, so a hit at ``pos`` is the string at local offset ``pos``.
        haystack = self._haystack
        needle = b"\0" + name.encode() + b"\0"
        pos = haystack.find(needle)
        while pos >= 0:
            out.append(pos + self._str_base)
            pos = haystack.find(needle, pos + 1)
        return out

    def _sorted_hits(self, name: bytes) -> list[int]:
        order, key = self._string_order or array("I"), self._string_at
        k = bisect.bisect_left(order, name, key=key)
        hits = []
        while k < len(order) and key(order[k]) == name:
            hits.append(order[k])
            k += 1
        return hits

    def _string_at(self, local: int) -> bytes:
        return self._strings[local:self._strings.find(b"\0", local)]

    def string_order(self) -> array[int]:
        """The local offsets of this blob's strings sorted by string, equal strings by offset (what
        the cache keeps so that name searches bisect instead of scanning the string section)."""
        if self._string_order is None:
            parts = self._strings.split(b"\0")[:-1]  # the section ends with a NUL
            ends = np.flatnonzero(np.frombuffer(self._strings, dtype=np.uint8) == 0)
            starts = np.concatenate(([0], ends[:-1] + 1)).astype("<u4")
            order = np.asarray(sorted(range(len(parts)), key=parts.__getitem__), dtype=np.int64)
            self._string_order = array("I", starts[order].tobytes())
        return self._string_order

    # -- name lookups ---------------------------------------------------------------------------

    def _columns(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
        if self._names is None or self._kinds is None:
            words = np.frombuffer(self._words, dtype=np.uint32)
            offs = np.asarray(self._offsets, dtype=np.int64)
            names, kinds = words[offs], (words[offs + 1] >> np.uint32(24)) & np.uint32(0x1F)
            self._names, self._kinds = names, kinds
            return names, kinds
        return self._names, self._kinds

    def ids_named(self, name: str, kinds: Sequence[int]) -> list[int]:
        """Ids of this blob's records (not the base's) named ``name`` with a BTF kind in ``kinds``."""
        offsets = self._string_offsets(name)
        if not offsets or not self._offsets:
            return []
        _, kind_col = self._columns()
        order, sorted_names = self._name_order()
        hits: list[int] = []
        for off in offsets:
            lo, hi = np.searchsorted(sorted_names, off, "left"), np.searchsorted(sorted_names, off, "right")
            hits.extend(order[lo:hi].tolist())
        wanted = frozenset(kinds)
        return [self.first_id + i for i in sorted(hits) if int(kind_col[i]) in wanted]

    def _name_order(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32]]:
        # The name column sorted once (stable: equal names keep id order), searched per lookup.
        if self._sorted is None:
            names = self._columns()[0]
            order = np.argsort(names, kind="stable")
            self._sorted = order, names[order]
        return self._sorted

    def find_type_or_none(self, name: str, kind: TypeKind) -> Type | None:
        """The type ``name`` of ``kind`` (STRUCT/UNION/ENUM by tag, TYPEDEF/INT/FLOAT by name);
        complete definitions win over forward declarations; this blob before its base."""
        kinds = _LOOKUP_KINDS.get(kind)
        if kinds is None:
            raise TypeError(f"cannot look up a {kind.value} type by name")
        ids = self.ids_named(name, kinds)
        if ids:
            return self.type_by_id(ids[0])
        if self.base is not None:
            found = self.base.find_type_or_none(name, kind)
            if found is not None:
                return found
        return self._forward(name, kind)

    def _forward(self, name: str, kind: TypeKind) -> Type | None:
        if kind not in (TypeKind.STRUCT, TypeKind.UNION):
            return None
        for type_id in self.ids_named(name, (_K["FWD"],)):
            if (self._record(type_id)[4] == 1) == (kind is TypeKind.UNION):
                return self.type_by_id(type_id)
        return None

    def get_type(self, name: str, kind: TypeKind) -> Type:
        """Like :meth:`find_type_or_none`, raising TypeLookupError when absent."""
        found = self.find_type_or_none(name, kind)
        if found is None:
            raise TypeLookupError(f"no {kind.value} type named {name!r} in BTF {self.name}")
        return found

    def find_variable_type_or_none(self, name: str) -> Type | None:
        """The type of global variable ``name`` if BTF has a VAR for it (per-CPU variables)."""
        for type_id in self.ids_named(name, (_K["VAR"],)):
            return self.type_by_id(self._record(type_id)[5])
        return self.base.find_variable_type_or_none(name) if self.base is not None else None

    def is_percpu_variable(self, name: str) -> bool:
        """True if ``name`` is a VAR of DATASEC ``.data..percpu``."""
        if self._percpu is None:
            self._percpu = self._datasec_vars(".data..percpu")
        return name in self._percpu or (self.base is not None and self.base.is_percpu_variable(name))

    def _datasec_vars(self, section: str) -> set[str]:
        out: set[str] = set()
        for sec_id in self.ids_named(section, (_K["DATASEC"],)):
            p, vlen = self._record(sec_id)[0], self._record(sec_id)[3]
            for i in range(vlen):
                var_id = self._words[p + 3 + 3 * i]
                if self.first_id <= var_id < self.end_id:
                    out.add(self.string(self._record(var_id)[1]))
        return out

    def find_enumerator_or_none(self, name: str) -> tuple[Type, int] | None:
        """The enum type and value of enum constant ``name`` (the first enum, by id, that has it)."""
        if self._enumerators is None:
            self._enumerators = self._enumerator_columns()
        names, records, positions = self._enumerators
        hits = []
        for off in self._string_offsets(name):
            found = np.flatnonzero(names == np.uint32(off))
            if len(found):
                k = int(found[0])
                record = int(records[k])
                hits.append((self.first_id + record, self._enumerator_value(record, int(positions[k]))))
        if hits:
            type_id, value = min(hits)
            return self.type_by_id(type_id), value
        return self.base.find_enumerator_or_none(name) if self.base is not None else None

    def _enumerator_columns(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp], npt.NDArray[np.int64]]:
        # Every enumerator of this blob, in id order, straight from the words (no Type built, no
        # string decoded): its name offset, its record index and the word offset of its entry.
        _, kinds = self._columns()
        records = np.flatnonzero((kinds == _K["ENUM"]) | (kinds == _K["ENUM64"]))
        words = np.frombuffer(self._words, dtype=np.uint32)
        starts = np.asarray(self._offsets, dtype=np.int64)[records]
        info = words[starts + 1]
        counts = (info & np.uint32(0xFFFF)).astype(np.int64)
        step = np.where((info >> np.uint32(24)) & np.uint32(0x1F) == _K["ENUM64"], 3, 2).astype(np.int64)
        owner = np.repeat(np.arange(len(records)), counts)
        nth = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        positions = starts[owner] + 3 + step[owner] * nth
        return words[positions], records[owner], positions

    def _enumerator_value(self, record: int, pos: int) -> int:
        # The value of the enumerator of record ``record`` whose entry is at word ``pos``.
        info = self._words[self._offsets[record] + 1]
        return _entry_value(self._words, pos, (info >> 24) & 0x1F == _K["ENUM64"], info >> 31)


def _parse_header(data: bytes) -> tuple[int, int, bytes]:
    # -> (file offset of the type section, its length, the string section)
    if len(data) < _HDR_LEN:
        raise CorruptDumpError(f"BTF too short ({len(data)} bytes)", 0)
    magic = int.from_bytes(data[0:2], "little")
    if magic != BTF_MAGIC:
        raise CorruptDumpError(f"bad BTF magic {magic:#06x} (big-endian BTF is not supported)", 0)
    if data[2] != 1:
        raise CorruptDumpError(f"unsupported BTF version {data[2]}", 2)
    hdr_len, type_off, type_len, str_off, str_len = (int.from_bytes(data[i:i + 4], "little")
                                                     for i in range(4, 24, 4))
    if hdr_len < _HDR_LEN or hdr_len > len(data):
        raise CorruptDumpError(f"bad BTF hdr_len {hdr_len}", 4)
    type_start, str_start = hdr_len + type_off, hdr_len + str_off
    if type_start + type_len > len(data) or type_len % 4 or type_start % 4:
        raise CorruptDumpError(f"BTF type section ({type_off}+{type_len}) out of bounds or misaligned", 8)
    if str_start + str_len > len(data) or (str_len and data[str_start + str_len - 1] != 0):
        raise CorruptDumpError(f"BTF string section ({str_off}+{str_len}) out of bounds or unterminated", 16)
    return type_start, type_len, data[str_start:str_start + str_len]


def _words(data: bytes, start: int, length: int) -> array[int]:
    words = array("I")
    if words.itemsize != 4:  # pragma: no cover - exotic platforms
        raise CorruptDumpError("no 32-bit array type on this platform")
    words.frombytes(data[start:start + length])
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        words.byteswap()
    return words


def _index(words: array[int], file_start: int) -> list[int]:
    # One pass: the word offset of each record. Invalid kinds are checked afterwards, vectorised.
    offsets: list[int] = []
    append, fixed, per = offsets.append, _FIXED, _PER
    n, pos = len(words), 0
    try:
        while pos < n:
            append(pos)
            info = words[pos + 1]
            k = (info >> 24) & 0x1F
            pos += fixed[k] + (info & 0xFFFF) * per[k]
    except IndexError:
        pos = n + 1
    if pos != n:
        raise CorruptDumpError("BTF type section ends inside a record", file_start + 4 * offsets[-1])
    if offsets:
        _check_kinds(words, np.asarray(offsets, dtype=np.int64), file_start)
    return offsets


def _checked(offsets: Sequence[int], words: array[int], file_start: int) -> Sequence[int]:
    # A given index must fit the words: increasing offsets inside the section, valid kinds, and its
    # last record ending at the section's end.
    offs = np.asarray(offsets, dtype=np.int64)
    n = len(words)
    if not len(offs) or offs[0] != 0 or bool(np.any(offs[1:] <= offs[:-1])) or int(offs[-1]) + 3 > n:
        raise CorruptDumpError("BTF record index does not fit the type section", file_start)
    last = int(offs[-1])
    info = words[last + 1]
    k = (info >> 24) & 0x1F
    if last + _FIXED[k] + (info & 0xFFFF) * _PER[k] != n:
        raise CorruptDumpError("BTF record index does not fit the type section", file_start)
    _check_kinds(words, offs, file_start)
    return offsets


def _checked_order(order: array[int], strings: bytes) -> array[int]:
    # A given string order must have one entry per string, each inside the section.
    if len(order) != strings.count(b"\0") or (len(order) and max(order) >= len(strings)):
        raise CorruptDumpError("BTF string index does not fit the string section")
    return order


def _check_kinds(words: array[int], offs: npt.NDArray[np.int64], file_start: int) -> None:
    kinds = (np.frombuffer(words, dtype="<u4")[offs + 1] >> 24) & 0x1F
    bad = np.nonzero((kinds == 0) | (kinds > _K["ENUM64"]))[0]
    if len(bad):
        i = int(bad[0])
        raise CorruptDumpError(f"BTF type id {i + 1}: unknown kind {int(kinds[i])}", file_start + 4 * int(offs[i]))


# -- one builder per kind: (btf, id, word offset, name, vlen, kind_flag, size_or_type) -> Type ------

def _int(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    enc = (b._words[p + 3] >> 24) & 0xF
    kind = TypeKind.BOOL if enc & _INT_BOOL else TypeKind.INT
    return Type(kind, name=name, size=sot, is_signed=bool(enc & _INT_SIGNED),
                is_char=bool(enc & _INT_CHAR) or name in ("char", "signed char", "unsigned char"),
                type_id=tid, table=b)


def _ptr(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    return Type(TypeKind.POINTER, size=b.pointer_size, ref=sot, type_id=tid, table=b)


def _array(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    w = b._words
    return Type(TypeKind.ARRAY, ref=w[p + 3], length=w[p + 5], type_id=tid, table=b)


def _compound(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    w, members = b._words, []
    for i in range(p + 3, p + 3 + 3 * vlen, 3):
        off = w[i + 2]
        bits, size = (off & 0xFFFFFF, off >> 24) if kflag else (off, 0)
        members.append(Member(b.string(w[i]) or None, bits, size, w[i + 1], b))
    kind = TypeKind.UNION if (w[p + 1] >> 24) & 0x1F == _K["UNION"] else TypeKind.STRUCT
    return Type(kind, tag=name, size=sot, members=tuple(members), type_id=tid, table=b)


def _enum(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    w, values = b._words, []
    wide = (w[p + 1] >> 24) & 0x1F == _K["ENUM64"]
    step = 3 if wide else 2
    for i in range(p + 3, p + 3 + step * vlen, step):
        values.append(Enumerator(b.string(w[i]), _entry_value(w, i, wide, kflag)))
    return Type(TypeKind.ENUM, tag=name, size=sot, is_signed=bool(kflag),
                enumerators=tuple(values), type_id=tid, table=b)


def _entry_value(w: array[int], pos: int, wide: bool, kflag: int) -> int:
    # The value of the ENUM/ENUM64 entry at word ``pos`` (signed when the record's kind_flag is set).
    value, bits = (w[pos + 1] | w[pos + 2] << 32, 64) if wide else (w[pos + 1], 32)
    return value - (1 << bits) if kflag and value >> (bits - 1) else value


def _fwd(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    return Type(TypeKind.UNION if kflag else TypeKind.STRUCT, tag=name, type_id=tid, table=b)


def _typedef(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    return Type(TypeKind.TYPEDEF, name=name, ref=sot, type_id=tid, table=b)


def _qualifier(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    return b.type_by_id(sot).qualified(_QUALIFIER[(b._words[p + 1] >> 24) & 0x1F])


def _proto(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    w, params, variadic = b._words, [], False
    for i in range(p + 3, p + 3 + 2 * vlen, 2):
        if w[i + 1] == 0 and i == p + 1 + 2 * vlen:
            variadic = True
        else:
            params.append(Parameter(b.string(w[i]) or None, w[i + 1], b))
    return Type(TypeKind.FUNCTION, ref=sot, parameters=tuple(params), is_variadic=variadic,
                type_id=tid, table=b)


def _referent(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    # FUNC -> its prototype, VAR -> its type: lenient, these are not referenced by real types.
    return b.type_by_id(sot)


def _float(b: Btf, tid: int, p: int, name: str | None, vlen: int, kflag: int, sot: int) -> Type:
    return Type(TypeKind.FLOAT, name=name, size=sot, is_signed=True, type_id=tid, table=b)


_BUILDERS = {
    _K["INT"]: _int, _K["PTR"]: _ptr, _K["ARRAY"]: _array, _K["STRUCT"]: _compound, _K["UNION"]: _compound,
    _K["ENUM"]: _enum, _K["ENUM64"]: _enum, _K["FWD"]: _fwd, _K["TYPEDEF"]: _typedef,
    _K["VOLATILE"]: _qualifier, _K["CONST"]: _qualifier, _K["RESTRICT"]: _qualifier, _K["TYPE_TAG"]: _qualifier,
    _K["FUNC_PROTO"]: _proto, _K["FUNC"]: _referent, _K["VAR"]: _referent, _K["FLOAT"]: _float,
}
