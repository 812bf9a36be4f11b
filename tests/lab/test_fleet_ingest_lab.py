"""Ingesting the lab's cached dumps with their serial consoles: each dump lands in the bucket of its console's
first report (signatures agree between vmcore and log), one bucket per distinct signature with the counts
the oops parser predicts, the JSON and HTML reports stored; the same database on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from kcrash.fleet.db import open_db
from kcrash.fleet.extract import ExtractOptions, FileResult
from kcrash.fleet.ingest import ingest, write_results
from kcrash.fleet.models import Bucket, Crash
from kcrash.oops.stream import iter_reports_in_file
from support.fleet_expect import db_buckets, snapshot
from support.postgres import postgres_server, postgres_url

pytestmark = pytest.mark.lab
__all__ = ["postgres_server", "postgres_url"]

#: The lab crashes every test run has in its cache (tests/conftest.py's lab_crash).
CACHED = (
    ("BUG", "6.1", True),
    ("BUG", "6.12", False),
    ("BUG", "5.10", True),
    ("HUNG_ABBA", "6.12", False),
    ("HUNG_ABBA", "6.1", False),
    ("SOFTLOCKUP", "6.12", False),
    ("SPINLOCKUP", "6.12", False),
    ("SYSRQ", "7", False),
)


class _Collect:
    def __init__(self) -> None:
        self.results: list[FileResult] = []

    def started(self, files: int, total_bytes: int) -> None:
        self.files = files

    def file_done(self, result: FileResult, new_crashes: int) -> None:
        self.results.append(result)


@pytest.fixture(scope="module")
def lab_inputs(lab_crash: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder per cached lab crash with links to its vmcore.kdump and console.log."""
    root = tmp_path_factory.mktemp("lab-fleet")
    for kind, kernel, kaslr in CACHED:
        crash = lab_crash(kind, kernel, kaslr)
        folder = root / crash.name
        folder.mkdir()
        for name in ("vmcore.kdump", "console.log"):
            (folder / name).symlink_to(crash / name)
    return root


def _expected_counts(root: Path) -> Counter[str]:
    # Every console report, plus one dump crash in the bucket of its console's first report.
    counts: Counter[str] = Counter()
    for folder in sorted(root.iterdir()):
        signatures = [r.signature for r in iter_reports_in_file(folder / "console.log")]
        counts.update(signatures)
        counts[signatures[0]] += 1
    return counts


def test_lab_dumps_and_consoles_bucket_by_signature(
    lab_inputs: Path, kcrash_cache: Path, tmp_path: Path, postgres_url: str
) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'lab.db'}")
    seen = _Collect()
    stats = ingest(db, [lab_inputs], executor="local:2", options=ExtractOptions(cache_dir=kcrash_cache), observer=seen)
    assert (stats.files, stats.errors) == (2 * len(CACHED), [])
    buckets = db_buckets(db)
    assert Counter({sig: b.count for sig, b in buckets.items()}) == _expected_counts(lab_inputs)
    with db.sessions() as session:
        dumps = session.scalars(select(Crash).where(Crash.source == "dump")).all()
        consoles = session.scalars(select(Crash).where(Crash.source != "dump")).all()
        for crash in dumps:
            lab = json.loads((Path(crash.path).resolve().parent / "lab.json").read_text())
            assert crash.kernel_release == lab["kernel"]["release"]
            assert crash.build_id and crash.arch == "x86_64"
            report = json.loads(crash.report_json or "{}")
            assert report["verdict"]["signature"] == crash.signature
            assert (crash.report_html or "").lstrip().lower().startswith("<!doctype html")
        for crash in consoles:
            mtime = Path(crash.path).stat().st_mtime
            assert crash.crash_time == dt.datetime.fromtimestamp(mtime, dt.UTC).replace(tzinfo=None)
        for bucket in session.scalars(select(Bucket)):
            times = session.scalars(select(Crash.crash_time).where(Crash.bucket_id == bucket.id)).all()
            assert (bucket.first_seen, bucket.last_seen) == (min(times), max(times))
    assert len(dumps) == len(CACHED)
    pg = open_db(postgres_url)
    write_results(pg, seen.results)
    assert snapshot(pg) == snapshot(db)
    pg.close()
    db.close()
