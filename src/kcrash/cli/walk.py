"""
kcrash.cli.walk
===============

``kcrash list`` and ``kcrash tree``, crash's commands of the same names. ``list`` follows a
``list_head`` (or with ``--hlist`` an ``hlist_node``) chain from START, which is the first entry
(printed; its link is at START + offset) or with ``-H`` the list head itself (not printed).
``tree -t rbtree|xarray|radix|maple`` walks the tree whose root is at ROOT: rbtree entries in
order, xarray/radix index -> entry (value entries as values), maple index range -> entry. The
link's offset inside the entry comes from ``-o OFFSET`` or ``-l STRUCT.MEMBER``;
``-s STRUCT[.MEMBER,...]`` prints each entry as that struct (or those members). Addresses may be
numbers, ``SYMBOL[+OFFSET]`` or C expressions. A cycle, a NULL or an unreadable link ends the walk
with a note (never a hang). Argument parsing and output only; the walks are
:mod:`kcrash.helpers.linux.list`, ``rbtree``, ``xarray`` and ``mapletree``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.params import AddressArg, DumpOrLive, Number
from kcrash.errors import CliError, FaultError, KcrashError, SymbolNotFoundError, TypeLookupError

if TYPE_CHECKING:
    from kcrash.types.model import Type
    from kcrash.types.program import Program

__all__ = ["commands"]

_NAME_OFFSET = re.compile(r"([A-Za-z_.$][\w.$]*)(?:\+(0x[0-9a-fA-F]+|\d+))?\Z")
_NO_HELP_SHORT = {"help_option_names": ["--help"]}  # -h is crash's hlist flag here


def _address(prog: Program, arg: AddressArg) -> int:
    # A number; SYMBOL[+OFF] from the symbol table; else a C expression (a pointer or integer is
    # the address, an object in memory gives its own).
    # lazy: +326 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.cexpr import evaluate

    # lazy: +254 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.model import TypeKind

    if arg.address is not None:
        return arg.address
    match = _NAME_OFFSET.match(arg.text.strip())
    if match:
        try:
            return prog.symbol_address(match[1]) + (int(match[2], 0) if match[2] else 0)
        except SymbolNotFoundError:
            pass
    obj = evaluate(prog, arg.text)
    if obj.type_.strip_typedefs().kind in (TypeKind.POINTER, TypeKind.INT):
        return int(obj)
    if obj.address_ is None:
        raise CliError(f"{arg.text!r} has no address", 2)
    return obj.address_


def _struct_type(prog: Program, name: str) -> Type:
    # crash accepts a bare tag ("task_struct"): try it as a struct, a union, then as written.
    for candidate in ([f"struct {name}", f"union {name}"] if name.isidentifier() else []) + [name]:
        found = prog.find_type_or_none(candidate)
        if found is not None:
            return found
    raise CliError(f"no type {name!r}", 1)


@dataclass(frozen=True, slots=True)
class _Show:
    # What -s asks for: the struct type and the members to print (all when empty).
    type: Type
    members: tuple[str, ...]


def _show_spec(prog: Program, spec: str | None) -> _Show | None:
    if spec is None:
        return None
    name, _, members = spec.partition(".")
    t = _struct_type(prog, name)
    wanted = tuple(m for m in members.split(",") if m) if members else ()
    for member in wanted:
        try:
            t.walk_path(member)
        except (TypeLookupError, TypeError) as exc:
            raise CliError(f"{t.type_name()} has no member {member!r}: {exc}", 1) from None
    return _Show(t, wanted)


def _offset(prog: Program, offset: int | None, link: str | None) -> int:
    # lazy: +309 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.object import offsetof

    if offset is not None and link is not None:
        raise CliError("give -o OFFSET or -l STRUCT.MEMBER, not both", 2)
    if link is None:
        return offset or 0
    name, dot, member = link.partition(".")
    if not dot or not member:
        raise CliError(f"-l wants STRUCT.MEMBER, not {link!r}", 2)
    try:
        return offsetof(_struct_type(prog, name), member)
    except (TypeLookupError, TypeError) as exc:
        raise CliError(f"-l {link}: {exc}", 1) from None


def _entry_json(prog: Program, address: int, show: _Show | None) -> Any:
    # lazy: +290 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.format import object_to_json

    # lazy: +309 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.object import Object

    if show is None:
        return None
    obj = Object(prog, show.type, address=address)
    try:
        if not show.members:
            return object_to_json(obj)
        return {m: object_to_json(_member(obj, m)) for m in show.members}
    except FaultError as exc:
        return {"fault": exc.address}


def _member(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.member_(part)
    return obj


def _entry_text(prog: Program, address: int, show: _Show) -> str:
    # lazy: +290 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.format import format_object

    # lazy: +309 ms CPU to import it after this module (measured, loaded host)
    from kcrash.types.object import Object

    obj = Object(prog, show.type, address=address)
    try:
        if not show.members:
            return format_object(obj)
        return "\n".join(f"  {m} = {format_object(_member(obj, m))}" for m in show.members)
    except FaultError as exc:
        return f"  <fault at {exc.address:#x}>"


_OFFSET = click.option("-o", "offset", type=Number("number"), default=None, metavar="OFFSET",
                       help="Offset of the link (list_head / rb_node) inside each entry.")
_LINK = click.option("-l", "link", default=None, metavar="STRUCT.MEMBER",
                     help="The link member, its offset taken from the type.")
_STRUCT = click.option("-s", "struct", default=None, metavar="STRUCT[.MEMBER,...]",
                       help="Print each entry as STRUCT, or only the given members.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_DUMP = click.argument("path", metavar="DUMP", type=DumpOrLive())


@click.command("list", context_settings=_NO_HELP_SHORT)
@symbol_file_options
@_DUMP
@click.argument("start", metavar="START", type=Number("expression"))
@_OFFSET
@_LINK
@_STRUCT
@click.option("-H", "is_head", is_flag=True, help="START is the list head: walk from it, do not print it.")
@click.option("-h", "--hlist", "hlist", is_flag=True, help="An hlist (NULL-terminated hlist_node chain).")
@click.option("-r", "reverse", is_flag=True, help="Follow prev pointers (list_head only).")
@_JSON
def list_command(path: str, start: AddressArg, offset: int | None, link: str | None, struct: str | None,
                 is_head: bool, hlist: bool, reverse: bool, as_json: bool) -> None:
    """Walk a linked list from the entry at START (an address, SYMBOL[+OFF] or expression; with -H
    the list head) and print each entry's address (the link's address minus -o/-l), with -s the
    entry as a struct."""
    # lazy: +275 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.list import hlist_for_each, list_for_each, list_for_each_reverse

    if hlist and reverse:
        raise CliError("-r does not apply to an hlist", 2)
    with opened_target(path, orc=False) as prog:
        at, link_offset, show = _address(prog, start), _offset(prog, offset, link), _show_spec(prog, struct)
        first = at if is_head else at + link_offset  # as crash: without -H, START is the first entry itself
        if hlist:
            walk = hlist_for_each(prog.object("struct hlist_head", first))
        else:
            walk = (list_for_each_reverse if reverse else list_for_each)(prog.object("struct list_head", first))
        nodes = ([] if is_head else [first]) + [int(node) for node in walk]
        entries = [node - link_offset for node in nodes]
        _print_entries(prog, entries, show, walk.truncated, as_json)


def _print_entries(prog: Program, entries: list[int], show: _Show | None, truncated: str | None,
                   as_json: bool) -> None:
    if as_json:
        echo_json({"entries": [{"address": a, "value": _entry_json(prog, a, show)} if show else {"address": a}
                               for a in entries], "truncated": truncated})
        return
    for address in entries:
        click.echo(f"{address:x}")
        if show is not None:
            click.echo(_entry_text(prog, address, show))
    if truncated is not None:
        click.echo(f"list: walk stopped: {truncated}")


@click.command("tree")
@symbol_file_options
@_DUMP
@click.argument("root", metavar="ROOT", type=Number("expression"))
@click.option("-t", "kind", type=click.Choice(["rbtree", "xarray", "radix", "maple"]), default="rbtree",
              show_default=True, help="The kind of tree at ROOT.")
@_OFFSET
@_LINK
@_STRUCT
@click.option("--zero", "advanced", is_flag=True, help="Also show zero (reserved) xarray/maple entries.")
@_JSON
def tree_command(path: str, root: AddressArg, kind: str, offset: int | None, link: str | None, struct: str | None,
                 advanced: bool, as_json: bool) -> None:
    """Walk the tree whose root (struct rb_root, xarray/radix_tree_root or maple_tree) is at ROOT:
    rbtree entries in order, xarray/radix index and entry, maple index range and entry."""
    with opened_target(path, orc=False) as prog:
        at, link_offset, show = _address(prog, root), _offset(prog, offset, link), _show_spec(prog, struct)
        try:
            rows, truncated = _tree_rows(prog, kind, at, link_offset, advanced)
        except FaultError as exc:
            raise CliError(f"cannot read the {kind} root at {at:#x}: {exc}", 1) from None
        except KcrashError as exc:
            raise CliError(f"{kind} at {at:#x}: {exc}", 1) from None
        _print_rows(prog, kind, rows, show, truncated, as_json)


# one tree entry: (first index, last index, entry address or value, is a value entry)
_Row = tuple[int, int, int, bool]


def _tree_rows(prog: Program, kind: str, at: int, link_offset: int, advanced: bool) -> tuple[list[_Row], str | None]:
    # lazy: +336 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.mapletree import mt_for_each_range

    # lazy: +273 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.rbtree import rbtree_inorder_for_each

    # lazy: +263 ms CPU to import it after this module (measured, loaded host)
    from kcrash.helpers.linux.xarray import xa_for_each_range, xa_is_value, xa_to_value

    if kind == "rbtree":
        walk = rbtree_inorder_for_each(prog.object("struct rb_root", at))
        rows = [(i, i, int(node) - link_offset, False) for i, node in enumerate(walk)]
        return rows, walk.truncated
    if kind == "maple":
        ranged = mt_for_each_range(prog.object("struct maple_tree", at), advanced=advanced)
    else:
        ranged = xa_for_each_range(prog.object("struct xarray", at), advanced=advanced)
    out = [(first, last, xa_to_value(entry) if xa_is_value(entry) else entry - link_offset, xa_is_value(entry))
           for first, last, entry in ranged]
    return out, ranged.truncated


def _print_rows(prog: Program, kind: str, rows: Iterable[_Row], show: _Show | None, truncated: str | None,
                as_json: bool) -> None:
    if as_json:
        echo_json({"kind": kind, "truncated": truncated, "entries": [_row_json(prog, kind, row, show) for row in rows]})
        return
    for first, last, entry, is_value in rows:
        click.echo(f"{_where(kind, first, last)}{'value ' + str(entry) if is_value else f'{entry:x}'}")
        if show is not None and not is_value:
            click.echo(_entry_text(prog, entry, show))
    if truncated is not None:
        click.echo(f"tree: walk stopped: {truncated}")


def _where(kind: str, first: int, last: int) -> str:
    if kind == "rbtree":
        return ""
    if kind == "maple":
        return f"[{first:#x}-{last:#x}] "
    return f"[{first}] " if first == last else f"[{first}-{last}] "


def _row_json(prog: Program, kind: str, row: _Row, show: _Show | None) -> dict[str, Any]:
    first, last, entry, is_value = row
    out: dict[str, Any] = {"value": entry} if is_value else {"address": entry}
    if kind != "rbtree":
        out.update(index=first, last=last)
    if show is not None and not is_value:
        out["struct"] = _entry_json(prog, entry, show)
    return out


commands: list[click.Command] = [list_command, tree_command]
