"""``bt -F`` of every task (crash's ``foreach bt -F``: frames, exception registers, each frame's stack
words named as symbols or slab caches), kcrash with no vmlinux vs drgn 0.3.0 with the Debian -dbg
vmlinux doing the same work, on the same lab dump, in one run.

Usage:
    .venv/bin/python bench/bt_vs_drgn.py [--kind BUG] [--kernel 6.12] [--repeat 3]

Both run as fresh processes (wall seconds of the whole process, start-up included: kcrash opens the
dump with its cache warm; drgn loads the vmlinux DWARF index), alternately; the median is reported.
drgn unwinds every task, reads the words between consecutive frames' stack pointers and asks
``prog.symbol()`` and ``slab_object_info()`` for each kernel-address word, as kcrash does.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

KCRASH_SCRIPT = r'''
import sys, tempfile
from pathlib import Path
from kcrash.analysis.backtrace import BacktraceOptions, cpu_backtrace_details, task_backtrace_detail
from kcrash.analysis.target import open_target
from kcrash.helpers.linux.sched import for_each_task
options = BacktraceOptions(words=True, symbolic=True)
with open_target(Path(sys.argv[1]), Path(sys.argv[2])) as prog:
    details = list(cpu_backtrace_details(prog, options))
    active = {d.task.task for d in details}
    details += [task_backtrace_detail(prog, t, options) for t in for_each_task(prog, idle=True) if int(t) not in active]
    print(len(details), sum(len(f.words) for d in details for f in d.frames))
'''

DRGN_SCRIPT = r'''
import contextlib, struct, sys
import drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.slab import slab_object_info
dump, *debug = sys.argv[1:]
prog = drgn.Program()
prog.set_core_dump(dump)
with contextlib.suppress(drgn.MissingDebugInfoError):
    prog.load_debug_info(debug)
seen = {}
def describe(value):
    if value in seen:
        return seen[value]
    try:
        found = str(prog.symbol(value))
    except LookupError:
        try:
            info = slab_object_info(prog, value)
            found = info.slab_cache.name.string_() if info else None
        except (drgn.FaultError, ValueError):
            found = None
    seen[value] = found
    return found
tasks = words = 0
for task in for_each_task(prog):
    tasks += 1
    try:
        frames = [f for f in prog.stack_trace(task) if not f.is_inline]
    except (drgn.FaultError, ValueError):
        continue
    for a, b in zip(frames, frames[1:]):
        if not a.sp < b.sp <= a.sp + 16384:
            continue
        data = prog.read(a.sp, b.sp - 8 - a.sp) if b.sp - 8 > a.sp else b""
        for (value,) in struct.iter_unpack("<Q", data):
            words += 1
            if value >= 1 << 63:
                describe(value)
print(tasks, words)
'''


def _run(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", default="BUG")
    parser.add_argument("--kernel", default="6.12")
    parser.add_argument("--kaslr", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from kcrash.lab.crash import CrashOptions, cached_crash  # the lab's cached dumps
    from kcrash.lab.prepare import fetch_debuginfo

    cache = Path.home() / ".cache" / "kcrash"
    out = cached_crash(cache, CrashOptions(args.kind, args.kernel, args.kaslr))
    info = json.loads((out / "lab.json").read_text())
    vmlinux = fetch_debuginfo(cache, args.kernel)
    debug = [str(vmlinux), *([info["module"]["path"]] if info["module"] else [])]
    dump = str(out / "vmcore.elf")
    kcrash_cmd = [sys.executable, "-c", KCRASH_SCRIPT, dump, str(cache)]
    drgn_cmd = [sys.executable, "-c", DRGN_SCRIPT, dump, *debug]
    _run(kcrash_cmd)  # warm the kallsyms cache
    ours, theirs = [], []
    for _ in range(args.repeat):
        wall, said = _run(kcrash_cmd)
        ours.append(wall)
        wall, drgn_said = _run(drgn_cmd)
        theirs.append(wall)
    k, d = statistics.median(ours), statistics.median(theirs)
    print(f"{args.kind} {args.kernel}: kcrash bt -F of every task ({said} tasks/words) {k:.2f}s, "
          f"drgn ({drgn_said}) {d:.2f}s, ratio {k / d:.2f}")


if __name__ == "__main__":
    main()
