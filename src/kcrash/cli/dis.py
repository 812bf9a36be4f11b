"""
kcrash.cli.dis
==============

``kcrash dis DUMP SYMBOL|ADDR``: disassemble kernel code from the dump's memory (capstone), like
crash's ``dis``: a whole function for a symbol, one instruction (or ``--count``) for an address,
``-r`` from the function start up to the address, ``-l`` with source lines when debug information
is at hand (``--debuginfo`` vmlinux or ``.ko``; a module's text address is read from the dump unless
``--module-base`` gives it). Symbols (names to disassemble, and the ``<sym+off>`` of call/jump targets and
RIP-relative operands) are the kernel's and every module's, as ``sym`` finds them
(:func:`kcrash.cli.sym.symbol_table`); without kallsyms only addresses can be disassembled.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from kcrash.analysis.disasm import TargetLabel, target_labels
from kcrash.analysis.x86_disasm import Instruction, disassemble
from kcrash.cli.common import cache_dir, echo_json, opened_target
from kcrash.cli.decode import debuginfo_options, parse_module_bases
from kcrash.cli.dump import opened_dump
from kcrash.cli.params import AddressArg, DumpOrLive, Number
from kcrash.cli.sym import symbol_table
from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo
from kcrash.debuginfo.symbolizer import SourceLocation, open_symbolizers
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import CliError, KcrashError, MissingDebugInfoError, SymbolNotFoundError
from kcrash.helpers.linux.module import find_module_or_none, module_base
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
    whole: bool = False
    last: int | None = None


@click.command("dis")
@click.argument("dump", type=DumpOrLive())
@click.argument("target", metavar="SYMBOL[+OFF]|ADDR", type=Number("symbol"))
@click.option("-r", "reverse", is_flag=True, help="From the function start up to and including ADDR.")
@click.option("-l", "lines", is_flag=True, help="Interleave source lines (needs debug information).")
@click.option("--count", type=click.IntRange(1, 100000), default=None, help="Number of instructions.")
@click.option("--att", "syntax", flag_value="att", help="AT&T assembler syntax.")
@click.option("--intel", "syntax", flag_value="intel", default=True, help="Intel syntax (default).")
@debuginfo_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dis(dump: str, target: AddressArg, reverse: bool, lines: bool, count: int | None, syntax: str,
        debuginfo: tuple[Path, ...], module_bases: tuple[str, ...], force: bool, no_cache: bool,
        as_json: bool) -> None:
    """Disassemble SYMBOL, SYMBOL+OFF or ADDR (0x-prefixed or 8+ hex digits) from the kernel memory in DUMP."""
    cache = None if no_cache else cache_dir()
    symbols = _symbols(dump)
    where = _resolve(target, symbols, reverse, count)
    bases = parse_module_bases(module_bases)
    if lines and where.module and where.module not in bases:
        bases[where.module] = _module_text_base(dump, where.module)
    with opened_dump((dump,)) as opened:  # a dump file, or a live target stopped meanwhile
        info = opened.vmcoreinfo_or_none()
        mem = open_kernel_memory(opened)
        code = mem.read(where.start, where.end - where.start)
        insns = _selected(disassemble(code, where.start, syntax), where, count)
        source = _source(mem, info, insns, list(debuginfo), bases, force, cache, where.module) if lines else {}
    _show(insns, where, source, target_labels(insns, symbols), as_json)


def _symbols(dump: str) -> SymbolTable | None:
    # Without kallsyms only hexadecimal addresses can be disassembled (see _resolve).
    with contextlib.suppress(KcrashError):
        return symbol_table(str(dump))
    return None


def _module_text_base(dump: str, name: str) -> int:
    # -l on a module function without --module-base: where the dump says the module's text is.
    with opened_target(str(dump), orc=False) as prog:
        mod = find_module_or_none(prog, name)
        if mod is None:
            raise CliError(f"module {name} is not in the dump's module list: give --module-base {name}=ADDR")
        return module_base(mod)


def _resolve(target: AddressArg, symbols: SymbolTable | None, reverse: bool, count: int | None) -> _Target:
    address = target.address
    if target.symbol is not None:
        if symbols is None:
            raise CliError("no kallsyms in this dump: give an address (0x followed by hex digits)")
        symbol = symbols.get_symbol_by_name(target.symbol)
        address = symbol.address + target.offset
        if "+" not in target.text and not reverse:
            end = min(symbol.address + symbol.size, address + _MAX_FUNCTION)
            return _Target(address, end, symbol.name, symbol.address, symbol.module or "", whole=True)
    assert address is not None
    found = symbols.symbolize_or_none(address) if symbols is not None else None
    if found is None:
        if reverse:
            raise SymbolNotFoundError(f"no symbol covers {address:#x}: -r needs the function start")
        return _Target(address, address + 16 * (count or 1), "", address, "")
    symbol, _ = found
    if reverse:
        if address - symbol.address > _MAX_FUNCTION:
            raise CliError(f"{address:#x} is {address - symbol.address:#x} bytes into {symbol.name}: too far for -r")
        return _Target(symbol.address, address + 16, symbol.name, symbol.address, symbol.module or "", last=address)
    return _Target(address, address + 16 * (count or 1), symbol.name, symbol.address, symbol.module or "")


def _selected(insns: tuple[Instruction, ...], where: _Target, count: int | None) -> tuple[Instruction, ...]:
    # -r: up to and including the instruction at the address; a function: all of it (or --count);
    # an address: one instruction (or --count).
    if where.last is not None:
        return tuple(i for i in insns if i.address <= where.last)
    return insns[:count] if where.whole else insns[:count or 1]


def _source(mem: KernelMemory, info: VmcoreInfo | None, insns: tuple[Instruction, ...], paths: list[Path],
            bases: dict[str, int], force: bool, cache: Path | None,
            module: str = "") -> dict[int, tuple[SourceLocation, ...]]:
    release = info.osrelease if info is not None else None
    modules = {}
    for name, base in bases.items():
        found = find_module_debuginfo(name, release, paths)
        if found is not None:
            modules[name] = (found, base)
    try:
        vmlinux: Path | None = find_debuginfo(release, info.build_id if info is not None else None, paths, force)
    except MissingDebugInfoError:
        if not module:
            raise
        if module not in modules:
            raise MissingDebugInfoError(f"no {module}.ko with debug information: pass --debuginfo PATH") from None
        vmlinux = None  # a module's function needs its .ko only
    symbolizer = open_symbolizers(vmlinux, modules, cache_dir=cache, kaslr_offset=mem.layout.kaslr_offset or 0)
    try:
        return {i.address: symbolizer.symbolize(i.address) for i in insns}
    finally:
        symbolizer.close()


def _show(insns: tuple[Instruction, ...], where: _Target, source: dict[int, tuple[SourceLocation, ...]],
          labels: dict[int, TargetLabel], as_json: bool) -> None:
    if not insns:
        raise CliError(f"nothing decodes at {where.start:#x}")
    if as_json:
        echo_json([_insn_json(i, where, source, labels.get(i.address)) for i in insns])
        return
    last = None
    for insn in insns:
        locations = source.get(insn.address)
        if locations and (locations[0].file, locations[0].line) != last:
            last = (locations[0].file, locations[0].line)
            click.echo(f"{locations[0].file}: {locations[0].line}")
        label = f" <{where.name}+{insn.address - where.symbol_start}>" if where.name else ""
        click.echo(f"0x{insn.address:x}{label}:\t{insn.text}{_target_text(labels.get(insn.address))}")


def _target_text(label: TargetLabel | None) -> str:
    # crash/gdb style: "call 0xffff… <printk>"; a RIP-relative operand gets a "# 0xffff… <sym+off>" note.
    if label is None or not label.symbol:
        return ""
    return f" {label.text()}" if label.branch else f"\t# {label.target:#x} {label.text()}"


def _insn_json(insn: Instruction, where: _Target, source: dict[int, tuple[SourceLocation, ...]],
               label: TargetLabel | None) -> dict[str, object]:
    return {**asdict(insn), "data": insn.data.hex(), "symbol": where.name, "module": where.module or None,
            "offset": insn.address - where.symbol_start,
            "source": [asdict(s) for s in source.get(insn.address, ())],
            "target": None if label is None else {**asdict(label), "label": label.text()}}


commands: list[click.Command] = [dis]
