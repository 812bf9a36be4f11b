"""
kcrash.analysis.drgn_format
===========================

Objects as drgn prints them (``str(obj)``, ``obj.format_()``), for ``kcrash shell``: ``(type)value``
with type names spelled as drgn spells them (``unsigned long``, not BTF's ``long unsigned int``);
struct members with their types (``.next = (struct list_head *)0xffff...``); a pointer at the top
level dereferenced (``*(struct x *)0xffff... = {...}``); pointers into a symbol shown as
``sym+0x10 = 0xffff...``; arrays on one line without their trailing zero elements; char arrays
as strings. The layout follows drgn's documented ``Object.format_`` options (``dereference``,
``symbolize``, ``type_name``, ``member_type_names``, ``element_type_names``); the others are
accepted and ignored. Symbols come from kallsyms, so an address past the end of an ELF symbol but
before the next kallsyms name is symbolized where drgn (ELF sizes) would not; aliases at one
address may be named differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kcrash.errors import ExpressionError, FaultError, TypeLookupError
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["drgn_format", "drgn_type_name"]

# BTF/DWARF spellings of C's integer types, as drgn canonicalizes them (longest first)
_CANONICAL = [(re.compile(rf"\b{old}\b"), new) for old, new in (
    ("long long unsigned int", "unsigned long long"), ("long long int", "long long"),
    ("long unsigned int", "unsigned long"), ("long int", "long"),
    ("short unsigned int", "unsigned short"), ("short int", "short"))]
# BTF gives a flexible array member a length of 0; DWARF (and drgn) leave the length out
_FLEXIBLE = re.compile(r"\[0\]")
_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
            0x22: '\\"', 0x5C: "\\\\"}
_MAX_DEPTH = 16
_MAX_ELEMENTS = 4096
_SCALARS = (TypeKind.INT, TypeKind.BOOL, TypeKind.ENUM, TypeKind.FLOAT, TypeKind.POINTER)


@dataclass(frozen=True, slots=True)
class _Options:
    dereference: bool = True
    symbolize: bool = True
    type_name: bool = True
    member_type_names: bool = True
    element_type_names: bool = False


def drgn_type_name(t: Type) -> str:
    """``t``'s C name as drgn spells it (``unsigned long`` for BTF's ``long unsigned int``)."""
    name = t.type_name()
    for pattern, new in _CANONICAL:
        name = pattern.sub(new, name)
    return _FLEXIBLE.sub("[]", name)


def drgn_format(obj: Object, **options: object) -> str:
    """``obj`` as drgn's ``Object.format_(**options)`` prints it.

    >>> drgn_format(prog["init_task"].tasks).splitlines()[1]  # doctest: +SKIP
    '\t.next = (struct list_head *)0xffff8880042588b0,'
    """
    known = {k: bool(v) for k, v in options.items() if k in _Options.__slots__}
    opts = _Options(**known)
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER and opts.dereference:
        deref = _dereferenced_or_none(obj, t, opts)
        if deref is not None:
            return deref
    text = _value(obj, 0, opts, top=True)
    return f"({drgn_type_name(obj.type_)}){text}" if opts.type_name else text


def _dereferenced_or_none(obj: Object, t: Type, opts: _Options) -> str | None:
    # *(type *)ADDR = value, for a pointer to a complete object that can be read (NULL too: drgn
    # tries; on x86-64 it reads the real-mode interrupt table there, kcrash finds nothing)
    target = t.type.strip_typedefs()
    address = int(obj) & 0xFFFFFFFFFFFFFFFF
    if target.kind in (TypeKind.VOID, TypeKind.FUNCTION) or not target.is_complete():
        return None
    try:
        value = _value(obj[0], 0, opts, top=True)
    except (FaultError, ExpressionError, TypeLookupError):
        return None
    where = _symbolized(obj.prog_, address) if opts.symbolize else None
    shown = f"({where} = {address:#x})" if where else f"{address:#x}"
    return f"*({drgn_type_name(obj.type_)}){shown} = {value}"


def _symbolized(prog: Program, address: int) -> str | None:
    found = prog.symbolize_or_none(address)
    if found is None or found[1] >= found[0].size:
        return None
    return f"{found[0].name}+{found[1]:#x}"


def _value(obj: Object, indent: int, opts: _Options, *, top: bool = False) -> str:
    t = obj.type_.strip_typedefs()
    if t.kind is TypeKind.POINTER:
        return _pointer(obj, t, opts)
    if t.kind is TypeKind.ENUM:
        value = int(obj)
        names = [e.name for e in t.enumerators or () if e.value == value]
        return names[0] if names else str(value)
    if t.kind is TypeKind.BOOL:
        return str(int(obj))  # drgn prints (bool)0 and (bool)1
    if t.kind in (TypeKind.INT, TypeKind.FLOAT):
        return str(obj.value_())
    if t.kind is TypeKind.ARRAY:
        return _array(obj, t, indent, opts)
    if t.members is not None:
        return _compound(obj.read_() if top else obj, t, indent, opts)
    return f"<{t.kind.value}>"


def _is_char(t: Type) -> bool:
    # drgn prints arrays of (and pointers to) plain char as strings; u8/unsigned char are numbers
    return t.kind is TypeKind.INT and t.name == "char"


def _pointer(obj: Object, t: Type, opts: _Options) -> str:
    address = int(obj) & 0xFFFFFFFFFFFFFFFF
    where = _symbolized(obj.prog_, address) if opts.symbolize and address else None
    text = f"{where} = {address:#x}" if where else f"{address:#x}"
    if _is_char(t.type.strip_typedefs()):
        try:
            return f"{text} = {_quote(obj.string_())}"
        except FaultError:
            return text
    return text


def _array(obj: Object, t: Type, indent: int, opts: _Options) -> str:
    elem = t.type.strip_typedefs()
    if _is_char(elem):
        return _quote(obj.string_())
    data = obj.read_()
    elements = list(zip(range(_MAX_ELEMENTS), data, strict=False))
    # drgn leaves out the trailing elements that are zero (implicit_elements=False)
    while elements and not any(elements[-1][1].to_bytes_()):
        elements.pop()
    if not elements:
        return "{}"
    if elem.kind in _SCALARS:
        items = [_element(e, indent, opts) for _, e in elements]
        return "{ " + ", ".join(items) + " }"
    pad = "\t" * (indent + 1)
    lines = [f"{pad}{_element(e, indent + 1, opts)}," for _, e in elements]
    return "{\n" + "\n".join(lines) + "\n" + "\t" * indent + "}"


def _element(obj: Object, indent: int, opts: _Options) -> str:
    text = _value(obj, indent, opts)
    return f"({drgn_type_name(obj.type_)}){text}" if opts.element_type_names else text


def _compound(obj: Object, t: Type, indent: int, opts: _Options) -> str:
    if indent >= _MAX_DEPTH:
        return "{ ... }"
    pad = "\t" * (indent + 1)
    lines = []
    # anonymous structs and unions are flattened into their parent, as drgn prints them
    for member, bits in t.iter_members():
        sub = obj._at_bits(member.type, bits, member.bit_field_size)
        text = _value_or_fault(sub, indent + 1, opts)
        if opts.member_type_names:
            text = f"({drgn_type_name(member.type)}){text}"
        lines.append(f"{pad}.{member.name} = {text},")
    if not lines:
        return "{}"
    return "{\n" + "\n".join(lines) + "\n" + "\t" * indent + "}"


def _value_or_fault(obj: Object, indent: int, opts: _Options) -> str:
    try:
        return _value(obj, indent, opts)
    except FaultError as exc:
        return f"<fault at {exc.address:#x}>"


def _quote(data: bytes) -> str:
    out = []
    for b in data:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'
