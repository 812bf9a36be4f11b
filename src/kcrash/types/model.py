"""
kcrash.types.model
==================

The one type model of kcrash, whatever the source (BTF now, DWARF later): :class:`Type` with its
:class:`Member`\\ s, :class:`Enumerator`\\ s and :class:`Parameter`\\ s, shaped like drgn's types
(``kind``, ``name``/``tag``, ``size``, ``type``, ``length``, ``members``, ``qualifiers``). Types
refer to other types by id through a :class:`TypeTable`, so a table builds only the types that are
actually used. This module also spells types the C way (:meth:`Type.type_name`). It reads no
memory and parses no format.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from kcrash.errors import CorruptDumpError, TypeLookupError

__all__ = [
    "Enumerator",
    "Member",
    "Parameter",
    "Qualifiers",
    "Type",
    "TypeKind",
    "TypeTable",
    "array_type",
    "function_type",
    "int_type",
    "pointer_type",
    "void_type",
]

# Depth bound of typedef/qualifier chains and anonymous-member nesting (corrupt data must not loop).
_MAX_DEPTH = 64


class TypeKind(enum.Enum):
    """What a :class:`Type` is."""

    VOID = "void"
    INT = "int"
    BOOL = "bool"
    FLOAT = "float"
    POINTER = "pointer"
    ARRAY = "array"
    STRUCT = "struct"
    UNION = "union"
    ENUM = "enum"
    TYPEDEF = "typedef"
    FUNCTION = "function"


class Qualifiers(enum.Flag):
    """C type qualifiers."""

    NONE = 0
    CONST = 1
    VOLATILE = 2
    RESTRICT = 4


class TypeTable(Protocol):
    """Where lazily referenced types come from (a BTF blob, or one fixed type)."""

    def type_by_id(self, type_id: int) -> Type:
        """Return the type with this id or raise TypeLookupError/CorruptDumpError."""
        ...


class _Fixed:
    # A table of exactly one type (id 0), for types built in Python (pointer to X, array of X).
    # slots: a class with behaviour, not a record (so no dataclass); the slots fix its attributes
    __slots__ = ("_type",)

    def __init__(self, target: Type) -> None:
        self._type = target

    def type_by_id(self, type_id: int) -> Type:
        return self._type


@dataclass(frozen=True, slots=True)
class Member:
    """A struct/union member: ``name`` (None when anonymous), bit offset from the start of the
    enclosing type, ``bit_field_size`` (0 unless a bitfield)."""

    name: str | None
    bit_offset: int
    bit_field_size: int
    type_id: int
    table: TypeTable = field(compare=False, repr=False)

    @property
    def type(self) -> Type:
        """The member's type."""
        return self.table.type_by_id(self.type_id)

    @property
    def offset(self) -> int:
        """Byte offset (rounded down for bitfields)."""
        return self.bit_offset // 8


@dataclass(frozen=True, slots=True)
class Enumerator:
    """An enum constant."""

    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Parameter:
    """A function parameter (``name`` may be None)."""

    name: str | None
    type_id: int
    table: TypeTable = field(compare=False, repr=False)

    @property
    def type(self) -> Type:
        """The parameter's type."""
        return self.table.type_by_id(self.type_id)


@dataclass(frozen=True, slots=True, eq=False)
class Type:
    """A C type. Equality is identity: a table returns one object per id.

    ``name`` is the name of an int, float or typedef; ``tag`` the tag of a struct, union or enum
    (None when anonymous). ``size`` is None for void, functions and incomplete types. ``ref`` is the
    id of the referenced type (pointer target, array element, typedef target, return type,
    enum compatible type) in ``table``.
    """

    kind: TypeKind
    name: str | None = None
    tag: str | None = None
    size: int | None = None
    qualifiers: Qualifiers = Qualifiers.NONE
    is_signed: bool = False
    is_char: bool = False
    ref: int | None = None
    length: int | None = None
    members: tuple[Member, ...] | None = None
    enumerators: tuple[Enumerator, ...] | None = None
    parameters: tuple[Parameter, ...] = ()
    is_variadic: bool = False
    type_id: int | None = None
    table: TypeTable | None = field(default=None, repr=False)

    @property
    def type(self) -> Type:
        """The referenced type (pointee, element, typedef target, return or compatible type)."""
        if self.ref is None or self.table is None:
            raise TypeError(f"{self.type_name()} refers to no other type")
        return self.table.type_by_id(self.ref)

    def qualified(self, qualifiers: Qualifiers) -> Type:
        """Return this type with ``qualifiers`` added."""
        if qualifiers in self.qualifiers:
            return self
        return replace(self, qualifiers=self.qualifiers | qualifiers)

    def unqualified(self) -> Type:
        """Return this type without qualifiers."""
        return self if not self.qualifiers else replace(self, qualifiers=Qualifiers.NONE)

    def strip_typedefs(self) -> Type:
        """Follow typedefs to the underlying type (qualifiers of the typedefs are kept)."""
        if self.kind is not TypeKind.TYPEDEF:
            return self
        t, quals = self, self.qualifiers
        for _ in range(_MAX_DEPTH):
            if t.kind is not TypeKind.TYPEDEF:
                return t.qualified(quals) if quals else t
            t = t.type
            quals |= t.qualifiers
        raise CorruptDumpError(f"typedef chain of {self.type_name()} is too deep")

    def is_complete(self) -> bool:
        """False for void, incomplete structs/unions/enums and arrays without a length."""
        t, _ = self._element_or_none()
        if t is None:
            return False
        return t.kind is not TypeKind.VOID and (t.kind is TypeKind.FUNCTION or t.size is not None)

    def sizeof(self) -> int:
        """``sizeof(type)``; TypeError for void, functions and incomplete types (arrays nested at
        most 64 deep: a deeper or cyclic nesting, from corrupt debug info, is CorruptDumpError)."""
        t, count = self._element_or_none()
        if t is None or t.size is None or t.kind in (TypeKind.VOID, TypeKind.FUNCTION):
            raise TypeError(f"cannot get the size of incomplete type {self.type_name()}")
        return count * t.size

    def _element_or_none(self) -> tuple[Type | None, int]:
        # The innermost element type of nested arrays and how many of it they hold (None for an
        # array without a length), walked in a loop bounded by _MAX_DEPTH, not by the debug info.
        t, count = self.strip_typedefs(), 1
        for _ in range(_MAX_DEPTH):
            if t.kind is not TypeKind.ARRAY:
                return t, count
            if t.length is None:
                return None, count
            count *= t.length
            t = t.type.strip_typedefs()
        raise CorruptDumpError(f"arrays in {self.type_name()} are nested too deep")

    def has_member(self, name: str) -> bool:
        """True if the struct/union (or a nested anonymous one) has a member ``name``."""
        try:
            self.member(name)
        except TypeLookupError:
            return False
        return True

    def member(self, name: str) -> tuple[Member, int]:
        """Find member ``name``, looking inside anonymous members; return it with its bit offset
        from the start of this type. TypeLookupError if there is none."""
        t = self.strip_typedefs()
        if t.members is None:
            raise TypeError(f"{self.type_name()} is not a structure or union")
        found = _find_member(t, name, 0, 0)
        if found is None:
            raise TypeLookupError(f"{self.type_name()} has no member {name!r}")
        return found

    def bit_offset_of(self, path: str) -> int:
        """Bit offset of ``path`` (``"a.b.c"``, ``"a[3].b"``) from the start of this type."""
        return self.walk_path(path)[0]

    def walk_path(self, path: str) -> tuple[int, Type, int]:
        """``(bit offset, type, bit-field size)`` of the member or element ``path`` names (``"a.b"``,
        ``"a[3].b"``); the bit-field size is 0 unless the last step is a bit-field member."""
        t, total, field_bits = self, 0, 0
        for part in path.replace("[", ".[").split("."):
            if not part:
                continue
            if part.startswith("["):
                elem = t.strip_typedefs()
                if elem.kind is not TypeKind.ARRAY:
                    raise TypeError(f"{t.type_name()} is not an array")
                t, field_bits = elem.type, 0
                total += int(part.strip("[]"), 0) * t.sizeof() * 8
                continue
            member, bits = t.member(part)
            t, total, field_bits = member.type, total + bits, member.bit_field_size
        return total, t, field_bits

    def iter_members(self) -> Iterator[tuple[Member, int]]:
        """Named members with their bit offsets, anonymous members flattened."""
        t = self.strip_typedefs()
        if t.members is None:
            raise TypeError(f"{self.type_name()} is not a structure or union")
        yield from _flatten(t, 0, 0)

    def type_name(self) -> str:
        """The C spelling: ``struct task_struct *``, ``char [16]``, ``int (*)(void *)``."""
        return _declaration(self, "")

    def declaration(self, name: str) -> str:
        """The C declaration of ``name`` with this type: ``char comm[16]``, ``int f(void *)``."""
        return _declaration(self, name)

    def __repr__(self) -> str:
        return f"Type({self.type_name()!r})"


def _find_member(t: Type, name: str, base: int, depth: int) -> tuple[Member, int] | None:
    if depth > _MAX_DEPTH or t.members is None:
        return None
    for m in t.members:
        if m.name == name:
            return m, base + m.bit_offset
    for m in t.members:
        if m.name is None:
            found = _find_member(m.type.strip_typedefs(), name, base + m.bit_offset, depth + 1)
            if found is not None:
                return found
    return None


def _flatten(t: Type, base: int, depth: int) -> Iterator[tuple[Member, int]]:
    if depth > _MAX_DEPTH or t.members is None:
        return
    for m in t.members:
        inner = m.type.strip_typedefs() if m.name is None else None
        if inner is not None and inner.members is not None:
            yield from _flatten(inner, base + m.bit_offset, depth + 1)
        else:
            yield m, base + m.bit_offset


def _quals(q: Qualifiers) -> str:
    words = [w for flag, w in ((Qualifiers.CONST, "const"), (Qualifiers.VOLATILE, "volatile"),
                               (Qualifiers.RESTRICT, "restrict")) if flag in q]
    return " ".join(words)


def _base_name(t: Type) -> str:
    if t.kind in (TypeKind.STRUCT, TypeKind.UNION, TypeKind.ENUM):
        return f"{t.kind.value} {t.tag or '<anonymous>'}"
    if t.kind is TypeKind.VOID:
        return "void"
    return t.name or "<anonymous>"


def _declaration(t: Type, inner: str, depth: int = 0) -> str:
    # Classic C declarator construction: wrap the declarator outwards from the name.
    if depth > _MAX_DEPTH:
        return "..." + inner
    if t.kind is TypeKind.POINTER:
        q = _quals(t.qualifiers)
        return _declaration(t.type, "*" + (f" {q} " if q else "") + inner, depth + 1)
    if t.kind is TypeKind.ARRAY:
        n = "" if t.length is None else str(t.length)
        return _declaration(t.type, _paren(inner) + f"[{n}]", depth + 1)
    if t.kind is TypeKind.FUNCTION:
        params = ", ".join(_declaration(p.type, "", depth + 1) for p in t.parameters)
        if t.is_variadic:
            params = f"{params}, ..." if params else "..."
        return _declaration(t.type, _paren(inner) + f"({params or 'void'})", depth + 1)
    q = _quals(t.qualifiers)
    base = f"{q} {_base_name(t)}" if q else _base_name(t)
    return f"{base} {inner}" if inner else base


def _paren(inner: str) -> str:
    return f"({inner})" if inner.startswith("*") else inner


def void_type() -> Type:
    """The ``void`` type."""
    return Type(TypeKind.VOID)


def int_type(name: str, size: int, is_signed: bool) -> Type:
    """An integer type not taken from debug info (for literals)."""
    return Type(TypeKind.INT, name=name, size=size, is_signed=is_signed)


def pointer_type(target: Type, size: int = 8) -> Type:
    """A pointer to ``target``."""
    return Type(TypeKind.POINTER, size=size, ref=0, table=_Fixed(target))


def array_type(element: Type, length: int | None) -> Type:
    """An array of ``length`` ``element``\\ s (None: incomplete)."""
    size = None if length is None or not element.is_complete() else length * element.sizeof()
    return Type(TypeKind.ARRAY, size=size, ref=0, length=length, table=_Fixed(element))


def function_type(return_type: Type, parameters: tuple[Type, ...], is_variadic: bool = False) -> Type:
    """A function type."""
    table = _Fixed(return_type)
    params = tuple(Parameter(None, 0, _Fixed(p)) for p in parameters)
    return Type(TypeKind.FUNCTION, ref=0, parameters=params, is_variadic=is_variadic, table=table)
