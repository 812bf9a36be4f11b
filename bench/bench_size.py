"""Size benches (issue 20): does the cost grow with the dump's size? Lab BUG crashes of kernel 6.12 with 256 MiB,
2 GiB and 4 GiB of guest RAM, side by side.

Usage: .venv/bin/python bench/bench_size.py [--mem 256M 2G 4G] [--repeat R] [--report-repeat R]
                                            [--skip-collect] [--skip-report] [--workdir DIR] [--json]
                                            [--kcrash-threads default,1,2] [--before SRC]

1. The dumps: ``cached_crash(cache, CrashOptions("bug", "6.12", False, mem=MEM))`` (the same crash as
   ``kcrash lab crash bug --kernel 6.12 --mem MEM``, kept in the lab cache; made when missing, which boots a TCG
   guest, so the first run of a size is slow).
2. Collect: each dump's ``vmcore.elf`` as a /proc/vmcore-shaped ELF (``convert_to_proc_vmcore``), then
   ``kcrash collect vmcore -d 31`` vs ``makedumpfile -d 31`` for zlib (-c), lzo (-l) and none, whole processes under
   ``/usr/bin/time`` (bench/collect_vs_makedumpfile.py's ``run``): median wall and CPU (user + system) of R runs,
   the kcrash/makedumpfile ratios, and their trend from the smallest to the largest dump; ``--kcrash-threads``
   adds kcrash runs with ``--num-threads N`` (rows ``kcrash-tN``) beside the default. The load average before and
   after each size is printed (the machine may be shared); ``--before SRC`` adds ``kcrash-before``, the same command
   run from an older tree's ``src`` (``PYTHONPATH``), interleaved.
3. Report: ``kcrash report DUMP --no-color -o FILE`` on ``vmcore.elf`` and ``vmcore.kdump`` of each size: once
   with an empty ``KCRASH_CACHE`` (cold) and R times with a warm one; wall, CPU, peak RSS (``%M``) and the
   ratios to the smallest dump (targets: wall within 1.2x, peak RSS <= 150 MiB).

CPU time is printed beside wall because the machine may be shared: CPU is what the tool itself spent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from collect_vs_makedumpfile import _cmds, _timed, loadavg, run

from kcrash.cli.common import cache_dir
from kcrash.dumps import open_dump
from kcrash.dumps.write.elf_vmcore import convert_to_proc_vmcore
from kcrash.lab.crash import CrashOptions, cached_crash

CODECS = ("zlib", "lzo", "none")
REPORT_FILES = ("vmcore.elf", "vmcore.kdump")
KCRASH = str(Path(sys.executable).with_name("kcrash"))


def crash_dirs(mems: list[str]) -> dict[str, Path]:
    dirs = {}
    for mem in mems:
        t = time.monotonic()
        dirs[mem] = cached_crash(cache_dir(), CrashOptions("bug", "6.12", False, mem=mem))
        print(f"# dump {mem}: {dirs[mem]} ({time.monotonic() - t:.1f} s to get)", file=sys.stderr, flush=True)
    return dirs


def collect(dirs: dict[str, Path], repeat: int, workdir: str, env: dict[str, str],
            threads: tuple[str, ...] = ("default",), before: str | None = None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for mem, d in dirs.items():
        src = Path(workdir) / f"proc-vmcore-{mem}"
        dump = open_dump(d / "vmcore.elf")
        try:
            convert_to_proc_vmcore(dump, src)
        finally:
            dump.close()
        with tempfile.TemporaryDirectory(dir=workdir) as out:
            if not rows:  # fill the bytecode cache of the collector, untimed
                warm = _cmds(str(src), os.path.join(out, "warm"), "-l", False)["kcrash"]
                _timed(warm, env)
                if before is not None:
                    Path(warm[-1]).unlink()
                    _timed(warm, {**env, "PYTHONPATH": before})
            load = loadavg()
            for row in run(str(src), repeat, out, env, CODECS, threads, before):
                rows.append({"mem": mem, "input_size": src.stat().st_size, **row})
            print(f"# {mem}: load average {load} before, {loadavg()} after", file=sys.stderr, flush=True)
        src.unlink()
    return rows


def report(dirs: dict[str, Path], repeat: int, workdir: str, env: dict[str, str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    out = os.path.join(workdir, "report.txt")
    for mem, d in dirs.items():
        for name in REPORT_FILES:
            cmd = [KCRASH, "report", str(d / name), "--no-color", "-o", out]
            with tempfile.TemporaryDirectory(dir=workdir) as cache:
                cold_env = {**env, "KCRASH_CACHE": cache}
                cold = _timed(cmd, cold_env)
                warm = [_timed(cmd, cold_env) for _ in range(repeat)]
            rows.append({"mem": mem, "file": name, "size": (d / name).stat().st_size,
                         "cold_wall": cold[0], "cold_cpu": cold[1], "cold_rss_mib": cold[2],
                         "wall": statistics.median(w[0] for w in warm), "cpu": statistics.median(w[1] for w in warm),
                         "rss_mib": max(w[2] for w in warm)})
    return rows


def _ratio(a: object, b: object) -> str:
    return f"{float(a) / float(b):.2f}" if b else "-"  # type: ignore[arg-type]


def print_collect(rows: list[dict[str, object]]) -> None:
    print(f"{'mem':>5} {'codec':>5} {'tool':>12} {'wall s':>7} {'CPU s':>7} {'RSS MiB':>7} {'out size':>13} "
          f"{'wall ratio':>10} {'CPU ratio':>9} {'same bytes':>10}")
    ref = {(r["mem"], r["codec"]): r for r in rows if r["tool"] == "makedumpfile"}
    for r in rows:
        base = ref[(r["mem"], r["codec"])]
        print(f"{r['mem']:>5} {r['codec']:>5} {r['tool']:>12} {r['wall']:>7.2f} {r['cpu']:>7.2f} {r['rss_mib']:>7} "
              f"{r['size']:>13,} {_ratio(r['wall'], base['wall']):>10} {_ratio(r['cpu'], base['cpu']):>9} "
              f"{r['identical']!s:>10}")
    print("\ntrend of kcrash/makedumpfile (wall ratio / CPU ratio) by dump size:")
    mems = list(dict.fromkeys(str(r["mem"]) for r in rows))
    tools = list(dict.fromkeys(str(r["tool"]) for r in rows if str(r["tool"]).startswith("kcrash")))
    for tool in tools:
        for codec in CODECS:
            cells = []
            for mem in mems:
                k = next(r for r in rows if r["mem"] == mem and r["codec"] == codec and r["tool"] == tool)
                m = ref[(mem, codec)]
                cells.append(f"{mem} {_ratio(k['wall'], m['wall'])}/{_ratio(k['cpu'], m['cpu'])}")
            print(f"  {tool:>10} {codec:>5}: " + "  ->  ".join(cells))


def print_report(rows: list[dict[str, object]]) -> None:
    print(f"{'mem':>5} {'file':>12} {'size':>14} {'cold wall':>9} {'cold CPU':>8} {'warm wall':>9} {'warm CPU':>8} "
          f"{'RSS MiB':>7} {'wall x':>6} {'CPU x':>6}")
    for r in rows:
        base = next(b for b in rows if b["file"] == r["file"])
        print(f"{r['mem']:>5} {r['file']:>12} {r['size']:>14,} {r['cold_wall']:>9.2f} {r['cold_cpu']:>8.2f} "
              f"{r['wall']:>9.2f} {r['cpu']:>8.2f} {max(r['rss_mib'], r['cold_rss_mib']):>7} "  # type: ignore[call-overload]
              f"{_ratio(r['wall'], base['wall']):>6} {_ratio(r['cpu'], base['cpu']):>6}")
    print("(wall x / CPU x: warm median relative to the smallest dump of the same file kind; target wall <= 1.2, "
          "peak RSS <= 150 MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mem", nargs="+", default=["256M", "2G", "4G"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--report-repeat", type=int, default=3)
    ap.add_argument("--skip-collect", action="store_true")
    ap.add_argument("--skip-report", action="store_true")
    ap.add_argument("--workdir")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--kcrash-threads", default="default", help="comma-separated: default and/or counts")
    ap.add_argument("--before", help="an older kcrash src tree, run as the tool kcrash-before")
    args = ap.parse_args()
    dirs = crash_dirs(args.mem)
    result: dict[str, list[dict[str, object]]] = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp, tempfile.TemporaryDirectory() as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        with tempfile.TemporaryDirectory(dir=tmp) as cache:  # fill the bytecode cache, untimed
            _timed([KCRASH, "report", str(dirs[args.mem[0]] / "vmcore.elf"), "--no-color", "-o",
                    os.path.join(tmp, "warm.txt")], {**env, "KCRASH_CACHE": cache})
        if not args.skip_report:
            result["report"] = report(dirs, args.report_repeat, tmp, env)
            if not args.json:
                print_report(result["report"])
                print(flush=True)
        if not args.skip_collect:
            result["collect"] = collect(dirs, args.repeat, tmp, env, tuple(args.kcrash_threads.split(",")), args.before)
            if not args.json:
                print_collect(result["collect"])
    if args.json:
        print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
