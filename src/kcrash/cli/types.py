"""
kcrash.cli.types
================

``kcrash struct DUMP TYPE [ADDR]`` (a type's layout with byte offsets, like crash's ``struct -o``,
or the values of the object at ADDR) and ``kcrash p DUMP EXPR`` (evaluate a C expression, like
crash's ``p``). Both need nothing but the dump: symbols from kallsyms, types from the in-memory
BTF. Argument parsing and output only; the work is in :mod:`kcrash.types`.
"""

from __future__ import annotations

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import AddressArg, Number
from kcrash.errors import CliError, TypeLookupError
from kcrash.types.cexpr import evaluate
from kcrash.types.format import format_layout, format_object, layout_to_json, object_to_json
from kcrash.types.model import Type, TypeKind
from kcrash.types.object import Object
from kcrash.types.program import Program

__all__ = ["commands"]


def _resolve_type(prog: Program, name: str) -> Type:
    # crash accepts a bare tag ("task_struct"): try it as a struct, a union, then as written.
    bare = name.isidentifier()
    for candidate in ([f"struct {name}", f"union {name}"] if bare else []) + [name]:
        found = prog.find_type_or_none(candidate)
        if found is not None:
            return found
    raise TypeLookupError(f"no type {name!r}")


def _address(prog: Program, arg: AddressArg) -> int:
    # An address (kcrash.cli.params has the rule), else a C expression: a pointer or integer is
    # the address, an object in memory gives its own.
    if arg.address is not None:
        return arg.address
    obj = evaluate(prog, arg.text)
    if obj.type_.strip_typedefs().kind in (TypeKind.POINTER, TypeKind.INT):
        return int(obj)
    if obj.address_ is None:
        raise CliError(f"{arg.text!r} has no address", 2)
    return obj.address_


@click.command("struct")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=click.Path(exists=True, dir_okay=False))
@click.argument("type_name", metavar="TYPE")
@click.argument("address", metavar="ADDR|EXPR", required=False, type=Number("expression"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def struct_command(path: str, type_name: str, address: AddressArg | None, as_json: bool) -> None:
    """Show TYPE's layout with member offsets, or the TYPE object at ADDR (0x-prefixed or 8+ hex
    digits) or at the address a C expression gives."""
    with opened_target(path, orc=False) as prog:
        t = _resolve_type(prog, type_name)
        if address is None:
            _show_layout(t, as_json)
            return
        obj = Object(prog, t, address=_address(prog, address))
        _show_object(obj, as_json)


def _show_layout(t: Type, as_json: bool) -> None:
    if as_json:
        echo_json(layout_to_json(t))
    else:
        click.echo(format_layout(t))


def _show_object(obj: Object, as_json: bool) -> None:
    if as_json:
        echo_json({"type": obj.type_.type_name(), "address": obj.address_, "value": object_to_json(obj)})
    else:
        click.echo(format_object(obj))


@click.command("p", short_help="Evaluate a C expression and print its value.")
@symbol_file_options
@click.argument("path", metavar="DUMP", type=click.Path(exists=True, dir_okay=False))
@click.argument("expression", metavar="EXPR")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def print_command(path: str, expression: str, as_json: bool) -> None:
    """Evaluate a C expression (globals, . -> [] * & casts) and print its value."""
    with opened_target(path, orc=False) as prog:
        _show_object(evaluate(prog, expression), as_json)


commands: list[click.Command] = [struct_command, print_command]
