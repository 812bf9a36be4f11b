"""
support.btf_write
=================

:class:`BtfWriter` builds BTF blobs (``include/uapi/linux/btf.h``) record by record, for tests and
synthetic kernels, the way :mod:`kcrash.dumps.write` builds dumps: every kind, bitfield members,
and split BTF (``BtfWriter(base=...)`` continues the base's type ids and string offsets). It
writes what it is told, without checking that ids refer to anything, so tests can build broken
blobs on purpose. It does not deduplicate types.
"""

from __future__ import annotations

from array import array

from kcrash.types.btf import BTF_KIND, BTF_MAGIC

__all__ = ["BtfWriter"]

_K = BTF_KIND


class BtfWriter:
    """Accumulates type records; each ``add`` method returns the new type id."""

    def __init__(self, base: BtfWriter | None = None) -> None:
        self.base = base
        self._records: list[list[int]] = []
        # Like pahole/libbpf: only the base starts with the empty string; split strings follow
        # the base's directly.
        self._strings = bytearray(b"\0" if base is None else b"")
        self._string_ids: dict[str, int] = {"": 0}
        self._first_id = base.next_id if base is not None else 1
        self._str_base = base.strings_size if base is not None else 0

    @property
    def next_id(self) -> int:
        """The id the next record gets."""
        return self._first_id + len(self._records)

    @property
    def strings_size(self) -> int:
        """Size of the string section, including the base's."""
        return self._str_base + len(self._strings)

    def string(self, text: str) -> int:
        """The string offset of ``text`` (added once; the base's strings are reused)."""
        if self.base is not None and text in self.base._string_ids:
            return self.base._string_ids[text]
        if text not in self._string_ids:
            self._string_ids[text] = self._str_base + len(self._strings)
            self._strings += text.encode() + b"\0"
        return self._string_ids[text]

    def record(self, kind: int, name: str, vlen: int, size_or_type: int, extra: list[int],
               kind_flag: bool = False) -> int:
        """Append one raw record and return its id."""
        info = (int(kind_flag) << 31) | (kind << 24) | vlen
        self._records.append([self.string(name), info, size_or_type, *extra])
        return self.next_id - 1

    def add_int(self, name: str, size: int, *, signed: bool = False, char: bool = False, bool_: bool = False,
                bits: int | None = None) -> int:
        """An INT."""
        encoding = int(signed) | int(char) << 1 | int(bool_) << 2
        return self.record(_K["INT"], name, 0, size, [encoding << 24 | (bits or size * 8)])

    def add_ptr(self, target: int) -> int:
        """A PTR."""
        return self.record(_K["PTR"], "", 0, target, [])

    def add_array(self, element: int, length: int, index_type: int = 0) -> int:
        """An ARRAY."""
        return self.record(_K["ARRAY"], "", 0, 0, [element, index_type, length])

    def add_struct(self, name: str, size: int, members: list[tuple[str, int, int, int]], *,
                   union: bool = False) -> int:
        """A STRUCT (or UNION): ``members`` are ``(name, type id, bit offset, bitfield size)``;
        any bitfield size sets kind_flag."""
        kflag = any(m[3] for m in members)
        extra: list[int] = []
        for name_, type_id, bit_offset, bits in members:
            extra += [self.string(name_), type_id, (bits << 24 | bit_offset) if kflag else bit_offset]
        return self.record(_K["UNION" if union else "STRUCT"], name, len(members), size, extra, kflag)

    def add_enum(self, name: str, size: int, values: list[tuple[str, int]], *, signed: bool = False,
                 wide: bool = False) -> int:
        """An ENUM (or ENUM64 with ``wide``)."""
        extra: list[int] = []
        for name_, value in values:
            v = value & ((1 << 64) - 1)
            extra += [self.string(name_), v & 0xFFFFFFFF] + ([v >> 32] if wide else [])
        return self.record(_K["ENUM64" if wide else "ENUM"], name, len(values), size, extra, signed)

    def add_fwd(self, name: str, *, union: bool = False) -> int:
        """A FWD."""
        return self.record(_K["FWD"], name, 0, 0, [], union)

    def add_typedef(self, name: str, target: int) -> int:
        """A TYPEDEF."""
        return self.record(_K["TYPEDEF"], name, 0, target, [])

    def add_qualifier(self, kind: str, target: int) -> int:
        """A CONST, VOLATILE, RESTRICT (or TYPE_TAG, named ``kind``)."""
        name = "" if kind in ("CONST", "VOLATILE", "RESTRICT") else kind
        return self.record(_K[kind] if kind in _K else _K["TYPE_TAG"], name, 0, target, [])

    def add_func_proto(self, ret: int, params: list[tuple[str, int]], *, variadic: bool = False) -> int:
        """A FUNC_PROTO (variadic: a trailing unnamed param of type 0)."""
        extra: list[int] = []
        for name_, type_id in [*params, *([("", 0)] if variadic else [])]:
            extra += [self.string(name_), type_id]
        return self.record(_K["FUNC_PROTO"], "", len(extra) // 2, ret, extra)

    def add_func(self, name: str, proto: int, linkage: int = 1) -> int:
        """A FUNC."""
        return self.record(_K["FUNC"], name, linkage, proto, [])

    def add_var(self, name: str, type_id: int, linkage: int = 1) -> int:
        """A VAR."""
        return self.record(_K["VAR"], name, 0, type_id, [linkage])

    def add_datasec(self, name: str, size: int, variables: list[tuple[int, int, int]]) -> int:
        """A DATASEC of ``(var id, offset, size)``."""
        extra = [x for v in variables for x in v]
        return self.record(_K["DATASEC"], name, len(variables), size, extra)

    def add_float(self, name: str, size: int) -> int:
        """A FLOAT."""
        return self.record(_K["FLOAT"], name, 0, size, [])

    def add_decl_tag(self, name: str, target: int, component_idx: int = -1) -> int:
        """A DECL_TAG."""
        return self.record(_K["DECL_TAG"], name, 0, target, [component_idx & 0xFFFFFFFF])

    def to_bytes(self) -> bytes:
        """The blob: header, type section, string section."""
        types = array("I", [w for r in self._records for w in r])
        type_bytes = types.tobytes()
        header = array("I", [24, 0, len(type_bytes), len(type_bytes), len(self._strings)]).tobytes()
        return BTF_MAGIC.to_bytes(2, "little") + bytes([1, 0]) + header + type_bytes + bytes(self._strings)
