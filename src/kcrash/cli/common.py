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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kcrash.errors import CliError
from kcrash.metrics import phase

if TYPE_CHECKING:
    from kcrash.helpers.linux.printk import PrintkLog
    from kcrash.live.session import LiveSession
    from kcrash.types.program import Program

__all__ = [
    "LIVE_TIMEOUT",
    "attached_live",
    "cache_dir",
    "echo_json",
    "echo_schema",
    "opened_target",
    "printed_dump_warnings",
    "refuse_live",
    "run_user_code",
    "symbol_file_options",
    "warn_of_missing_log",
]


def cache_dir() -> Path:
    """The kcrash cache: ``$KCRASH_CACHE`` or ``~/.cache/kcrash``."""
    env = os.environ.get("KCRASH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kcrash"


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON, addresses and other 64-bit values as ``"0x…"`` strings
    (the one rule of every ``--json`` output: :func:`kcrash.report.json.json_ready`)."""
    # lazy: +73 ms CPU to import it after this module (measured, loaded host)
    from kcrash.report.json import dumps  # only --json output needs it

    click.echo(dumps(data), nl=False)


def echo_schema(schema: dict[str, object]) -> None:
    """Print a JSON Schema as it is (no number rewriting)."""
    import json  # lazy: json (+1.2 ms, bench/RESULTS.md) only for --json/--schema output

    click.echo(json.dumps(schema, indent=2, sort_keys=True))


@contextmanager
def printed_dump_warnings() -> Iterator[None]:
    """Collect the warnings raised inside (every :class:`~kcrash.dumps.DumpWarning`, repeats too) and
    print each as one ``kcrash: warning:`` line when the block succeeds."""
    # lazy: +58 ms CPU to import it after this module (measured, loaded host)
    from kcrash.dumps import DumpWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DumpWarning)
        yield
    for w in caught:
        click.echo(f"kcrash: warning: {w.message}", err=True)


_SYMBOL_FILE = "kcrash.symbol_file"
_VMLINUX = "kcrash.vmlinux"


def symbol_file_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--vmlinux FILE`` and ``--system-map FILE`` to an analysis command: the kernel's symbols
    from that file instead of the dump's kallsyms (kept in the click context for
    :func:`opened_target`; a vmlinux also serves ``report``'s source lines)."""

    def store(key: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
        def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
            if value:
                ctx.meta[_SYMBOL_FILE] = Path(value)
                if key == _VMLINUX:
                    ctx.meta[_VMLINUX] = value
        return callback

    path = click.Path(exists=True, dir_okay=False)
    command = click.option("--system-map", type=path, expose_value=False, callback=store(_SYMBOL_FILE),
                           help="The kernel's System.map: symbols when the dump's kallsyms cannot be read.")(command)
    return click.option("--vmlinux", type=path, expose_value=False, callback=store(_VMLINUX),
                        help="The kernel's vmlinux (build-id checked): symbols, and DWARF where used.")(command)


def given_symbol_file() -> Path | None:
    """The ``--vmlinux``/``--system-map`` of the running command, if given."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_SYMBOL_FILE) if ctx is not None else None


def given_vmlinux() -> str | None:
    """The ``--vmlinux`` of the running command, if given."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_VMLINUX) if ctx is not None else None


_ATTACHED: dict[str, LiveSession] = {}

#: seconds to wait for a live target's stub (each reply) before giving up with a one-line error
#: (``$KCRASH_LIVE_TIMEOUT`` overrides it)
LIVE_TIMEOUT = 10.0


def _live_timeout() -> float:
    try:
        return float(os.environ.get("KCRASH_LIVE_TIMEOUT", LIVE_TIMEOUT))
    except ValueError:
        raise CliError("KCRASH_LIVE_TIMEOUT must be a number of seconds", 2) from None


@contextmanager
def opened_target(path: str, *, orc: bool = True) -> Iterator[Program]:
    """The dump at ``path`` as a ready program (symbols, types, modules; ``orc``: the unwinder's
    tables), its warnings printed; closed afterwards. Symbols come from ``--vmlinux``/``--system-map``
    when the command was given one.

    ``path`` may name a running kernel instead (``gdb:HOST:PORT[?qmp=SOCKET]``, see
    :class:`~kcrash.cli.params.DumpOrLive`): it is stopped while the command reads it, then detached
    and resumed."""
    # lazy: +354 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.target import open_target

    # lazy: +8 ms CPU to import it after this module (measured, loaded host)
    from kcrash.cli.params import parse_live_target

    live = parse_live_target(path)
    if live is not None:
        with attached_live(live.stub, live.qmp) as session:
            # lazy: +568 ms CPU to import it after this module (measured, loaded host)
            from kcrash.analysis.live import live_program

            with printed_dump_warnings(), phase("open"):
                prog = live_program(session, orc=orc)
            yield prog
        return
    with printed_dump_warnings(), phase("open"):
        prog = open_target(path, cache_dir(), orc=orc, symbol_file=given_symbol_file())
    try:
        yield prog
    finally:
        prog.close()


@contextmanager
def attached_live(stub: str, qmp: str | None, *, binder: bool = True) -> Iterator[LiveSession]:
    """A live kernel session (stopped; ``binder``: with symbols and types) for one command; detached
    (the kernel resumed) afterwards. A stub that does not answer is a one-line error after
    :data:`LIVE_TIMEOUT`."""
    # lazy: +568 ms CPU to import it after this module (measured, loaded host)
    from kcrash.analysis.live import KernelBinder, attach_kernel, kernel_binder_or_none

    # lazy: +189 ms CPU to import it after this module (measured, loaded host)
    from kcrash.live.connect import attach

    if given_symbol_file() is not None:
        raise CliError("--vmlinux/--system-map are not used on a live target: its symbols come from its kallsyms", 2)
    outer = _ATTACHED.get(stub)
    if outer is not None:  # nested (a symbol lookup inside rd's memory access): the stub takes one client
        if binder and kernel_binder_or_none(outer) is None:
            outer.binder = KernelBinder(outer, cache_dir())
        yield outer
        return
    try:
        session = attach_kernel(stub, qmp=qmp, cache=cache_dir(), timeout=_live_timeout()) if binder \
            else attach(stub, qmp=qmp, timeout=_live_timeout())
    except OSError as exc:
        raise CliError(f"cannot attach to live target {stub}: {exc.strerror or exc}") from None
    _ATTACHED[stub] = session
    try:
        with session:
            yield session
    finally:
        del _ATTACHED[stub]


def refuse_live(path: str, why: str) -> None:
    """Raise the one-line error of a command that makes no sense on a running kernel."""
    if path.startswith("gdb:"):
        raise CliError(f"{path}: {why}", 2)


def warn_of_missing_log(log: PrintkLog) -> None:
    """Say on stderr what of the kernel log a damaged dump lacks (``log`` and ``dump dmesg``)."""
    if log.missing:
        click.echo(f"kcrash: warning: {log.missing} log record(s) lie in pages missing from the dump", err=True)
    if log.unreadable:
        click.echo(f"kcrash: warning: no log record survives: {log.unreadable}", err=True)


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
