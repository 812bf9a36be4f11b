"""
kcrash.cli.collect
==================

``kcrash collect qemu --qmp SOCK -o OUT``: freeze a QEMU guest over QMP, capture its registers and
RAM (from its shared memory-backend file; see :mod:`kcrash.collect.qemu` for the requirement) and
write a filtered dump directly. The guest resumes afterwards if it was running (``--resume`` /
``--keep-stopped`` decide explicitly).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from kcrash.cli.dump import progress_bar, report_write
from kcrash.collect.convert import FORMATS, ConvertOptions
from kcrash.collect.qemu import CollectResult, collect_qemu
from kcrash.dumps.write.compress import CODECS
from kcrash.errors import CliError, LiveTargetError

__all__ = ["commands"]


async def _collect(sock: str, out: Path, opts: ConvertOptions, resume: bool | None) -> CollectResult:
    from qemu.qmp import QMPClient, QMPError

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
    opts = ConvertOptions(level, codec, fmt, threads)
    result = asyncio.run(_collect(sock, Path(out), opts, resume))
    if not result.vmcoreinfo:
        click.echo("kcrash: warning: no VMCOREINFO found in guest RAM; only zero pages were filtered", err=True)
    extra = {"status_before": result.status_before, "resumed": result.resumed, "cpus": result.cpus,
             "vmcoreinfo": result.vmcoreinfo}
    report_write(result.result, as_json, extra)


commands: list[click.Command] = [collect]
