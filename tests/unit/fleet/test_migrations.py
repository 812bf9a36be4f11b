"""Migrations: a database made by the first schema, with data, upgrades to the newest one with the data
intact (SQLite and PostgreSQL); the revisions form one chain; the newest equals the ORM models."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, insert, select

from kcrash.fleet.db import current_revision, head_revision, make_engine, migrations_dir, open_db, upgrade
from kcrash.fleet.extract import CrashRecord, FileResult
from kcrash.fleet.ingest import write_results
from kcrash.fleet.models import Bucket, BucketMerge, BucketTitle, Crash

_T = dt.datetime(2026, 2, 3, 4, 5, 6)


def _first_revision() -> str:
    script = ScriptDirectory(migrations_dir())
    (base,) = script.get_bases()
    return base


def test_revisions_form_one_chain() -> None:
    script = ScriptDirectory(migrations_dir())
    assert len(script.get_heads()) == 1 and len(script.get_bases()) == 1
    chain = list(script.walk_revisions())
    assert chain[0].revision == head_revision() and chain[-1].revision == _first_revision()


def _fill_first_schema(url: str) -> None:
    # Rows written with the first schema's own tables (reflected), not the ORM of the newest one.
    engine = make_engine(url)
    upgrade(engine, _first_revision())
    assert current_revision(engine) == _first_revision()
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as conn:
        t = meta.tables
        bucket = {
            "signature": "kc1-00000000000000aa",
            "title": "BUG in old_fn",
            "kind": "BUG",
            "grouping_version": 1,
            "status": "fixed",
            "fixed_in_release": "6.1.0-56-amd64",
            "assorted": False,
            "first_seen": _T,
            "last_seen": _T,
            "crash_count": 1,
        }
        conn.execute(
            insert(t["bucket"]),
            [bucket, {**bucket, "signature": "kc1-00000000000000bb", "status": "open", "fixed_in_release": None}],
        )
        conn.execute(insert(t["bucket_title"]), [{"bucket_id": 1, "title": "BUG in old_fn"}])
        conn.execute(
            insert(t["bucket_merge"]),
            [{"source_bucket_id": 2, "target_bucket_id": 1, "created_at": _T, "how": "manual", "undone_at": _T}],
        )
        conn.execute(
            insert(t["crash"]),
            [
                {
                    "content_hash": "ab" * 32,
                    "source": "log",
                    "path": "/var/log/kern.log",
                    "host": "old-host",
                    "kernel_release": "6.1.0-55-amd64",
                    "build_id": "",
                    "arch": "x86_64",
                    "crash_time": _T,
                    "ingested_at": _T,
                    "title": "BUG in old_fn",
                    "signature": "kc1-00000000000000aa",
                    "kind": "BUG",
                    "taints": "G",
                    "guilty_frame": "old_fn",
                    "guilty_file": "",
                    "excerpt": "kernel BUG",
                    "report_json": None,
                    "report_html": None,
                    "bucket_id": 1,
                }
            ],
        )
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_first_schema_upgrades_with_data_intact(backend: str, tmp_path: object, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path}/m.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    _fill_first_schema(url)
    db = open_db(url)  # upgrades to head
    assert current_revision(db.engine) == head_revision()
    with db.sessions() as session:
        old = session.get_one(Bucket, 1)
        assert (old.signature, old.status, old.fixed_in_release, old.crash_count) == (
            "kc1-00000000000000aa",
            "fixed",
            "6.1.0-56-amd64",
            1,
        )
        (crash,) = session.scalars(select(Crash)).all()
        assert (crash.host, crash.crash_time, crash.bucket_id, crash.kernel_release) == (
            "old-host",
            _T,
            1,
            "6.1.0-55-amd64",
        )
        assert session.scalars(select(BucketTitle.title)).all() == ["BUG in old_fn"]
        assert session.scalars(select(BucketMerge.undone_at)).all() == [_T]
    record = CrashRecord(
        content_hash="cd" * 32,
        source="log",
        path="/x",
        host="new-host",
        kernel_release="6.1.0-57-amd64",
        build_id="",
        arch="x86_64",
        crash_time=_T,
        title="BUG in old_fn",
        alt_titles=(),
        signature="kc1-00000000000000aa",
        kind="BUG",
        taints="",
        guilty_frame="old_fn",
        guilty_file="",
        excerpt="",
    )
    write_results(db, [FileResult("/x", 1, "log", (record,))])
    with db.sessions() as session:
        old = session.get_one(Bucket, 1)
        assert (old.crash_count, old.status) == (2, "regressed")  # a new crash on a later release
    db.close()
