"""What the fleet tests compare: the per-signature counts and first/last seen computed from the oops parser
(:func:`expected_buckets`), the same read back from a crash database (:func:`db_buckets`,
:func:`crash_totals`), and a whole database without ids and ingest times (:func:`snapshot`)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from kcrash.fleet.db import CrashDb
from kcrash.fleet.extract import UNKNOWN_HOST
from kcrash.fleet.models import Bucket, BucketMerge, BucketTitle, Crash
from kcrash.oops.stream import iter_reports_in_file

__all__ = ["Expected", "crash_totals", "db_buckets", "expected_buckets", "snapshot"]


@dataclass(frozen=True)
class Expected:
    count: int
    first: dt.datetime
    last: dt.datetime


def expected_buckets(root: Path) -> dict[str, Expected]:
    # Group every distinct report (its raw bytes, as a crash's identity) by the parser's signature;
    # a report's time is its file's modification time (the logs carry no dates).
    seen: set[bytes] = set()
    found: dict[str, list[dt.datetime]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        data = path.read_bytes()
        when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).replace(tzinfo=None)
        for report in iter_reports_in_file(path):
            key = hashlib.sha256(UNKNOWN_HOST.encode() + b"\0" + data[report.start_pos : report.end_pos]).digest()
            if key not in seen:
                seen.add(key)
                found.setdefault(report.signature, []).append(when)
    return {sig: Expected(len(times), min(times), max(times)) for sig, times in found.items()}


def db_buckets(db: CrashDb) -> dict[str, Expected]:
    with db.sessions() as session:
        rows = session.execute(select(Bucket.signature, Bucket.crash_count, Bucket.first_seen, Bucket.last_seen))
        return {sig: Expected(n, first, last) for sig, n, first, last in rows}


def crash_totals(db: CrashDb) -> dict[str, Expected]:
    totals: dict[str, list[dt.datetime]] = {}
    with db.sessions() as session:
        for sig, when in session.execute(
            select(Bucket.signature, Crash.crash_time).join(Crash, Crash.bucket_id == Bucket.id)
        ):
            totals.setdefault(sig, []).append(when)
    return {sig: Expected(len(t), min(t), max(t)) for sig, t in totals.items()}


def snapshot(db: CrashDb) -> dict[str, list[tuple[object, ...]]]:
    # Everything but ids and ingest times, by signature.
    with db.sessions() as session:
        sig = {i: s for i, s in session.execute(select(Bucket.id, Bucket.signature))}
        buckets = session.scalars(select(Bucket)).all()
        crashes = session.scalars(select(Crash)).all()
        return {
            "buckets": sorted(
                (
                    b.signature,
                    b.title,
                    b.kind,
                    b.crash_count,
                    b.first_seen,
                    b.last_seen,
                    sig.get(b.merged_into_id or 0),
                    b.assorted,
                    b.status,
                    b.grouping_version,
                )
                for b in buckets
            ),
            "crashes": sorted(
                (
                    c.content_hash,
                    sig[c.bucket_id],
                    c.signature,
                    c.title,
                    c.host,
                    c.crash_time,
                    c.kernel_release,
                    Path(c.path).name,
                    c.source,
                    c.kind,
                    c.taints,
                    c.guilty_frame,
                    c.arch,
                )
                for c in crashes
            ),
            "titles": sorted((sig[t.bucket_id], t.title) for t in session.scalars(select(BucketTitle))),
            "merges": sorted(
                (sig[m.source_bucket_id], sig[m.target_bucket_id], m.how) for m in session.scalars(select(BucketMerge))
            ),
        }
