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
from dataclasses import asdict
from pathlib import Path

import click

from kcrash.analysis.disasm import (
    DisTarget,
    TargetLabel,
    disassemble_target,
    module_text_base,
    resolve_dis_target,
    source_lines,
    target_labels,
)
from kcrash.analysis.x86_disasm import Instruction
from kcrash.cli.common import cache_dir, echo_json, opened_target, printed_dump_warnings
from kcrash.cli.decode import debuginfo_options, parse_module_bases
from kcrash.cli.dump import opened_dump
from kcrash.cli.params import AddressArg, DumpOrLive, Number
from kcrash.cli.sym import symbol_table
from kcrash.debuginfo.symbolizer import SourceLocation
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import CliError, KcrashError
from kcrash.memory import open_kernel_memory

__all__ = ["commands"]


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
    where = resolve_dis_target(symbols, address=target.address, symbol=target.symbol, offset=target.offset,
                               explicit_offset="+" in target.text, reverse=reverse, count=count)
    bases = parse_module_bases(module_bases)
    if lines and where.module and where.module not in bases:
        with opened_target(str(dump), orc=False) as prog:
            bases[where.module] = module_text_base(prog, where.module)
    with opened_dump((dump,)) as opened:  # a dump file, or a live target stopped meanwhile
        mem = open_kernel_memory(opened)
        insns = disassemble_target(mem, where, syntax=syntax, count=count, machine=opened.machine)
        with printed_dump_warnings():  # a vmlinux of another build taken with --force
            source = source_lines(mem, opened.vmcoreinfo_or_none(), insns, list(debuginfo), bases, force=force,
                                  cache=cache, module=where.module) if lines else {}
    _show(insns, where, source, target_labels(insns, symbols), as_json)


def _symbols(dump: str) -> SymbolTable | None:
    # Without kallsyms only hexadecimal addresses can be disassembled (see resolve_dis_target).
    with contextlib.suppress(KcrashError):
        return symbol_table(str(dump))
    return None


def _show(insns: tuple[Instruction, ...], where: DisTarget, source: dict[int, tuple[SourceLocation, ...]],
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


def _insn_json(insn: Instruction, where: DisTarget, source: dict[int, tuple[SourceLocation, ...]],
               label: TargetLabel | None) -> dict[str, object]:
    return {**asdict(insn), "data": insn.data.hex(), "symbol": where.name, "module": where.module or None,
            "offset": insn.address - where.symbol_start,
            "source": [asdict(s) for s in source.get(insn.address, ())],
            "target": None if label is None else {**asdict(label), "label": label.text()}}


commands: list[click.Command] = [dis]
