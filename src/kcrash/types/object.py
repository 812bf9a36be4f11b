"""
kcrash.types.object
===================

:class:`Object`: a typed value, or a typed reference to memory (an address, plus a bit offset and
size for bitfields), shaped like drgn's ``Object``. Methods end in ``_`` so they never clash with
struct members: ``obj.comm`` is the member, ``obj.member_("comm")`` the same by name,
``obj.value_()`` the Python value, ``obj.address_of_()`` a pointer, ``obj.string_()`` a C string,
``obj.read_()`` a value copy, ``obj[i]`` an element or pointee. Member access through a pointer
dereferences it (``task.comm`` for ``struct task_struct *task``). Module functions :func:`cast`,
:func:`reinterpret`, :func:`container_of`, :func:`sizeof` and :func:`offsetof` work like their C
counterparts. References read memory on use through the program's memory reader, so an
unreadable address raises :class:`~kcrash.errors.FaultError` at that point. Arithmetic is limited
to pointer/integer ``+`` and ``-`` and comparisons; there are no absent objects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from kcrash.errors import ExpressionError, TypeLookupError
from kcrash.types.model import Type, TypeKind, pointer_type

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["Object", "ObjectValue", "cast", "container_of", "offsetof", "reinterpret", "sizeof"]

ObjectValue = int | float | bool | bytes | list["ObjectValue"] | dict[str, "ObjectValue"]
_SCALAR = (TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM, TypeKind.POINTER)
_STRING_LIMIT = 4096
_PAGE = 4096


class Object:
    """A typed object of a :class:`~kcrash.types.program.Program`: a reference (``address_`` set)
    or a value (bytes held here). ``bit_offset_`` is 0..7 within the first byte; ``bit_field_size_``
    is 0 unless the object is a bitfield."""

    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_buf", "address_", "bit_field_size_", "bit_offset_", "prog_", "type_")

    prog_: Program
    type_: Type
    address_: int | None
    bit_offset_: int
    bit_field_size_: int
    _buf: bytes | None

    def __init__(self, prog: Program, type: Type | str, value: int | float | bytes | None = None, *,
                 address: int | None = None, bit_offset: int = 0, bit_field_size: int = 0) -> None:
        t = prog.type(type) if isinstance(type, str) else type
        if (value is None) == (address is None):
            raise TypeError("an Object needs exactly one of value and address")
        object.__setattr__(self, "prog_", prog)
        object.__setattr__(self, "type_", t)
        object.__setattr__(self, "address_", None if address is None else address & 0xFFFFFFFFFFFFFFFF)
        object.__setattr__(self, "bit_offset_", bit_offset)
        object.__setattr__(self, "bit_field_size_", bit_field_size)
        object.__setattr__(self, "_buf", None if value is None else _encode(t, value))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Object is immutable")

    # -- raw access -----------------------------------------------------------------------------

    def _bytes(self, size: int) -> bytes:
        if self.address_ is not None:
            return self.prog_.read(self.address_, size)
        assert self._buf is not None
        if len(self._buf) < size:
            raise ExpressionError(f"value of {self.type_.type_name()} is too short")
        return self._buf[:size]

    def _storage_size(self) -> int:
        bits = self.bit_field_size_ or self.type_.sizeof() * 8
        return (self.bit_offset_ + bits + 7) // 8

    def to_bytes_(self) -> bytes:
        """The object's bytes (for a bitfield, the bytes that contain it)."""
        return self._bytes(self._storage_size())

    def _at_bits(self, t: Type, bits: int, bit_field_size: int = 0) -> Object:
        # The sub-object ``bits`` after this one's start (a member or an element).
        total = self.bit_offset_ + bits
        if self.address_ is not None:
            return Object(self.prog_, t, address=self.address_ + total // 8, bit_offset=total % 8,
                          bit_field_size=bit_field_size)
        obj = Object.__new__(Object)
        for name, value in (("prog_", self.prog_), ("type_", t), ("address_", None), ("bit_offset_", total % 8),
                            ("bit_field_size_", bit_field_size), ("_buf", self._sub_buffer(t, total, bit_field_size))):
            object.__setattr__(obj, name, value)
        return obj

    def _sub_buffer(self, t: Type, bits: int, bit_field_size: int) -> bytes:
        # The bytes of a sub-object of a value, only as many as it spans, so that taking every
        # element of an array copies the array once in all (the rest of the buffer each time was
        # quadratic); a type without a size (a flexible array) keeps the rest of the buffer.
        assert self._buf is not None
        start = bits // 8
        try:
            size = (bits % 8 + (bit_field_size or t.sizeof() * 8) + 7) // 8
        except TypeError:
            return self._buf[start:]
        return self._buf[start:start + size]

    # -- values ---------------------------------------------------------------------------------

    def value_(self) -> ObjectValue:
        """The Python value: int (integers, enums, pointers), bool, float, list (arrays),
        dict by member name (structs and unions, anonymous members flattened)."""
        t = self.type_.strip_typedefs()
        if t.kind in _SCALAR:
            return self._int(t) if t.kind is not TypeKind.BOOL else bool(self._int(t))
        if t.kind is TypeKind.FLOAT:
            return self._float(t)
        if self.address_ is not None:
            return self.read_().value_()
        if t.kind is TypeKind.ARRAY:
            return [e.value_() for e in self._elements(t)]
        if t.members is not None:
            return {m.name or "": self._at_bits(m.type, bits, m.bit_field_size).value_()
                    for m, bits in t.iter_members()}
        raise ExpressionError(f"{self.type_.type_name()} has no value")

    def _int(self, t: Type) -> int:
        bits = self.bit_field_size_ or t.sizeof() * 8
        raw = int.from_bytes(self._bytes((self.bit_offset_ + bits + 7) // 8), "little")
        value = (raw >> self.bit_offset_) & ((1 << bits) - 1)
        if t.is_signed and value >> (bits - 1):
            value -= 1 << bits
        return value

    def _float(self, t: Type) -> float:
        dtype = {4: "<f4", 8: "<f8"}.get(t.sizeof())
        if dtype is None:
            raise ExpressionError(f"cannot read a {t.sizeof()}-byte float")
        return float(np.frombuffer(self._bytes(t.sizeof()), dtype=dtype)[0])

    def _elements(self, t: Type) -> Iterator[Object]:
        if t.length is None:
            raise ExpressionError(f"{self.type_.type_name()} has no length")
        elem = t.type
        size = elem.sizeof() * 8
        for i in range(t.length):
            yield self._at_bits(elem, i * size)

    def read_(self) -> Object:
        """A value copy of this object (reads memory once)."""
        if self.address_ is None:
            return self
        data = self.to_bytes_()
        obj = Object(self.prog_, self.type_, data, bit_field_size=self.bit_field_size_)
        object.__setattr__(obj, "bit_offset_", self.bit_offset_)
        return obj

    def string_(self, limit: int = _STRING_LIMIT) -> bytes:
        """The C string of a char array or a char pointer, at most ``limit`` bytes (of an array,
        at most its length; only that many bytes are read)."""
        t = self.type_.strip_typedefs()
        if t.kind is TypeKind.ARRAY:
            data = self._bytes(min(self._storage_size(), limit)) if t.length else b""
            return data.split(b"\0", 1)[0]
        if t.kind is TypeKind.POINTER:
            return _read_c_string(self.prog_, self._int(t), limit)
        raise ExpressionError(f"{self.type_.type_name()} is not a string (array or pointer)")

    # -- navigation -----------------------------------------------------------------------------

    def member_(self, name: str) -> Object:
        """Member ``name`` (through a pointer: ``ptr->name``); TypeLookupError if there is none."""
        t = self.type_.strip_typedefs()
        if t.kind is TypeKind.POINTER:
            return self[0].member_(name)
        if t.members is None:
            raise ExpressionError(f"{self.type_.type_name()} is not a structure, union or pointer to one")
        member, bits = t.member(name)
        return self._at_bits(member.type, bits, member.bit_field_size)

    def __getattr__(self, name: str) -> Object:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            return self.member_(name)
        except (TypeLookupError, ExpressionError) as exc:
            raise AttributeError(str(exc)) from exc

    def __dir__(self) -> list[str]:
        t = self.type_.strip_typedefs()
        if t.kind is TypeKind.POINTER:
            t = t.type.strip_typedefs()
        names = [m.name for m, _ in t.iter_members() if m.name] if t.members is not None else []
        # object.__dir__: the class's own attributes (``type(self).__dir__(self)`` was this method
        # again, a RecursionError)
        return sorted(set(names) | set(object.__dir__(self)))

    def __getitem__(self, index: int) -> Object:
        """Element ``index`` of an array, or ``ptr[index]``."""
        i = int(index)
        t = self.type_.strip_typedefs()
        if t.kind is TypeKind.POINTER:
            target = t.type
            step = target.sizeof() if target.strip_typedefs().kind is not TypeKind.VOID else 1
            return Object(self.prog_, target, address=self._int(t) + i * step)
        if t.kind is TypeKind.ARRAY:
            return self._at_bits(t.type, i * t.type.sizeof() * 8)
        raise ExpressionError(f"{self.type_.type_name()} is not an array or pointer")

    def deref_(self) -> Object:
        """``*ptr``."""
        if self.type_.strip_typedefs().kind is not TypeKind.POINTER:
            raise ExpressionError(f"cannot dereference {self.type_.type_name()}")
        return self[0]

    def address_of_(self) -> Object:
        """``&obj``: a pointer value to this reference object."""
        if self.address_ is None:
            raise ExpressionError("cannot take the address of a value")
        if self.bit_field_size_ or self.bit_offset_:
            raise ExpressionError("cannot take the address of a bitfield")
        return Object(self.prog_, pointer_type(self.type_), self.address_)

    def __iter__(self) -> Iterator[Object]:
        t = self.type_.strip_typedefs()
        if t.kind is not TypeKind.ARRAY:
            raise ExpressionError(f"{self.type_.type_name()} is not iterable")
        return self._elements(t)

    def __len__(self) -> int:
        t = self.type_.strip_typedefs()
        if t.kind is not TypeKind.ARRAY or t.length is None:
            raise ExpressionError(f"{self.type_.type_name()} has no length")
        return t.length

    # -- scalar protocol and arithmetic ---------------------------------------------------------

    def _scalar(self) -> int | float:
        t = self.type_.strip_typedefs()
        if t.kind in _SCALAR:
            return self._int(t)
        if t.kind is TypeKind.FLOAT:
            return self._float(t)
        raise ExpressionError(f"{self.type_.type_name()} is not a scalar")

    def __int__(self) -> int:
        return int(self._scalar())

    def __index__(self) -> int:
        value = self._scalar()
        if isinstance(value, float):
            raise ExpressionError("a float is not an index")
        return value

    def __float__(self) -> float:
        return float(self._scalar())

    def __bool__(self) -> bool:
        return bool(self._scalar())

    def __eq__(self, other: object) -> bool:
        return self._scalar() == _operand(other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __lt__(self, other: object) -> bool:
        return self._scalar() < _operand(other)

    def __le__(self, other: object) -> bool:
        return self._scalar() <= _operand(other)

    def __gt__(self, other: object) -> bool:
        return self._scalar() > _operand(other)

    def __ge__(self, other: object) -> bool:
        return self._scalar() >= _operand(other)

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: int | Object) -> Object:
        return self._offset(int(other), 1)

    def __radd__(self, other: int) -> Object:
        return self._offset(int(other), 1)

    def __sub__(self, other: int | Object) -> Object:
        if isinstance(other, Object) and other.type_.strip_typedefs().kind is TypeKind.POINTER:
            return self._difference(other)
        return self._offset(int(other), -1)

    def _offset(self, n: int, sign: int) -> Object:
        t = self.type_.strip_typedefs()
        if t.kind is TypeKind.POINTER:
            step = t.type.sizeof() if t.type.strip_typedefs().kind is not TypeKind.VOID else 1
            return Object(self.prog_, self.type_, self._int(t) + sign * n * step)
        if t.kind in (TypeKind.INT, TypeKind.ENUM, TypeKind.BOOL):
            return Object(self.prog_, self.type_, self._int(t) + sign * n)
        raise ExpressionError(f"cannot do arithmetic on {self.type_.type_name()}")

    def _difference(self, other: Object) -> Object:
        t = self.type_.strip_typedefs()
        if t.kind is not TypeKind.POINTER:
            raise ExpressionError(f"cannot subtract a pointer from {self.type_.type_name()}")
        step = t.type.sizeof() if t.type.strip_typedefs().kind is not TypeKind.VOID else 1
        # C divides toward zero (as drgn and gdb do when the distance is not a multiple of the size)
        delta = self._int(t) - int(other)
        return Object(self.prog_, self.prog_.type("long"), abs(delta) // step * (1 if delta >= 0 else -1))

    # -- display --------------------------------------------------------------------------------

    def format_(self, **options: int | bool) -> str:
        """C-like text of the value: the program's :meth:`~kcrash.types.program.Program.format_object`
        (:func:`kcrash.types.format.format_object`; drgn's layout in ``kcrash shell``)."""
        return self.prog_.format_object(self, **options)

    def __str__(self) -> str:
        return self.format_()

    def __repr__(self) -> str:
        # drgn's form: Object(prog, 'type', address=0x...) or value=...
        where = f"address={self.address_:#x}" if self.address_ is not None else f"value={self._value_repr()}"
        bits = f", bit_offset={self.bit_offset_}, bit_field_size={self.bit_field_size_}" \
            if self.bit_field_size_ else ""
        return f"Object(prog, {self.type_.type_name()!r}, {where}{bits})"

    def _value_repr(self) -> str:
        t = self.type_.strip_typedefs()
        try:
            if t.kind is TypeKind.POINTER:
                return f"{self._int(t):#x}"
            return repr(self.value_())
        except (ExpressionError, TypeLookupError):
            return "?"


def _operand(other: object) -> int | float:
    if isinstance(other, Object):
        return other._scalar()
    if isinstance(other, (int, float)):
        return other
    raise ExpressionError(f"cannot compare an Object with {type(other).__name__}")


def _encode(t: Type, value: int | float | bytes) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    u = t.strip_typedefs()
    if u.kind is TypeKind.FLOAT:
        dtype = {4: "<f4", 8: "<f8"}.get(u.sizeof(), "<f8")
        return np.array([value], dtype=dtype).tobytes()
    if u.kind not in _SCALAR:
        raise ExpressionError(f"{t.type_name()} needs a bytes value")
    size = u.sizeof()
    return (int(value) & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _read_c_string(prog: Program, address: int, limit: int) -> bytes:
    out = bytearray()
    while len(out) < limit:
        pos = address + len(out)
        chunk = prog.read(pos, min(limit - len(out), _PAGE - pos % _PAGE, 256))
        end = chunk.find(b"\0")
        out += chunk if end < 0 else chunk[:end]
        if end >= 0:
            break
    return bytes(out)


def _type_of(prog: Program, t: Type | str) -> Type:
    return prog.type(t) if isinstance(t, str) else t


def cast(type: Type | str, obj: Object) -> Object:
    """``(type)obj`` for scalars: integers, enums, bools, pointers and floats convert by value."""
    t = _type_of(obj.prog_, type)
    target = t.strip_typedefs()
    value = obj._scalar()
    if target.kind is TypeKind.FLOAT:
        return Object(obj.prog_, t, float(value))
    if target.kind not in _SCALAR:
        raise ExpressionError(f"cannot cast to {t.type_name()} (use reinterpret)")
    if target.kind is TypeKind.BOOL:
        return Object(obj.prog_, t, int(bool(value)))
    return Object(obj.prog_, t, int(value))


def reinterpret(type: Type | str, obj: Object) -> Object:
    """The same storage read as another type (``*(type *)&obj``)."""
    t = _type_of(obj.prog_, type)
    if obj.address_ is not None:
        return Object(obj.prog_, t, address=obj.address_, bit_offset=obj.bit_offset_)
    return Object(obj.prog_, t, obj.to_bytes_())


def sizeof(what: Type | Object) -> int:
    """``sizeof`` a type or an object."""
    return (what.type_ if isinstance(what, Object) else what).sizeof()


def offsetof(type: Type, member: str) -> int:
    """Byte offset of ``member`` (``"a.b"``, ``"a[2]"``) in ``type``."""
    bits = type.bit_offset_of(member)
    if bits % 8:
        raise ExpressionError(f"{member} is a bitfield")
    return bits // 8


def container_of(ptr: Object, type: Type | str, member: str) -> Object:
    """``container_of(ptr, type, member)``: a ``type *`` to the structure containing ``*ptr``.

    :param ptr: a pointer to the member (``struct list_head *`` for a list node)
    """
    t = _type_of(ptr.prog_, type)
    return Object(ptr.prog_, pointer_type(t), int(ptr) - offsetof(t, member))
