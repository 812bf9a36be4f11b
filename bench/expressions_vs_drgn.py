"""``kcrash p`` / ``kcrash whatis`` (no vmlinux) against drgn 0.3.0 with the Debian -dbg vmlinux and the
lab module's .ko, doing the same work, as fresh processes (issue 17).

Usage:
    .venv/bin/python bench/expressions_vs_drgn.py [--kind BUG] [--kernel 6.12] [--repeat 3]

Races (median wall seconds and peak RSS of ``/usr/bin/time``, alternating, kcrash's cache warm):

* ``scalar``: ``p 'init_task.pid + 1'`` vs ``prog["init_task"].pid + 1``;
* ``per-cpu struct``: ``p runqueues:a`` (every CPU's ``struct rq`` printed whole) vs printing
  ``per_cpu(prog["runqueues"], cpu)`` for every possible CPU;
* ``module cast``: ``p '((struct kcrash_test_planted *)&kcrash_test_global)->big'`` vs
  ``prog["kcrash_test_global"].big`` (drgn types it from the .ko's DWARF);
* ``whatis``: ``whatis task_struct.se.vruntime`` vs ``offsetof(prog.type("struct task_struct"), ...)``.

Both sides include their start-up (drgn: loading DWARF; kcrash: kallsyms and BTF from the dump).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from report_vs_drgn import _crash, _timed

_PRELUDE = r'''
import contextlib, sys
import drgn
from drgn.helpers.linux.percpu import per_cpu
from drgn.helpers.linux.cpumask import for_each_possible_cpu
dump, *debug = sys.argv[1:]
prog = drgn.Program()
prog.set_core_dump(dump)
with contextlib.suppress(drgn.MissingDebugInfoError):
    prog.load_debug_info(debug)
'''

RACES = {
    "scalar": (["p", "{dump}", "init_task.pid + 1"], 'print(prog["init_task"].pid + 1)'),
    "per-cpu struct": (["p", "{dump}", "runqueues:a"],
                       'for c in for_each_possible_cpu(prog): print(per_cpu(prog["runqueues"], c))'),
    "module cast": (["p", "{dump}", "((struct kcrash_test_planted *)&kcrash_test_global)->big"],
                    'print(prog["kcrash_test_global"].big)'),
    "whatis": (["whatis", "{dump}", "task_struct.se.vruntime"],
               'print(drgn.offsetof(prog.type("struct task_struct"), "se.vruntime"))'),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="BUG")
    parser.add_argument("--kernel", default="6.12")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    out, _vmlinux, debug = _crash(args.kind, args.kernel)
    dump = str(out / "vmcore.elf")
    kcrash = str(Path(sys.executable).with_name("kcrash"))
    print(f"{args.kind} {args.kernel}: median of {args.repeat}, wall s (peak RSS MiB)")
    print(f"{'race':<16} {'kcrash':>16} {'drgn':>16} {'ratio':>7}")
    for name, (argv, script) in RACES.items():
        ours_cmd = [kcrash, *(a.format(dump=dump) for a in argv)]
        theirs_cmd = [sys.executable, "-c", _PRELUDE + script, dump, *debug]
        _timed(ours_cmd)  # warm kcrash's cache
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(_timed(ours_cmd)[:2])
            theirs.append(_timed(theirs_cmd)[:2])
        a, b = statistics.median(w for w, _ in ours), statistics.median(w for w, _ in theirs)
        ra, rb = max(r for _, r in ours) / 1024, max(r for _, r in theirs) / 1024
        print(f"{name:<16} {a:>8.2f} ({ra:>4.0f}) {b:>8.2f} ({rb:>4.0f}) {a / b:>6.2f}x")


if __name__ == "__main__":
    main()
