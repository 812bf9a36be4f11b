"""Oops parser throughput over the whole shared corpus, in one process, in MB/s of log text.

Usage: .venv/bin/python bench/oops_throughput.py [CORPUS_DIR] [--repeat N]
Parses every corpus file (headers included, as a raw log) with kcrash.oops.parse_all and reports
wall-clock and CPU-time throughput (the machine is shared, so CPU time is the steadier number), best
of ``--repeat`` passes, plus the first pass alone.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kcrash.oops import decode_log, parse_all


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="?", default=str(Path(__file__).resolve().parents[1].parent / "shared/corpus"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    logs = [decode_log(p.read_bytes()) for p in sorted(Path(args.corpus).rglob("*"))
            if p.is_file() and p.name.isdigit()]
    size = sum(len(log) for log in logs) / 1e6
    best_wall = best_cpu = first_wall = float("inf")
    reports = 0
    for k in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        reports = sum(len(parse_all(log)) for log in logs)
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
        first_wall = best_wall if k == 0 else first_wall
    print(f"files={len(logs)} size={size:.2f}MB reports={reports}")
    print(f"wall={best_wall:.2f}s {size / best_wall:.2f} MB/s  cpu={best_cpu:.2f}s {size / best_cpu:.2f} MB/s")
    # The first pass also pays the lazily compiled patterns and fills the per-line memos that later
    # passes over the same corpus hit: the figure for one log parsed once.
    print(f"first pass={first_wall:.2f}s {size / first_wall:.2f} MB/s")


if __name__ == "__main__":
    main()
