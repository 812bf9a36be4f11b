"""
kcrash.cli.decode
=================

``kcrash decode LOG``: a console oops with source lines, inline chains and the ``Code:`` bytes
disassembled, like ``decode_stacktrace.sh`` + ``decodecode`` but without binutils.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import click

from kcrash.analysis.decode import DecodedLog, check_frame_sizes, decode_log_text, log_kernel_build
from kcrash.cli.common import cache_dir, echo_json, printed_dump_warnings
from kcrash.cli.params import parse_number
from kcrash.debuginfo.finder import find_debuginfo, find_module_debuginfo
from kcrash.debuginfo.symbolizer import KernelSymbolizer, open_symbolizers
from kcrash.errors import CliError, DebugInfoMismatchError, MissingDebugInfoError, OopsParseError
from kcrash.oops import OopsReport, parse_all, read_log

__all__ = ["commands", "debuginfo_options", "parse_module_bases"]


_F = TypeVar("_F", bound=Callable[..., Any])


def debuginfo_options(command: _F) -> _F:
    """The options every source-level command shares."""
    for option in reversed([
        click.option("--debuginfo", "debuginfo", multiple=True, type=click.Path(exists=True, path_type=Path),
                     help="A vmlinux or .ko with DWARF, or a directory holding them (repeatable)."),
        click.option("--module-base", "module_bases", multiple=True, metavar="NAME=ADDR",
                     help="Load address of a module's .text (repeatable)."),
        click.option("--force", is_flag=True, help="Use debug files even if they are of another build."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the index cache."),
    ]):
        command = option(command)
    return command


def parse_module_bases(values: tuple[str, ...]) -> dict[str, int]:
    """``NAME=ADDR`` pairs to a dict (ADDR as :mod:`kcrash.cli.params` reads addresses); a malformed
    one is a usage error."""
    bases = {}
    for value in values:
        name, _, address = value.partition("=")
        try:
            bases[name.replace("-", "_")] = parse_number(address, "address", "address")
        except CliError as exc:
            raise click.BadParameter(f"{value!r} is not NAME=ADDR: {exc}", param_hint="--module-base") from None
    return bases


@click.command("decode")
@click.argument("log", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@debuginfo_options
@click.option("--att", "syntax", flag_value="att", help="AT&T assembler syntax.")
@click.option("--intel", "syntax", flag_value="intel", default=True, help="Intel assembler syntax (default).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def decode(log: Path, debuginfo: tuple[Path, ...], module_bases: tuple[str, ...], force: bool, no_cache: bool,
           syntax: str, as_json: bool) -> None:
    """Decode a console oops LOG ('-' for stdin) with source lines and disassembly."""
    text = sys.stdin.read() if str(log) == "-" else read_log(log)
    reports = parse_all(text)
    with printed_dump_warnings():
        symbolizer = _symbolizer_for_log(text, reports, list(debuginfo), parse_module_bases(module_bases), force,
                                         None if no_cache else cache_dir())
    try:
        decoded = decode_log_text(text, symbolizer, syntax=syntax, reports=reports)
        if not force:
            check_frame_sizes(decoded.frames.values(), symbolizer)
    finally:
        symbolizer.close()
    _show(decoded, as_json)


def _symbolizer_for_log(text: str, reports: Sequence[OopsReport], paths: list[Path], bases: dict[str, int],
                        force: bool, cache: Path | None) -> KernelSymbolizer:
    frames = [f for r in reports for f in ([r.details.rip] if r.details.rip else []) + list(r.details.call_trace)]
    if not any(f.offset is not None for f in frames):
        raise OopsParseError("no kernel call trace (func+0x…/0x… frames) found in the log")
    release = next((r.details.kernel_release for r in reports if r.details.kernel_release), None)
    modules = {}
    for name in sorted({f.module for f in frames if f.module}):
        found = find_module_debuginfo(name, release, paths)
        if found is not None:
            modules[name] = (found, bases.get(name.replace("-", "_"), 0))
    try:
        vmlinux = find_debuginfo(release, None, paths, force, build=log_kernel_build(text, reports))
    except MissingDebugInfoError as exc:
        if not modules or isinstance(exc, DebugInfoMismatchError):
            raise
        vmlinux = None
    return open_symbolizers(vmlinux, modules, cache_dir=cache)


def _show(decoded: DecodedLog, as_json: bool) -> None:
    if as_json:
        echo_json({
            "lines": list(decoded.lines),
            "frames": {key: asdict(frame) for key, frame in decoded.frames.items()},
            "code": [[{**asdict(i), "data": i.data.hex()} for i in block] for block in decoded.code],
        })
        return
    if decoded.lines:
        click.echo("\n".join(decoded.lines))  # one write: per-line echo flushes every line


commands: list[click.Command] = [decode]
