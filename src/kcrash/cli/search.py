"""
kcrash.cli.search
=================

``kcrash search DUMP VALUE``, like crash's ``search``: aligned words equal to VALUE (``-m MASK``:
bits set in MASK are ignored; ``-8/-16/-32/-64`` the word width) or a string (``-c``), in kernel
virtual memory (``-k``, the default: every present mapping of the kernel page tables except the
ESPFIX aliases), a task's user space (``-u PID``) or physical memory (``-p``: every page the dump
stores), within ``-s START`` and ``-e END`` or ``-l LENGTH``. Each hit prints as
``ADDRESS: VALUE``. Argument parsing and output only: the scan is :mod:`kcrash.memory.search`.
"""

from __future__ import annotations

from typing import Any

import click

from kcrash.cli.common import echo_json, opened_target
from kcrash.cli.dump import opened_dump
from kcrash.cli.params import AddressArg, DumpOrLive, Number, parse_number
from kcrash.cli.sym import resolve_address, symbol_table
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import CliError
from kcrash.memory.kernel import KernelMemory, open_kernel_memory
from kcrash.memory.search import X86_64_ESPFIX_AREA, Pattern, Search, search_physical, search_virtual
from kcrash.memory.translate.x86_64 import X86_64PageTables

__all__ = ["commands", "search"]


class _Value(Number):
    # VALUE: an address or SYMBOL[+OFF] by the rule of kcrash.cli.params, else a short decimal
    # number (``search DUMP 0``, ``search -8 DUMP 255``): a value need not look like an address.

    def __init__(self) -> None:
        super().__init__("symbol")
        self.name = "value"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) < 8:
            number = parse_number(value, "number", "value")
            return AddressArg(value, address=number)
        return super().convert(value, param, ctx)


@click.command("search")
@click.argument("dump_path", metavar="DUMP", type=DumpOrLive())
@click.argument("value", metavar="[VALUE]", required=False, type=_Value())
@click.option("-s", "start", type=Number("symbol"), default=None, metavar="ADDR|SYM[+OFF]",
              help="Start of the range (default: the start of the address space searched).")
@click.option("-e", "end", type=Number("symbol"), default=None, metavar="ADDR|SYM[+OFF]",
              help="End of the range (exclusive).")
@click.option("-l", "length", type=Number("number"), default=None, help="Length of the range in bytes.")
@click.option("-k", "space", flag_value="kernel", default=True, help="Kernel virtual memory (default).")
@click.option("-u", "pid", type=Number("number"), default=None, metavar="PID",
              help="The user virtual memory of task PID.")
@click.option("-p", "space", flag_value="physical", help="Physical memory (every page the dump stores).")
@click.option("-m", "mask", type=Number("number"), default=0, metavar="MASK", help="Ignore the bits set in MASK.")
@click.option("-8", "width", flag_value=1, help="Search 8-bit values.")
@click.option("-16", "width", flag_value=2, help="Search 16-bit values.")
@click.option("-32", "width", flag_value=4, help="Search 32-bit values.")
@click.option("-64", "width", flag_value=8, default=True, help="Search 64-bit values (default).")
@click.option("-c", "string", default=None, metavar="STRING", help="Search for STRING (any alignment).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def search(dump_path: str, value: AddressArg | None, start: AddressArg | None, end: AddressArg | None,
           length: int | None, space: str, pid: int | None, mask: int, width: int, string: str | None,
           as_json: bool) -> None:
    """Search memory for VALUE (a number, or SYMBOL[+OFF] for pointers to it) or for -c STRING."""
    if (value is None) == (string is None):
        raise CliError("give either VALUE or -c STRING", 2)
    if end is not None and length is not None:
        raise CliError("-e and -l exclude each other", 2)
    if pid is not None and space == "physical":
        raise CliError("-u and -p exclude each other", 2)
    space = "user" if pid is not None else space
    table = _symbols_if_needed(dump_path, value, start, end)
    pattern = _pattern(dump_path, table, value, width, mask, string)
    lo = resolve_address(start, dump_path, table) if start is not None else None
    hi = resolve_address(end, dump_path, table) if end is not None else None
    if lo is not None and length is not None:
        hi = lo + length
    if lo is not None and hi is not None and hi <= lo:
        raise CliError(f"empty range: the end {hi:#x} is not above the start {lo:#x}", 2)
    if pid is not None:
        _run_user(dump_path, pid, pattern, lo, hi, as_json)
        return
    with opened_dump((dump_path,)) as handle:
        memory = open_kernel_memory(handle)
        found = _start(memory, space, pattern, lo, hi)
        _show(found, space, pid, as_json)


def _symbols_if_needed(dump_path: str, *args: AddressArg | None) -> SymbolTable | None:
    # Symbols are loaded only when an argument names one.
    return symbol_table(dump_path) if any(a is not None and a.symbol is not None for a in args) else None


def _pattern(dump_path: str, table: SymbolTable | None, value: AddressArg | None, width: int, mask: int,
             string: str | None) -> Pattern:
    try:
        if string is not None:
            return Pattern(string=string.encode("latin-1", "replace"))
        assert value is not None
        return Pattern(resolve_address(value, dump_path, table), width, mask)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None


def _start(memory: KernelMemory, space: str, pattern: Pattern, lo: int | None, hi: int | None) -> Search:
    if space == "physical":
        return search_physical(lambda a, n: memory.read(a, n, physical=True), memory.segments.ranges(physical=True),
                               pattern, lo or 0, hi or 1 << 64)
    if memory.page_tables is None:
        raise CliError("no page tables: the dump has neither VMCOREINFO nor a CR3 note; search -p instead", 1)
    if not isinstance(memory.page_tables, X86_64PageTables):
        raise CliError(f"virtual search walks x86-64 page tables; this is an {memory.machine} dump: "
                       "search -p instead", 1)
    # lazy: +1 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.search import kernel_half

    half_lo, half_hi = kernel_half(memory.layout.levels)
    return search_virtual(memory.page_tables, pattern, half_lo if lo is None else lo,
                          half_hi if hi is None else hi, skip=[X86_64_ESPFIX_AREA],
                          physical=memory.segments.ranges(physical=True))


def _run_user(dump_path: str, pid: int, pattern: Pattern, lo: int | None, hi: int | None, as_json: bool) -> None:
    # lazy: +1 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.search import task_page_tables, user_half

    with opened_target(dump_path, orc=False) as prog:
        tables = task_page_tables(prog, pid)
        if not isinstance(tables, X86_64PageTables):
            raise CliError(f"virtual search walks x86-64 page tables; this is an {prog.machine} dump: "
                           "search -p instead", 1)
        half_lo, half_hi = user_half(tables.levels)
        found = search_virtual(tables, pattern, half_lo if lo is None else lo, half_hi if hi is None else hi,
                               physical=prog.memory.segments.ranges(physical=True))
        _show(found, "user", pid, as_json)


def _show(found: Search, space: str, pid: int | None, as_json: bool) -> None:
    p = found.pattern
    if as_json:
        hits = [{"address": h.address, "value": h.value} for h in found]
        echo_json({"space": space, "pid": pid, "value": p.value, "mask": p.mask, "width": p.width * 8,
                   "string": p.string.decode("latin-1") if p.string is not None else None, "hits": hits,
                   **_stats(found)})
        return
    digits = 2 * p.width
    for hit in found:
        shown = p.string.decode("latin-1") if p.string is not None else f"{hit.value:0{digits}x}"
        click.echo(f"{hit.address:x}: {shown}")
    _warn(found)


def _stats(found: Search) -> dict[str, Any]:
    return {"scanned": found.scanned, "skipped": found.skipped, "unreadable_tables": found.unreadable_tables,
            "truncated": found.truncated}


def _warn(found: Search) -> None:
    if found.skipped:
        click.echo(f"kcrash: warning: {found.skipped:,} bytes of the range are not in the dump (not searched)",
                   err=True)
    if found.unreadable_tables:
        click.echo(f"kcrash: warning: {found.unreadable_tables} page-table page(s) are not in the dump: "
                   "what they map was not searched", err=True)
    if found.truncated:
        click.echo(f"kcrash: warning: search incomplete: {found.truncated}", err=True)


commands: list[click.Command] = [search]
