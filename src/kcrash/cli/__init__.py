"""
kcrash.cli
==========

The ``kcrash`` command. Only this package prints, picks exit codes or reads environment
variables; each subcommand lives in its own module and delegates to the layers below.
"""

from __future__ import annotations

import gc
import os
import sys

# kcrash does no linear algebra: without this, importing numpy starts OpenBLAS worker threads that
# spin on the other cores for ~50 ms of CPU (measured), competing with kcrash's own second thread
# (kdump inflate) and with whatever else runs. A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from kcrash.cli.app import kcrash
from kcrash.errors import CliError, KcrashError, LabTimeoutError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every expected failure becomes one line on stderr and a non-zero exit.

    Without ``argv`` (the ``kcrash`` program itself, which exits next) the objects left are frozen
    out of the garbage collector first: the collections at interpreter exit would otherwise walk and
    free every imported module's objects, about 10 ms of a 0.1 s command, for memory the exit frees.
    The program also runs the young-generation collection less often (every 20,000 net allocations
    instead of 700): loading a kernel's symbols makes 10^5 long-lived objects, and each collection
    the default threshold triggers walks them again (~10 ms of a 0.3 s report); cycles are still
    collected. Both are the gc module's public tuning interface; together they save 35 ms of CPU
    (1.19x) of a warm ``kcrash decode``, whose target is <= 1.0x llvm-symbolizer (``bench/ab_cpu.py``,
    bench/RESULTS.md "gc tuning").
    """
    if argv is None:
        gc.set_threshold(20_000, 10, 10)
    try:
        return _run(argv)
    finally:
        if argv is None:
            gc.freeze()


def _run(argv: list[str] | None) -> int:
    try:
        # Without standalone mode click returns (not raises) the status of a command's
        # click.exceptions.Exit(code): the way a command ends with a status and no message
        # (kcrash collect vmcore's makedumpfile exit codes). Commands otherwise return None.
        status = kcrash.main(args=argv, prog_name="kcrash", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("kcrash: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except CliError as exc:
        click.echo(f"kcrash: error: {exc}", err=True)
        return exc.exit_code
    except KcrashError as exc:
        click.echo(f"kcrash: error: {exc}", err=True)
        _show_details(exc)
        return 1
    except KeyboardInterrupt:
        click.echo("kcrash: interrupted", err=True)
        return 130
    except BrokenPipeError:
        return 141
    except OSError as exc:
        click.echo(f"kcrash: error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}",
                   err=True)
        return 1
    return status if type(status) is int else 0


def _show_details(exc: KcrashError) -> None:
    if isinstance(exc, LabTimeoutError) and exc.serial_tail:
        click.echo("last lines of the guest console:", err=True)
        for line in exc.serial_tail.splitlines():
            click.echo(f"  | {line}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
