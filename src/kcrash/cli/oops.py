"""
kcrash.cli.oops
===============

``kcrash oops``: find crash reports in console/dmesg logs (``parse``), print their crash signatures
(``signature``) and score the parser on a syzkaller-style corpus (``score``). ``-`` reads stdin. The
commands only parse arguments and print; the work is done by :mod:`kcrash.oops`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import click

from kcrash.cli.common import echo_json
from kcrash.errors import CliError, OopsParseError
from kcrash.oops import OopsReport, iter_reports, iter_reports_in_file, report_to_dict, score_corpus

__all__ = ["oops"]

#: ``kcrash oops score`` targets (the issue's "done when" numbers).
_TARGETS: Final = (("detection", 0.99), ("title", 0.97), ("alt", 0.95), ("type", 0.97), ("corrupted", 0.95),
                   ("guilty", 0.90))


def _reports(log: str) -> Iterator[OopsReport]:
    if log == "-":
        yield from iter_reports(sys.stdin.buffer)
        return
    path = Path(log)
    if not path.exists():
        raise CliError(f"{log}: no such file")
    if path.is_dir():
        raise CliError(f"{log}: is a directory")
    try:
        yield from iter_reports_in_file(path)
    except OopsParseError as exc:
        raise CliError(str(exc)) from exc


def _found(log: str) -> list[OopsReport]:
    # The reports in one LOG. None is said on stderr, so that a silent success (a JSON file, a
    # binary file, a clean log) is not mistaken for a parse that printed nothing by mistake; a
    # binary LOG is named as such, as its "reports" may be printk formats in a vmcore or a .ko.
    reports = list(_reports(log))
    binary = _is_binary(log)
    if not reports:
        hint = " (a binary file, not a console or dmesg log)" if binary else ""
        click.echo(f"kcrash: {log}: no crash report found{hint}", err=True)
    elif binary:
        click.echo(f"kcrash: warning: {log} is a binary file, not a console or dmesg log: its reports may be "
                   "strings of a program or dump", err=True)
    return reports


def _is_binary(log: str) -> bool:
    # A NUL byte in the first 4 KiB, as grep decides; stdin is not re-read.
    if log == "-":
        return False
    with Path(log).open("rb") as stream:
        return b"\0" in stream.read(4096)


def _summary(log: str, rep: OopsReport) -> str:
    # The guilty function is shown when the title does not already end with it.
    guilty = f"  [guilty: {rep.guilty_function}]" if rep.guilty_function and rep.guilty_function != rep.frame else ""
    flags = f"  [corrupted: {rep.corrupted_reason}]" if rep.corrupted else ""
    return f"{log}:{rep.start_line}-{rep.end_line}  {rep.crash_type or 'UNKNOWN'}  {rep.title}{guilty}{flags}"


@click.group()
def oops() -> None:
    """Commands on console oops logs."""


@oops.command("parse")
@click.argument("logs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per report.")
def parse_cmd(logs: tuple[str, ...], as_json: bool) -> None:
    """Find every crash report in LOGS (console or dmesg text; '-' is stdin).

    A LOG without a crash report is said on stderr (``--json`` lists nothing for it); the exit
    status is 0 either way, non-zero only for a LOG that cannot be read."""
    items: list[dict[str, object]] = []
    for log in logs:
        reports = _found(log)
        if as_json:
            items += [{"log": log, **report_to_dict(rep)} for rep in reports]
        else:
            for rep in reports:
                click.echo(_summary(log, rep))
    if as_json:
        echo_json(items)


@oops.command("signature")
@click.argument("log")
def signature_cmd(log: str) -> None:
    """Print the crash signature and title of every report in LOG ('-' is stdin).

    A LOG without a crash report is said on stderr; the exit status is 0 either way, non-zero only
    for a LOG that cannot be read."""
    for rep in _found(log):
        click.echo(f"{rep.signature}  {rep.title}")


@oops.command("score")
@click.argument("corpus_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Exit with status 1 when a score is below its target.")
@click.option("--misses", is_flag=True, help="Also list the cases each metric missed.")
def score_cmd(corpus_dir: Path, check: bool, misses: bool) -> None:
    """Score the oops parser on a syzkaller-style corpus, for example ../shared/corpus."""
    if not corpus_dir.is_dir():
        raise CliError(f"{corpus_dir}: not a directory")
    score = score_corpus(corpus_dir)
    targets = dict(_TARGETS)
    failed = False
    for name, metric in score.metrics.items():
        target = targets.get(name)
        mark = "" if target is None else f"  target {target:.0%} {'ok' if metric.ratio >= target else 'MISSED'}"
        failed |= target is not None and metric.ratio < target
        click.echo(f"{name:<11} {metric.hits:>4}/{metric.total:<4} {metric.ratio:7.2%}{mark}")
        if misses and metric.misses:
            click.echo(f"{'':<11} missed: {' '.join(metric.misses)}")
    if check and failed:
        raise CliError("corpus score below target", exit_code=1)
