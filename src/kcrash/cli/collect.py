"""
kcrash.cli.collect
==================

``kcrash collect qemu --qmp SOCK -o OUT``: freeze a QEMU guest over QMP, capture its registers and
RAM (from its shared memory-backend file; see :mod:`kcrash.collect.qemu` for the requirement) and
write a filtered dump directly. The guest resumes afterwards if it was running (``--resume`` /
``--keep-stopped`` decide explicitly).

``kcrash collect vmcore [VMCORE] OUT``: the core collector of a capture kernel, a drop-in for
makedumpfile under kdump-tools: the same option spellings (``-d DL`` or ``-d DL1,DL2``, the next level
after a full disk, ``-c``/``-l``/``-p``/``-z``,
``-E``, ``-F`` to stdout, ``-f``, ``--message-level ML``, ``--dump-dmesg VMCORE LOGFILE``; ``-x``/``-i``
are accepted and not needed), the same defaults (dump level 0, uncompressed), the same exit codes
(0 done, 1 failed, also for a bad command line and for a dump cut short by a full disk, which stays
readable and flagged incomplete) and the same message streams (common messages on stdout, on stderr
with ``-F``; the progress line on a terminal only). The work is :mod:`kcrash.collect.vmcore`'s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kcrash.cli.common import echo_json, printed_dump_warnings
from kcrash.cli.progress import progress_lines
from kcrash.collect.convert import FORMATS, ConvertOptions, ConvertResult
from kcrash.collect.vmcore import (
    COMPLETED,
    FAILED,
    ML_PRINT_COMMON_MSG,
    ML_PRINT_DEBUG_MSG,
    ML_PRINT_ERROR_MSG,
    ML_PRINT_PROGRESS,
    ML_PRINT_REPORT_MSG,
    Collection,
    collect_vmcore,
    collect_vmcore_retrying,
    default_threads,
)
from kcrash.dumps import open_dump
from kcrash.dumps.write.compress import CODECS
from kcrash.errors import CliError, KcrashError, LiveTargetError

if TYPE_CHECKING:
    from kcrash.collect.qemu import CollectResult

# collect qemu's modules (asyncio, QMP, kcrash.cli.dump and the analysis it imports) load in its
# command only: a capture kernel's collector starts without them (about 0.7 s less).

__all__ = ["commands"]


async def _collect(sock: str, out: Path, opts: ConvertOptions, resume: bool | None) -> CollectResult:
    import asyncio  # lazy: only collect qemu uses it (collect vmcore starts without)

    # lazy: +9 ms CPU to import it after this module (measured, loaded host)
    from qemu.qmp import QMPClient, QMPError

    # lazy: with kcrash.cli.dump (and the analysis it imports) about 0.7 s of collect vmcore's start-up
    from kcrash.cli.dump import progress_bar

    # lazy: as above (the QMP collector)
    from kcrash.collect.qemu import collect_qemu

    client = QMPClient("kcrash-collect")
    try:
        await asyncio.wait_for(client.connect(sock), timeout=10)
    except (OSError, QMPError, TimeoutError) as exc:
        raise CliError(f"cannot connect to QMP socket {sock}: {exc}", 1) from None

    async def execute(cmd: str, args: dict[str, Any] | None) -> Any:
        try:
            return await asyncio.wait_for(client.execute(cmd, args), timeout=120)
        except QMPError as exc:
            raise LiveTargetError(f"QMP {cmd} failed: {exc}") from exc

    try:
        with progress_bar("collecting") as progress:
            return await collect_qemu(execute, out, opts, resume=resume, progress=progress)
    finally:
        await client.disconnect()


@click.group()
def collect() -> None:
    """Collect crash dumps from running or crashed machines."""


@collect.command()
@click.option("--qmp", "sock", required=True, type=click.Path(), help="QMP UNIX socket of the QEMU guest.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Dump file to write.")
@click.option("-d", "--dump-level", "level", type=click.IntRange(0, 31), default=31, show_default=True)
@click.option("-c", "--codec", type=click.Choice(list(CODECS)), default="zlib", show_default=True)
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="kdump", show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--resume/--keep-stopped", default=None,
              help="Resume the guest afterwards, or keep it stopped (default: as it was).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def qemu(sock: str, out: str, level: int, codec: str, fmt: str, threads: int, resume: bool | None,
         as_json: bool) -> None:
    """Dump a QEMU guest (guest RAM must be a shared memory-backend-file)."""
    import asyncio  # lazy: only collect qemu uses it (collect vmcore starts without)

    from kcrash.cli.dump import report_write  # lazy: kcrash.cli.dump costs collect vmcore ~0.7 s start-up

    opts = ConvertOptions(level, codec, fmt, threads)
    result = asyncio.run(_collect(sock, Path(out), opts, resume))
    if not result.vmcoreinfo:
        click.echo("kcrash: warning: no VMCOREINFO found in guest RAM; only zero pages were filtered", err=True)
    extra = {"status_before": result.status_before, "resumed": result.resumed, "cpus": result.cpus,
             "vmcoreinfo": result.vmcoreinfo}
    report_write(result.result, as_json, extra)


_CODEC_FLAGS = (("zlib", "zlib"), ("lzo", "lzo"), ("snappy", "snappy"), ("zstd", "zstd"))
_VMCORE = "/proc/vmcore"


def _merge_codec_value(args: list[str]) -> list[str]:
    # "-c CODEC" (a codec name right after -c) means --compress CODEC; a bare -c stays zlib, so the
    # makedumpfile vector "-c -d 31 /proc/vmcore OUT" keeps its meaning.
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "-c" and i + 1 < len(args) and args[i + 1] in CODECS:
            out.append(f"--compress={args[i + 1]}")
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


class _UsageError(click.UsageError):
    exit_code = FAILED


class _MakedumpfileCommand(click.Command):
    # makedumpfile's conventions: a bad command line is FAILED (exit 1), not click's usage status 2.
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, _merge_codec_value(args))
        except click.UsageError as exc:
            raise _UsageError(exc.message, exc.ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _UsageError(exc.message, exc.ctx) from None


class _Messages:
    # makedumpfile's message streams: common/report/debug on stdout (stderr when stdout carries the
    # dump), errors on stderr, each printed only if its --message-level bit is set.
    def __init__(self, level: int, flattened: bool) -> None:
        self.level = level
        self.err = flattened

    def common(self, text: str, bit: int = ML_PRINT_COMMON_MSG) -> None:
        if self.level & bit:
            click.echo(text, err=self.err)

    def error(self, text: str) -> None:
        if self.level & ML_PRINT_ERROR_MSG:
            click.echo(f"kcrash: error: {text}", err=True)

    def fail(self, text: str) -> click.exceptions.Exit:
        self.error(text)
        self.common("\nkcrash collect vmcore Failed.")
        return click.exceptions.Exit(FAILED)


def _codec(flags: dict[str, bool], codec: str | None) -> str:
    chosen = {name for key, name in _CODEC_FLAGS if flags[key]} | ({codec} if codec else set())
    if len(chosen) > 1:
        raise click.UsageError(f"give one codec, not {', '.join(sorted(chosen))}")
    return chosen.pop() if chosen else "none"  # makedumpfile writes pages uncompressed without -c/-l/-p/-z


def _dump_levels(text: str) -> list[int]:
    # "-d 31" or makedumpfile's retry list "-d 1,31" (the next level after a full disk)
    try:
        levels = [int(part) for part in text.split(",")]
    except ValueError:
        raise click.UsageError(f"bad dump level {text!r}") from None
    for level in levels:
        if not 0 <= level <= 31:
            raise click.UsageError(f"dump level {level} is not in 0..31")
    return levels


def _paths(paths: tuple[str, ...], flat: bool) -> tuple[str, str | None]:
    # [VMCORE] OUT; with -F: [VMCORE] (the dump goes to stdout)
    wanted = 0 if flat else 1
    if len(paths) == wanted:
        return _VMCORE, paths[0] if paths else None
    if len(paths) == wanted + 1:
        return paths[0], paths[1] if not flat else None
    raise click.UsageError("give [VMCORE] DUMPFILE, or [VMCORE] with -F" if not flat else "-F takes only [VMCORE]")


@collect.command(cls=_MakedumpfileCommand)
@click.argument("paths", metavar="[VMCORE] DUMPFILE", nargs=-1)
@click.option("-d", "level_text", default="0", show_default=True, metavar="DL",
              help="Dump level (1 zero, 2 cache, 4 private cache, 8 user, 16 free); DL1,DL2: next on a full disk.")
@click.option("-c", "zlib", is_flag=True, help="zlib (makedumpfile -c); -c CODEC picks any codec.")
@click.option("-l", "lzo", is_flag=True, help="LZO.")
@click.option("-p", "snappy", is_flag=True, help="snappy.")
@click.option("-z", "zstd", is_flag=True, help="zstd.")
@click.option("--compress", "codec", type=click.Choice(list(CODECS)), help="Codec by name.")
@click.option("-E", "elf", is_flag=True, help="Write a /proc/vmcore-shaped ELF file.")
@click.option("-F", "flat", is_flag=True, help="Write the flattened format to stdout (restore: makedumpfile -R).")
@click.option("-f", "force", is_flag=True, help="Overwrite DUMPFILE if it exists.")
@click.option("--message-level", "message_level", type=click.IntRange(0, 31), default=7, show_default=True,
              help="1 progress, 2 common, 4 error, 8 debug, 16 report messages.")
@click.option("-q", "--quiet", is_flag=True, help="Error messages only (--message-level 4).")
@click.option("-D", "debug", is_flag=True, help="Debug messages too.")
@click.option("--show-stats", is_flag=True, help="Report messages too (the excluded pages per class).")
@click.option("--dump-dmesg", is_flag=True, help="Write the kernel log of VMCORE to DUMPFILE instead.")
@click.option("-x", "vmlinux", type=click.Path(), help="Accepted for makedumpfile compatibility; not needed.")
@click.option("-i", "vmcoreinfo", type=click.Path(), help="Accepted for makedumpfile compatibility; not needed.")
@click.option("--num-threads", "threads", type=click.IntRange(1, 64),
              help="Compression processes (default: the CPUs for zlib and zstd, else 1).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (not with -F).")
def vmcore(paths: tuple[str, ...], level_text: str, zlib: bool, lzo: bool, snappy: bool, zstd: bool,
           codec: str | None, elf: bool, flat: bool, force: bool, message_level: int, quiet: bool, debug: bool,
           show_stats: bool, dump_dmesg: bool, vmlinux: str | None, vmcoreinfo: str | None, threads: int | None,
           as_json: bool) -> None:
    """Filter /proc/vmcore into a dump in a capture kernel: a drop-in for makedumpfile under kdump-tools."""
    level = (ML_PRINT_ERROR_MSG if quiet else message_level) | (ML_PRINT_DEBUG_MSG if debug else 0) \
        | (ML_PRINT_REPORT_MSG if show_stats else 0)
    msgs = _Messages(level, flat)
    src, out = _paths(paths, flat and not dump_dmesg)
    if vmlinux or vmcoreinfo:
        msgs.common("kcrash: -x/-i ignored: symbols and types come from the dump itself", ML_PRINT_DEBUG_MSG)
    if out is not None and Path(out).exists() and Path(src).exists() and Path(out).samefile(src):
        raise msgs.fail(f"{out} is the input dump: give another output file")
    if out is not None and Path(out).exists() and not force:
        raise msgs.fail(f"Can't open the dump file({out}). File exists.")
    if dump_dmesg:
        _dump_dmesg(src, Path(out or ""), msgs)
        return
    chosen = _codec({"zlib": zlib, "lzo": lzo, "snappy": snappy, "zstd": zstd}, codec)
    if elf and (flat or chosen != "none"):
        raise click.UsageError("-E writes uncompressed ELF: not with -F or a codec")
    if flat and (as_json or os.isatty(1)):
        raise click.UsageError("-F writes the dump to stdout: redirect it to a file or pipe, without --json")

    levels = _dump_levels(level_text)
    opts = ConvertOptions(levels[0], chosen, "elf" if elf else "flat" if flat else "kdump",
                          threads or default_threads(chosen))
    collection = _run_vmcore(src, None if flat else Path(out or ""), opts, levels, msgs)
    _finish(collection, msgs, as_json)


def _run_vmcore(src: str, out: Path | None, opts: ConvertOptions, levels: list[int],
                msgs: _Messages) -> Collection:
    try:
        with printed_dump_warnings():
            handle = open_dump(src)
        try:
            with progress_lines("Copying data", quiet=not msgs.level & ML_PRINT_PROGRESS) as progress:
                if out is None:
                    sys.stdout.flush()
                if out is None:  # a stream cannot be taken back: the first level only
                    return collect_vmcore(handle, None, opts, stream_fd=1, progress=progress)
                return collect_vmcore_retrying(handle, out, opts, levels, progress=progress, on_retry=lambda level:
                                               msgs.common(f"Retry to create a dumpfile by dump_level({level})."))
        finally:
            handle.close()
    except (KcrashError, OSError) as exc:
        raise msgs.fail(f"{exc}") from None
    except KeyboardInterrupt:
        raise msgs.fail("interrupted: the dump is flagged incomplete; pages past the interruption are lost") \
            from None


def _finish(collection: Collection, msgs: _Messages, as_json: bool) -> None:
    result = collection.result
    w = result.write
    if as_json:
        echo_json(_result_json(result, collection.exit_status))
    else:
        _print_stats(result, msgs)
    if w.incomplete:
        msgs.error(f"{w.path} is INCOMPLETE ({w.reason}): {w.pages_written} of {w.pages_total} pages written; "
                   "its header is flagged incomplete and the pages written stay readable")
    if not as_json:
        if not collection.streamed and not w.incomplete:
            msgs.common(f"\nThe dumpfile is saved to {w.path}.")
        msgs.common("\nkcrash collect vmcore " + ("Completed." if collection.exit_status == COMPLETED else "Failed."))
    if collection.exit_status != COMPLETED:
        raise click.exceptions.Exit(collection.exit_status)


def _result_json(result: ConvertResult, status: int) -> dict[str, Any]:
    w, rep = result.write, result.report
    return {"path": str(w.path), "exit_status": status, "incomplete": w.incomplete, "reason": w.reason,
            "size": w.size, "pages_written": w.pages_written, "pages_total": w.pages_total,
            "ram_pages": rep.ram_pages, "excluded": rep.excluded, "remaining": rep.remaining,
            "seconds": round(result.seconds, 3)}


def _print_stats(result: ConvertResult, msgs: _Messages) -> None:
    # makedumpfile's report block (--message-level 16 / --show-stats), in decimal
    rep = result.report
    labels = (("zero", "Pages filled with zero"), ("cache", "Non-private cache pages"),
              ("cache_private", "Private cache pages"), ("user", "User process data pages"),
              ("free", "Free pages"), ("hwpoison", "Hwpoison pages"), ("offline", "Offline pages"))
    lines = ["\nOriginal pages  : " + str(rep.ram_pages), "  Excluded pages   : " + str(sum(rep.excluded.values()))]
    lines += [f"    {label:<24}: {rep.excluded.get(key, 0)}" for key, label in labels]
    lines += [f"  Remaining pages  : {rep.remaining}", f"Written          : {result.write.size} bytes in "
              f"{result.seconds:.2f} s"]
    for line in lines:
        msgs.common(line, ML_PRINT_REPORT_MSG)


def _dump_dmesg(src: str, out: Path, msgs: _Messages) -> None:
    # makedumpfile --dump-dmesg: the kernel log as text, from VMCOREINFO alone
    # lazy: the analysis modules cost collect vmcore ~0.7 s of start-up (-X importtime); only --dump-dmesg needs them
    from kcrash.analysis.triage import dump_log
    from kcrash.helpers.linux.printk import format_dmesg  # lazy: as above

    try:
        with printed_dump_warnings():
            handle = open_dump(src)
        try:
            log = dump_log(handle)
        finally:
            handle.close()
        if not log.records:
            raise msgs.fail(f"no kernel log found in {src}")
        out.write_text(format_dmesg(log.records), encoding="utf-8")
    except (KcrashError, OSError) as exc:
        raise msgs.fail(f"{exc}") from None
    msgs.common(f"\nThe dmesg log is saved to {out}.")
    msgs.common("\nkcrash collect vmcore Completed.")

commands: list[click.Command] = [collect]
