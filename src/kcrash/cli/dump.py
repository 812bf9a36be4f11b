"""
kcrash.cli.dump
===============

``kcrash dump info DUMP…``: what a dump file holds (format, codecs, dump level, page counts,
kernel release, build-id, crash time, KASLR offset, CPUs and their registers, the CPU that
panicked when the notes tell). Also the shared ``open`` helper of the memory commands, which turns
dump warnings into one ``kcrash: warning:`` line each.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from kcrash.cli.common import echo_json
from kcrash.dumps import DumpFormat, DumpWarning, open_dump
from kcrash.memory.kernel import KernelMemory, find_panic_cpu_or_none, open_kernel_memory

__all__ = ["dump", "opened_dump"]


@contextmanager
def opened_dump(paths: tuple[str, ...], *, zero_fill: bool = False) -> Iterator[DumpFormat]:
    """Open ``paths`` as one dump, print its warnings as one line each, and close it afterwards."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DumpWarning)
        handle = open_dump(list(paths), zero_fill=zero_fill)
    for w in caught:
        click.echo(f"kcrash: warning: {w.message}", err=True)
    try:
        yield handle
    finally:
        handle.close()


@click.group()
def dump() -> None:
    """Commands on crash dump files."""


@dump.command()
@click.argument("paths", metavar="DUMP...", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(paths: tuple[str, ...], as_json: bool) -> None:
    """Describe a dump (several files: one --split set)."""
    with opened_dump(paths) as handle:
        data = dump_info(handle)
    if as_json:
        echo_json(data)
    else:
        _print_info(data)


def dump_info(handle: DumpFormat) -> dict[str, Any]:
    """Return the facts ``dump info`` shows, as JSON-ready data."""
    desc = handle.describe()
    memory = open_kernel_memory(handle)
    vmci = memory.vmcoreinfo
    data: dict[str, Any] = dataclasses.asdict(desc)
    data.update(
        kernel_release=(vmci.osrelease if vmci else None) or desc.utsname.get("release") or None,
        build_id=vmci.build_id if vmci else None,
        crash_time=(vmci.crashtime if vmci else None) or desc.timestamp or None,
        page_size=vmci.page_size if vmci else desc.pages.page_size,
        has_vmcoreinfo=vmci is not None,
        kaslr_offset=memory.layout.kaslr_offset, phys_base=memory.layout.phys_base,
        page_table_root=memory.layout.pgd, paging_levels=memory.layout.levels,
        layout_source=memory.layout.source, cpus=_cpus(memory),
        panic_cpu=find_panic_cpu_or_none(memory))
    return data


def _cpus(memory: KernelMemory) -> list[dict[str, Any]]:
    rows = []
    for cpu in memory.cpus:
        row: dict[str, Any] = {"cpu": cpu.cpu}
        if cpu.prstatus is not None:
            row.update(pr_pid=cpu.prstatus.pr_pid, registers=cpu.prstatus.registers)
        if cpu.qemu is not None:
            row.update(cr0=cpu.qemu.cr[0], cr2=cpu.qemu.cr[2], cr3=cpu.qemu.cr3, cr4=cpu.qemu.cr[4],
                       segment_bases=cpu.qemu.segment_bases, segment_selectors=cpu.qemu.segment_selectors,
                       kernel_gs_base=cpu.qemu.kernel_gs_base)
            row.setdefault("registers", cpu.qemu.registers)
        rows.append(row)
    return rows


def _hex(value: int | None) -> str:
    return "-" if value is None else (f"{value:#x}" if value >= 0 else f"-{-value:#x}")


def _print_info(data: dict[str, Any]) -> None:
    pages = data["pages"]
    lines = [
        ("files", ", ".join(data["files"])), ("format", data["format"]),
        ("codecs", ", ".join(data["codecs"]) or "-"),
        ("dump level", "-" if data["dump_level"] is None else str(data["dump_level"])),
        ("pages", f"{pages['present']} present, {pages['excluded']} excluded, {pages['zero']} zero, "
                  f"{pages['lost']} lost (page size {pages['page_size']})"),
        ("status", ", ".join(data["status_flags"]) or "-"),
        ("kernel release", data["kernel_release"] or "-"), ("build-id", data["build_id"] or "-"),
        ("crash time", str(data["crash_time"] or "-")),
        ("KASLR offset", _hex(data["kaslr_offset"])), ("phys_base", _hex(data["phys_base"])),
        ("page tables", f"{_hex(data['page_table_root'])} ({data['paging_levels']}-level, "
                        f"from {data['layout_source']})"),
        ("CPUs", f"{len(data['cpus'])} in notes, nr_cpus {data['nr_cpus']}"),
        ("panicked CPU", "unknown" if data["panic_cpu"] is None else str(data["panic_cpu"])),
    ]
    for key, value in lines:
        click.echo(f"{key:>15}: {value}")
    for cpu in data["cpus"]:
        _print_cpu(cpu, cpu["cpu"] == data["panic_cpu"])


def _print_cpu(cpu: dict[str, Any], panicked: bool) -> None:
    mark = "  (panicked)" if panicked else ""
    extra = f" pid {cpu['pr_pid']}" if "pr_pid" in cpu else ""
    click.echo(f"\nCPU {cpu['cpu']}{extra}{mark}")
    regs = cpu.get("registers", {})
    names = [n for n in ("rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",
                         "r11", "r12", "r13", "r14", "r15", "eflags", "cs", "ss") if n in regs]
    for i in range(0, len(names), 3):
        click.echo("  " + "  ".join(f"{n.upper():>6}: {regs[n]:016x}" for n in names[i:i + 3]))
    if "cr3" in cpu:
        click.echo(f"     CR3: {cpu['cr3']:016x}  CR4: {cpu['cr4']:016x}  GS.base: {cpu['segment_bases']['gs']:016x}")
