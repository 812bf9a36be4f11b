"""
kcrash.analysis.expressions
===========================

What ``kcrash p`` and ``kcrash whatis`` answer, as data (the CLI prints it). :func:`print_expression`
evaluates a C expression (:mod:`kcrash.types.cexpr`) the way crash's ``p`` does: a per-CPU variable
alone gives its per-CPU offset and the address of every possible CPU's instance
(:class:`PerCpuAddresses`), ``NAME:CPUSPEC`` (``runqueues:1``, ``runqueues:0,2-3``,
``runqueues:a``) the instances themselves (:class:`PerCpuValue`), anything else its value.
:func:`whatis` says what a name is, like crash's ``whatis``: a type's definition, a variable's or a
function's declaration, a member's declaration (``task_struct.pid``), or an expression's type.
:func:`expression_address` is the address an expression designates (``struct TYPE EXPR``). Which
CPUs exist comes from :mod:`kcrash.helpers.linux.cpumask`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kcrash.errors import ExpressionError, KcrashError, SymbolNotFoundError, TypeLookupError
from kcrash.helpers.linux.cpumask import for_each_possible_cpu
from kcrash.types.cexpr import SymbolObject, evaluate, on_cpu, require_usable, symbol_object, untyped_hint
from kcrash.types.declarations import parse_declarations
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object
from kcrash.types.percpu import per_cpu_offset
from kcrash.types.program import Program

__all__ = ["PerCpuAddresses", "PerCpuValue", "WhatIs", "declare_globals", "expression_address", "parse_cpu_spec",
           "pointer_label", "print_expression", "resolve_type", "whatis"]

_CPU_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<spec>a|all|[\d\s,\-]+)\s*$")
_MAX_CPU = 1 << 16


@dataclass(frozen=True, slots=True)
class PerCpuAddresses:
    """A per-CPU variable named alone: its declaration, per-CPU offset and ``(cpu, address)`` of
    each possible CPU's instance (crash's ``PER-CPU ADDRESSES``)."""

    name: str
    declaration: str
    offset: int
    addresses: tuple[tuple[int, int], ...]
    typed: bool = True


@dataclass(frozen=True, slots=True, eq=False)
class PerCpuValue:
    """``per_cpu(name, cpu)``: one CPU's instance of a per-CPU variable."""

    name: str
    cpu: int
    value: Object


@dataclass(frozen=True, slots=True)
class WhatIs:
    """What :func:`whatis` found. ``kind``: ``type``, ``variable``, ``function``, ``member``,
    ``symbol`` (a global of unknown type) or ``expression``; ``declaration``: the one-line C of it;
    ``type``: the type (a ``type`` answer shows its definition); ``offset``: a member's byte offset."""

    kind: str
    name: str
    declaration: str
    type: Type
    offset: int | None = None


def parse_cpu_spec(spec: str, possible: list[int]) -> list[int]:
    """crash's cpuspec: ``a``/``all`` (every possible CPU), or a list of CPUs and ranges
    (``0,2-3``); each must be possible."""
    spec = spec.strip()
    if spec in ("a", "all"):
        return possible
    cpus: list[int] = []
    for part in spec.split(","):
        bounds = [p.strip() for p in part.split("-")]
        if not 1 <= len(bounds) <= 2 or not all(b.isdigit() for b in bounds):
            raise ExpressionError(f"bad CPU list {spec!r} (examples: 1, 0,2-3, a)")
        low, high = int(bounds[0]), int(bounds[-1])
        if high < low or high - low > _MAX_CPU:
            raise ExpressionError(f"bad CPU range {part.strip()!r}")
        cpus.extend(range(low, high + 1))
    missing = sorted(set(cpus) - set(possible))
    if missing:
        raise ExpressionError(f"CPU {missing[0]} is not a possible CPU (possible: {_ranges(possible)})")
    return cpus


def _ranges(cpus: list[int]) -> str:
    return ",".join(str(c) for c in cpus) if len(cpus) < 8 else f"{cpus[0]}-{cpus[-1]}"


def declare_globals(prog: Program, declarations: str) -> None:
    """Give globals their types from C declarations (``struct foo *bar[20]; u64 baz;``)."""
    try:
        parsed = parse_declarations(declarations)
    except TypeLookupError as exc:
        raise ExpressionError(f"bad declaration {declarations!r}: {exc}") from None
    for name, spec in parsed.items():
        prog.declare(name, spec.resolve(prog._lookup))


def print_expression(prog: Program, text: str) -> Object | PerCpuAddresses | tuple[PerCpuValue, ...]:
    """What crash's ``p`` shows for ``text`` (see the module docstring)."""
    m = _CPU_SPEC.match(text)
    if m is not None:
        return _per_cpu_values(prog, m.group("name"), m.group("spec"))
    result = evaluate(prog, text, usable=False)
    if isinstance(result, SymbolObject) and result.percpu_:
        return _per_cpu_addresses(prog, result)
    return evaluate(prog, text)  # raises what cannot be shown, as evaluate says it


def expression_address(prog: Program, text: str) -> int:
    """The address C expression ``text`` designates (``struct TYPE EXPR``): a pointer's or an
    integer's value, else the object's own address; a global of unknown type gives its address."""
    obj = evaluate(prog, text, usable=False)
    if not (isinstance(obj, SymbolObject) and not obj.typed_ and not obj.percpu_):
        obj = require_usable(obj)
    if obj.type_.strip_typedefs().kind in (TypeKind.POINTER, TypeKind.INT):
        return int(obj) & (1 << 64) - 1
    if obj.address_ is None:
        raise ExpressionError(f"{text!r} is a value with no address")
    return obj.address_


def pointer_label(prog: Program, obj: Object) -> str:
    """``<sym+off>`` for a pointer into the kernel image or a module (crash's ``p`` shows a function
    pointer so), else the empty string."""
    if obj.type_.strip_typedefs().kind is not TypeKind.POINTER:
        return ""
    found = prog.symbolize_or_none(int(obj) & (1 << 64) - 1)
    if found is None:
        return ""
    symbol, offset = found
    return f"<{symbol.name}+{offset}>" if offset else f"<{symbol.name}>"


def _per_cpu_values(prog: Program, name: str, spec: str) -> tuple[PerCpuValue, ...]:
    try:
        var = symbol_object(prog, name)
    except SymbolNotFoundError:
        raise ExpressionError(f"no symbol {name!r}") from None
    if not var.percpu_:
        raise ExpressionError(f"{name} is not a per-CPU variable: {name}:{spec.strip()} means nothing")
    cpus = parse_cpu_spec(spec, list(for_each_possible_cpu(prog)))
    return tuple(PerCpuValue(name, cpu, on_cpu(var, cpu)) for cpu in cpus)


def _per_cpu_addresses(prog: Program, var: SymbolObject) -> PerCpuAddresses:
    offset = var.address_ or 0
    rows = tuple((cpu, (offset + per_cpu_offset(prog, cpu)) & (1 << 64) - 1) for cpu in for_each_possible_cpu(prog))
    if var.typed_:
        return PerCpuAddresses(var.name_, var.type_.declaration(var.name_), offset, rows)
    hint = f"type unknown: cast it, *(TYPE *)&{var.name_}:CPU"
    return PerCpuAddresses(var.name_, f"{var.name_} ({hint})", offset, rows, typed=False)


def resolve_type(prog: Program, name: str) -> Type:
    """A type by name; a bare tag (``task_struct``) is tried as a struct, then a union, then as written."""
    bare = name.isidentifier()
    for candidate in ([f"struct {name}", f"union {name}"] if bare else []) + [name]:
        found = prog.find_type_or_none(candidate)
        if found is not None:
            return found
    raise TypeLookupError(f"no type {name!r}")


def whatis(prog: Program, text: str) -> WhatIs:
    """What ``text`` is: a type, ``TYPE.member[.member]``, a global or function, or an expression."""
    text = text.strip()
    head, _, path = text.partition(".")
    if path and re.fullmatch(r"[\w\s]+", head) and re.fullmatch(r"[\w.\[\]]+", path.replace(" ", "")):
        found = _member_or_none(prog, head.strip(), path.replace(" ", ""))
        if found is not None:
            return found
    t = _type_or_none(prog, text)
    if t is not None:
        return WhatIs("type", text, t.type_name(), t)
    if text.isidentifier() and text in prog:
        var = symbol_object(prog, text)
        if not var.typed_:
            return WhatIs("symbol", text, f"{text} at {var.address_:#x}: type unknown (BTF has variable entries "
                          f"for per-CPU variables only); {untyped_hint(text)}", var.type_)
        if var.type_.strip_typedefs().kind is TypeKind.FUNCTION:
            return WhatIs("function", text, _function_declaration(var.type_.strip_typedefs(), text), var.type_)
        return WhatIs("variable", text, var.type_.declaration(text), var.type_)
    obj = evaluate(prog, text)
    return WhatIs("expression", text, obj.type_.type_name(), obj.type_)


def _function_declaration(t: Type, name: str) -> str:
    # With the parameter names BTF keeps: "int strcmp(const char *cs, const char *ct)".
    params = [p.type.declaration(p.name or "") for p in t.parameters] + (["..."] if t.is_variadic else [])
    return t.type.declaration(f"{name}({', '.join(params) or 'void'})")


def _type_or_none(prog: Program, text: str) -> Type | None:
    try:
        return resolve_type(prog, text)
    except KcrashError:
        return None


def _member_or_none(prog: Program, type_name: str, path: str) -> WhatIs | None:
    t = _type_or_none(prog, type_name)
    if t is None:
        return None
    try:
        bits, member_type, _ = t.strip_typedefs().walk_path(path)
    except (KcrashError, TypeError) as exc:
        raise ExpressionError(f"{t.type_name()} has no member {path!r}: {exc}") from None
    last = re.split(r"[.\[]", path)[-1] if not path.endswith("]") else path
    return WhatIs("member", f"{type_name}.{path}", member_type.declaration(last), member_type, bits // 8)
