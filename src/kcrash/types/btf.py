"""
kcrash.types.btf
================

BTF (``include/uapi/linux/btf.h``) as a lazy :class:`~kcrash.types.model.TypeTable`. Parsing
indexes the record offsets (vectorised, :mod:`kcrash.types.btf_index`); :class:`~kcrash.types.model.Type`
objects are built on demand and cached by id. Lookups: by name and kind (:meth:`Btf.find_type_or_none`),
global variables that BTF describes (``VAR``, in practice per-CPU ones in DATASEC ``.data..percpu``)
and enum constants. Split BTF (kernel modules) takes the vmlinux :class:`Btf` as ``base``: its type
ids and string offsets continue after the base's. Input is untrusted: a bad header, truncated record,
unknown kind, dangling id or offset, or records built through one another more than 64 deep raises
:class:`~kcrash.errors.CorruptDumpError` with the offset in the blob. Little-endian BTF only; no line
info or CO-RE relocations (``.BTF.ext``).
Name lookups compare one 64-bit key per record name (:func:`~kcrash.types.btf_index.string_keys`),
then the candidates' bytes. With a cache directory and key (the kernel's build-id), the record
offsets of a blob are kept under ``cache_dir/btf-index/`` and reused when the blob's CRC-32 and size
match and the offsets chain through the records exactly as a fresh walk would.
"""

from __future__ import annotations

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
from kcrash.types.btf_index import check_record_offsets, record_offsets, string_key, string_keys
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
#: how deep records may be built through one another (CONST/VOLATILE/RESTRICT/TYPE_TAG, FUNC, VAR
#: resolve their target at once); real BTF nests a few, a corrupt chain of hundreds is refused
_MAX_NESTING = 64
# v3: record offsets only (v2 also kept a sorted string order)
_CACHE_KIND, _CACHE_VERSION = "btf-index", 3


def parse_btf(data: bytes, base: Btf | None = None, *, name: str = "vmlinux", cache_dir: Path | None = None,
              cache_key: str | None = None) -> Btf:
    """Index a BTF blob (``base``: the vmlinux BTF of a module's split BTF); with ``cache_dir`` and a
    hex ``cache_key`` (a build-id), the record index is read from and written to the cache."""
    path = cache_path_or_none(cache_dir, _CACHE_KIND, cache_key)
    if path is None:
        return Btf(data, base, name=name)
    facts = {"crc32": zlib.crc32(data), "size": len(data)}
    found = read_cache_or_none(path, _CACHE_KIND, _CACHE_VERSION)
    if found is not None and {k: found[0].get(k) for k in facts} == facts \
            and found[0].get("records") == len(found[1]) // 4 and len(found[1]) % 4 == 0:
        with contextlib.suppress(CorruptDumpError):  # a damaged cache file: index the blob again
            return Btf(data, base, name=name, offsets=np.frombuffer(found[1], dtype="<u4"))
    btf = Btf(data, base, name=name)
    write_cache(path, _CACHE_KIND, _CACHE_VERSION, {**facts, "records": btf.num_types()},
                btf._offsets.astype("<u4").tobytes())
    return btf


class Btf:
    """One BTF blob: a lazily built type table with name lookups."""

    def __init__(self, data: bytes, base: Btf | None = None, *, name: str = "vmlinux",
                 pointer_size: int = 8, offsets: Sequence[int] | npt.NDArray[np.integer] | None = None) -> None:
        self.data = bytes(data)
        self.base: Btf | None = base
        self.name = name
        self.pointer_size = pointer_size
        self._type_start, type_len, self._str_start, self._str_len = _parse_header(self.data)
        self._str_end = self._str_start + self._str_len
        self.first_id: int = base.end_id if base is not None else 1
        # string offsets past the base's strings are this blob's
        self._str_base: int = base._str_len + base._str_base if base is not None else 0
        self._words = _words(self.data, self._type_start, type_len)
        self._word_array = np.frombuffer(self.data, dtype="<u4", count=type_len // 4, offset=self._type_start)
        if offsets is None:
            self._offsets, self._kinds = record_offsets(self._word_array, self._type_start)
        else:  # a record index computed earlier for these very bytes (the cache): checked, not trusted
            self._offsets = np.asarray(offsets, dtype=np.int64)
            self._kinds = check_record_offsets(self._offsets, self._word_array, self._type_start)
        self.end_id: int = self.first_id + len(self._offsets)
        self._cache: dict[int, Type] = {0: _VOID}
        self._building: set[int] = set()
        self._names: npt.NDArray[np.uint32] | None = None
        # (named FUNC records?) -> (record indexes, their name offsets, the keys of those names)
        self._name_index: dict[bool, tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32], npt.NDArray[np.uint64]]] = {}
        self._named: dict[tuple[str, bool], list[int]] = {}
        self._enumerators: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint32], npt.NDArray[np.intp],
                                 npt.NDArray[np.int64]] | None = None
        self._percpu: set[str] | None = None

    def num_types(self) -> int:
        """Number of type records in this blob (not counting void or the base)."""
        return len(self._offsets)

    # -- ids -> types ---------------------------------------------------------------------------

    def type_by_id(self, type_id: int) -> Type:
        """Return the type with id ``type_id`` (0 = void); CorruptDumpError for a cycle or for
        records built through one another more than 64 deep (a chain of qualifiers)."""
        cached = self._cache.get(type_id)
        if cached is not None:
            return cached
        if type_id < self.first_id and self.base is not None:
            return self.base.type_by_id(type_id)
        if not self.first_id <= type_id < self.end_id:
            raise CorruptDumpError(f"BTF {self.name}: type id {type_id} out of range")
        if type_id in self._building:
            raise CorruptDumpError(f"BTF {self.name}: type id {type_id} refers to itself", self._file_offset(type_id))
        if len(self._building) >= _MAX_NESTING:  # each level is a few Python frames: stop long before RecursionError
            raise CorruptDumpError(f"BTF {self.name}: type id {type_id} is nested more than {_MAX_NESTING} deep",
                                   self._file_offset(type_id))
        self._building.add(type_id)
        try:
            t = self._build(type_id)
        finally:
            self._building.discard(type_id)
        self._cache[type_id] = t
        return t

    def _file_offset(self, type_id: int) -> int:
        return self._type_start + 4 * int(self._offsets[type_id - self.first_id])

    def _record(self, type_id: int) -> tuple[int, int, int, int, int, int]:
        # (word offset, name_off, kind, vlen, kind_flag, size_or_type)
        p = int(self._offsets[type_id - self.first_id])
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
        if not 0 <= local < self._str_len:
            raise CorruptDumpError(f"BTF {self.name}: string offset {offset} out of range")
        start = self._str_start + local
        return self.data[start:self.data.index(b"\0", start, self._str_end)].decode("utf-8", "replace")

    def _has_string(self, offset: int, name: bytes) -> bool:
        # Whether the string at ``offset`` is ``name`` (False for offsets out of range).
        if offset < self._str_base and self.base is not None:
            return self.base._has_string(offset, name)
        local = offset - self._str_base
        return 0 <= local < self._str_len and self.data.startswith(name + b"\0", self._str_start + local, self._str_end)

    def _string_keys(self, offsets: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
        # The lookup key of the string at each offset (offsets below this blob's are the base's;
        # out-of-range ones get some key, and _has_string never matches them).
        local = offsets.astype(np.int64) - self._str_base
        keys = string_keys(self.data, self._str_start + np.clip(local, 0, max(self._str_len - 1, 0)))
        inherited = local < 0
        if self.base is not None and bool(inherited.any()):
            keys[inherited] = self.base._string_keys(offsets[inherited])
        return keys

    def _name_column(self) -> npt.NDArray[np.uint32]:
        # the name offset of every record, in id order
        if self._names is None:
            self._names = self._word_array[self._offsets]
        return self._names

    # -- name lookups ---------------------------------------------------------------------------

    def _records_named(self, name: str, funcs: bool) -> list[int]:
        # Indexes (ids - first_id) of this blob's FUNC records (or all other records) named ``name``.
        found = self._named.get((name, funcs))
        if found is None:
            records, names, keys = self._names_of(funcs)
            found = self._named[name, funcs] = [int(records[k]) for k in self._matching(name, keys, names)]
        return found

    def _names_of(self, funcs: bool) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.uint32], npt.NDArray[np.uint64]]:
        # The named FUNC records (80% of a vmlinux's named records, wanted only to find functions)
        # or the other named records: their indexes, name offsets and name keys.
        index = self._name_index.get(funcs)
        if index is None:
            names, kinds = self._name_column(), self._kinds
            records = np.flatnonzero((names != 0) & ((kinds == _K["FUNC"]) == funcs))
            index = self._name_index[funcs] = records, names[records], self._string_keys(names[records])
        return index

    def _matching(self, name: str, keys: npt.NDArray[np.uint64], offsets: npt.NDArray[np.uint32]) -> list[int]:
        # The indexes k, in order, of the strings at ``offsets[k]`` that are ``name`` (``keys``: their keys).
        needle = name.encode()
        if not needle or b"\0" in needle:
            return []
        candidates = np.flatnonzero(keys == np.uint64(string_key(needle))).tolist()
        return [k for k in candidates if self._has_string(int(offsets[k]), needle)]

    def ids_named(self, name: str, kinds: Sequence[int]) -> list[int]:
        """Ids of this blob's records (not the base's) named ``name`` with a BTF kind in ``kinds``
        (none for the empty name: anonymous records are not found by name)."""
        wanted = frozenset(kinds)
        found = [i for funcs in {kind == _K["FUNC"] for kind in wanted} for i in self._records_named(name, funcs)]
        return [self.first_id + i for i in sorted(found) if int(self._kinds[i]) in wanted]

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
            names, records, positions = self._enumerator_columns()
            self._enumerators = self._string_keys(names), names, records, positions
        keys, names, records, positions = self._enumerators
        for k in self._matching(name, keys, names)[:1]:
            record = int(records[k])
            return self.type_by_id(self.first_id + record), self._enumerator_value(record, int(positions[k]))
        return self.base.find_enumerator_or_none(name) if self.base is not None else None

    def _enumerator_columns(self) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp], npt.NDArray[np.int64]]:
        # Every enumerator of this blob, in id order, straight from the words (no Type built, no
        # string decoded): its name offset, its record index and the word offset of its entry.
        kinds = self._kinds
        records = np.flatnonzero((kinds == _K["ENUM"]) | (kinds == _K["ENUM64"]))
        words = self._word_array
        starts = self._offsets[records]
        info = words[starts + 1]
        counts = (info & np.uint32(0xFFFF)).astype(np.int64)
        step = np.where((info >> np.uint32(24)) & np.uint32(0x1F) == _K["ENUM64"], 3, 2).astype(np.int64)
        owner = np.repeat(np.arange(len(records)), counts)
        nth = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        positions = starts[owner] + 3 + step[owner] * nth
        return words[positions], records[owner], positions

    def _enumerator_value(self, record: int, pos: int) -> int:
        # The value of the enumerator of record ``record`` whose entry is at word ``pos``.
        info = self._words[int(self._offsets[record]) + 1]
        return _entry_value(self._words, pos, (info >> 24) & 0x1F == _K["ENUM64"], info >> 31)


def _parse_header(data: bytes) -> tuple[int, int, int, int]:
    # -> (file offset of the type section, its length, file offset of the string section, its length)
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
    return type_start, type_len, str_start, str_len


def _words(data: bytes, start: int, length: int) -> Sequence[int]:
    # The type section as native 32-bit words: a view of the blob (a byte-swapped copy on big-endian hosts).
    words: Sequence[int] = memoryview(data)[start:start + length].cast("I")
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        swapped = array("I", data[start:start + length])
        swapped.byteswap()
        words = swapped
    return words


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


def _entry_value(w: Sequence[int], pos: int, wide: bool, kflag: int) -> int:
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
