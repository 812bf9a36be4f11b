"""
kcrash.cli.dump
===============

``kcrash dump info DUMP…``: what a dump file holds (format, codecs, dump level, page counts,
kernel release, build-id, crash time, KASLR offset, CPUs and their registers, the CPU that
panicked when the notes tell). ``kcrash dump convert IN OUT``: filter and rewrite a dump like
makedumpfile (the capture-kernel path). ``kcrash dump dmesg DUMP [OUT]``: the kernel log with no
vmlinux, like ``makedumpfile --dump-dmesg``. Also the shared ``open`` helper of the memory
commands, which turns dump warnings into one ``kcrash: warning:`` line each.
"""

from __future__ import annotations

import datetime
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kcrash.analysis import target
from kcrash.analysis.dumpinfo import debuginfo_sources, dump_facts
from kcrash.analysis.triage import dump_log, log_lines
from kcrash.cli.common import (
    attached_live,
    cache_dir,
    echo_json,
    given_symbol_file,
    printed_dump_warnings,
    symbol_file_options,
    warn_of_missing_log,
)
from kcrash.cli.params import DumpOrLive, parse_live_target
from kcrash.cli.progress import progress_lines
from kcrash.collect.convert import FORMATS, ConvertOptions, ConvertResult, convert_dump, default_threads
from kcrash.dumps import DumpFormat, open_dump
from kcrash.dumps.write.compress import CODECS
from kcrash.errors import CliError, KcrashError
from kcrash.helpers.linux.printk import format_dmesg
from kcrash.model import to_dict
from kcrash.report.json import dumps

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["dump", "opened_dump", "progress_bar", "report_write"]


@contextmanager
def opened_dump(paths: tuple[str, ...], *, zero_fill: bool = False) -> Iterator[DumpFormat]:
    """Open ``paths`` as one dump, print its warnings as one line each, and close it afterwards.
    A live target (``gdb:HOST:PORT[?qmp=SOCKET]``) is attached instead: its memory as a dump while
    the kernel is stopped, detached (resumed) afterwards."""
    live = parse_live_target(paths[0]) if len(paths) == 1 else None
    if live is not None:
        with attached_live(live.stub, live.qmp, binder=False) as session:
            yield session.dump  # LiveDump is shaped like a dump (kcrash.dumps.DumpFormat)
        return
    with printed_dump_warnings():
        handle = open_dump(list(paths), zero_fill=zero_fill)
    try:
        yield handle
    finally:
        handle.close()


@click.group()
def dump() -> None:
    """Commands on crash dump files."""


@dump.command()
@click.argument("paths", metavar="DUMP...", nargs=-1, required=True,
                type=DumpOrLive(not_live="dump info describes dump files (kcrash sys describes a running kernel)"))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@symbol_file_options
def info(paths: tuple[str, ...], as_json: bool) -> None:
    """Describe a dump (several files: one --split set), and how its symbols, types and unwind tables
    are found."""
    prog, debuginfo = _opened_target(paths)
    try:
        with opened_dump(paths) as handle:
            data = dump_facts(handle, prog)
    finally:
        if prog is not None:
            prog.close()
    data["debuginfo"] = debuginfo
    if as_json:
        echo_json(data)
    else:
        _print_info(data)


def _opened_target(paths: tuple[str, ...]) -> tuple[Program | None, dict[str, str]]:
    # The dump with symbols and types (the dump's own, or --vmlinux/--system-map), for the crash
    # time, and how they were found; None and the reason when they cannot be.
    with warnings.catch_warnings():  # the dump's own warnings are printed once, by opened_dump
        warnings.simplefilter("ignore")
        try:
            prog = target.open_target(list(paths), cache_dir(), orc=False, symbol_file=given_symbol_file())
        except KcrashError as exc:
            return None, {"symbols": f"unavailable: {exc}"}
    return prog, debuginfo_sources(prog)


def _hex(value: int | None) -> str:
    return "-" if value is None else (f"{value:#x}" if value >= 0 else f"-{-value:#x}")


def _date(seconds: int) -> str:
    # the date as `sys` and the report print it (report/terminal.py), then the seconds
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%a %b %e %H:%M:%S UTC %Y")
    return f"{text} ({seconds})"


def _print_info(data: dict[str, Any]) -> None:
    pages = data["pages"]
    lines = [
        ("files", ", ".join(data["files"])), ("format", data["format"]),
        ("codecs", ", ".join(data["codecs"]) or "-"),
        ("dump level", "-" if data["dump_level"] is None else str(data["dump_level"])),
        ("pages", f"{pages['present']:,} present ({pages['zero']:,} of them zero), {pages['lost']:,} missing, "
                  f"{pages['excluded']:,} filtered (page size {pages['page_size']})"),
        ("status", ", ".join(data["status_flags"]) or "-"),
        ("kernel release", data["kernel_release"] or "-"), ("build-id", data["build_id"] or "-"),
        ("crash time", "-" if data["crash_time"] is None else _date(data["crash_time"])),
        ("KASLR offset", _hex(data["kaslr_offset"])), ("phys_base", _hex(data["phys_base"])),
        ("page tables", f"{_hex(data['page_table_root'])} ({data['paging_levels']}-level, "
                        f"from {data['layout_source']})"),
        ("CPUs", f"{len(data['cpus'])} in notes, nr_cpus {data['nr_cpus']}"),
        ("panicked CPU", "unknown" if data["panic_cpu"] is None else str(data["panic_cpu"])),
    ]
    lines += list(data.get("debuginfo", {}).items())
    for key, value in lines:
        click.echo(f"{key:>15}: {value}")
    for cpu in data["cpus"]:
        _print_cpu(cpu, cpu["cpu"] == data["panic_cpu"])


def _print_cpu(cpu: dict[str, Any], panicked: bool) -> None:
    mark = "  (panicked)" if panicked else ""
    # the kernel's notes name the task running there, QEMU's the vCPU (see analysis.dumpinfo)
    extra = f"  pid {cpu['pid']}" if "pid" in cpu else ""
    extra += f"  QEMU CPU #{cpu['qemu_cpu_index']}" if "qemu_cpu_index" in cpu else ""
    click.echo(f"\nCPU {cpu['cpu']}{extra}{mark}")
    regs = cpu.get("registers", {})
    names = [n for n in ("rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",
                         "r11", "r12", "r13", "r14", "r15", "eflags", "cs", "ss") if n in regs]
    for i in range(0, len(names), 3):
        click.echo("  " + "  ".join(f"{n.upper():>6}: {regs[n]:016x}" for n in names[i:i + 3]))
    if "cr3" in cpu:
        click.echo(f"     CR3: {cpu['cr3']:016x}  CR4: {cpu['cr4']:016x}  GS.base: {cpu['segment_bases']['gs']:016x}")


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a ``progress(done, total)`` callback drawing a rich bar on stderr, or None when stderr
    is not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    # lazy: +37 ms CPU to import it after this module (measured, loaded host)
    from rich.console import Console

    # lazy: +61 ms CPU to import it after this module (measured, loaded host)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def report_write(result: ConvertResult, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    """Print what a conversion or collection wrote (plus ``extra`` facts); a dump left incomplete
    becomes a :class:`CliError` after the report."""
    w, rep = result.write, result.report
    if as_json:
        echo_json({**(extra or {}), "path": str(w.path), "incomplete": w.incomplete, "reason": w.reason,
                   "size": w.size, "pages_written": w.pages_written, "pages_total": w.pages_total,
                   "ram_pages": rep.ram_pages, "excluded": rep.excluded, "remaining": rep.remaining,
                   "seconds": round(result.seconds, 3)})
    else:
        for key, value in (extra or {}).items():
            click.echo(f"{key:<17}: {value}")
        _print_report(result)
    if w.incomplete:
        raise CliError(f"{w.path} is INCOMPLETE ({w.reason}): {w.pages_written} of {w.pages_total} pages "
                       "written; it is flagged incomplete and readers warn about it", 1)


def _print_report(result: ConvertResult) -> None:
    rep = result.report
    labels = (("zero", "Pages filled with zero"), ("cache", "Non-private cache pages"),
              ("cache_private", "Private cache pages"), ("user", "User process data pages"),
              ("free", "Free pages"), ("hwpoison", "Hwpoison pages"), ("offline", "Offline pages"))
    click.echo(f"RAM pages        : {rep.ram_pages}")
    click.echo(f"  Excluded pages : {sum(rep.excluded.values())}")
    for key, label in labels:
        click.echo(f"    {label:<24}: {rep.excluded.get(key, 0)}")
    click.echo(f"  Remaining pages: {rep.remaining}")
    click.echo(f"Written          : {result.write.path} ({result.write.size} bytes, {result.seconds:.2f} s)")


def _install_sigterm() -> None:
    # SIGTERM interrupts like ^C, so the writer can flag and keep what it wrote.
    # lazy: +2 ms CPU to import it after this module (measured, loaded host)
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _check_output(source: Path, out: Path, force: bool) -> None:
    # Never write over the input; over another existing file only when asked to.
    if out.exists() and source.exists() and out.samefile(source):
        raise CliError(f"{out} is the input dump: give another output file", 1)
    if out.exists() and not force:
        raise CliError(f"{out} exists: give --force to replace it", 1)


@dump.command()
@click.argument("source", metavar="IN", type=DumpOrLive(
    not_live="a running QEMU guest is dumped with kcrash collect qemu --qmp SOCKET"))
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False, writable=True))
@click.option("-d", "--dump-level", "level", type=click.IntRange(0, 31), default=31, show_default=True,
              help="makedumpfile dump level (1 zero, 2 cache, 4 private cache, 8 user, 16 free).")
@click.option("-c", "--codec", type=click.Choice(list(CODECS)), default="zlib", show_default=True)
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="kdump", show_default=True,
              help="kdump-compressed, its flattened (pipe) form, or a /proc/vmcore-shaped ELF file.")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Compression processes (default: the CPUs this process may run on for zlib and zstd, "
                   "1 for the fast codecs; makedumpfile uses one).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line (it is drawn on a terminal only anyway).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def convert(source: str, out: str, level: int, codec: str, fmt: str, threads: int | None, force: bool,
            quiet: bool, as_json: bool) -> None:
    """Filter and rewrite a dump (any format kcrash reads) like makedumpfile. OUT appears only when
    written (a killed conversion leaves none); an existing OUT is kept unless --force."""
    _check_output(Path(source), Path(out), force)
    opts = ConvertOptions(level, codec, fmt, threads or default_threads(codec))
    _install_sigterm()
    with opened_dump((source,)) as handle, progress_lines("Converting", quiet=quiet) as progress:
        try:
            result = convert_dump(handle, Path(out), opts, progress)
        except KeyboardInterrupt:
            raise CliError(f"interrupted: {out} is INCOMPLETE (flagged so); pages past the interruption "
                           "are lost", 130) from None
    report_write(result, as_json)


@dump.command()
@click.argument("paths", metavar="DUMP", nargs=1, type=DumpOrLive())
@click.argument("out", metavar="[OUT]", required=False, type=click.Path(dir_okay=False, writable=True))
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON.")
def dmesg(paths: str, out: str | None, as_json: bool) -> None:
    """Print the kernel log of a dump (no vmlinux needed), as makedumpfile --dump-dmesg does."""
    with opened_dump((paths,)) as handle:
        log = dump_log(handle)
    records = log.records
    warn_of_missing_log(log)
    # --json: the same records as log --json
    text = dumps([to_dict(line) for line in log_lines(records)]) if as_json else format_dmesg(records)
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text, encoding="utf-8")
        click.echo(f"The dmesg log is saved to {out} ({len(records)} records).", err=True)
