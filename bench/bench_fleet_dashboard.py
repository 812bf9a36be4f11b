"""Fleet dashboard latency at fleet scale: the bucket list and bucket pages of ``kcrash triage serve``
on a synthetic fleet of 100,000 crashes, on SQLite and PostgreSQL (issue 19's target: <= 200 ms each).

Usage: .venv/bin/python bench/bench_fleet_dashboard.py [--crashes N] [--repeat R] [--backend sqlite|postgresql]...

The fleet (tests/support/fleet_synth.py) replays every crash report of the shared corpus and the lab's
cached console logs on 2,000 hosts, 12 kernel releases (some with a second build) and 90 days, the
report drawn with weight 1/rank (a few big buckets, a long tail), written with bulk inserts; 10
buckets are merged into others. PostgreSQL is a throw-away server (tests/support/postgres.py) given
``VACUUM ANALYZE`` after the load, as autovacuum would; SQLite is left as written. Each page is fetched
through the whole application (FastAPI routing, queries, Jinja2 rendering or JSON) with FastAPI's
in-process test client, no network; the first request of each route warms the template and SQL caches
and is not counted. Printed: best and median wall time of R requests, the median CPU time of this
process (all the work with SQLite: a steadier figure on a shared machine), and the ratio of the
median wall time to the target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fastapi.testclient import TestClient

from kcrash.fleet import queries
from kcrash.fleet.dashboard import create_app
from kcrash.fleet.db import CrashDb, open_db
from support.fleet_synth import build_fleet
from support.postgres import running_postgres

TARGET_MS = 200.0


@contextmanager
def _database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="kcrash-bench-") as tmp:
            yield f"sqlite:///{tmp}/crashes.db"
    else:
        with running_postgres() as url:
            yield url


def _fill(db: CrashDb, crashes: int, backend: str) -> None:
    start = time.perf_counter()
    build_fleet(db.engine, crashes)
    filled = time.perf_counter() - start
    if backend == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    print(f"  filled {crashes:,} crashes in {filled:.1f} s ({crashes / filled:,.0f} crashes/s, bulk inserts)")


def _pages(db: CrashDb) -> list[tuple[str, str]]:
    with db.sessions() as session:
        ranked = queries.list_buckets(session, limit=100_000).buckets
    big, median, small = ranked[0], ranked[len(ranked) // 2], ranked[-1]
    return [
        ("index (by count, 200 rows)", "/"),
        ("index (by last seen)", "/?sort=last_seen"),
        ("index JSON", "/?format=json"),
        (f"bucket, largest ({big.crash_count:,} crashes)", f"/bucket/{big.id}"),
        ("bucket, largest, JSON", f"/bucket/{big.id}?format=json"),
        (f"bucket, median ({median.crash_count:,} crashes)", f"/bucket/{median.id}"),
        (f"bucket, smallest ({small.crash_count:,} crashes)", f"/bucket/{small.id}"),
        ("stats (not a target)", "/stats"),
    ]


def _measure(client: TestClient, url: str, repeat: int) -> tuple[list[float], list[float]]:
    # Wall and CPU milliseconds of each request (the CPU time of this process: all the work for
    # SQLite, the client side only for PostgreSQL).
    assert client.get(url).status_code == 200  # warm-up
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        assert response.status_code == 200, url
    return wall, cpu


def run(backend: str, crashes: int, repeat: int) -> None:
    with _database(backend) as url:
        db = open_db(url)
        try:
            print(f"{backend}:")
            _fill(db, crashes, backend)
            with TestClient(create_app(db)) as client:
                for name, page in _pages(db):
                    wall, cpu = _measure(client, page, repeat)
                    med = statistics.median(wall)
                    mark = "" if "not a target" in name else f"  {med / TARGET_MS:.2f}x of the 200 ms target"
                    print(
                        f"  {name:<36} best {min(wall):7.1f} ms  median {med:7.1f} ms  "
                        f"(cpu median {statistics.median(cpu):6.1f} ms){mark}"
                    )
        finally:
            db.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crashes", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--backend", action="append", choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    for backend in args.backend or ["sqlite", "postgresql"]:
        run(backend, args.crashes, args.repeat)
        print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
