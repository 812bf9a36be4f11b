"""Every lab kind of both bookworm kernels, cut at 50 % and at 90 % (issue #16's "done when").

Usage: .venv/bin/python bench/half_cut.py [--kernels 6.1,6.12] [--files vmcore.elf,vmcore.kdump,vmcore.kcrash]

For every kind of ``kcrash.lab.kinds.KINDS`` (crashed first when not cached) and file: at 50 % of the
file, the exit status of ``dump info``, ``log`` and ``report`` and whether ``log`` printed only lines of the
whole dump's log (how many of them); at 90 %, whether the crashed CPU's backtrace still has every return
address of the whole dump's (when all its stack pages still read). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from survival import cut_copy  # bench/ is the script's directory

PAGE = 4096


def _kcrash(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "kcrash", *args], capture_output=True, text=True, timeout=600,
                          check=False)
    return proc.returncode, proc.stdout


def _cut(src: Path, dst: Path, fraction: float) -> Path:
    return cut_copy(src, dst, int(src.stat().st_size * fraction))


def _stack_pages_read(cut: Path, sps: list[int]) -> bool:
    from kcrash.dumps import open_dump
    from kcrash.errors import KcrashError
    from kcrash.memory import open_kernel_memory

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mem = open_kernel_memory(open_dump(cut))
        for sp in sps:
            mem.read(sp & ~(PAGE - 1), PAGE)
    except KcrashError:
        return False
    return True


def _row(whole: Path, tmp: Path) -> str:
    half = _cut(whole, tmp / whole.name, 0.5)
    info, _ = _kcrash("dump", "info", str(half))
    code_log, log = _kcrash("log", str(half))
    full_log = set(_kcrash("log", str(whole))[1].splitlines())
    lines = log.splitlines()
    subset = all(line in full_log for line in lines)
    report, _ = _kcrash("report", str(half), "--json")
    full_bt = json.loads(_kcrash("bt", str(whole), "--json")[1])[0]["trace"]["frames"]
    most = _cut(whole, tmp / whole.name, 0.9)
    code_bt, out = _kcrash("bt", str(most), "--json")
    pcs = {f["pc"] for f in json.loads(out)[0]["trace"]["frames"]} if code_bt == 0 else set()
    kept = {f["pc"] for f in full_bt} <= pcs
    pages = _stack_pages_read(most, [f["sp"] for f in full_bt])
    bt = "all kept" if kept else ("stack pages missing" if not pages else "LOST")
    return (f"{info} | {code_log} ({len(lines)} of {len(full_log)} lines{'' if subset else ', NOT A SUBSET'}) | "
            f"{report} | {bt} |")


def main() -> None:
    from kcrash.lab.crash import CrashOptions, cached_crash
    from kcrash.lab.kinds import KINDS

    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", default="6.1,6.12")
    ap.add_argument("--files", default="vmcore.elf,vmcore.kdump,vmcore.kcrash")
    args = ap.parse_args()
    cache = Path(os.environ.get("KCRASH_CACHE", Path.home() / ".cache" / "kcrash"))
    print("| kind | kernel | file | 50 %: dump info exit | 50 %: log exit (lines) | 50 %: report exit | "
          "90 %: crashed backtrace |")
    print("|---|---|---|---|---|---|---|")
    for kernel in args.kernels.split(","):
        for kind in KINDS:
            crash = cached_crash(cache, CrashOptions(kind, kernel, False))
            for name in args.files.split(","):
                with tempfile.TemporaryDirectory() as tmp:
                    print(f"| {kind} | {kernel} | {name} | {_row(crash / name, Path(tmp))}", flush=True)


if __name__ == "__main__":
    main()
