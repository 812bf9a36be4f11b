"""
kcrash.cli.types
================

``kcrash struct DUMP TYPE [ADDR]`` (a type's layout with byte offsets, like crash's ``struct -o``,
or the values of the object at ADDR), ``kcrash p DUMP EXPR`` (evaluate a C expression, per-CPU
variables as crash shows them) and ``kcrash whatis DUMP NAME`` (what a name is). They need nothing
but the dump: symbols from kallsyms, types from the in-memory BTF. Argument parsing and output
only; the work is in :mod:`kcrash.types` and :mod:`kcrash.analysis.expressions`.
"""

from __future__ import annotations

import click

from kcrash.analysis.expressions import (
    PerCpuAddresses,
    PerCpuValue,
    WhatIs,
    declare_globals,
    expression_address,
    pointer_label,
    print_expression,
    resolve_type,
    whatis,
)
from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import AddressArg, DumpOrLive, Number
from kcrash.types.cexpr import SymbolObject, require_usable
from kcrash.types.format import format_layout, format_object, layout_to_json, object_to_json
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["commands"]


def _address(prog: Program, arg: AddressArg) -> int:
    # An address (kcrash.cli.params has the rule), else a C expression (see expression_address).
    if arg.address is not None:
        return arg.address
    return expression_address(prog, arg.text)


@click.command("struct")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("type_name", metavar="TYPE")
@click.argument("address", metavar="ADDR|EXPR", required=False, type=Number("expression"))
@click.option("-x", "radix", flag_value=16, help="Integers in hexadecimal (crash's -x).")
@click.option("-d", "radix", flag_value=10, default=True, help="Integers in decimal (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def struct_command(path: str, type_name: str, address: AddressArg | None, radix: int, as_json: bool) -> None:
    """Show TYPE's layout with member offsets, or the TYPE object at ADDR (0x-prefixed or 8+ hex
    digits) or at the address a C expression gives."""
    with opened_target(path, orc=False) as prog:
        t = resolve_type(prog, type_name)
        if address is None:
            _show_layout(t, as_json)
            return
        obj = Object(prog, t, address=_address(prog, address))
        _show_object(obj, as_json, radix)


def _show_layout(t: Type, as_json: bool) -> None:
    if as_json:
        echo_json(layout_to_json(t))
    else:
        click.echo(format_layout(t))


def _show_object(obj: Object, as_json: bool, radix: int = 10) -> None:
    if as_json:
        echo_json({"type": obj.type_.type_name(), "address": obj.address_, "value": object_to_json(obj)})
    else:
        label = pointer_label(obj.prog_, obj)
        click.echo(format_object(obj, radix=radix) + (f" {label}" if label else ""))


def _show_value(obj: Object, as_json: bool, radix: int) -> None:
    # A function shows as gdb shows one: its type, address and name.
    if obj.type_.strip_typedefs().kind is TypeKind.FUNCTION and obj.address_ is not None:
        name = obj.name_ if isinstance(obj, SymbolObject) else ""
        if as_json:
            echo_json({"type": obj.type_.type_name(), "address": obj.address_, "value": obj.address_})
        else:
            click.echo(f"({obj.type_.type_name()}) {obj.address_:#x} <{name}>")
        return
    _show_object(obj, as_json, radix)


def _show_per_cpu_addresses(found: PerCpuAddresses, as_json: bool) -> None:
    if as_json:
        echo_json({"name": found.name, "declaration": found.declaration, "percpu_offset": found.offset,
                   "cpus": [{"cpu": cpu, "address": address} for cpu, address in found.addresses]})
        return
    click.echo(f"PER-CPU DATA TYPE:\n  {found.declaration}{';' if found.typed else ''}\nPER-CPU ADDRESSES:")
    for cpu, address in found.addresses:
        click.echo(f"  [{cpu}]: {address:x}")


def _show_per_cpu_values(values: tuple[PerCpuValue, ...], as_json: bool, radix: int) -> None:
    objs = [require_usable(v.value) for v in values]
    if as_json:
        echo_json([{"cpu": v.cpu, "type": o.type_.type_name(), "address": o.address_, "value": object_to_json(o)}
                   for v, o in zip(values, objs, strict=True)])
        return
    for v, o in zip(values, objs, strict=True):
        click.echo(f"per_cpu({v.name}, {v.cpu}) = {format_object(o, radix=radix)}")


@click.command("p", short_help="Evaluate a C expression and print its value.",
               context_settings={"ignore_unknown_options": True})
@symbol_file_options
@click.option("--declare", "declarations", metavar="DECL", multiple=True,
              help="Type a global BTF has no type for, as C: 'struct foo *bar[20]' (repeatable).")
@click.option("-x", "radix", flag_value=16, help="Integers in hexadecimal (crash's -x).")
@click.option("-d", "radix", flag_value=10, default=True, help="Integers in decimal (the default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("expression", metavar="EXPR", nargs=-1, required=True)
def print_command(path: str, declarations: tuple[str, ...], expression: tuple[str, ...], radix: int,
                  as_json: bool) -> None:
    """Evaluate a C expression and print its value, like crash's p: globals, enum constants,
    literals, . -> [] * &, casts, sizeof, arithmetic, comparisons, && ||. A per-CPU variable alone
    shows its per-CPU addresses; NAME:CPU, NAME:0,2-3 or NAME:a its instances on those CPUs. A global
    of unknown type (BTF types per-CPU variables only) is read with a cast: (TYPE)NAME or
    *(TYPE *)&NAME, or typed with --declare."""
    text = " ".join(expression)
    with opened_target(path, orc=False) as prog:
        for decl in declarations:
            declare_globals(prog, decl)
        found = print_expression(prog, text)
        if isinstance(found, PerCpuAddresses):
            _show_per_cpu_addresses(found, as_json)
        elif isinstance(found, tuple):
            _show_per_cpu_values(found, as_json, radix)
        else:
            _show_value(found, as_json, radix)


@click.command("whatis", context_settings={"ignore_unknown_options": True})
@symbol_file_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.argument("path", metavar="DUMP", type=DumpOrLive())
@click.argument("what", metavar="NAME|TYPE|TYPE.MEMBER|EXPR", nargs=-1, required=True)
def whatis_command(path: str, what: tuple[str, ...], as_json: bool) -> None:
    """Show a type's definition, a variable's or function's declaration, a member's declaration
    and offset (task_struct.pid), or an expression's type, like crash's whatis."""
    with opened_target(path, orc=False) as prog:
        found = whatis(prog, " ".join(what))
    if as_json:
        data: dict[str, object] = {"kind": found.kind, "name": found.name, "declaration": found.declaration,
                                   "size": found.type.sizeof() if found.type.is_complete() else None}
        if found.offset is not None:
            data["offset"] = found.offset
        if found.kind == "type" and found.type.strip_typedefs().members is not None:
            data["layout"] = layout_to_json(found.type)
        echo_json(data)
        return
    click.echo(_whatis_text(found))


def _whatis_text(found: WhatIs) -> str:
    t = found.type
    if found.kind == "member":
        return f"{found.declaration};  /* offset {found.offset}, size {_size(t)} */"
    if found.kind in ("expression", "symbol"):
        return found.declaration
    if found.kind != "type":
        return f"{found.declaration};"
    inner = t.strip_typedefs()
    lead = f"typedef {inner.declaration(t.name or '')};\n" if t.kind is TypeKind.TYPEDEF else ""
    if inner.members is not None:
        return lead + format_layout(inner)
    if inner.kind is TypeKind.ENUM:
        values = ",\n".join(f"  {e.name} = {e.value}" for e in inner.enumerators or ())
        return f"{lead}{inner.type_name()} {{\n{values}\n}}\nSIZE: {_size(inner)}"
    return f"{lead or inner.type_name() + chr(10)}SIZE: {_size(inner)}"


def _size(t: Type) -> str:
    return str(t.sizeof()) if t.is_complete() else "?"


commands: list[click.Command] = [struct_command, print_command, whatis_command]
