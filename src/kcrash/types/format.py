"""
kcrash.types.format
===================

Text and JSON forms of types and objects, for commands and reports: :func:`format_object` (C-like,
in the style of drgn's and crash's ``p``), :func:`format_layout` (a struct's members with byte
offsets, like crash's ``struct -o``), :func:`object_to_json` and :func:`layout_to_json`. Strings
only; nothing is printed here. Unreadable memory inside a structure is shown as ``<fault>``
rather than failing the whole object.
"""

from __future__ import annotations

from typing import Any

from kcrash.errors import FaultError
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object

__all__ = ["CInt", "format_layout", "format_object", "layout_to_json", "object_to_json"]

_MAX_ELEMENTS = 64
_MAX_DEPTH = 8


class CInt(int):
    """An integer of a C value of 32 bits or less (``int``, ``u32``, ``char``, an enum), as
    :func:`object_to_json` returns it: the C type already decided that it stays a JSON integer, so
    :func:`kcrash.report.json.json_ready` leaves it one whatever the member is called (``value``,
    ``flags``, ``start`` …).

    >>> CInt(7) + 1
    8
    """

    __slots__ = ()


def format_object(obj: Object, *, max_elements: int = _MAX_ELEMENTS, depth: int = 0, radix: int = 10) -> str:
    """``(type)value`` with structs as ``{ .member = value, ... }``, char arrays as strings,
    integers in ``radix`` 10 or 16 (crash's ``p -x``: two's complement in the type's width).
    An unreadable object raises FaultError; unreadable parts inside it show as ``<fault at ...>``."""
    text = _value_text_unsafe(obj, depth, max_elements, radix)
    return f"({obj.type_.type_name()}){text}" if depth == 0 else text


def _value_text(obj: Object, indent: int, max_elements: int, radix: int) -> str:
    try:
        return _value_text_unsafe(obj, indent, max_elements, radix)
    except FaultError as exc:
        return f"<fault at {exc.address:#x}>"


def _int_text(obj: Object, t: Type, radix: int) -> str:
    value = obj.value_()
    if radix != 16 or not isinstance(value, int):
        return str(value)
    bits = obj.bit_field_size_ or t.sizeof() * 8
    return f"{value & ((1 << bits) - 1):#x}"


def _value_text_unsafe(obj: Object, indent: int, max_elements: int, radix: int = 10) -> str:
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER:
        return f"{int(obj):#x}"
    if t.kind is TypeKind.ENUM:
        value = int(obj)
        names = [e.name for e in t.enumerators or () if e.value == value]
        return names[0] if names else str(value)
    if t.kind is TypeKind.INT:
        return _int_text(obj, t, radix)
    if t.kind in (TypeKind.BOOL, TypeKind.FLOAT):
        return str(obj.value_())
    if t.kind is TypeKind.ARRAY:
        return _array_text(obj, t, indent, max_elements, radix)
    if t.members is not None and indent < _MAX_DEPTH:
        return _struct_text(obj.read_(), t, indent, max_elements, radix)
    return "{ ... }" if t.members is not None else f"<{t.kind.value}>"


def _array_text(obj: Object, t: Type, indent: int, max_elements: int, radix: int) -> str:
    elem = t.type.strip_typedefs()
    if elem.is_char and elem.kind is TypeKind.INT:
        return _quote(obj.string_())
    items = [_value_text(e, indent + 1, max_elements, radix) for _, e in zip(range(max_elements), obj, strict=False)]
    more = ", ..." if (t.length or 0) > max_elements else ""
    return "{ " + ", ".join(items) + more + " }" if items else "{}"


def _struct_text(obj: Object, t: Type, indent: int, max_elements: int, radix: int) -> str:
    pad = "\t" * (indent + 1)
    lines = []
    for member, _ in t.iter_members():
        value = _value_text(obj.member_(member.name), indent + 1, max_elements, radix) if member.name else "?"
        lines.append(f"{pad}.{member.name} = {value},")
    return "{\n" + "\n".join(lines) + "\n" + "\t" * indent + "}"


def _quote(data: bytes) -> str:
    out = []
    for b in data:
        ch = chr(b)
        if ch in "\"\\":
            out.append("\\" + ch)
        elif 0x20 <= b < 0x7F:
            out.append(ch)
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


def object_to_json(obj: Object, *, max_elements: int = 4096, depth: int = 0) -> Any:
    """A JSON-able value: ints, strings for char arrays, lists, dicts by member name. Pointers and
    integers wider than 32 bits are ``"0x…"`` strings (JavaScript reads JSON numbers as doubles:
    the README's "JSON output" rule); the other integers are :class:`CInt`, which ``json_ready``
    keeps integers whatever their member's name. An unreadable object raises FaultError; unreadable parts
    inside it are ``{"fault": "0x…"}``."""
    if depth == 0:
        return _json_unsafe(obj, max_elements, depth)
    try:
        return _json_unsafe(obj, max_elements, depth)
    except FaultError as exc:
        return {"fault": hex(exc.address)}


def _json_unsafe(obj: Object, max_elements: int, depth: int) -> Any:
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER or (t.kind in (TypeKind.INT, TypeKind.ENUM) and t.sizeof() > 4):
        number = obj.value_()
        assert isinstance(number, int)
        return hex(number)
    if t.kind in (TypeKind.INT, TypeKind.ENUM):
        number = obj.value_()
        return CInt(number) if isinstance(number, int) and not isinstance(number, bool) else number
    if t.kind in (TypeKind.BOOL, TypeKind.FLOAT):
        return obj.value_()
    if t.kind is TypeKind.ARRAY:
        elem = t.type.strip_typedefs()
        if elem.is_char and elem.kind is TypeKind.INT:
            return obj.string_().decode("utf-8", "backslashreplace")
        return [object_to_json(e, max_elements=max_elements, depth=depth + 1)
                for _, e in zip(range(max_elements), obj, strict=False)]
    if t.members is not None and depth < _MAX_DEPTH:
        value = obj.read_()
        return {m.name: object_to_json(value.member_(m.name), max_elements=max_elements, depth=depth + 1)
                for m, _ in t.iter_members() if m.name}
    return None


def _member_rows(t: Type, base: int, indent: int) -> list[tuple[int, int, str, str]]:
    # (bit offset, bit size or 0, type name, member name) with anonymous members expanded
    rows: list[tuple[int, int, str, str]] = []
    for m in t.members or ():
        inner = m.type.strip_typedefs()
        if m.name is None and inner.members is not None and indent < _MAX_DEPTH:
            rows.append((base + m.bit_offset, 0, f"{inner.kind.value} {{", ""))
            rows.extend(_member_rows(inner, base + m.bit_offset, indent + 1))
            rows.append((-1, 0, "};", ""))
        else:
            rows.append((base + m.bit_offset, m.bit_field_size, m.type.type_name(), m.name or ""))
    return rows


def format_layout(t: Type) -> str:
    """``struct -o``-style layout: ``[offset] type name;`` lines, then ``SIZE: n``."""
    u = t.strip_typedefs()
    if u.members is None:
        return f"{t.type_name()}\nSIZE: {t.sizeof() if t.is_complete() else '?'}"
    lines = [f"{u.type_name()} {{"]
    depth = 1
    for bits, field_bits, type_name, name in _member_rows(u, 0, 0):
        if bits < 0:
            depth -= 1
            lines.append("  " * depth + " " * 9 + type_name)
            continue
        where = f"[{bits // 8}]" if not field_bits else f"[{bits // 8}:{bits % 8}]"
        decl = _declarator(type_name, name) + (f" : {field_bits}" if field_bits else "")
        lines.append(f"{'  ' * depth}{where:>8} {decl}{';' if name else ''}")
        if not name:
            depth += 1
    lines.append("}")
    lines.append(f"SIZE: {u.sizeof() if u.is_complete() else '?'}")
    return "\n".join(lines)


def _declarator(type_name: str, name: str) -> str:
    if not name:
        return type_name
    # Put the member name where C wants it: before array suffixes, inside "(*)".
    if "(*)" in type_name:
        return type_name.replace("(*)", f"(*{name})", 1)
    if type_name.endswith("]"):
        i = type_name.index("[")
        return f"{type_name[:i].rstrip()} {name}{type_name[i:]}"
    return f"{type_name}{'' if type_name.endswith('*') else ' '}{name}"


def layout_to_json(t: Type) -> dict[str, Any]:
    """The layout as ``{"type", "size", "members": [{"name", "type", "offset", "bit_offset",
    "bit_size"}]}`` with anonymous members flattened."""
    u = t.strip_typedefs()
    members = [{"name": m.name, "type": m.type.type_name(), "offset": bits // 8, "bit_offset": bits,
                "bit_size": m.bit_field_size or None,
                "size": m.type.sizeof() if m.type.is_complete() else None}
               for m, bits in (u.iter_members() if u.members is not None else ())]
    return {"type": t.type_name(), "size": t.sizeof() if t.is_complete() else None, "members": members}
