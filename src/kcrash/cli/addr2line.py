"""
kcrash.cli.addr2line
====================

``kcrash addr2line [-e FILE] ADDR…``: addresses to function, file:line and inline chain, in the
output format of binutils' ``addr2line -f -i`` (without binutils), batched, from arguments or stdin.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import click

from kcrash.cli.common import cache_dir, echo_json
from kcrash.cli.params import Number, parse_number
from kcrash.debuginfo.elf_symtab import ElfSection
from kcrash.debuginfo.symbolizer import SourceLocation, Symbolizer
from kcrash.errors import CliError

__all__ = ["commands"]


@click.command("addr2line")
@click.argument("addresses", nargs=-1, type=Number("hex"))
@click.option("-e", "--exe", "path", default="vmlinux", show_default=True,
              type=click.Path(path_type=Path, dir_okay=False), help="vmlinux or .ko with DWARF.")
@click.option("-j", "--section", default=None, help="Addresses are offsets into this section (for a .ko).")
@click.option("--base", type=Number("hex"), default=None, help="Load address (hex) of a .ko's .text.")
@click.option("-a", "--addresses", "show_address", is_flag=True, help="Print each address first.")
@click.option("-f", "--functions", is_flag=True, help="Print function names.")
@click.option("-i", "--inlines", is_flag=True, help="Print the inline chain.")
@click.option("-p", "--pretty-print", "pretty", is_flag=True, help="One line per address.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the index cache.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def addr2line(addresses: tuple[int, ...], path: Path, section: str | None, base: int | None, show_address: bool,
              functions: bool, inlines: bool, pretty: bool, no_cache: bool, as_json: bool) -> None:
    """Turn ADDRESSES (hex; read from stdin when none) into source locations."""
    values = list(addresses) or [parse_number(a, "hex", "address") for a in _stdin_words()]
    with Symbolizer.open(path, cache_dir=None if no_cache else cache_dir(), module_base=base) as symbolizer:
        shift = _section_base(symbolizer, section) if section else 0
        results = [(a, symbolizer.symbolize(a + shift)) for a in values]
    if as_json:
        echo_json([{"address": hex(a), "locations": [asdict(loc) for loc in locs]} for a, locs in results])
        return
    for address, locations in results:
        for line in _format(address, locations, show_address, functions, inlines, pretty):
            click.echo(line)


def _stdin_words() -> list[str]:
    return sys.stdin.read().split()


def _section_base(symbolizer: Symbolizer, name: str) -> int:
    found: ElfSection | None = symbolizer.image.find_section_or_none(name)
    if found is None:
        raise CliError(f"{symbolizer.image.path}: no section {name}", 1)
    return symbolizer.load_address_of(found)


def _format(address: int, locations: tuple[SourceLocation, ...], show_address: bool, functions: bool,
            inlines: bool, pretty: bool) -> Iterable[str]:
    shown = locations if inlines else locations[:1]
    parts = []
    for k, loc in enumerate(shown):
        where = f"{loc.file}:{loc.line if loc.file != '??' else '?'}"
        if loc.discriminator:
            where += f" (discriminator {loc.discriminator})"
        parts.append((k, loc.function, where))
    if pretty:
        prefix = f"0x{address:016x}: " if show_address else ""
        yield prefix + " (inlined by) ".join(f"{f} at {w}" if functions else w for _, f, w in parts)
        return
    if show_address:
        yield f"0x{address:016x}"
    for _, function, where in parts:
        if functions:
            yield function
        yield where


commands: list[click.Command] = [addr2line]
