"""Buckets: signature grouping, title merges, manual merge/unmerge, fixed/regressed by release, assorted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from kcrash.errors import BucketNotFoundError, FleetError
from kcrash.fleet.buckets import (
    ASSORTED_MIN_FRAMES,
    GROUPING_SIGNATURES,
    GROUPING_VERSION,
    effective_bucket,
    mark_fixed,
    merge_buckets,
    parse_release,
    release_at_least,
    unmerge_bucket,
)
from kcrash.fleet.db import CrashDb, open_db
from kcrash.fleet.extract import CrashRecord, FileResult
from kcrash.fleet.ingest import write_results
from kcrash.fleet.models import Bucket, BucketMerge, Crash, GroupingConfig
from kcrash.oops.signature import SIGNATURE_VERSION, crash_signature

_T0 = dt.datetime(2026, 1, 1)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[CrashDb]:
    crash_db = open_db(f"sqlite:///{tmp_path / 'b.db'}")
    yield crash_db
    crash_db.close()


def _record(
    n: int, title: str, *, alt: tuple[str, ...] = (), release: str = "6.1.0-56-amd64", frame: str = "f", day: int = 0
) -> CrashRecord:
    return CrashRecord(
        content_hash=f"{n:064x}",
        source="log",
        path=f"/logs/{n}",
        host=f"h{n % 3}",
        kernel_release=release,
        build_id="",
        arch="x86_64",
        crash_time=_T0 + dt.timedelta(days=day),
        title=title,
        alt_titles=alt,
        signature=crash_signature(title, ()),
        kind="BUG",
        taints="G",
        guilty_frame=frame,
        guilty_file="",
        excerpt=title,
    )


def _write(db: CrashDb, *records: CrashRecord) -> None:
    write_results(db, [FileResult("/x", 1, "log", records)])


def _bucket(db: CrashDb, title: str) -> Bucket:
    with db.sessions() as session:
        bucket = session.scalars(select(Bucket).where(Bucket.signature == crash_signature(title, ()))).one()
        session.expunge(bucket)
        return bucket


def _root_id(db: CrashDb, title: str) -> int:
    with db.sessions() as session:
        return effective_bucket(session, session.get_one(Bucket, _bucket(db, title).id)).id


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("6.12.118+deb12-amd64", "6.12.120"),
        ("6.1.0-56-amd64", "6.1.0-57-amd64"),
        ("5.10.0-46-amd64", "6.1.0-56-amd64"),
        ("6.12.120", "7.2.13+deb14"),
        ("6.13.0-rc3", "6.13.0"),
        ("6.1.9", "6.1.10"),
        ("6.9", "6.12"),
    ],
)
def test_release_order(older: str, newer: str) -> None:
    assert parse_release(older) < parse_release(newer)  # type: ignore[operator]
    assert release_at_least(newer, older) and not release_at_least(older, newer)


def test_release_parts_and_unparsable() -> None:
    assert parse_release("6.1.0-56-amd64") == parse_release("6.1.0-56-cloud-amd64")
    assert parse_release("6.12.118+deb12-amd64") == parse_release("6.12.118+deb13-amd64")
    assert parse_release("7.2.13+deb14") is not None and parse_release("7.2.13+deb14").patch == 13  # type: ignore[union-attr]
    assert parse_release("6.1.0-56-amd64").abi == 56  # type: ignore[union-attr]
    assert parse_release("unknown") is None and parse_release("") is None
    assert not release_at_least("", "6.1") and not release_at_least("6.1", "x")


def test_grouping_version_matches_the_signature_scheme(db: CrashDb) -> None:
    assert GROUPING_SIGNATURES[GROUPING_VERSION] == SIGNATURE_VERSION
    with db.sessions() as session:
        assert session.get(GroupingConfig, GROUPING_VERSION) is not None


def test_one_bucket_per_signature_with_counts_and_times(db: CrashDb) -> None:
    _write(db, _record(1, "BUG in a_fn", day=3), _record(2, "BUG in a_fn", day=1), _record(3, "BUG in b_fn", day=2))
    a = _bucket(db, "BUG in a_fn")
    assert (a.crash_count, a.first_seen, a.last_seen) == (2, _T0 + dt.timedelta(days=1), _T0 + dt.timedelta(days=3))
    assert a.grouping_version == GROUPING_VERSION and a.status == "open"
    assert _bucket(db, "BUG in b_fn").crash_count == 1
    _write(db, _record(1, "BUG in a_fn", day=3))  # the same crash again
    assert _bucket(db, "BUG in a_fn").crash_count == 2


def test_shared_alt_title_merges_and_unmerge_sticks(db: CrashDb) -> None:
    _write(db, _record(1, "KASAN: use-after-free Read in c_fn", alt=("bad-access in c_fn",)))
    _write(db, _record(2, "general protection fault in c_fn", alt=("bad-access in c_fn",)))
    first, second = _bucket(db, "KASAN: use-after-free Read in c_fn"), _bucket(db, "general protection fault in c_fn")
    assert second.merged_into_id == first.id
    with db.sessions() as session:
        (merge,) = session.scalars(select(BucketMerge)).all()
        assert (merge.source_bucket_id, merge.target_bucket_id, merge.how) == (second.id, first.id, "title")
        unmerge_bucket(session, second.id)
        session.commit()
    _write(db, _record(3, "general protection fault in c_fn", alt=("bad-access in c_fn",)))
    assert _bucket(db, "general protection fault in c_fn").merged_into_id is None


def test_generic_titles_do_not_merge(db: CrashDb) -> None:
    title = "kernel panic: Fatal exception"
    a, b = _record(1, title), _record(2, title)
    b = CrashRecord(**{**{f: getattr(b, f) for f in b.__slots__}, "signature": "kc1-0000000000000002"})  # type: ignore[attr-defined]
    _write(db, a, b)
    with db.sessions() as session:
        assert session.scalars(select(Bucket.merged_into_id)).all() == [None, None]


def test_manual_merge_chain_and_errors(db: CrashDb) -> None:
    _write(db, _record(1, "BUG in a_fn"), _record(2, "BUG in b_fn"), _record(3, "BUG in c_fn"))
    a, b, c = (_bucket(db, f"BUG in {x}_fn").id for x in "abc")
    with db.sessions() as session:
        merge_buckets(session, b, a)
        merge_buckets(session, c, b)  # into b's effective bucket: a
        session.commit()
    assert _root_id(db, "BUG in c_fn") == a
    with db.sessions() as session:
        with pytest.raises(FleetError, match="already one bucket"):
            merge_buckets(session, c, a)
        with pytest.raises(BucketNotFoundError):
            merge_buckets(session, 999, a)
        with pytest.raises(FleetError, match="not merged"):
            unmerge_bucket(session, a)
        unmerge_bucket(session, b)
        session.commit()
    assert (_root_id(db, "BUG in b_fn"), _root_id(db, "BUG in c_fn")) == (b, a)


def test_fixed_bucket_regresses_only_on_the_fixed_release_or_later(db: CrashDb) -> None:
    _write(db, _record(1, "BUG in a_fn", release="6.12.118+deb12-amd64"))
    a = _bucket(db, "BUG in a_fn").id
    with db.sessions() as session:
        with pytest.raises(FleetError, match="not a kernel release"):
            mark_fixed(session, a, "soon")
        assert mark_fixed(session, a, "6.12.120").status == "fixed"
        session.commit()
    _write(db, _record(2, "BUG in a_fn", release="6.12.119+deb12-amd64"))  # an old release still crashing
    assert _bucket(db, "BUG in a_fn").status == "fixed"
    _write(db, _record(3, "BUG in a_fn", release="6.12.121"))
    bucket = _bucket(db, "BUG in a_fn")
    assert (bucket.status, bucket.fixed_in_release) == ("regressed", "6.12.120")


def test_marking_fixed_below_a_seen_release_is_regressed_at_once(db: CrashDb) -> None:
    _write(db, _record(1, "BUG in a_fn", release="6.1.0-57-amd64"))
    with db.sessions() as session:
        assert mark_fixed(session, _bucket(db, "BUG in a_fn").id, "6.1.0-56-amd64").status == "regressed"


def test_assorted_when_many_guilty_functions(db: CrashDb) -> None:
    title = "general protection fault in d_fn"
    frames = [f"fn{i}" for i in range(ASSORTED_MIN_FRAMES)]
    _write(db, *(_record(i, title, frame=frame) for i, frame in enumerate(frames[:-1])))
    assert not _bucket(db, title).assorted
    _write(db, _record(99, title, frame=frames[-1]))
    assert _bucket(db, title).assorted
    with db.sessions() as session:
        assert session.scalar(select(Crash.id).where(Crash.guilty_frame == frames[-1])) is not None
