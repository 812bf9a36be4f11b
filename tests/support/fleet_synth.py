"""Crash-database rows for the fleet tests and benches, written through the ORM's tables (SQLAlchemy
Core bulk inserts: one statement per chunk, not one session per row), independent of ingest.

- :func:`crash_row` / :func:`insert_rows`: a few hand-made crashes and their buckets (one per
  signature), for tests that compute their expected answers themselves.
- :func:`templates_from_logs`: every crash report the oops parser finds in real logs (the shared
  corpus, the lab's console logs) as a template record.
- :func:`synthetic_fleet`: ``n`` crashes replaying those templates on varied hosts, kernel releases,
  build-ids and times (a skewed choice of template, so that a few buckets are large, as in a real
  fleet), deterministic for a seed.
- :func:`build_fleet`: the above written into a database, with a few buckets merged into others.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, update

from kcrash.fleet.models import Bucket, BucketTitle, Crash
from kcrash.oops import decode_log, parse_all

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus"
EPOCH = dt.datetime(2026, 9, 1)
RELEASES = (
    "5.10.0-46-amd64",
    "6.1.0-55-amd64",
    "6.1.0-56-amd64",
    "6.1.0-57-amd64",
    "6.6.60-cloud",
    "6.12.117+deb12-amd64",
    "6.12.118+deb12-amd64",
    "6.12.120+deb12-amd64",
    "6.13.2",
    "6.14.0-rc3",
    "7.0.1",
    "7.2.0",
)


@dataclass(frozen=True, slots=True)
class Template:
    """A crash report found in a real log, to replay."""

    path: str
    title: str
    alt_titles: tuple[str, ...]
    signature: str
    kind: str
    taints: str
    guilty_frame: str
    guilty_file: str
    excerpt: str


def crash_row(n: int, signature: str, when: dt.datetime, **fields: Any) -> dict[str, Any]:
    """A ``crash`` row (without ``bucket_id``); ``fields`` override the defaults."""
    row: dict[str, Any] = {
        "content_hash": hashlib.sha256(f"{n}:{signature}:{when}".encode()).hexdigest(),
        "source": "log",
        "path": f"/var/log/crash-{n}.log",
        "host": "host-0",
        "kernel_release": "6.1.0-56-amd64",
        "build_id": "b1",
        "arch": "x86_64",
        "crash_time": when,
        "ingested_at": when + dt.timedelta(minutes=5),
        "title": f"title of {signature}",
        "signature": signature,
        "kind": "BUG",
        "taints": "",
        "guilty_frame": "",
        "guilty_file": "",
        "excerpt": f"report {n}",
        "report_json": None,
        "report_html": None,
    }
    row.update(fields)
    return row


def insert_rows(
    engine: Engine,
    crashes: Sequence[dict[str, Any]],
    *,
    chunk: int = 5000,
    alt_titles: dict[str, Sequence[str]] | None = None,
) -> dict[str, int]:
    """Write ``crashes`` and one bucket per signature (title and kind of its first crash, counters set);
    returns signature -> bucket id."""
    buckets: dict[str, dict[str, Any]] = {}
    for row in crashes:
        b = buckets.setdefault(
            row["signature"],
            {
                "signature": row["signature"],
                "title": row["title"],
                "kind": row["kind"],
                "grouping_version": 1,
                "status": "open",
                "assorted": False,
                "first_seen": row["crash_time"],
                "last_seen": row["crash_time"],
                "crash_count": 0,
            },
        )
        b["crash_count"] += 1
        b["first_seen"] = min(b["first_seen"], row["crash_time"])
        b["last_seen"] = max(b["last_seen"], row["crash_time"])
    with engine.begin() as conn:
        conn.execute(insert(Bucket), list(buckets.values()))
        ids = {sig: bid for sig, bid in conn.execute(select(Bucket.signature, Bucket.id))}
        titles = [
            {"bucket_id": ids[s], "title": t}
            for s, b in buckets.items()
            for t in dict.fromkeys([b["title"], *(alt_titles or {}).get(s, ())])
        ]
        conn.execute(insert(BucketTitle), titles)
        for start in range(0, len(crashes), chunk):
            conn.execute(
                insert(Crash), [{**row, "bucket_id": ids[row["signature"]]} for row in crashes[start : start + chunk]]
            )
    return ids


def merge_buckets(engine: Engine, source: int, target: int) -> None:
    """Point bucket ``source`` at ``target`` (what a merge leaves in the ``bucket`` table)."""
    with engine.begin() as conn:
        conn.execute(update(Bucket).where(Bucket.id == source).values(merged_into_id=target))


def corpus_logs(corpus: Path = CORPUS) -> list[Path]:
    """The corpus's raw log files (named by number)."""
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.name.isdigit())


def lab_console_logs() -> list[Path]:
    """The console logs of every cached lab crash."""
    return sorted((Path.home() / ".cache" / "kcrash" / "crashes").glob("*/console.log"))


def templates_from_logs(paths: Iterable[Path]) -> list[Template]:
    """One template per crash report the oops parser finds in ``paths``."""
    return [
        Template(
            str(path),
            rep.title,
            rep.alt_titles,
            rep.signature,
            rep.crash_type or "UNKNOWN",
            rep.details.taint_flags,
            rep.guilty_function or rep.frame,
            rep.guilty_file,
            rep.report,
        )
        for path in paths
        for rep in parse_all(decode_log(path.read_bytes()))
    ]


def _build_id(release: str) -> str:
    return hashlib.sha1(release.encode()).hexdigest()


def synthetic_fleet(
    templates: Sequence[Template], n: int, *, seed: int = 19, hosts: int = 2000, days: int = 90
) -> Iterator[dict[str, Any]]:
    """``n`` crash rows replaying ``templates``: template i drawn with weight 1/(i+1) (a few frequent
    bugs, a long tail), each bug on a few releases (a second build of one release for some), on
    random hosts at random times within ``days`` days."""
    rng = random.Random(seed)
    order = list(range(len(templates)))
    rng.shuffle(order)
    weights = [1 / (rank + 1) for rank in range(len(order))]
    picks = rng.choices(order, weights, k=n)
    for i, t in enumerate(picks):
        tpl = templates[t]
        first = t % len(RELEASES)
        release = RELEASES[min(len(RELEASES) - 1, first + rng.randrange(4))]
        build = _build_id(release) if rng.random() > 0.1 else _build_id(release + "+rebuild")
        when = EPOCH + dt.timedelta(seconds=rng.randrange(days * 86400))
        yield {
            "content_hash": hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(),
            "source": "log",
            "path": tpl.path,
            "host": f"host-{rng.randrange(hosts):05d}",
            "kernel_release": release,
            "build_id": build,
            "arch": "x86_64",
            "crash_time": when,
            "ingested_at": when + dt.timedelta(minutes=rng.randrange(1, 600)),
            "title": tpl.title,
            "signature": tpl.signature,
            "kind": tpl.kind,
            "taints": tpl.taints,
            "guilty_frame": tpl.guilty_frame,
            "guilty_file": tpl.guilty_file,
            "excerpt": tpl.excerpt,
            "report_json": None,
            "report_html": None,
        }


def build_fleet(engine: Engine, n: int, *, seed: int = 19, merged: int = 10) -> dict[str, int]:
    """Fill the database at ``engine`` with ``n`` synthetic crashes from the corpus and lab logs, then
    merge ``merged`` buckets each into the bucket created just before it; returns signature -> bucket id."""
    templates = templates_from_logs([*corpus_logs(), *lab_console_logs()])
    alt = {t.signature: t.alt_titles for t in templates}
    ids = insert_rows(engine, list(synthetic_fleet(templates, n, seed=seed)), alt_titles=alt)
    keys = sorted(ids.values())
    for source, target in zip(keys[1 : 2 * merged : 2], keys[0 : 2 * merged : 2], strict=False):
        merge_buckets(engine, source, target)
    return ids
