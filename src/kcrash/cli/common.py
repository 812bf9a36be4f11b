"""
kcrash.cli.common
=================

Small things every subcommand shares: the cache directory (``$KCRASH_CACHE``, default
``~/.cache/kcrash``), JSON output, opening dumps with their warnings printed as one line each, and
running the user's own Python code (``shell -c``, ``live --script``) so that its errors show the
user's frames only.
"""

from __future__ import annotations

import linecache
import os
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kcrash.errors import CliError

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["cache_dir", "echo_json", "opened_target", "printed_dump_warnings", "run_user_code"]


def cache_dir() -> Path:
    """The kcrash cache: ``$KCRASH_CACHE`` or ``~/.cache/kcrash``."""
    env = os.environ.get("KCRASH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kcrash"


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    import json  # only --json output needs it

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


@contextmanager
def printed_dump_warnings() -> Iterator[None]:
    """Collect the warnings raised inside (every :class:`~kcrash.dumps.DumpWarning`, repeats too) and
    print each as one ``kcrash: warning:`` line when the block succeeds."""
    from kcrash.dumps import DumpWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DumpWarning)
        yield
    for w in caught:
        click.echo(f"kcrash: warning: {w.message}", err=True)


@contextmanager
def opened_target(path: str, *, orc: bool = True) -> Iterator[Program]:
    """The dump at ``path`` as a ready program (symbols, types, modules; ``orc``: the unwinder's
    tables), its warnings printed; closed afterwards."""
    from kcrash.analysis.target import open_target
    from kcrash.metrics import phase

    with printed_dump_warnings(), phase("open"):
        prog = open_target(path, cache_dir(), orc=orc)
    try:
        yield prog
    finally:
        prog.close()


def run_user_code(source: str, namespace: dict[str, Any], filename: str) -> None:
    """Run the user's Python ``source`` in ``namespace``; ``filename`` names it in tracebacks.

    An exception from it is shown as a traceback of the user's own frames only (kcrash's are left
    out) and becomes a :class:`~kcrash.errors.CliError` (exit status 1) naming it; a syntax error is
    that one line. ``SystemExit`` and ``KeyboardInterrupt`` pass through.
    """
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compile(source, filename, "exec")
    except SyntaxError as exc:
        raise CliError(f"SyntaxError: {exc}", 1) from None
    try:
        exec(code, namespace)  # the user's own code, run as they asked
    except Exception as exc:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
        if frames:
            click.echo("Traceback (most recent call last):", err=True)
            click.echo("".join(traceback.format_list(frames)).rstrip("\n"), err=True)
        raise CliError(f"{type(exc).__name__}: {exc}", 1) from None
