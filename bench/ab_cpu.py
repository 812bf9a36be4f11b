"""A/B of one kcrash command between two source trees (or an import between two modules), by CPU time.

Usage:
  .venv/bin/python bench/ab_cpu.py --a SRC_A --b SRC_B [--runs N] -- ARGS...   # ``kcrash ARGS`` under each tree
  .venv/bin/python bench/ab_cpu.py --import-a MODULE --import-b MODULE [--runs N]  # ``import MODULE``

Each run is a fresh process (``python -m kcrash``, ``PYTHONPATH`` = the tree's ``src``), the two sides
alternated so that a change of machine load hits both. Reported: the median user+system CPU seconds of
the process (from ``wait4``: less sensitive than wall time to other work on a shared machine, since a
process waiting for a core uses none) and the median wall seconds, and the ratio B/A of each. Bytecode
is kept in a private ``PYTHONPYCACHEPREFIX`` filled by one untimed run per side.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--a")
    ap.add_argument("--b")
    ap.add_argument("--import-a")
    ap.add_argument("--import-b")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("args", nargs="*")
    opts = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="kcrash-ab-")
    if opts.import_a:
        sides = {"A": ([sys.executable, "-c", f"import {opts.import_a}"], env),
                 "B": ([sys.executable, "-c", f"import {opts.import_b}"], env)}
    else:
        sides = {name: ([sys.executable, "-m", "kcrash", *opts.args], {**env, "PYTHONPATH": f"{tree}/src"})
                 for name, tree in (("A", opts.a), ("B", opts.b))}
    for cmd, side_env in sides.values():
        _run(cmd, side_env)  # untimed: bytecode, page cache
    got: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    for _ in range(opts.runs):
        for name, (cmd, side_env) in sides.items():
            got[name].append(_run(cmd, side_env))
    med = {name: (statistics.median(c for c, _ in runs), statistics.median(w for _, w in runs))
           for name, runs in got.items()}
    labels = {"A": opts.import_a or opts.a, "B": opts.import_b or opts.b}
    for name in ("A", "B"):
        cpu, wall = med[name]
        print(f"{name}: {labels[name]}: CPU {cpu * 1000:.1f} ms, wall {wall * 1000:.1f} ms (median of {opts.runs})")
    print(f"B/A: CPU {med['B'][0] / med['A'][0]:.3f}, wall {med['B'][1] / med['A'][1]:.3f}; "
          f"B-A: CPU {(med['B'][0] - med['A'][0]) * 1000:+.1f} ms")


if __name__ == "__main__":
    main()
