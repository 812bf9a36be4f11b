"""
kcrash.cli.dis
==============

``kcrash dis DUMP SYMBOL|ADDR``: disassemble kernel code from the dump's memory (capstone), like
crash's ``dis``: a whole function for a symbol, one instruction (or ``--count``) for an address,
``-r`` from the function start up to the address, ``-l`` with source lines when debug information
is at hand. Symbols come from the dump's kallsyms, else from ``--debuginfo``'s ELF symbol table.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from kcrash.analysis.x86_disasm import Instruction, disassemble
from kcrash.cli.common import cache_dir, echo_json
from kcrash.cli.decode import debuginfo_options, parse_module_bases
from kcrash.cli.params import AddressArg, Number
from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo
from kcrash.debuginfo.kallsyms import load_kallsyms
from kcrash.debuginfo.symbolizer import SourceLocation, open_symbolizers
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps import open_dump
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import CliError, KcrashError, SymbolNotFoundError
from kcrash.memory import open_kernel_memory
from kcrash.memory.kernel import KernelMemory

__all__ = ["commands"]

_MAX_FUNCTION = 1 << 20


@dataclass(frozen=True, slots=True)
class _Target:
    start: int
    end: int
    name: str
    symbol_start: int
    module: str


@click.command("dis")
@click.argument("dump", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", metavar="SYMBOL[+OFF]|ADDR", type=Number("symbol"))
@click.option("-r", "reverse", is_flag=True, help="From the function start up to and including ADDR.")
@click.option("-l", "lines", is_flag=True, help="Interleave source lines (needs debug information).")
@click.option("--count", type=click.IntRange(1, 100000), default=None, help="Number of instructions.")
@click.option("--att", "syntax", flag_value="att", help="AT&T assembler syntax.")
@click.option("--intel", "syntax", flag_value="intel", default=True, help="Intel syntax (default).")
@debuginfo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dis(dump: Path, target: AddressArg, reverse: bool, lines: bool, count: int | None, syntax: str,
        debuginfo: tuple[Path, ...], module_bases: tuple[str, ...], force: bool, no_cache: bool,
        as_json: bool) -> None:
    """Disassemble SYMBOL, SYMBOL+OFF or ADDR (0x-prefixed or 8+ hex digits) from the kernel memory in DUMP."""
    cache = None if no_cache else cache_dir()
    opened = open_dump(dump)
    info = opened.vmcoreinfo_or_none()
    mem = open_kernel_memory(opened)
    symbols = _symbols(mem, info, cache)
    where = _resolve(target, symbols, reverse, count)
    code = mem.read(where.start, where.end - where.start)
    insns = disassemble(code, where.start, syntax)
    if count is not None:
        insns = insns[:count]
    source = (_source(mem, info, insns, list(debuginfo), parse_module_bases(module_bases), force, cache)
              if lines else {})
    _show(insns, where, source, as_json)


def _symbols(mem: KernelMemory, info: VmcoreInfo | None, cache: Path | None) -> SymbolTable | None:
    # Without kallsyms only hexadecimal addresses can be disassembled (see _resolve).
    with contextlib.suppress(KcrashError):
        return load_kallsyms(mem, info, cache)
    return None


def _resolve(target: AddressArg, symbols: SymbolTable | None, reverse: bool, count: int | None) -> _Target:
    address = target.address
    if target.symbol is not None:
        if symbols is None:
            raise CliError("no kallsyms in this dump: give an address (0x followed by hex digits)")
        symbol = symbols.get_symbol_by_name(target.symbol)
        start = symbol.address + target.offset
        whole = "+" not in target.text
        end = symbol.address + symbol.size if whole else start + 16 * (count or 1)
        return _Target(start, min(end, start + _MAX_FUNCTION), symbol.name, symbol.address, symbol.module or "")
    assert address is not None
    found = symbols.symbolize_or_none(address) if symbols is not None else None
    if found is None:
        if reverse:
            raise SymbolNotFoundError(f"no symbol covers {address:#x}: -r needs the function start")
        return _Target(address, address + 16 * (count or 1), "", address, "")
    symbol, _ = found
    if reverse:
        return _Target(symbol.address, address + 16, symbol.name, symbol.address, symbol.module or "")
    return _Target(address, address + 16 * (count or 1), symbol.name, symbol.address, symbol.module or "")


def _source(mem: KernelMemory, info: VmcoreInfo | None, insns: tuple[Instruction, ...], paths: list[Path],
            bases: dict[str, int], force: bool, cache: Path | None) -> dict[int, tuple[SourceLocation, ...]]:
    release = info.osrelease if info is not None else None
    vmlinux = find_debuginfo(release, info.build_id if info is not None else None, paths, force)
    modules = {}
    for name, base in bases.items():
        found = find_module_debuginfo(name, release, paths)
        if found is not None:
            modules[name] = (found, base)
    symbolizer = open_symbolizers(vmlinux, modules, cache_dir=cache, kaslr_offset=mem.layout.kaslr_offset or 0)
    try:
        return {i.address: symbolizer.symbolize(i.address) for i in insns}
    finally:
        symbolizer.close()


def _show(insns: tuple[Instruction, ...], where: _Target, source: dict[int, tuple[SourceLocation, ...]],
          as_json: bool) -> None:
    if as_json:
        echo_json([{**asdict(i), "data": i.data.hex(), "symbol": where.name,
                    "offset": i.address - where.symbol_start,
                    "source": [asdict(s) for s in source.get(i.address, ())]} for i in insns])
        return
    last = None
    for insn in insns:
        locations = source.get(insn.address)
        if locations and (locations[0].file, locations[0].line) != last:
            last = (locations[0].file, locations[0].line)
            click.echo(f"{locations[0].file}: {locations[0].line}")
        label = f" <{where.name}+{insn.address - where.symbol_start}>" if where.name else ""
        click.echo(f"0x{insn.address:x}{label}:\t{insn.text}")
    if not insns:
        raise CliError(f"nothing decodes at {where.start:#x}")


commands: list[click.Command] = [dis]
