"""
kcrash.cli.app
==============

The root command group. Subcommands are imported only when they run (a dump command should not
pay for importing the live debugger or the DWARF reader): :data:`COMMANDS` maps each command name
to the module that defines it, and a test checks the table against the modules.

Root options: ``--stats`` prints kcrash's own metrics (:mod:`kcrash.metrics`) on stderr after the
command, ``--metrics FILE`` writes them in the Prometheus text format; both also when the command
fails. Long work draws a progress bar on stderr when it is a terminal.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from kcrash import __version__, metrics

__all__ = ["COMMANDS", "kcrash"]

#: command name -> module whose ``commands`` list (or attribute of the same name) defines it
COMMANDS: dict[str, str] = {
    "addr2line": "kcrash.cli.addr2line",
    "bt": "kcrash.cli.analyze",
    "collect": "kcrash.cli.collect",
    "decode": "kcrash.cli.decode",
    "dev": "kcrash.cli.kernel_state",
    "dis": "kcrash.cli.dis",
    "dump": "kcrash.cli.dump",
    "files": "kcrash.cli.system",
    "foreach": "kcrash.cli.tasks",
    "irq": "kcrash.cli.kernel_state",
    "kmem": "kcrash.cli.kmem",
    "lab": "kcrash.cli.lab",
    "list": "kcrash.cli.walk",
    "locks": "kcrash.cli.locks",
    "live": "kcrash.cli.live",
    "log": "kcrash.cli.analyze",
    "mount": "kcrash.cli.system",
    "mod": "kcrash.cli.analyze",
    "net": "kcrash.cli.system",
    "oops": "kcrash.cli.oops",
    "p": "kcrash.cli.types",
    "ps": "kcrash.cli.analyze",
    "rd": "kcrash.cli.memory",
    "report": "kcrash.cli.analyze",
    "runq": "kcrash.cli.kernel_state",
    "schema": "kcrash.cli.schema",
    "search": "kcrash.cli.search",
    "shell": "kcrash.cli.shell",
    "struct": "kcrash.cli.types",
    "sym": "kcrash.cli.sym",
    "sys": "kcrash.cli.analyze",
    "task": "kcrash.cli.tasks",
    "timer": "kcrash.cli.kernel_state",
    "triage": "kcrash.cli.fleet",
    "tree": "kcrash.cli.walk",
    "vm": "kcrash.cli.vm",
    "vtop": "kcrash.cli.memory",
    "waitq": "kcrash.cli.tasks",
    "whatis": "kcrash.cli.types",
}


def load_command(name: str) -> click.Command:
    """Import the module of command ``name`` and return the command object."""
    module = importlib.import_module(COMMANDS[name])
    for command in getattr(module, "commands", []):
        if command.name == name:
            return command  # type: ignore[no-any-return]
    command = getattr(module, name)
    assert isinstance(command, click.Command)
    return command


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kcrash")
@click.option("--stats", is_flag=True, help="Print kcrash's own metrics on stderr after the command.")
@click.option("--metrics", "metrics_file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write kcrash's own metrics to FILE (Prometheus text format) after the command.")
@click.pass_context
def kcrash(ctx: click.Context, stats: bool, metrics_file: str | None) -> None:
    """Linux kernel crash analysis and live kernel debugging.

    Every analysis command's DUMP may also be a running kernel behind QEMU's gdbstub:
    gdb:HOST:PORT, or gdb:HOST:PORT?qmp=SOCKET (VMCOREINFO from QEMU's QMP socket). It is
    stopped while the command reads it, then resumed; $KCRASH_LIVE_TIMEOUT (seconds, default 10)
    bounds every wait for the stub."""
    metrics.start_debug()
    metrics.set_progress_hook(_progress_bar)
    ctx.call_on_close(lambda: _finish(stats, metrics_file))


@contextmanager
def _progress_bar(description: str) -> Iterator[metrics.ProgressFn | None]:
    # The dump commands' bar (stderr, only on a terminal), imported when long work starts.
    # lazy: +512 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.dump import progress_bar

    with progress_bar(description) as update:
        yield update


def _finish(stats: bool, metrics_file: str | None) -> None:
    # Runs when the root context closes: after the command, whether it succeeded or raised.
    metrics.stop_debug()
    metrics.set_progress_hook(None)
    if metrics_file is not None:
        try:
            Path(metrics_file).write_bytes(metrics.exposition())
        except OSError as exc:
            click.echo(f"kcrash: error: cannot write metrics to {metrics_file}: {exc.strerror or exc}", err=True)
    if stats:
        print_stats(metrics.snapshot())


def _seconds(value: float) -> str:
    return f"{value:.3f} s"


def print_stats(snap: metrics.Snapshot) -> None:
    """``--stats``: the counters, the page-cache hit rate, time per phase and total debug time, on stderr."""
    # lazy: +41 ms CPU to import it after this module (measured, loaded host)
    from rich.table import Table

    # lazy: +114 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.terminal import make_console

    table = Table(title="kcrash stats", box=None, pad_edge=False, show_header=False, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in snap.counters.items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    rate = snap.cache_hit_rate
    table.add_row("page cache hit rate", "n/a" if rate is None else f"{rate:.1%}")
    if snap.latency_count:
        table.add_row("stop->resume latency (mean)", _seconds(snap.latency_sum / snap.latency_count))
    for name, (count, seconds) in sorted(snap.phases.items()):
        table.add_row(f"phase {name} ({count}x)", _seconds(seconds))
    table.add_row("total debug time", _seconds(snap.debug_seconds))
    make_console(sys.stderr).print(table)
