"""The read side of the crash database (kcrash.fleet.queries), on SQLite and PostgreSQL: a small
database written row by row through the ORM's tables (tests/support/fleet_synth.py), every expected
count, first/last seen, per-release row, day and host computed here from the same rows with plain
Python; then a synthetic fleet replaying the shared corpus's reports, its buckets compared with the
generated rows grouped by the oops parser's signatures."""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert

from kcrash.errors import BucketNotFoundError, CrashNotFoundError
from kcrash.fleet import queries
from kcrash.fleet.db import CrashDb, open_db
from kcrash.fleet.models import BucketMerge
from support.fleet_synth import (
    CORPUS,
    corpus_logs,
    crash_row,
    insert_rows,
    merge_buckets,
    synthetic_fleet,
    templates_from_logs,
)

T0 = dt.datetime(2026, 11, 1, 8, 0, 0)

# (signature, hours after T0, release, build-id, host, source)
SPECS = [
    ("sigA", 0, "6.1.0-56-amd64", "b1", "web1", "log"),
    ("sigA", 5, "6.1.0-56-amd64", "b1", "web2", "log"),
    ("sigA", 30, "6.12.118+deb12-amd64", "b2", "web1", "dump"),
    ("sigA", 75, "6.1.0-56-amd64", "b1bis", "db1", "pstore"),
    ("sigB", 2, "6.12.118+deb12-amd64", "b2", "db1", "log"),
    ("sigB", 50, "6.12.120", "b3", "db2", "dmesg"),
    ("sigC", 1, "6.1.0-57-amd64", "b4", "web3", "log"),
    ("sigC", 3, "6.1.0-57-amd64", "b4", "web3", "log"),
    ("sigC", 200, "6.1.0-9-amd64", "b5", "web4", "log"),
    ("sigD", 10, "5.10.0-46-amd64", "b6", "old1", "log"),
]
MERGED = {"sigD": "sigC"}  # bucket of sigD merged into the bucket of sigC


def _rows() -> list[dict[str, Any]]:
    return [
        crash_row(
            i,
            sig,
            T0 + dt.timedelta(hours=h),
            kernel_release=rel,
            build_id=build,
            host=host,
            source=src,
            kind="BUG" if sig != "sigB" else "WARNING",
            report_html="<html>x</html>" if src == "dump" else None,
        )
        for i, (sig, h, rel, build, host, src) in enumerate(SPECS)
    ]


def _root(sig: str) -> str:
    return MERGED.get(sig, sig)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[CrashDb, dict[str, int]]]:
    url = f"sqlite:///{tmp_path / 'q.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    crash_db = open_db(url)
    ids = insert_rows(crash_db.engine, _rows(), alt_titles={"sigA": ["other title of A"]})
    for source, target in MERGED.items():
        merge_buckets(crash_db.engine, ids[source], ids[target])
        with crash_db.engine.begin() as conn:
            conn.execute(
                insert(BucketMerge),
                [{"source_bucket_id": ids[source], "target_bucket_id": ids[target], "created_at": T0, "how": "manual"}],
            )
    yield crash_db, ids
    crash_db.close()


def _expected() -> dict[str, tuple[int, dt.datetime, dt.datetime]]:
    groups: dict[str, list[dt.datetime]] = defaultdict(list)
    for sig, h, *_ in SPECS:
        groups[_root(sig)].append(T0 + dt.timedelta(hours=h))
    return {sig: (len(times), min(times), max(times)) for sig, times in groups.items()}


def test_bucket_list_counts_and_first_last_seen(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, ids = db
    with crash_db.sessions() as session:
        page = queries.list_buckets(session)
    got = {b.id: (b.crash_count, b.first_seen, b.last_seen) for b in page.buckets}
    assert got == {ids[sig]: value for sig, value in _expected().items()}
    assert page.total == 3  # sigD lives inside sigC's bucket
    merged = next(b for b in page.buckets if b.id == ids["sigC"])
    assert merged.merged_ids == (ids["sigD"],)


@pytest.mark.parametrize("sort", queries.SORT_KEYS)
@pytest.mark.parametrize("descending", [True, False])
def test_bucket_list_sorts(db: tuple[CrashDb, dict[str, int]], sort: queries.SortKey, descending: bool) -> None:
    crash_db, ids = db
    with crash_db.sessions() as session:
        page = queries.list_buckets(session, sort, descending=descending)
    # ties in count (sigA and sigC+sigD: 4 each) go by last seen, as documented
    columns = {"count": (0, 2), "first_seen": (1,), "last_seen": (2,)}[sort]
    expected = sorted(_expected().items(), key=lambda kv: [kv[1][c] for c in columns], reverse=descending)
    assert [b.id for b in page.buckets] == [ids[sig] for sig, _ in expected]


def test_bucket_list_pages(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, _ = db
    with crash_db.sessions() as session:
        whole = queries.list_buckets(session, "first_seen")
        pages = [queries.list_buckets(session, "first_seen", limit=2, skip=skip) for skip in (0, 2)]
    assert [b.id for p in pages for b in p.buckets] == [b.id for b in whole.buckets]
    assert [len(p.buckets) for p in pages] == [2, 1] and all(p.total == 3 for p in pages)
    with pytest.raises(ValueError, match="unknown sort key"), crash_db.sessions() as session:
        queries.list_buckets(session, "title")  # type: ignore[arg-type]


def test_bucket_detail(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, ids = db
    with crash_db.sessions() as session:
        detail = queries.get_bucket(session, ids["sigC"])
    mine = [s for s in SPECS if _root(s[0]) == "sigC"]
    times = [T0 + dt.timedelta(hours=s[1]) for s in mine]
    assert (detail.bucket.crash_count, detail.bucket.first_seen, detail.bucket.last_seen) == (
        len(mine),
        min(times),
        max(times),
    )
    # per release and build-id, in version order: 5.10.0-46 < 6.1.0-9 < 6.1.0-57
    per: dict[tuple[str, str], list[dt.datetime]] = defaultdict(list)
    for _sig, h, rel, build, *_ in mine:
        per[rel, build].append(T0 + dt.timedelta(hours=h))
    assert [(r.kernel_release, r.build_id, r.crash_count, r.first_seen, r.last_seen) for r in detail.releases] == [
        (rel, build, len(per[rel, build]), min(per[rel, build]), max(per[rel, build]))
        for rel, build in [("5.10.0-46-amd64", "b6"), ("6.1.0-9-amd64", "b5"), ("6.1.0-57-amd64", "b4")]
    ]
    # every day from the first to the last crash, zeros between
    days = Counter(t.date() for t in times)
    assert detail.days[0].day == min(days) and detail.days[-1].day == max(days)
    assert len(detail.days) == (max(days) - min(days)).days + 1
    assert {d.day: d.count for d in detail.days if d.count} == dict(days)
    hosts = Counter(s[4] for s in mine)
    assert [(h.name, h.count) for h in detail.hosts] == sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))
    assert detail.host_count == len(hosts)
    assert [c.crash_time for c in detail.samples] == sorted(times, reverse=True)
    assert detail.excerpt == f"report {SPECS.index(max(mine, key=lambda s: s[1]))}"
    assert [m.id for m in detail.merged] == [ids["sigD"]] and detail.merged[0].crash_count == 1
    assert [(m.source_id, m.target_id, m.how) for m in detail.merges] == [(ids["sigD"], ids["sigC"], "manual")]


def test_a_merged_bucket_gives_its_target(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, ids = db
    with crash_db.sessions() as session:
        assert queries.get_bucket(session, ids["sigD"]).bucket.id == ids["sigC"]
        assert queries.bucket_roots(session)[ids["sigD"]] == ids["sigC"]


def test_alt_titles_and_samples_flag_html(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, ids = db
    with crash_db.sessions() as session:
        detail = queries.get_bucket(session, ids["sigA"])
    assert detail.alt_titles == ("other title of A",)
    assert {c.source: c.has_html for c in detail.samples} == {"log": False, "dump": True, "pstore": False}


def test_missing_bucket_and_crash(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, _ = db
    with crash_db.sessions() as session:
        with pytest.raises(BucketNotFoundError):
            queries.get_bucket(session, 999)
        with pytest.raises(CrashNotFoundError):
            queries.get_crash(session, 999)
        with pytest.raises(CrashNotFoundError):
            queries.get_crash_html(session, 999)


def test_crash_detail(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, ids = db
    with crash_db.sessions() as session:
        page = queries.get_bucket(session, ids["sigC"])
        old = next(c for c in page.samples if c.kernel_release == "5.10.0-46-amd64")
        crash = queries.get_crash(session, old.id)
        dump = next(c for c in queries.get_bucket(session, ids["sigA"]).samples if c.source == "dump")
        assert queries.get_crash_html(session, dump.id) == "<html>x</html>"
        assert queries.get_crash_html(session, crash.id) is None
    assert (crash.bucket_id, crash.own_bucket_id) == (ids["sigC"], ids["sigD"])
    assert (crash.host, crash.signature, crash.excerpt) == ("old1", "sigD", f"report {len(SPECS) - 1}")


def test_stats(db: tuple[CrashDb, dict[str, int]]) -> None:
    crash_db, _ = db
    with crash_db.sessions() as session:
        stats = queries.get_stats(session)
    times = [T0 + dt.timedelta(hours=s[1]) for s in SPECS]
    assert (stats.crashes, stats.buckets, stats.hosts, stats.releases) == (
        len(SPECS),
        3,
        len({s[4] for s in SPECS}),
        len({s[2] for s in SPECS}),
    )
    assert (stats.first_seen, stats.last_seen) == (min(times), max(times))
    assert {(r.name, r.count) for r in stats.by_source} == set(Counter(s[5] for s in SPECS).items())
    assert [(r.name, r.count) for r in stats.by_status] == [("open", 3)]
    assert stats.top_releases[0] == queries.NameCount(*Counter(s[2] for s in SPECS).most_common(1)[0])


def test_empty_database(tmp_path: Any) -> None:
    crash_db = open_db(f"sqlite:///{tmp_path / 'e.db'}")
    with crash_db.sessions() as session:
        assert queries.list_buckets(session).total == 0
        stats = queries.get_stats(session)
    assert (stats.crashes, stats.buckets, stats.first_seen) == (0, 0, None)
    crash_db.close()


def test_release_order_and_days() -> None:
    releases = ["6.12.120", "6.1.0-57-amd64", "custom-kernel", "6.1.0-9-amd64", "6.12.118+deb12-amd64", "5.10.0-46"]
    assert sorted(releases, key=queries.release_key) == [
        "5.10.0-46",
        "6.1.0-9-amd64",
        "6.1.0-57-amd64",
        "6.12.118+deb12-amd64",
        "6.12.120",
        "custom-kernel",
    ]
    d = dt.date(2026, 2, 27)
    assert [(x.day.isoformat(), x.count) for x in queries.fill_days([(d, 2), (d + dt.timedelta(days=3), 1)])] == [
        ("2026-02-27", 2),
        ("2026-02-28", 0),
        ("2026-03-01", 0),
        ("2026-03-02", 1),
    ]
    assert queries.fill_days([]) == ()


def test_jsonable_makes_big_integers_hex_and_times_strings() -> None:
    # the one number rule of every --json output (kcrash.report.json.json_ready; issue 22 item 7):
    # address fields are hex whatever their size, counts stay integers, nothing reaches 2^53
    data = queries.jsonable(
        {
            "pc": 0x10,
            "count": 3,
            "ip": 0xFFFFFFFF81000000,
            "neg": -(2**60),
            "small": 2**53 - 1,
            "flag": True,
            "when": T0,
            "day": T0.date(),
            "rows": (queries.NameCount("a", 1),),
        }
    )
    assert data == {
        "pc": "0x10",
        "count": 3,
        "ip": "0xffffffff81000000",
        "neg": "-0x1000000000000000",
        "small": 2**53 - 1,
        "flag": True,
        "when": "2026-11-01T08:00:00Z",
        "day": "2026-11-01",
        "rows": [{"name": "a", "count": 1}],
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_synthetic_fleet_from_the_corpus(request: pytest.FixtureRequest, tmp_path: Any, backend: str) -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    templates = templates_from_logs(corpus_logs()[::10])
    rows = list(synthetic_fleet(templates, 3000, seed=7, hosts=50, days=20))
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    crash_db = open_db(url)
    ids = insert_rows(crash_db.engine, rows)
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["signature"]].append(row)
    with crash_db.sessions() as session:
        page = queries.list_buckets(session, limit=10_000)
        top = queries.get_bucket(session, page.buckets[0].id)
    crash_db.close()
    assert {b.id: (b.crash_count, b.first_seen, b.last_seen) for b in page.buckets} == {
        ids[sig]: (len(g), min(r["crash_time"] for r in g), max(r["crash_time"] for r in g))
        for sig, g in groups.items()
    }
    biggest = max(groups.values(), key=lambda g: (len(g), max(r["crash_time"] for r in g)))
    per = Counter((r["kernel_release"], r["build_id"]) for r in biggest)
    assert {(r.kernel_release, r.build_id): r.crash_count for r in top.releases} == dict(per)
    assert top.host_count == len({r["host"] for r in biggest})
    assert sum(d.count for d in top.days) == len(biggest)
