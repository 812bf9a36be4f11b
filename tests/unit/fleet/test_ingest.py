"""Ingestion end to end: the corpus gives one bucket per distinct signature with the right counts and
first/last seen (expected values computed here from the oops parser), the same database on SQLite and
PostgreSQL and with the local pool and a Dask LocalCluster, nothing new on a second run, and nothing lost
when a worker process dies mid-ingest."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcrash.errors import FleetError
from kcrash.fleet.db import CrashDb, open_db
from kcrash.fleet.ingest import _pool, executor_from_spec, ingest, ingest_files
from support.fleet_chaos import MARK, always_die, die_once, died_flag
from support.fleet_expect import crash_totals, db_buckets, expected_buckets, snapshot

_BASE = dt.datetime(2026, 5, 1)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Path:
    """Every 16th corpus log, each with its own modification time (an hour apart)."""
    root = tmp_path_factory.mktemp("sample") / "in"
    files = sorted(p for p in corpus_dir.rglob("*") if p.is_file())[::16]
    for i, path in enumerate(files):
        target = root / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        stamp = (_BASE + dt.timedelta(hours=i)).replace(tzinfo=dt.UTC).timestamp()
        os.utime(target, (stamp, stamp))
    return root


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.CRITICAL
    ) as cluster:
        yield cluster.scheduler_address


def _open(url: str) -> CrashDb:
    return open_db(url)


def test_full_corpus_one_bucket_per_signature(tmp_path: Path, corpus_dir: Path) -> None:
    db = _open(f"sqlite:///{tmp_path / 'c.db'}")
    stats = ingest(db, [corpus_dir], executor="local:2")
    expected = expected_buckets(corpus_dir)
    assert (stats.files_failed, stats.errors) == (0, [])
    assert stats.new_crashes == sum(e.count for e in expected.values())
    assert db_buckets(db) == expected
    assert crash_totals(db) == expected
    db.close()


def test_sample_identical_on_sqlite_postgres_and_dask(
    tmp_path: Path, sample: Path, postgres_url: str, dask_address: str
) -> None:
    expected = expected_buckets(sample)
    assert len({e.first for e in expected.values()}) > 10  # the times say something
    snapshots = []
    for url, executor in (
        (f"sqlite:///{tmp_path / 'local.db'}", "local:2"),
        (postgres_url, "local:2"),
        (f"sqlite:///{tmp_path / 'dask.db'}", f"dask://{dask_address}"),
    ):
        db = _open(url)
        stats = ingest(db, [sample], executor=executor)
        assert stats.errors == [] and stats.new_crashes == sum(e.count for e in expected.values()), executor
        assert db_buckets(db) == expected, (url, executor)
        snapshots.append(snapshot(db))
        db.close()
    assert snapshots[0] == snapshots[1] == snapshots[2]
    assert snapshots[0]["merges"]  # title merges happened, the same way everywhere


def test_second_ingest_adds_no_rows(tmp_path: Path, sample: Path) -> None:
    db = _open(f"sqlite:///{tmp_path / 'c.db'}")
    folder = sorted(sample.iterdir())[-1]  # one of the sample's two folders
    first = ingest(db, [folder], executor="local:2")
    before = snapshot(db)
    again = ingest(db, [folder], executor="local:2")
    assert (again.new_crashes, again.new_buckets, again.duplicates) == (0, 0, first.crashes)
    assert snapshot(db) == before
    db.close()


def _chaos_input(tmp_path: Path, sample: Path) -> Path:
    # Ten files of the sample, the last renamed so that the chaos tasks kill their worker.
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(p for p in sample.rglob("*") if p.is_file())[-10:]:
        shutil.copy2(path, folder / path.name)
    victim = sorted(folder.iterdir())[-1]
    victim.rename(victim.with_name(f"{MARK}-{victim.name}"))
    return folder


def test_killed_local_worker_loses_nothing(tmp_path: Path, sample: Path) -> None:
    folder = _chaos_input(tmp_path, sample)
    db = _open(f"sqlite:///{tmp_path / 'c.db'}")
    with executor_from_spec("local:2") as (pool, workers):
        stats = ingest_files(db, [folder], pool, workers, task=die_once, replace_pool=lambda: _pool(2))
    assert died_flag(next(folder.glob(f"{MARK}*"))).exists(), "the worker never died"
    assert stats.retried >= 1 and stats.errors == []
    assert db_buckets(db) == expected_buckets(folder)
    db.close()


def test_killed_dask_worker_loses_nothing(tmp_path: Path, sample: Path, dask_address: str) -> None:
    from distributed import Client

    folder = _chaos_input(tmp_path, sample)
    db = _open(f"sqlite:///{tmp_path / 'c.db'}")
    with Client(dask_address) as client, client.get_executor(pure=False) as executor:
        pids_before = set(client.run(os.getpid).values())
        stats = ingest_files(db, [folder], executor, 2, task=die_once)
    victim = next(folder.glob(f"{MARK}*"))
    assert int(died_flag(victim).read_text()) in pids_before
    assert stats.errors == []
    assert db_buckets(db) == expected_buckets(folder)
    db.close()


def test_a_file_that_always_kills_its_worker_is_reported(tmp_path: Path, sample: Path) -> None:
    folder = _chaos_input(tmp_path, sample)
    db = _open(f"sqlite:///{tmp_path / 'c.db'}")
    with executor_from_spec("local:2") as (pool, workers):
        stats = ingest_files(db, [folder], pool, workers, task=always_die, retries=0, replace_pool=lambda: _pool(2))
    (error,) = stats.errors  # the files that were in the pool with it are not blamed
    assert MARK in error and error.endswith("failed 2 times: its worker died")
    next(folder.glob(f"{MARK}*")).unlink()
    assert db_buckets(db) == expected_buckets(folder)
    db.close()


@pytest.mark.parametrize("spec", ["local:0", "local:x", "ftp://x"])
def test_bad_executor_spec(spec: str) -> None:
    with pytest.raises(FleetError), executor_from_spec(spec):
        pass
