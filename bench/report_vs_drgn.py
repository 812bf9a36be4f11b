"""``kcrash report DUMP`` (no vmlinux) vs a drgn 0.3.0 script with the Debian -dbg vmlinux printing
the same content, side by side on the same lab dump, in one run.

Usage:
    .venv/bin/python bench/report_vs_drgn.py [--kind BUG] [--kernel 6.12] [--format vmcore.elf] [--repeat 3]

Both run as fresh processes under ``/usr/bin/time -f '%e %M'`` (wall seconds, peak RSS KiB), alternately.
kcrash cold = an empty ``KCRASH_CACHE`` (a new temporary directory per run: kallsyms decoded from memory);
warm = the same command again with that cache filled. The drgn script prints the same sections as the
report: panic message, crashing task and its registers, the crashed thread's backtrace, the log tail,
D-state tasks with stacks, modules with taints (its own start-up: loading the vmlinux DWARF index).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DRGN_SCRIPT = r'''
import contextlib, sys
import drgn
from drgn.helpers.linux.module import for_each_module, module_address_regions, module_taints
from drgn.helpers.linux.panic import panic_message, tainted
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.sched import task_state_to_char
dump, *debug = sys.argv[1:]
prog = drgn.Program()
prog.set_core_dump(dump)
with contextlib.suppress(drgn.MissingDebugInfoError):
    prog.load_debug_info(debug)
print("PANIC:", panic_message(prog))
thread = prog.crashed_thread()
task = thread.object
print("CPU", prog["panic_cpu"].counter.value_(), "PID", task.pid.value_(), task.comm.string_())
print("uts", prog["init_uts_ns"].name.release.string_(), "tainted", tainted(prog))
print(thread.stack_trace())
for r in get_printk_records(prog)[-30:]:
    print(f"[{r.timestamp // 10**9:5d}.{r.timestamp % 10**9 // 1000:06d}] {r.text.decode(errors='replace')}")
for t in for_each_task(prog):
    if task_state_to_char(t) == "D":
        print("PID", t.pid.value_(), t.comm.string_())
        print(prog.stack_trace(t))
for m in for_each_module(prog):
    print(m.name.string_().decode(), hex(module_address_regions(m)[0][0]), module_taints(m))
'''


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    wall, rss = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss), proc.stdout


def _crash(kind: str, kernel: str) -> tuple[Path, Path, list[str]]:
    from kcrash.lab import debian
    from kcrash.lab.crash import CrashOptions, cached_crash

    cache = Path(os.environ.get("KCRASH_CACHE", Path.home() / ".cache" / "kcrash"))
    out = cached_crash(cache, CrashOptions(kind, kernel, False))
    vmlinux = debian.fetch_debuginfo(cache, debian.resolve_kernel(kernel))
    info = json.loads((out / "lab.json").read_text())
    kos = sorted(str(p) for p in vmlinux.parents[1].glob("lib/modules/*/kernel/drivers/**/*.ko"))
    return out, vmlinux, [str(vmlinux), info["module"]["path"], *kos]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="BUG")
    parser.add_argument("--kernel", default="6.12")
    parser.add_argument("--format", default="vmcore.elf")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    out, _vmlinux, debug = _crash(args.kind, args.kernel)
    dump = str(out / args.format)
    kcrash = [str(Path(sys.executable).with_name("kcrash")), "report", dump]
    drgn_cmd = [sys.executable, "-c", DRGN_SCRIPT, dump, *debug]
    rows: dict[str, list[tuple[float, int]]] = {"drgn": [], "kcrash cold": [], "kcrash warm": []}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "KCRASH_CACHE": cache}
            rows["kcrash cold"].append(_timed(kcrash, env)[:2])
            rows["kcrash warm"].append(_timed(kcrash, env)[:2])
        rows["drgn"].append(_timed(drgn_cmd)[:2])
    print(f"dump: {dump} ({Path(dump).stat().st_size:,} bytes), {args.repeat} runs each, median")
    drgn_wall = statistics.median(w for w, _ in rows["drgn"])
    drgn_rss = statistics.median(r for _, r in rows["drgn"])
    print(f"{'tool':<12} {'wall s':>7} {'peak RSS MiB':>13} {'wall ratio':>11} {'RSS ratio':>10}   all walls")
    for name, runs in rows.items():
        wall, rss = statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs)
        print(f"{name:<12} {wall:7.2f} {rss / 1024:13.1f} {wall / drgn_wall:11.2f} {rss / drgn_rss:10.2f}   "
              f"{' '.join(f'{w:.2f}' for w, _ in runs)}")


if __name__ == "__main__":
    main()
