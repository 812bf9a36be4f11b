"""
kcrash.cli.fleet
================

``kcrash triage``: the crash database of a fleet. ``ingest`` reads console logs, dmesg files, pstore
records and dumps into it (on a local process pool or a Dask cluster, with a progress line on a
terminal), ``merge``/``unmerge`` group buckets by hand and ``fix`` records the release a bug was
fixed in. The read side (``list``, ``show``, ``stats``, ``serve``) is :mod:`kcrash.cli.fleet_view`.
The commands parse arguments and print; the work is done by :mod:`kcrash.fleet`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kcrash.cli.common import cache_dir, echo_json
from kcrash.cli.fleet_view import VIEW_COMMANDS, db_option, db_session, opened_db
from kcrash.errors import CliError, FleetError
from kcrash.fleet.buckets import mark_fixed, merge_buckets, unmerge_bucket

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from kcrash.fleet.extract import FileResult
    from kcrash.fleet.ingest import IngestStats
    from kcrash.fleet.models import BucketMerge

__all__ = ["fix_cmd", "ingest_cmd", "merge_cmd", "triage", "unmerge_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _json_option(command: _F) -> _F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(command)


@click.group()
def triage() -> None:
    """Fleet triage: a crash database of many machines' crashes, grouped into buckets."""


class _ProgressLine:
    # The ingest observer drawn on a terminal: files, crashes, MB/s and ETA (rich, on stderr).

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task_id: TaskID | None = None
        self.files = self.crashes = 0

    def started(self, files: int, total_bytes: int) -> None:
        self.task_id = self.progress.add_task("ingest", total=max(total_bytes, 1), files=files, done=0, crashes=0)

    def file_done(self, result: FileResult, new_crashes: int) -> None:
        self.files += 1
        self.crashes += len(result.records)
        if self.task_id is not None:
            self.progress.update(self.task_id, advance=result.size, done=self.files, crashes=self.crashes)


@contextmanager
def _observer(quiet: bool) -> Iterator[_ProgressLine | None]:
    if quiet or not sys.stderr.isatty():
        yield None
        return
    # lazy: +37 ms CPU to import it after this module (measured, loaded host)
    from rich.console import Console

    # lazy: +76 ms CPU to import it after this module (measured, loaded host)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        TextColumn("files {task.fields[done]}/{task.fields[files]}"),
        BarColumn(),
        TextColumn("{task.fields[crashes]} crashes"),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield _ProgressLine(progress)


def _stats_dict(stats: IngestStats) -> dict[str, object]:
    return {
        "files": stats.files,
        "files_failed": stats.files_failed,
        "bytes": stats.bytes,
        "crashes": stats.crashes,
        "new_crashes": stats.new_crashes,
        "duplicates": stats.duplicates,
        "new_buckets": stats.new_buckets,
        "retried": stats.retried,
        "seconds": round(stats.seconds, 3),
        "errors": list(stats.errors),
    }


def _summary(stats: IngestStats) -> str:
    rate = stats.bytes / stats.seconds / 1e6 if stats.seconds > 0 else 0.0
    return (
        f"{stats.files} files ({stats.bytes / 1e6:.1f} MB, {rate:.1f} MB/s): {stats.crashes} crashes, "
        f"{stats.new_crashes} new, {stats.duplicates} already known; {stats.new_buckets} new buckets"
        + (f"; {stats.files_failed} files failed" if stats.files_failed else "")
        + (f"; {stats.retried} tasks retried" if stats.retried else "")
    )


@triage.command("ingest")
@db_option
@click.option("--host", help="The machine the files come from (default: as the log/dump names it, else unknown).")
@click.option(
    "--executor",
    default="local",
    show_default=True,
    metavar="SPEC",
    help="local (one process per CPU), local:N, or dask://HOST:PORT (a Dask scheduler).",
)
@click.option("--no-html", is_flag=True, help="Do not store the rendered HTML report of dumps.")
@click.option("-q", "--quiet", is_flag=True, help="No progress line (it is only drawn on a terminal anyway).")
@_json_option
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def ingest_cmd(
    db_url: str, host: str | None, executor: str, no_html: bool, quiet: bool, as_json: bool, paths: tuple[str, ...]
) -> None:
    """Read crashes from PATHS (files, or directories recursively) into the crash database: console logs,
    dmesg files, pstore records and dumps. Already known crashes are skipped."""
    # lazy: +14 ms CPU to import it after this module (measured, loaded host)
    from kcrash.fleet.extract import ExtractOptions

    # lazy: +42 ms CPU to import it after this module (measured, loaded host)
    from kcrash.fleet.ingest import ingest

    options = ExtractOptions(host=host, cache_dir=cache_dir(), html=not no_html)
    with opened_db(db_url) as db, _observer(quiet or as_json) as observer:
        try:
            stats = ingest(db, paths, executor=executor, options=options, observer=observer)
        except FleetError as exc:
            raise CliError(str(exc)) from exc
    if as_json:
        echo_json(_stats_dict(stats))
        return
    for error in stats.errors:
        click.echo(f"kcrash: warning: {error}", err=True)
    click.echo(_summary(stats))


@triage.command("merge")
@db_option
@_json_option
@click.argument("source", type=int)
@click.argument("target", type=int)
def merge_cmd(db_url: str, as_json: bool, source: int, target: int) -> None:
    """Merge bucket SOURCE (with what is merged into it) into bucket TARGET."""
    with db_session(db_url) as session:
        done = _merge_done(merge_buckets(session, source, target))
    _echo_done(
        as_json,
        done,
        f"bucket {done['source_bucket']} merged into bucket {done['target_bucket']} (merge {done['merge_id']})",
    )


@triage.command("unmerge")
@db_option
@_json_option
@click.argument("bucket", type=int)
def unmerge_cmd(db_url: str, as_json: bool, bucket: int) -> None:
    """Take BUCKET out of the bucket it was merged into (a title merge of the pair is not redone)."""
    with db_session(db_url) as session:
        done = _merge_done(unmerge_bucket(session, bucket))
    _echo_done(as_json, done, f"bucket {done['source_bucket']} is no longer merged into bucket {done['target_bucket']}")


@triage.command("fix")
@db_option
@_json_option
@click.option("--release", required=True, metavar="R", help="The kernel release the fix is in (e.g. 6.12.120).")
@click.argument("bucket", type=int)
def fix_cmd(db_url: str, as_json: bool, release: str, bucket: int) -> None:
    """Mark BUCKET fixed in kernel release R: it regresses only when seen on R or a later release."""
    with db_session(db_url) as session:
        root = mark_fixed(session, bucket, release)
        done = {"bucket": root.id, "status": root.status, "fixed_in_release": root.fixed_in_release}
    _echo_done(as_json, done, f"bucket {done['bucket']}: {done['status']} (fixed in {release})")


def _merge_done(merge: BucketMerge) -> dict[str, int]:
    return {"merge_id": merge.id, "source_bucket": merge.source_bucket_id, "target_bucket": merge.target_bucket_id}


def _echo_done(as_json: bool, done: dict[str, Any], line: str) -> None:
    # What a write command did: its dict as JSON, or one line of text.
    if as_json:
        echo_json(done)
    else:
        click.echo(line)


# The read side (list, show, stats, serve) is defined in kcrash.cli.fleet_view, registered here.
for _command in VIEW_COMMANDS:
    triage.add_command(_command)
