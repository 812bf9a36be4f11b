"""Fleet ingestion throughput (issue 19): console logs in MB/s per core including the database writes,
the scaling from 1 to 2 local workers, and lab dumps per minute per core.

Usage: .venv/bin/python bench/bench_fleet_ingest.py [--corpus DIR] [--repeat N] [--skip-dumps]

Inputs: the shared syzkaller corpus (665 small logs, a report in nearly every one: the parser's worst
case per byte), the serial console logs of every cached lab crash, and 16 of them each padded to 1 MiB
with their own boot messages (what a host's console looks like after days of uptime: mostly lines without
a crash). Per-core figures are CPU time of one process doing extraction (kcrash.fleet.extract) and the
coordinator's writes (kcrash.fleet.ingest.write_results into a fresh SQLite file) one after the other:
the machine is shared, so CPU time is the steadier number. Scaling: `ingest_files` on a pool of N = 1
and 2 local workers, best wall clock of --repeat, with the CPU time of this process and of the pool's
processes (psutil): on a busy machine the wall clock says little; the busiest process's CPU time bounds
the wall clock on idle cores. Dumps: extract_file on the vmcore.kdump of one cached lab crash per kind
and kernel (open, triage, JSON + HTML report) in CPU time. No peer tool ingests kernel crashes into a
database on this machine (ABRT's FAF is not packaged in Debian), so no ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from kcrash.fleet.db import open_db
from kcrash.fleet.extract import ExtractOptions, FileResult, extract_file, iter_input_files
from kcrash.fleet.ingest import executor_from_spec, ingest_files, write_results

_ROOT = Path(__file__).resolve().parents[1]
_CACHE = Path(os.environ.get("KCRASH_CACHE", Path.home() / ".cache" / "kcrash"))
_PAD = 1 << 20


def _cpu(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    value = fn()
    return time.process_time() - start, value


def _lab_dirs() -> list[Path]:
    crashes = _CACHE / "crashes"
    return sorted(d for d in crashes.iterdir() if (d / "console.log").is_file() and (d / "vmcore.kdump").is_file())


def _consoles(target: Path, pad: bool) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for crash in _lab_dirs()[: 16 if pad else None]:
        text = (crash / "console.log").read_bytes()
        if pad:
            boot = text[: max(text.find(b"\n", len(text) // 2), 1)]
            copies = max(_PAD // max(len(boot), 1), 1)
            text = boot * copies + text
        (target / f"{crash.name}.log").write_bytes(text)
    return target


def _per_core(folder: Path, tmp: Path, repeat: int) -> tuple[float, float, float, int, int]:
    files = list(iter_input_files([folder]))
    size = sum(f.stat().st_size for f in files)
    best_extract = best_write = float("inf")
    crashes = 0
    for k in range(repeat):
        extract_cpu, results = _cpu(lambda: [extract_file(f) for f in files])
        assert isinstance(results, list)
        db = open_db(f"sqlite:///{tmp / f'percore{k}.db'}")
        start = time.process_time()
        write_results(db, results)
        write_cpu = time.process_time() - start
        db.close()
        best_extract, best_write = min(best_extract, extract_cpu), min(best_write, write_cpu)
        crashes = sum(len(r.records) for r in results if isinstance(r, FileResult))
    return size / 1e6, best_extract, best_write, len(files), crashes


def _process_cpu() -> dict[int, float]:
    # CPU seconds so far of this process and of every live descendant (forkserver, pool workers).
    me = psutil.Process()
    procs = [me, *me.children(recursive=True)]
    cpu: dict[int, float] = {}
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        cpu[proc.pid] = times.user + times.system
    return cpu


def _scaling(folder: Path, tmp: Path, repeat: int) -> dict[int, tuple[float, float, float]]:
    # (wall, total CPU, CPU of the busiest process) of an ingest on N local workers, best wall of `repeat`.
    runs: dict[int, tuple[float, float, float]] = {}
    for workers in (1, 2):
        best = (float("inf"), 0.0, 0.0)
        for k in range(repeat):
            db = open_db(f"sqlite:///{tmp / f'scale{workers}-{k}.db'}")
            before = _process_cpu()
            start = time.perf_counter()
            with executor_from_spec(f"local:{workers}") as (pool, n):
                ingest_files(db, [folder], pool, n)
                wall = time.perf_counter() - start
                used = {pid: t - before.get(pid, 0.0) for pid, t in _process_cpu().items()}
            db.close()
            if wall < best[0]:
                best = (wall, sum(used.values()), max(used.values()))
        runs[workers] = best
    return runs


def _logs(name: str, folder: Path, tmp: Path, repeat: int) -> None:
    size, extract_cpu, write_cpu, files, crashes = _per_core(folder, tmp, repeat)
    total = extract_cpu + write_cpu
    print(f"{name}: {files} files, {size:.2f} MB, {crashes} crashes")
    print(
        f"  per core (CPU time): extract {extract_cpu:.2f} s + write {write_cpu:.2f} s = {total:.2f} s "
        f"-> {size / total:.2f} MB/s incl. DB writes (extract alone {size / extract_cpu:.2f} MB/s)"
    )
    runs = _scaling(folder, tmp, repeat)
    for n, (wall, cpu, busiest) in runs.items():
        rate = size / wall
        print(f"  local:{n}: wall {wall:.2f} s ({rate:.2f} MB/s), CPU {cpu:.2f} s in all, busiest {busiest:.2f} s")
    print(
        f"  wall speed-up x{runs[1][0] / runs[2][0]:.2f}; busiest-process bound (an idle core each) "
        f"x{runs[1][2] / runs[2][2]:.2f}; CPU cost of the 2nd worker x{runs[2][1] / runs[1][1]:.2f}"
    )


def _dumps(repeat: int) -> None:
    # One crash of each kind and kernel in the cache (its QEMU kdump-zlib file).
    first: dict[str, Path] = {}
    for crash in _lab_dirs():
        first.setdefault(crash.name.rsplit("-", 1)[0], crash)
    dumps = [d / "vmcore.kdump" for d in first.values()]
    options = ExtractOptions(cache_dir=_CACHE)
    extract_file(dumps[0], options)  # warm: kallsyms cache, imports
    best = float("inf")
    for _ in range(repeat):
        cpu, results = _cpu(lambda: [extract_file(d, options) for d in dumps])
        assert isinstance(results, list) and all(r.records for r in results)
        best = min(best, cpu)
    size = sum(d.stat().st_size for d in dumps) / 1e6
    print(f"dumps: {len(dumps)} lab vmcore.kdump files ({size:.0f} MB) in {best:.1f} s CPU")
    print(f"  {len(dumps) / best * 60:.1f} dumps per minute per core (JSON + HTML report each)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(_ROOT.parent / "shared" / "corpus"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-dumps", action="store_true")
    ap.add_argument("--only-dumps", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kcrash-bench-fleet-"))
    try:
        print(f"CPUs: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
        if not args.only_dumps:
            _logs("syzkaller corpus", Path(args.corpus), tmp, args.repeat)
            _logs("lab serial consoles", _consoles(tmp / "consoles", pad=False), tmp, args.repeat)
            _logs("lab consoles padded to 1 MiB", _consoles(tmp / "padded", pad=True), tmp, args.repeat)
        if not args.skip_dumps:
            _dumps(args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
