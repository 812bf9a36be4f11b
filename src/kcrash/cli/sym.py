"""
kcrash.cli.sym
==============

``kcrash sym DUMP NAME|ADDR|GLOB... [-r REGEX] [-q STRING] [-l] [--json]``: like crash's ``sym``,
from the dump's own kallsyms and the modules' symbols (no vmlinux). A name prints its address and
type (every symbol of that name); an address prints the symbol covering it in the kernel's ``%pS``
form, and so does ``NAME+OFFSET`` (an address past the symbol's own size, which module symbols
keep, is marked: it is in no symbol, as ``kmem`` says); a glob (``kcrash_test_*``), ``-r REGEX``, ``-q STRING``
(crash's ``sym -q``) and ``-l`` (crash's ``sym -l``) list every matching symbol with its address,
type letter and module. A query is an address
when it starts with ``0x`` or is 8 to 16 hex digits (the rule of :mod:`kcrash.cli.params`).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import click

from kcrash.cli.common import cache_dir, echo_json, given_symbol_file, opened_target, symbol_file_options
from kcrash.cli.dump import opened_dump
from kcrash.cli.params import AddressArg, DumpOrLive, Number, parse_number
from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.symbol_files import load_symbol_file
from kcrash.debuginfo.symbols import Symbol, SymbolTable
from kcrash.errors import CliError, MissingDebugInfoError
from kcrash.memory.kernel import open_kernel_memory

__all__ = ["commands", "lookup_query", "pattern_query", "resolve_address", "sym", "symbol_table"]


_GLOB = frozenset("*?[")


class _Query(Number):
    # NAME[+OFF] or ADDR by the rule of kcrash.cli.params, or a glob (a word with * ? or [) kept as text.

    def __init__(self) -> None:
        super().__init__("symbol")
        self.name = "query"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and _GLOB & set(value):
            return value.strip()
        return super().convert(value, param, ctx)


@click.command("sym")
@click.argument("dump_path", metavar="DUMP", type=DumpOrLive())
@click.argument("queries", metavar="NAME[+OFF]|ADDR|GLOB...", nargs=-1, type=_Query())
@click.option("-r", "regexes", multiple=True, metavar="REGEX",
              help="Every symbol whose name contains a match of REGEX (Python syntax; repeatable).")
@click.option("-q", "substrings", multiple=True, metavar="STRING",
              help="Every symbol whose name contains STRING (crash's sym -q; repeatable).")
@click.option("-l", "list_all", is_flag=True, help="List every symbol (kernel, then modules).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@symbol_file_options
def sym(dump_path: str, queries: tuple[AddressArg | str, ...], regexes: tuple[str, ...],
        substrings: tuple[str, ...], list_all: bool, as_json: bool) -> None:
    """Translate symbol names to addresses and addresses to symbol+offset (kallsyms, no vmlinux);
    a GLOB (``*``, ``?``, ``[...]``), ``-r REGEX`` or ``-q STRING`` lists every matching symbol."""
    if not (queries or regexes or substrings or list_all):
        raise CliError("give NAME, ADDR or GLOB, or -r REGEX, -q STRING or -l", 2)
    compiled = [_compiled(r) for r in regexes]
    table = symbol_table(dump_path)
    results = [pattern_query(table, q) if isinstance(q, str) else lookup_query(table, q) for q in queries]
    results += [pattern_query(table, r, regex) for r, regex in zip(regexes, compiled, strict=True)]
    results += [pattern_query(table, q, re.compile(re.escape(q))) for q in substrings]
    if list_all:
        results.append(pattern_query(table, "*", re.compile("")))
    if as_json:
        echo_json(results)
    else:
        for row in results:
            _print_row(row)
    missing = [str(r["query"]) for r in results if "error" in r]
    if missing:
        raise CliError(f"{len(missing)} of {len(results)} not found: {', '.join(missing)}")


def symbol_table(dump_path: str) -> SymbolTable:
    """The kernel's and every module's symbols of the dump at ``dump_path`` (``--vmlinux``/
    ``--system-map`` when the command was given one): the one symbol lookup of every command that
    takes ``SYMBOL[+OFF]`` where an address goes (``sym``, ``rd``, ``vtop``, ``search``)."""
    table = _with_modules(dump_path)
    if table is None:
        with opened_dump((dump_path,)) as handle:
            memory = open_kernel_memory(handle)
            symbol_file = given_symbol_file()
            table = load_kallsyms(memory, memory.vmcoreinfo, cache_dir()) if symbol_file is None \
                else load_symbol_file(symbol_file, memory.vmcoreinfo)
    return table


def resolve_address(arg: AddressArg, dump_path: str, table: SymbolTable | None = None) -> int:
    """The address ``arg`` stands for: itself, or ``SYMBOL[+OFF]`` through :func:`symbol_table`
    (or ``table`` when the caller has it). An unknown symbol raises SymbolNotFoundError."""
    if arg.address is not None:
        return arg.address
    return arg.resolve((table or symbol_table(dump_path)).address_of)


def _with_modules(dump_path: str) -> SymbolTable | None:
    # With BTF, open_target adds every module's own symbols to vmlinux's kallsyms; without it
    # (MissingDebugInfoError), the caller falls back to vmlinux kallsyms alone.
    try:
        with opened_target(dump_path, orc=False) as prog:
            return prog.symbol_table
    except MissingDebugInfoError:
        return None


def lookup_query(table: SymbolTable, query: str | AddressArg) -> dict[str, Any]:
    """Resolve one ``sym`` argument to JSON-ready data (``matches`` for a name, ``symbol`` for an
    address or ``NAME+OFFSET``)."""
    arg = parse_number(query, "symbol", "symbol or address") if isinstance(query, str) else query
    query = arg.text
    address = arg.address
    if arg.symbol is not None:
        matches = [_symbol_data(s) for s in table.iter_symbols_by_name(arg.symbol)]
        if not matches:
            return {"query": query, "error": "symbol not found"}
        if "+" not in query:
            return {"query": query, "matches": matches}
        address = matches[0]["address"] + arg.offset
    assert address is not None
    found = table.symbolize_or_none(address)
    if found is None:
        return {"query": query, "address": address, "error": "no symbol at this address"}
    symbol, offset = found
    row: dict[str, Any] = {"query": query, "address": address, "offset": offset,
                           "symbol": _symbol_data(symbol), "formatted": table.format_address(address)}
    # kmem's question, answered the same way: is the address inside the symbol (its own size, where known)?
    inside = table.containing_symbol_or_none(address)
    row["inside"] = inside is not None
    if inside is not None and inside[0].size != symbol.size:
        row["object_size"] = inside[0].size
    elif inside is None:
        row["note"] = "past the end of the symbol's own size: in no symbol (kmem says what is there)"
    return row


def _compiled(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise CliError(f"invalid regular expression {regex!r}: {exc}", 2) from None


def pattern_query(table: SymbolTable, text: str, regex: re.Pattern[str] | None = None) -> dict[str, Any]:
    """Every symbol matching the glob ``text`` (the whole name, ``fnmatch`` rules, case-sensitive),
    or whose name ``regex`` finds a match in when given, as JSON-ready data (``matches``)."""
    match = regex.search if regex is not None else re.compile(fnmatch.translate(text)).match
    matches = [_symbol_data(s) for s in table.iter_symbols_where(match)]
    if not matches:
        return {"query": text, "error": "no symbol matches"}
    return {"query": text, "matches": matches}


def _symbol_data(symbol: Symbol) -> dict[str, Any]:
    return {"name": symbol.name, "address": symbol.address, "size": symbol.size, "kind": symbol.kind,
            "module": symbol.module}


def _print_row(row: dict[str, Any]) -> None:
    if "error" in row:
        click.echo(f"kcrash: sym: {row['query']}: {row['error']}", err=True)
    elif "matches" in row:
        for m in row["matches"]:
            where = f" [{m['module']}]" if m["module"] else ""
            click.echo(f"{m['address']:016x} ({m['kind']}) {m['name']}{where}")
    else:
        note = f"  ({row['note']})" if "note" in row else ""
        click.echo(f"{row['address']:016x} ({row['symbol']['kind']}) {row['formatted']}{note}")


commands: list[click.Command] = [sym]
