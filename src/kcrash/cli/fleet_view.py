"""
kcrash.cli.fleet_view
=====================

The read side of ``kcrash triage`` (the group is :mod:`kcrash.cli.fleet`): ``list`` the buckets
(sorted by count, first seen or last seen), ``show`` a bucket (or a crash with ``--crash``), ``stats``
and ``serve`` the dashboard (:mod:`kcrash.fleet.dashboard`, on 127.0.0.1 unless ``--host`` says
otherwise). Every command takes ``--db URL`` (default ``sqlite:///crashes.db``) and, except
``serve``, ``--json``. The commands parse arguments and print; the answers come from
:mod:`kcrash.fleet.queries`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from kcrash.cli.common import echo_json
from kcrash.errors import CliError, FleetError
from kcrash.fleet import queries
from kcrash.fleet.db import DEFAULT_URL, CrashDb, open_db

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["VIEW_COMMANDS", "db_option", "db_session", "list_cmd", "opened_db", "serve_cmd", "show_cmd", "stats_cmd"]

_F = TypeVar("_F", bound=Callable[..., Any])


def db_option(command: _F) -> _F:
    """The ``--db URL`` option every ``triage`` command takes."""
    return click.option(
        "--db",
        "db_url",
        default=DEFAULT_URL,
        show_default=True,
        metavar="URL",
        help="The crash database: sqlite:///FILE or postgresql+psycopg://USER@HOST/DB.",
    )(command)


@contextmanager
def opened_db(db_url: str) -> Iterator[CrashDb]:
    """The crash database at ``db_url``, closed on exit; a database error is a :class:`CliError`."""
    try:
        db = open_db(db_url)
    except FleetError as exc:
        raise CliError(str(exc)) from exc
    try:
        yield db
    finally:
        db.close()


@contextmanager
def db_session(db_url: str) -> Iterator[Session]:
    """A session on ``db_url``: committed on success, rolled back on a fleet error (then a
    :class:`CliError`: unknown bucket or crash, bad merge, database error)."""
    with opened_db(db_url) as db, db.sessions() as session:
        try:
            yield session
            session.commit()
        except FleetError as exc:
            session.rollback()
            raise CliError(str(exc)) from exc


def _echo_json(data: object) -> None:
    # Query results made JSON-ready (times as ISO 8601 UTC), then kcrash's one rule for numbers.
    echo_json(queries.jsonable(data))


def _when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _flags(bucket: queries.BucketSummary) -> str:
    flags = [] if bucket.status == "open" else [bucket.status]
    if bucket.fixed_in_release:
        flags.append(f"fix in {bucket.fixed_in_release}")
    if bucket.assorted:
        flags.append("assorted")
    return f"  [{', '.join(flags)}]" if flags else ""


@click.command("list")
@db_option
@click.option(
    "--sort", type=click.Choice(queries.SORT_KEYS), default="count", show_default=True, help="The order of the list."
)
@click.option("--asc", "ascending", is_flag=True, help="Smallest or oldest first (default: largest or newest).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Show at most N buckets.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_cmd(db_url: str, sort: queries.SortKey, ascending: bool, limit: int, as_json: bool) -> None:
    """List the crash buckets: id, crashes, first and last seen, title."""
    with db_session(db_url) as session:
        page = queries.list_buckets(session, sort, descending=not ascending, limit=limit)
    if as_json:
        _echo_json(page)
        return
    click.echo(f"{'bucket':>6} {'crashes':>8}  {'first seen':<19}  {'last seen':<19}  title")
    for b in page.buckets:
        merged = f" (+{len(b.merged_ids)} merged)" if b.merged_ids else ""
        click.echo(
            f"{b.id:>6} {b.crash_count:>8}  {_when(b.first_seen)}  {_when(b.last_seen)}  {b.title}{merged}{_flags(b)}"
        )
    if page.total > len(page.buckets):
        click.echo(f"({page.total - len(page.buckets)} more buckets: --limit)")


@click.command("show")
@db_option
@click.argument("ident", type=int, metavar="ID")
@click.option("--crash", "is_crash", is_flag=True, help="ID is a crash, not a bucket.")
@click.option("--json", "as_json", is_flag=True, help="Print the bucket (or crash) as JSON.")
def show_cmd(db_url: str, ident: int, is_crash: bool, as_json: bool) -> None:
    """Show bucket ID: per-release table, daily counts, hosts and the newest crashes."""
    with db_session(db_url) as session:
        if is_crash:
            crash = queries.get_crash(session, ident)
            _echo_json(queries.crash_jsonable(crash)) if as_json else _print_crash(crash)
            return
        detail = queries.get_bucket(session, ident)
    _echo_json(detail) if as_json else _print_bucket(detail)


def _print_bucket(d: queries.BucketDetail) -> None:
    b = d.bucket
    click.echo(f"bucket {b.id}: {b.title}{_flags(b)}")
    click.echo(f"signature {b.signature}  kind {b.kind}  grouping version {d.grouping_version}")
    click.echo(f"{b.crash_count} crashes on {d.host_count} hosts, {_when(b.first_seen)} .. {_when(b.last_seen)}")
    for title in d.alt_titles:
        click.echo(f"also titled: {title}")
    for m in d.merged:
        click.echo(f"merged in: bucket {m.id} ({m.crash_count} crashes) {m.title}")
    click.echo("\nper release:")
    for r in d.releases:
        click.echo(
            f"  {r.kernel_release:<28} {r.build_id[:16] or '-':<16} {r.crash_count:>7}  "
            f"{_when(r.first_seen)} .. {_when(r.last_seen)}"
        )
    click.echo("\nper day: " + " ".join(f"{day.day:%m-%d}:{day.count}" for day in d.days if day.count))
    click.echo("\nhosts: " + ", ".join(f"{h.name} ({h.count})" for h in d.hosts))
    click.echo("\nnewest crashes:")
    for c in d.samples:
        click.echo(f"  crash {c.id:>7}  {_when(c.crash_time)}  {c.host}  {c.kernel_release}  {c.source}")


def _print_crash(c: queries.CrashDetail) -> None:
    click.echo(f"crash {c.id}: {c.title}")
    click.echo(
        f"bucket {c.bucket_id}" + (f" (ingested into {c.own_bucket_id})" if c.own_bucket_id != c.bucket_id else "")
    )
    click.echo(f"{_when(c.crash_time)} on {c.host}, {c.kernel_release} ({c.arch}) build-id {c.build_id or '-'}")
    click.echo(f"{c.source}: {c.path}" + ("  (HTML report stored)" if c.has_html else ""))
    click.echo(f"kind {c.kind}  taints {c.taints or '-'}  guilty {c.guilty_frame or '-'} {c.guilty_file}".rstrip())
    click.echo("")
    click.echo(c.excerpt.rstrip("\n"))


@click.command("stats")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats_cmd(db_url: str, as_json: bool) -> None:
    """Fleet statistics: crashes, buckets, hosts, releases; by status, source, kind and release."""
    with db_session(db_url) as session:
        stats = queries.get_stats(session)
    if as_json:
        _echo_json(stats)
        return
    click.echo(f"{stats.crashes} crashes in {stats.buckets} buckets on {stats.hosts} hosts, {stats.releases} releases")
    click.echo(f"from {_when(stats.first_seen)} to {_when(stats.last_seen)}")
    for name, rows in (
        ("buckets by status", stats.by_status),
        ("crashes by source", stats.by_source),
        ("crashes by kind", stats.by_kind),
        ("top releases", stats.top_releases),
    ):
        click.echo(f"{name}: " + ", ".join(f"{r.name} {r.count}" for r in rows))


@click.command("serve")
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="The TCP port.")
def serve_cmd(db_url: str, host: str, port: int) -> None:
    """Serve the dashboard (buckets, per-release tables, reports, merges) over HTTP until interrupted."""
    # lazy: +32 ms CPU to import it after this module (measured, loaded host)
    import uvicorn  # only serve needs the server

    # lazy: +520 ms CPU to import it after this module (measured, loaded host)
    from kcrash.fleet.dashboard import create_app

    with opened_db(db_url) as db:
        click.echo(f"kcrash triage: serving {db_url} on http://{host}:{port}/ (Ctrl-C stops)", err=True)
        uvicorn.run(create_app(db), host=host, port=port, log_level="warning")


#: The commands this module adds to the ``triage`` group (kcrash.cli.fleet registers them).
VIEW_COMMANDS = (list_cmd, show_cmd, stats_cmd, serve_cmd)
