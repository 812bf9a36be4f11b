"""``kcrash search -k`` and ``-p`` (no vmlinux) against crash(8)'s ``search`` and a drgn 0.3.0 script doing
the same scan, with the Debian -dbg vmlinux, on one lab dump.

Usage:
    .venv/bin/python bench/search_vs_crash.py [--kind BUG] [--kernel 6.12] [--repeat 3] [--value 0xfeedface0badc0de]

* kcrash: fresh processes under ``/usr/bin/time`` (start-up included: it is a fraction of a second).
* drgn: fresh processes running a script that loads the vmlinux's debug info (start-up included, as in
  the other benches) and then scans what kcrash scans: for ``-p`` every physical ``PT_LOAD`` range of
  the ELF file, for ``-k`` the direct map of those ranges, every vmalloc area (``for_each_vmap_area``),
  the kernel image (``_text``..``_end``) and each module's memory, 4 MiB reads compared with numpy, a
  faulting read retried page by page. The seconds the scan alone took are printed too.
* crash: one session (``crash --no_modules -s``: crash 8.0.2 cannot read 6.4+ module layouts) with
  ``!date`` stamps around each command, so its start-up (minutes: it reads the whole DWARF) is shown
  apart from the search itself.
Hit counts are printed side by side. On BUG 6.1 crash's ``search -p`` hits equal kcrash's address for
address; crash's ``-k`` also reports the image-mapping aliases ``__START_KERNEL_map + (phys - phys_base)``
of every hit, which it translates linearly although the kernel's page tables leave them unmapped
(cleanup_highmap() clears the image mapping outside ``_text``..``_end``; drgn and ``kcrash vtop`` both
say "not mapped"), so it has twice kcrash's hits. crash 8.0.2 (Debian 12) finds nothing on 6.12: it
cannot read that kernel's module layout (``--no_modules`` gets it started) and its searches return
no hit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report_vs_drgn import _crash, _timed

DRGN_SEARCH = r'''
import contextlib, struct, sys, time
import numpy as np
import drgn
mode, value, dump, *debug = sys.argv[1:]
value = int(value, 0)
prog = drgn.Program()
prog.set_core_dump(dump)
with contextlib.suppress(drgn.MissingDebugInfoError):
    prog.load_debug_info(debug)
start = time.time()
with open(dump, "rb") as f:
    ehdr = f.read(64)
    phoff, = struct.unpack_from("<Q", ehdr, 32)
    phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
    f.seek(phoff)
    phdrs = [struct.unpack_from("<IIQQQQQQ", f.read(phentsize)) for _ in range(phnum)]
ram = [(p[4], p[4] + p[6]) for p in phdrs if p[0] == 1 and p[4] != (1 << 64) - 1]
hits = 0
def scan(lo, hi, physical):
    global hits
    for pos in range(lo, hi, 4 << 20):
        size = min(4 << 20, hi - pos)
        try:
            data = prog.read(pos, size, physical)
        except drgn.FaultError:
            for page in range(pos, pos + size, 4096):
                with contextlib.suppress(drgn.FaultError):
                    hits += int(np.count_nonzero(np.frombuffer(prog.read(page, 4096, physical), "<u8") == value))
            continue
        hits += int(np.count_nonzero(np.frombuffer(data, "<u8") == value))
if mode == "-p":
    for lo, hi in ram:
        scan(lo, hi, True)
else:
    from drgn.helpers.linux.mm import for_each_vmap_area, phys_to_virt
    from drgn.helpers.linux.module import for_each_module, module_address_regions
    for lo, hi in ram:
        base = phys_to_virt(prog, lo).value_()
        scan(base, base + hi - lo, False)
    for area in for_each_vmap_area(prog):
        scan(area.va_start.value_(), area.va_end.value_(), False)
    scan(prog.symbol("_text").address, prog.symbol("_end").address, False)
    for module in for_each_module(prog):
        for address, size in module_address_regions(module):
            scan(address, address + size, False)
print(hits, f"scan {time.time() - start:.2f}")
'''


def _crash_session(vmlinux: Path, dump: str, value: str) -> str:
    commands = "".join(f"!date +%s.%N\n{c} {value}\n" for c in ("search -p", "search -k")) + "!date +%s.%N\nq\n"
    started = _now()
    proc = subprocess.run(["crash", "--no_modules", "-s", str(vmlinux), dump], input=commands, capture_output=True,
                          text=True, check=False, cwd=tempfile.gettempdir())
    stamps = [float(line) for line in proc.stdout.splitlines() if _is_stamp(line)]
    if len(stamps) != 3:
        return f"crash: no timing (exit {proc.returncode}): {proc.stdout[-500:]} {proc.stderr[-500:]}"
    hits = [line for line in proc.stdout.splitlines() if ":" in line and not _is_stamp(line)]
    return (f"crash: start-up {stamps[0] - started:.1f} s, search -p {stamps[1] - stamps[0]:.2f} s, "
            f"search -k {stamps[2] - stamps[1]:.2f} s; {len(hits)} hit lines in all")


def _now() -> float:
    import time

    return time.time()


def _is_stamp(line: str) -> bool:
    return line.replace(".", "", 1).isdigit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="BUG")
    parser.add_argument("--kernel", default="6.12")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--value", default="0xfeedface0badc0de")
    parser.add_argument("--no-crash", action="store_true", help="Skip crash (its start-up takes minutes).")
    args = parser.parse_args()
    out, vmlinux, debug = _crash(args.kind, args.kernel)
    kcrash = str(Path(sys.executable).with_name("kcrash"))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "KCRASH_CACHE": cache}
        for mode in ("-p", "-k"):
            for fmt in ("vmcore.elf", "vmcore.kdump"):
                runs = [_timed([kcrash, "search", str(out / fmt), mode, args.value], env) for _ in range(args.repeat)]
                print(f"kcrash search {mode} {fmt}: median {statistics.median(r[0] for r in runs):.2f} s wall, "
                      f"{len(runs[0][2].splitlines())} hits")
            drgn = [_timed([sys.executable, "-c", DRGN_SEARCH, mode, args.value, str(out / "vmcore.elf"), *debug], env)
                    for _ in range(args.repeat)]
            print(f"drgn script {mode} vmcore.elf: median {statistics.median(r[0] for r in drgn):.2f} s wall "
                  f"(hits, scan alone: {drgn[0][2].strip()})")
    if not args.no_crash:
        print(_crash_session(vmlinux, str(out / "vmcore.elf"), args.value))


if __name__ == "__main__":
    main()
