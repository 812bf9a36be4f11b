"""Read throughput of kcrash vs drgn (libkdumpfile) on one kdump-compressed dump, side by side.

Usage: .venv/bin/python bench/read_throughput.py DUMP [--random N] [--repeat R]

Each measurement runs in its own process under /usr/bin/time (wall seconds, peak RSS):
  seq   read every RAM page of the dump in 1 MiB physical reads (ranges from kcrash's segments)
  rand  N random 4 KiB physical reads from those ranges (same seed for both tools)
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time

CHUNK = 1 << 20


def _ranges(path: str) -> list[tuple[int, int]]:
    from kcrash.dumps import open_dump

    return [(s.start, s.end) for s in open_dump(path).segments() if s.physical]


def _reader(tool: str, path: str):  # type: ignore[no-untyped-def]
    if tool == "kcrash":
        from kcrash.dumps import open_dump
        from kcrash.memory import SegmentMap

        mem = SegmentMap(open_dump(path).segments())
        return lambda a, n: mem.read(a, n, physical=True)
    import drgn

    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
    prog.set_core_dump(path)
    return lambda a, n: prog.read(a, n, True)


def worker(tool: str, mode: str, path: str, ranges: list[tuple[int, int]], count: int) -> dict[str, float]:
    read = _reader(tool, path)
    t0 = time.perf_counter()
    total = 0
    if mode == "seq":
        for start, end in ranges:
            for addr in range(start, end, CHUNK):
                total += len(read(addr, min(CHUNK, end - addr)))
    else:
        rng = random.Random(42)
        pages = [(s, (e - s) // 4096) for s, e in ranges]
        for _ in range(count):
            start, n = rng.choice(pages)
            total += len(read(start + 4096 * rng.randrange(n), 4096))
    return {"seconds": time.perf_counter() - t0, "bytes": total}


def _measure(tool: str, mode: str, path: str, count: int) -> dict[str, float]:
    cmd = ["/usr/bin/time", "-f", "TIME %e %M", sys.executable, __file__, path, "--worker", tool, mode,
           "--random", str(count)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall, rss = proc.stderr.strip().splitlines()[-1].split()[1:]
    inner = json.loads(proc.stdout)
    return {"wall": float(wall), "rss_mib": int(rss) / 1024, **inner}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dump")
    ap.add_argument("--random", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--worker", nargs=2)
    args = ap.parse_args()
    ranges = _ranges(args.dump)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args.dump, ranges, args.random)))
        return
    print(f"dump {args.dump}: {sum(e - s for s, e in ranges) >> 20} MiB in {len(ranges)} RAM ranges")
    print(f"{'mode':5} {'tool':7} {'wall s (median)':>16} {'loop s':>8} {'peak RSS MiB':>13} {'MiB/s or reads/s':>17}")
    for mode in ("seq", "rand"):
        meds = {}
        for tool in ("kcrash", "drgn"):
            runs = sorted((_measure(tool, mode, args.dump, args.random) for _ in range(args.repeat)),
                          key=lambda r: r["wall"])
            med = meds[tool] = {**runs[len(runs) // 2], "rss": max(r["rss_mib"] for r in runs)}
            rate = med["bytes"] / med["seconds"] / (1 << 20) if mode == "seq" else args.random / med["seconds"]
            print(f"{mode:5} {tool:7} {med['wall']:16.2f} {med['seconds']:8.2f} {med['rss']:13.1f}"
                  f" {rate:17.0f}")
        print(f"{mode:5} ratio kcrash/drgn: wall {meds['kcrash']['wall'] / meds['drgn']['wall']:.2f}x, "
              f"peak RSS {meds['kcrash']['rss'] / meds['drgn']['rss']:.2f}x")


if __name__ == "__main__":
    main()
