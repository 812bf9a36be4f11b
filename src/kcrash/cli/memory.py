"""
kcrash.cli.memory
=================

``kcrash rd`` (read memory like crash's ``rd``: hex words and ASCII, physical with ``-p``, a string
with ``-a``, words as ``SYMBOL+OFF`` with ``-s``) and ``kcrash vtop`` (the page-table walk of one
virtual address, level by level, like crash's ``vtop``; with ``-c PID|TASK`` a user address of
that task, through its ``mm->pgd``, and the VMA holding it). Both take ``SYMBOL[+OFF]`` for an
address (kernel or module symbols, through :func:`kcrash.cli.sym.symbol_table`). Argument parsing
and output only; the work is in :mod:`kcrash.memory`.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

import click

from kcrash.cli.common import echo_json, opened_target, symbol_file_options
from kcrash.cli.dump import opened_dump
from kcrash.cli.params import AddressArg, DumpOrLive, Number
from kcrash.cli.sym import resolve_address, symbol_table
from kcrash.debuginfo.symbols import SymbolTable
from kcrash.errors import CliError, KcrashError
from kcrash.memory.kernel import KernelMemory, open_kernel_memory
from kcrash.memory.layout import PageTables
from kcrash.memory.translate.x86_64 import PageWalk, cr3_to_pgd

__all__ = ["rd", "vtop"]

_PRINTABLE = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")
_MAX_COUNT = 1 << 24
_STRING_LIMIT = 4096


def _resolve(arg: AddressArg, memory: KernelMemory, dump_path: str) -> int:
    # An address, or SYMBOL[+OFF] (kcrash.cli.params has the rule): a VMCOREINFO SYMBOL() needs no
    # symbol table; any other name is looked up in the kernel's and the modules' (cli.sym).
    if arg.symbol is not None and memory.vmcoreinfo is not None and arg.symbol in memory.vmcoreinfo.symbols:
        return memory.vmcoreinfo.get_symbol(arg.symbol) + arg.offset
    return resolve_address(arg, dump_path)


@click.command()
@click.argument("paths", metavar="DUMP", nargs=1, type=DumpOrLive())
@click.argument("address", metavar="ADDR|SYMBOL[+OFF]", type=Number("symbol"))
@click.option("-p", "physical", is_flag=True, help="ADDR is a physical address.")
@click.option("-n", "count", type=click.IntRange(1, _MAX_COUNT), default=None,
              help="Number of units to read (default 1; with -a, the maximum string length).")
@click.option("-8", "width", flag_value=1, help="Display 8-bit values.")
@click.option("-16", "width", flag_value=2, help="Display 16-bit values.")
@click.option("-32", "width", flag_value=4, help="Display 32-bit values.")
@click.option("-64", "width", flag_value=8, default=True, help="Display 64-bit values (default).")
@click.option("-a", "ascii_string", is_flag=True, help="Display a NUL-terminated ASCII string.")
@click.option("-s", "symbolic", is_flag=True, help="Display 64-bit words symbolically (SYMBOL+OFF) where they are.")
@click.option("--zero-fill", is_flag=True, help="Read excluded or lost pages as zeros.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@symbol_file_options
def rd(paths: str, address: AddressArg, physical: bool, count: int | None, width: int, ascii_string: bool,
       symbolic: bool, zero_fill: bool, as_json: bool) -> None:
    """Read memory at ADDR (0x-prefixed or 8+ hex digits) or SYMBOL[+OFF] (kernel virtual unless -p)."""
    if symbolic and (width != 8 or ascii_string):
        raise CliError("-s shows 64-bit words: it goes with neither -8/-16/-32 nor -a", 2)
    with opened_dump((paths,), zero_fill=zero_fill) as handle:
        memory = open_kernel_memory(handle)
        addr = _resolve(address, memory, paths)
        if ascii_string:
            text = _read_string(memory, addr, count or _STRING_LIMIT, physical)
            _show_string(addr, text, physical, as_json)
            return
        data = memory.read(addr, (count or 1) * width, physical=physical)
    if symbolic:
        _show_symbolic(addr, data, physical, symbol_table(paths), as_json)
        return
    _show_words(addr, data, width, physical, as_json)


def _read_string(memory: KernelMemory, addr: int, limit: int, physical: bool) -> bytes:
    out = bytearray()
    while len(out) < limit:
        chunk = memory.read(addr + len(out), min(256, limit - len(out), 4096 - (addr + len(out)) % 4096),
                            physical=physical)
        end = chunk.find(b"\0")
        out += chunk if end < 0 else chunk[:end]
        if end >= 0:
            break
    return bytes(out)


def _show_string(addr: int, text: bytes, physical: bool, as_json: bool) -> None:
    if as_json:
        echo_json({"address": addr, "physical": physical, "string": text.decode("latin-1")})
        return
    shown = "".join(chr(b) if chr(b) in _PRINTABLE else "." for b in text)
    for i in range(0, max(len(shown), 1), 60):
        click.echo(f"{addr + i:x}:  {shown[i:i + 60]}")


def _show_words(addr: int, data: bytes, width: int, physical: bool, as_json: bool) -> None:
    values = [int.from_bytes(data[i:i + width], "little") for i in range(0, len(data), width)]
    if as_json:
        echo_json({"address": addr, "physical": physical, "width": width * 8, "values": values,
                   "hex": data.hex()})
        return
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        words = " ".join(f"{v:0{2 * width}x}" for v in values[i // width:(i + len(row)) // width])
        ascii_part = "".join(chr(b) if chr(b) in _PRINTABLE else "." for b in row)
        click.echo(f"{addr + i:x}:  {words:<{(16 // width) * (2 * width + 1)}}  {ascii_part}")


def _show_symbolic(addr: int, data: bytes, physical: bool, table: SymbolTable, as_json: bool) -> None:
    # crash's rd -s: each word that a kernel or module symbol covers as NAME+OFF (decimal offset,
    # as crash prints it), the others in hex; two words a line.
    values = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data) - 7, 8)]
    found = [table.symbolize_or_none(v) for v in values]
    if as_json:
        echo_json({"address": addr, "physical": physical, "width": 64, "values": values,
                   "symbols": [None if f is None else {"name": f[0].name, "offset": f[1], "module": f[0].module,
                                                       "address": f[0].address} for f in found]})
        return
    shown = [f"{v:016x}" if f is None else f[0].name + (f"+{f[1]}" if f[1] else "")
             for v, f in zip(values, found, strict=True)]
    for i in range(0, len(shown), 2):
        click.echo(f"{addr + 8 * i:x}:  " + " ".join(f"{w:<16}" for w in shown[i:i + 2]).rstrip())


@click.command()
@click.argument("paths", metavar="DUMP", nargs=1, type=DumpOrLive())
@click.argument("address", metavar="ADDR|SYMBOL[+OFF]", type=Number("symbol"))
@symbol_file_options
@click.option("--pgd", "pgd", type=Number("address"), default=None, metavar="ADDR",
              help="Walk from this physical page-table root (user space).")
@click.option("--cr3", "cr3", type=Number("address"), default=None, metavar="ADDR",
              help="Walk from this CR3 value (PCID bits are dropped).")
@click.option("-c", "task_arg", type=Number("pid_or_address"), default=None, metavar="PID|TASK",
              help="Translate a user address of this task (PID or task address) through its mm->pgd.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def vtop(paths: str, address: AddressArg, pgd: int | None, cr3: int | None, task_arg: int | None,
         as_json: bool) -> None:
    """Translate a virtual address, showing each page-table level (-c: a task's user address,
    and the VMA holding it)."""
    if task_arg is not None:
        if pgd is not None or cr3 is not None:
            raise CliError("-c and --pgd/--cr3 exclude each other", 2)
        _user_vtop(paths, address, task_arg, as_json)
        return
    with opened_dump((paths,)) as handle:
        memory = open_kernel_memory(handle)
        vaddr = _resolve(address, memory, paths)
        tables = _tables(memory, pgd, cr3)
        walk = tables.walk(vaddr)
    if as_json:
        echo_json(_walk_json(walk, memory.layout.source))
    else:
        _print_walk(walk, memory.layout.source)
    if walk.physical is None:
        raise CliError(f"virtual address {vaddr:#x} is not mapped: {walk.reason}", 1)


def _user_vtop(path: str, address: AddressArg, task_arg: int, as_json: bool) -> None:
    # vtop -c: the task's page tables; the program's memory is the dump's kernel address space.
    # lazy: +42 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.vmas import task_vma_or_none, user_page_walk

    # lazy: +1 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.targets import find_task

    with opened_target(path, orc=False) as prog:
        if prog.layout is None:
            raise CliError("no kernel page tables in this target", 1)
        source = prog.layout.source
        task = find_task(prog, task_arg)
        vaddr = address.resolve(prog.symbol_address)
        try:
            walk = user_page_walk(prog, task, vaddr)
        except KcrashError as exc:
            raise CliError(str(exc), 1) from None
        vma, pid = task_vma_or_none(prog, task, vaddr), int(task.pid)
    if as_json:
        echo_json(dict(_walk_json(walk, source), pid=pid, task=int(task),
                       vma=None if vma is None else dataclasses.asdict(vma)))
    else:
        click.echo(f"PID: {pid}  TASK: {int(task):016x}")
        _print_walk(walk, source)
        click.echo("\nVMA: " + ("none holds this address" if vma is None else
                                f"{vma.address:x}  {vma.start:x}-{vma.end:x}  flags {vma.flags:x}  {vma.backing}"))
    if walk.physical is None:
        raise CliError(f"virtual address {vaddr:#x} is not mapped: {walk.reason}", 1)


def _tables(memory: KernelMemory, pgd: int | None, cr3: int | None) -> PageTables:
    if cr3 is not None and memory.machine != "x86_64":
        raise CliError(f"--cr3 is an x86-64 register; this is an {memory.machine} dump: use --pgd", 2)
    root = pgd if pgd is not None else cr3_to_pgd(cr3, kernel=False) if cr3 is not None else None
    if root is not None:
        return memory.page_tables_at(root)
    if memory.page_tables is None:
        raise CliError("no page tables: the dump has neither VMCOREINFO nor a CR3 note; use --pgd", 1)
    return memory.page_tables


def _walk_json(walk: PageWalk, source: str) -> dict[str, Any]:
    return {"virtual": walk.vaddr, "physical": walk.physical, "page_size": walk.page_size,
            "root": walk.root, "levels": walk.levels, "source": source, "reason": walk.reason,
            "entries": [{"level": e.level, "table": e.table, "index": e.index, "address": e.address,
                         "value": e.value, "flags": list(e.flags)} for e in walk.entries]}


_SIZES = {1 << 12: "4KB", 1 << 21: "2MB", 1 << 30: "1GB"}


def _print_walk(walk: PageWalk, source: str) -> None:
    phys = "-" if walk.physical is None else f"{walk.physical:x}"
    click.echo(f"{'VIRTUAL':<18}{'PHYSICAL'}")
    click.echo(f"{walk.vaddr:<18x}{phys}\n")
    click.echo(f"PAGE DIRECTORY: {walk.root:x}  ({walk.levels}-level, from {source})")
    for e in walk.entries:
        click.echo(f"{e.level:>6}: {e.address:x} => {e.value:x}  ({'|'.join(e.flags) or 'NOT PRESENT'})")
    if walk.physical is None:
        click.echo(f"\n{walk.reason}")
        return
    click.echo(f"{'PAGE':>6}: {walk.physical & ~(walk.page_size - 1):x}  ({_SIZES.get(walk.page_size, '?')})")
