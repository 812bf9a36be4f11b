"""
kcrash.fleet.queries
====================

The read side of the crash database: the bucket list (sortable by crash count, first seen or last
seen), one bucket's detail (per-release table with first/last seen per kernel release and build-id,
daily counts, hosts, sample crashes, alternative titles, the buckets merged into it), one crash's
detail and fleet-wide statistics. Every answer is a frozen dataclass built from a few aggregate
queries; counts and first/last seen are computed from the ``crash`` rows themselves, never from the
counters ingest keeps on ``bucket``. A crash belongs to its *effective* bucket: its ``bucket_id``
followed through ``merged_into_id`` to a bucket that is merged into none. Writes (ingest, merges)
live in :mod:`kcrash.fleet.ingest` and :mod:`kcrash.fleet.buckets`; rendering in
:mod:`kcrash.fleet.dashboard` and the CLI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Date, Row, Select, cast, distinct, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kcrash.errors import BucketNotFoundError, CrashNotFoundError
from kcrash.fleet.buckets import KernelRelease, parse_release
from kcrash.fleet.models import Bucket, BucketMerge, BucketTitle, Crash
from kcrash.report.json import json_ready

__all__ = [
    "SORT_KEYS",
    "BucketDetail",
    "BucketList",
    "BucketSummary",
    "CrashDetail",
    "CrashSummary",
    "DayCount",
    "FleetStats",
    "MergeRow",
    "NameCount",
    "ReleaseRow",
    "SortKey",
    "bucket_roots",
    "crash_jsonable",
    "fill_days",
    "get_bucket",
    "get_crash",
    "get_crash_html",
    "get_stats",
    "jsonable",
    "list_buckets",
    "release_key",
]

SortKey = Literal["count", "first_seen", "last_seen"]
#: The bucket list's sort keys.
SORT_KEYS: Final[tuple[SortKey, ...]] = ("count", "first_seen", "last_seen")
_TOP: Final = 10
_NEVER: Final = dt.datetime.min  # a group without crashes has no times (never shown: groups come from crashes)


@dataclass(frozen=True, slots=True)
class BucketSummary:
    """One effective bucket: its own fields plus the count and first/last crash time of every crash in
    it and in the buckets merged into it (``merged_ids``)."""

    id: int
    signature: str
    title: str
    kind: str
    status: str
    fixed_in_release: str | None
    assorted: bool
    crash_count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    merged_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BucketList:
    """A page of the bucket list: ``total`` effective buckets, ``buckets`` after the first ``skip``."""

    buckets: tuple[BucketSummary, ...]
    total: int
    sort: SortKey
    descending: bool
    skip: int
    limit: int


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    """A bucket's crashes on one kernel release and build-id."""

    kernel_release: str
    build_id: str
    crash_count: int
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class DayCount:
    """The number of crashes on one UTC day."""

    day: dt.date
    count: int


@dataclass(frozen=True, slots=True)
class NameCount:
    """A name (host, release, source, kind) and how many crashes have it."""

    name: str
    count: int


@dataclass(frozen=True, slots=True)
class CrashSummary:
    """A crash as a list shows it (no report text)."""

    id: int
    crash_time: dt.datetime
    host: str
    kernel_release: str
    build_id: str
    source: str
    kind: str
    title: str
    has_html: bool


@dataclass(frozen=True, slots=True)
class MergeRow:
    """One merge of bucket ``source_id`` into ``target_id`` (``how``: ``title`` or ``manual``)."""

    id: int
    source_id: int
    target_id: int
    how: str
    created_at: dt.datetime
    undone_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class BucketDetail:
    """Everything the bucket page shows. ``days`` has every day from the first to the last crash (zero
    where none); ``hosts`` the most affected hosts, ``host_count`` all of them; ``samples`` the newest
    crashes; ``excerpt`` the newest crash's report text."""

    bucket: BucketSummary
    grouping_version: int
    alt_titles: tuple[str, ...]
    merged: tuple[BucketSummary, ...]
    releases: tuple[ReleaseRow, ...]
    days: tuple[DayCount, ...]
    hosts: tuple[NameCount, ...]
    host_count: int
    samples: tuple[CrashSummary, ...]
    excerpt: str
    merges: tuple[MergeRow, ...]


@dataclass(frozen=True, slots=True)
class CrashDetail:
    """One crash with its report text; ``bucket_id`` is its effective bucket, ``own_bucket_id`` the
    bucket ingest put it in. ``report_json`` is the stored JSON report of a dump (``None`` for logs)."""

    id: int
    bucket_id: int
    own_bucket_id: int
    content_hash: str
    source: str
    path: str
    host: str
    kernel_release: str
    build_id: str
    arch: str
    crash_time: dt.datetime
    ingested_at: dt.datetime
    title: str
    signature: str
    kind: str
    taints: str
    guilty_frame: str
    guilty_file: str
    excerpt: str
    report_json: str | None
    has_html: bool


@dataclass(frozen=True, slots=True)
class FleetStats:
    """Fleet-wide numbers. ``first_seen``/``last_seen`` are ``None`` for an empty database."""

    crashes: int
    buckets: int
    hosts: int
    releases: int
    first_seen: dt.datetime | None
    last_seen: dt.datetime | None
    by_status: tuple[NameCount, ...]
    by_source: tuple[NameCount, ...]
    by_kind: tuple[NameCount, ...]
    top_releases: tuple[NameCount, ...]


def release_key(release: str) -> tuple[bool, KernelRelease | None, str]:
    """A sort key ordering kernel releases as :func:`~kcrash.fleet.buckets.parse_release` does, the ones
    it cannot read last, by name.

    >>> sorted(["6.12.1", "6.1.10", "6.1.9", "custom"], key=release_key)
    ['6.1.9', '6.1.10', '6.12.1', 'custom']
    """
    version = parse_release(release)
    return (version is None, version, release)


def bucket_roots(session: Session) -> dict[int, int]:
    """Every bucket's id -> the id of its effective bucket (itself when merged into none).

    A merge cycle (which merges never make) ends at the bucket where it closes.
    """
    parent = dict(session.execute(select(Bucket.id, Bucket.merged_into_id)).all())
    return {bucket_id: _root(bucket_id, parent) for bucket_id in parent}


def _root(bucket_id: int, parent: dict[int, int | None]) -> int:
    seen = {bucket_id}
    while (up := parent.get(bucket_id)) is not None and up not in seen:
        seen.add(up)
        bucket_id = up
    return bucket_id


def _members(roots: dict[int, int]) -> dict[int, list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for bucket_id, root in sorted(roots.items()):
        members[root].append(bucket_id)
    return members


@dataclass(slots=True)
class _Agg:
    count: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None

    def add(self, count: int, first: dt.datetime | None, last: dt.datetime | None) -> None:
        self.count += count
        if first is not None:
            self.first = first if self.first is None else min(self.first, first)
        if last is not None:
            self.last = last if self.last is None else max(self.last, last)


_BUCKET_COLUMNS: Final = (
    Bucket.id,
    Bucket.merged_into_id,
    Bucket.signature,
    Bucket.title,
    Bucket.kind,
    Bucket.status,
    Bucket.fixed_in_release,
    Bucket.assorted,
    Bucket.first_seen,
    Bucket.last_seen,
)


def _own_aggregates() -> Select[*tuple[Any, ...]]:
    # Every bucket (plain columns: ORM objects cost more than the SQL here) with the count and
    # first/last time of its own crashes: three correlated subqueries, each a seek in the
    # (bucket_id, crash_time) index; a GROUP BY over all crashes costs ~5x more on SQLite at 100,000.
    own = Crash.bucket_id == Bucket.id
    return select(
        *_BUCKET_COLUMNS,
        select(func.count()).where(own).scalar_subquery().label("n"),
        select(func.min(Crash.crash_time)).where(own).scalar_subquery().label("first"),
        select(func.max(Crash.crash_time)).where(own).scalar_subquery().label("last"),
    )


def _summary(bucket: Row[*tuple[Any, ...]], agg: _Agg | None, members: Sequence[int]) -> BucketSummary:
    # ``bucket`` has the columns of _BUCKET_COLUMNS.
    agg = agg or _Agg()
    return BucketSummary(
        id=bucket.id,
        signature=bucket.signature,
        title=bucket.title,
        kind=bucket.kind,
        status=bucket.status,
        fixed_in_release=bucket.fixed_in_release,
        assorted=bucket.assorted,
        crash_count=agg.count,
        first_seen=agg.first or bucket.first_seen,
        last_seen=agg.last or bucket.last_seen,
        merged_ids=tuple(m for m in members if m != bucket.id),
    )


def _bucket_row(session: Session, bucket_id: int) -> Row[*tuple[Any, ...]]:
    row = session.execute(select(*_BUCKET_COLUMNS, Bucket.grouping_version).where(Bucket.id == bucket_id)).first()
    if row is None:
        raise BucketNotFoundError(f"no bucket {bucket_id}")
    return row


def _sort_value(summary: BucketSummary, sort: SortKey) -> tuple[object, ...]:
    if sort == "count":
        return (summary.crash_count, summary.last_seen, -summary.id)
    if sort == "first_seen":
        return (summary.first_seen, -summary.id)
    return (summary.last_seen, -summary.id)


def list_buckets(
    session: Session, sort: SortKey = "count", *, descending: bool = True, limit: int = 100, skip: int = 0
) -> BucketList:
    """The effective buckets, sorted by crash ``count``, ``first_seen`` or ``last_seen``.

    :param sort: one of :data:`SORT_KEYS`; ties are broken by the last crash, then by bucket id
    :param limit: at most this many buckets, after the first ``skip``
    """
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r} (one of {', '.join(SORT_KEYS)})")
    rows = session.execute(_own_aggregates()).all()
    parent = {row.id: row.merged_into_id for row in rows}
    roots = {bucket_id: _root(bucket_id, parent) for bucket_id in parent}
    aggs: dict[int, _Agg] = defaultdict(_Agg)
    for row in rows:
        if row.n:
            aggs[roots[row.id]].add(row.n, row.first, row.last)
    members = _members(roots)
    summaries = [_summary(row, aggs.get(row.id), members[row.id]) for row in rows if roots[row.id] == row.id]
    summaries.sort(key=lambda s: _sort_value(s, sort), reverse=descending)
    page = tuple(summaries[skip : skip + limit])
    return BucketList(page, len(summaries), sort, descending, skip, limit)


def get_bucket(session: Session, bucket_id: int, *, samples: int = 20) -> BucketDetail:
    """The detail of the effective bucket of ``bucket_id`` (a merged bucket's id gives its target's).

    :raises BucketNotFoundError: no bucket has that id
    """
    _bucket_row(session, bucket_id)
    roots = bucket_roots(session)
    root = roots[bucket_id]
    member_ids = _members(roots)[root]
    bucket = _bucket_row(session, root)
    releases, totals = _releases(session, member_ids)
    total = _Agg()
    for agg in totals.values():
        total.add(agg.count, agg.first, agg.last)
    hosts, host_count = _hosts(session, member_ids)
    samples_ = _samples(session, member_ids, samples)
    return BucketDetail(
        bucket=_summary(bucket, total, member_ids),
        grouping_version=bucket.grouping_version,
        alt_titles=_alt_titles(session, member_ids, bucket.title),
        merged=_merged(session, root, member_ids, totals),
        releases=releases,
        days=_days(session, member_ids),
        hosts=hosts,
        host_count=host_count,
        samples=samples_,
        excerpt=_excerpt(session, samples_),
        merges=_merges(session, member_ids),
    )


def _merges(session: Session, member_ids: Sequence[int]) -> tuple[MergeRow, ...]:
    # The merge history touching the bucket's members, undone merges included, oldest first.
    rows = session.scalars(
        select(BucketMerge)
        .where(BucketMerge.source_bucket_id.in_(member_ids) | BucketMerge.target_bucket_id.in_(member_ids))
        .order_by(BucketMerge.created_at, BucketMerge.id)
    ).all()
    return tuple(MergeRow(m.id, m.source_bucket_id, m.target_bucket_id, m.how, m.created_at, m.undone_at) for m in rows)


def _alt_titles(session: Session, member_ids: Sequence[int], title: str) -> tuple[str, ...]:
    titles = session.scalars(select(BucketTitle.title).where(BucketTitle.bucket_id.in_(member_ids))).all()
    return tuple(sorted(set(titles) - {title}))


def _merged(
    session: Session, root: int, member_ids: Sequence[int], totals: dict[int, _Agg]
) -> tuple[BucketSummary, ...]:
    # The buckets merged (directly or through another) into ``root``, each with its own crashes.
    others = [m for m in member_ids if m != root]
    if not others:
        return ()
    rows = session.execute(select(*_BUCKET_COLUMNS).where(Bucket.id.in_(others)).order_by(Bucket.id)).all()
    return tuple(_summary(row, totals.get(row.id), ()) for row in rows)


def _releases(session: Session, member_ids: Sequence[int]) -> tuple[tuple[ReleaseRow, ...], dict[int, _Agg]]:
    # The per-release table, and each member's count and first/last crash: grouped per member bucket
    # (an ordered scan of the (bucket_id, kernel_release, build_id, ...) index; grouping several
    # buckets at once sorts all their crashes), then combined.
    by_build: dict[tuple[str, str], _Agg] = defaultdict(_Agg)
    totals: dict[int, _Agg] = {}
    for member in member_ids:
        total = totals[member] = _Agg()
        rows = session.execute(
            select(
                Crash.kernel_release,
                Crash.build_id,
                func.count(),
                func.min(Crash.crash_time),
                func.max(Crash.crash_time),
            )
            .where(Crash.bucket_id == member)
            .group_by(Crash.kernel_release, Crash.build_id)
        )
        for release, build_id, count, first, last in rows:
            by_build[release, build_id].add(count, first, last)
            total.add(count, first, last)
    table = [ReleaseRow(r, b, a.count, a.first or _NEVER, a.last or _NEVER) for (r, b), a in by_build.items()]
    table.sort(key=lambda r: (release_key(r.kernel_release), r.first_seen, r.build_id))
    return tuple(table), totals


def _day_of(session: Session) -> ColumnElement[object]:
    # The UTC day of a crash: SQLite keeps datetimes as ISO text (date() cuts it), others cast.
    if session.get_bind().dialect.name == "sqlite":
        return func.date(Crash.crash_time)
    return cast(Crash.crash_time, Date)


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def _days(session: Session, member_ids: Sequence[int]) -> tuple[DayCount, ...]:
    # The daily counts: one index-only scan per member bucket.
    day = _day_of(session).label("day")
    counts: dict[dt.date, int] = defaultdict(int)
    for member in member_ids:
        for d, n in session.execute(select(day, func.count()).where(Crash.bucket_id == member).group_by(day)):
            counts[_as_date(d)] += n
    return fill_days(counts.items())


def fill_days(counts: Iterable[tuple[dt.date, int]]) -> tuple[DayCount, ...]:
    """Day counts from the first to the last day given, with the days between at zero."""
    by_day = dict(counts)
    if not by_day:
        return ()
    first, last = min(by_day), max(by_day)
    span = (last - first).days + 1
    return tuple(DayCount(d, by_day.get(d, 0)) for d in (first + dt.timedelta(days=i) for i in range(span)))


def _top(
    session: Session, column: InstrumentedAttribute[str], where: ColumnElement[bool] | None = None, limit: int = _TOP
) -> tuple[NameCount, ...]:
    query: Select[str, int] = select(column, func.count().label("n")).group_by(column)
    if where is not None:
        query = query.where(where)
    rows = session.execute(query.order_by(func.count().desc(), column).limit(limit))
    return tuple(NameCount(name, count) for name, count in rows)


def _hosts(session: Session, member_ids: Sequence[int]) -> tuple[tuple[NameCount, ...], int]:
    # The most affected hosts and the number of hosts, counted by the database (a big bucket has
    # thousands of hosts: handing them all to Python costs more than the two index scans).
    where = Crash.bucket_id.in_(member_ids)
    top = session.execute(
        select(Crash.host, func.count().label("n"))
        .where(where)
        .group_by(Crash.host)
        .order_by(func.count().desc(), Crash.host)
        .limit(_TOP)
    )
    count = session.scalar(select(func.count(distinct(Crash.host))).where(where)) or 0
    return tuple(NameCount(host, n) for host, n in top), count


def _excerpt(session: Session, samples: Sequence[CrashSummary]) -> str:
    # The newest crash's report text, by primary key (ordering the bucket's rows by time while
    # reading their text sorts every report of a large bucket).
    if not samples:
        return ""
    return session.scalar(select(Crash.excerpt).where(Crash.id == samples[0].id)) or ""


def _samples(session: Session, member_ids: Sequence[int], limit: int) -> tuple[CrashSummary, ...]:
    # The newest ``limit`` crashes of each member bucket (a seek in the (bucket_id, crash_time) index
    # each; one query over all members would sort all their crashes), merged.
    found: list[CrashSummary] = []
    for member in member_ids:
        rows = session.execute(
            select(*_SUMMARY_COLUMNS)
            .where(Crash.bucket_id == member)
            .order_by(Crash.crash_time.desc(), Crash.id.desc())
            .limit(limit)
        )
        found += (CrashSummary(*row) for row in rows)
    found.sort(key=lambda c: (c.crash_time, c.id), reverse=True)
    return tuple(found[:limit])


_SUMMARY_COLUMNS: Final = (
    Crash.id,
    Crash.crash_time,
    Crash.host,
    Crash.kernel_release,
    Crash.build_id,
    Crash.source,
    Crash.kind,
    Crash.title,
    Crash.report_html.is_not(None),
)


def get_crash(session: Session, crash_id: int) -> CrashDetail:
    """One crash and its report text.

    :raises CrashNotFoundError: no crash has that id
    """
    crash = session.get(Crash, crash_id)
    if crash is None:
        raise CrashNotFoundError(f"no crash {crash_id}")
    parent = dict(session.execute(select(Bucket.id, Bucket.merged_into_id)).all())
    return CrashDetail(
        id=crash.id,
        bucket_id=_root(crash.bucket_id, parent),
        own_bucket_id=crash.bucket_id,
        content_hash=crash.content_hash,
        source=crash.source,
        path=crash.path,
        host=crash.host,
        kernel_release=crash.kernel_release,
        build_id=crash.build_id,
        arch=crash.arch,
        crash_time=crash.crash_time,
        ingested_at=crash.ingested_at,
        title=crash.title,
        signature=crash.signature,
        kind=crash.kind,
        taints=crash.taints,
        guilty_frame=crash.guilty_frame,
        guilty_file=crash.guilty_file,
        excerpt=crash.excerpt,
        report_json=crash.report_json,
        has_html=crash.report_html is not None,
    )


def get_crash_html(session: Session, crash_id: int) -> str | None:
    """The stored HTML report of a dump's crash (``None`` for a crash read from a log).

    :raises CrashNotFoundError: no crash has that id
    """
    html = session.execute(select(Crash.report_html).where(Crash.id == crash_id)).one_or_none()
    if html is None:
        raise CrashNotFoundError(f"no crash {crash_id}")
    return html[0]


def get_stats(session: Session) -> FleetStats:
    """Fleet-wide statistics: totals, buckets by status, crashes by source, kind and release."""
    # One statement per number: each reads one index (min and max together scan the whole index on
    # SQLite; alone, each is one seek).
    crashes = session.scalar(select(func.count()).select_from(Crash)) or 0
    hosts = session.scalar(select(func.count(distinct(Crash.host)))) or 0
    releases = session.scalar(select(func.count(distinct(Crash.kernel_release)))) or 0
    first = session.scalar(select(func.min(Crash.crash_time)))
    last = session.scalar(select(func.max(Crash.crash_time)))
    roots = bucket_roots(session)
    effective = sorted({r for r in roots.values()})
    statuses = session.scalars(select(Bucket.status).where(Bucket.id.in_(effective))).all() if effective else []
    by_status: dict[str, int] = defaultdict(int)
    for status in statuses:
        by_status[status] += 1
    return FleetStats(
        crashes=crashes,
        buckets=len(effective),
        hosts=hosts,
        releases=releases,
        first_seen=first,
        last_seen=last,
        by_status=tuple(NameCount(s, n) for s, n in sorted(by_status.items())),
        by_source=_top(session, Crash.source, limit=100),
        by_kind=_top(session, Crash.kind, limit=100),
        top_releases=_top(session, Crash.kernel_release),
    )


def jsonable(value: object) -> object:
    """``value`` (query results: dataclasses, tuples, datetimes) as JSON-ready data: datetimes as ISO
    8601 UTC strings (``Z``), dates as ``YYYY-MM-DD``, numbers by the one rule of every ``--json``
    output (:func:`kcrash.report.json.json_ready`: addresses and integers beyond ±(2^53-1) as ``"0x…"``
    strings).

    >>> jsonable({"ip": 0xFFFFFFFF81000000, "n": 3, "t": dt.datetime(2026, 1, 2, 3, 4, 5)})
    {'ip': '0xffffffff81000000', 'n': 3, 't': '2026-01-02T03:04:05Z'}
    """
    return json_ready(_plain(value))


def _plain(value: object) -> object:
    # dataclasses, tuples and times as dicts, lists and strings
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def crash_jsonable(crash: CrashDetail) -> dict[str, object]:
    """A crash as :func:`jsonable` gives it, its stored JSON report parsed into ``report`` (``None`` for
    a log's crash) instead of the ``report_json`` text, its addresses as hex strings."""
    data = jsonable(crash)
    assert isinstance(data, dict)
    del data["report_json"]
    data["report"] = None if crash.report_json is None else jsonable(json.loads(crash.report_json))
    return data
