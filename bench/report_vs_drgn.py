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
import contextlib, os, sys, time
import capstone
import drgn
from drgn.helpers.linux.cpumask import for_each_possible_cpu, num_possible_cpus
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import for_each_vma, vma_name
from drgn.helpers.linux.module import for_each_module, module_address_regions, module_taints
from drgn.helpers.linux.panic import panic_message, tainted
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_printk_records
from drgn.helpers.linux.sched import idle_task, task_cpu, task_state_to_char
dump, *debug = sys.argv[1:]
if dump.endswith(".kdump"):  # QEMU's kdump files carry no architecture drgn's libkdumpfile can read
    prog = drgn.Program(drgn.Platform(drgn.Architecture.X86_64,
                                      drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
else:
    prog = drgn.Program()
prog.set_core_dump(dump)
with contextlib.suppress(drgn.MissingDebugInfoError):
    prog.load_debug_info(debug)
records = get_printk_records(prog)
print("PANIC:", panic_message(prog))
# system (crash's sys)
uts = prog["init_uts_ns"].name
tk = prog["tk_core"].timekeeper
print("uts", uts.release.string_(), uts.version.string_(), uts.machine.string_(), uts.nodename.string_(),
      "tainted", tainted(prog), hex(prog["tainted_mask"].value_()), "cpus", num_possible_cpus(prog),
      "mem", prog["_totalram_pages"].counter.value_() * 4096,
      "uptime", tk.tkr_mono.base.value_() + tk.offs_boot.value_(), "time", time.ctime(tk.xtime_sec.value_()))
# crashing task and the registers of the exception frame
thread = prog.crashed_thread()
task = thread.object
print("CPU", prog["panic_cpu"].counter.value_(), "PID", task.pid.value_(), task.comm.string_(), hex(task.value_()))
trace = list(thread.stack_trace())
print(thread.stack_trace())
after_panic = next(i for i, f in enumerate(trace) if f.name == "panic") + 1
regs_frame = next((f for f in trace[after_panic:] if f.interrupted), trace[0])
print(regs_frame.registers())
# disassembly around the IP, from the start of its function (capstone, as kcrash)
ip = regs_frame.pc
sym = prog.symbol(ip)
code = prog.read(sym.address, ip - sym.address + 48)
insns = list(capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64).disasm_lite(code, sym.address))
at = next(i for i, x in enumerate(insns) if x[0] == ip)
for a, size, mnemonic, ops in insns[max(0, at - 12):at + 8]:
    print("=>" if a == ip else "  ", hex(a), code[a - sym.address:a - sym.address + size].hex(), mnemonic, ops)
# log tail
for r in records[-30:]:
    print(f"[{r.timestamp // 10**9:5d}.{r.timestamp % 10**9 // 1000:06d}] {r.text.decode(errors='replace')}")
# every task (ps, idle tasks first), state counts, D-state tasks with stacks
counts = {}
for t in [*(idle_task(prog, cpu) for cpu in for_each_possible_cpu(prog)), *for_each_task(prog)]:
    state = task_state_to_char(t)
    counts[state] = counts.get(state, 0) + 1
    print(t.pid.value_(), t.real_parent.pid.value_(), t.tgid.value_(), task_cpu(t), state, t.comm.string_())
    if state == "D":
        print(prog.stack_trace(t))
print(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
# modules with taints
for m in for_each_module(prog):
    print(m.name.string_().decode(), hex(module_address_regions(m)[0][0]), module_taints(m))
# memory: /proc/meminfo-style totals and the top slab caches (kmem_cache_node counters, as kcrash)
zone, node = prog["vm_zone_stat"], prog["vm_node_stat"]
for array, item in ((zone, "NR_FREE_PAGES"), (node, "NR_FILE_PAGES"), (node, "NR_ANON_MAPPED"),
                    (node, "NR_SLAB_RECLAIMABLE_B"), (node, "NR_SLAB_UNRECLAIMABLE_B")):
    print(item, array[prog[item].value_()].counter.value_() * 4096)
nodes = prog["nr_node_ids"].value_()
caches = []
for cache in list_for_each_entry("struct kmem_cache", prog["slab_caches"].address_of_(), "list"):
    slabs = objects = 0
    for i in range(nodes):
        n = cache.node[i]
        if n:
            slabs += n.nr_slabs.counter.value_()
            objects += n.total_objects.counter.value_()
    total = slabs * (4096 << (cache.oo.x.value_() >> 16))
    caches.append((-total, cache.name.string_(), cache.object_size.value_(), objects, slabs))
for c in sorted(caches)[:10]:
    print(c)
# memory regions of the crashing task (/proc/PID/maps)
for vma in for_each_vma(task.mm):
    print(hex(vma.vm_start), hex(vma.vm_end), hex(vma.vm_flags), vma.vm_pgoff.value_(), vma_name(vma))
# the dump file itself
st = os.stat(dump)
print("dump", dump, st.st_size, time.ctime(st.st_mtime))
'''


def _timed(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[float, int, str]:
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, env=env,
                          check=False, input=stdin, errors="replace")
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
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="Keep PYTHONDONTWRITEBYTECODE if set (every run recompiles uncached modules).")
    args = parser.parse_args()
    out, _vmlinux, debug = _crash(args.kind, args.kernel)
    dump = str(out / args.format)
    kcrash = [str(Path(sys.executable).with_name("kcrash")), "report", dump]
    drgn_cmd = [sys.executable, "-c", DRGN_SCRIPT, dump, *debug]
    rows: dict[str, list[tuple[float, int]]] = {"drgn": [], "kcrash cold": [], "kcrash warm": []}
    with tempfile.TemporaryDirectory() as pycache:
        base = dict(os.environ)
        if not args.no_bytecode_cache:
            # Both tools get compiled bytecode as an installed package has (an editable checkout
            # under PYTHONDONTWRITEBYTECODE would recompile kcrash's ~90 modules on every run);
            # one untimed run of each fills this private cache, the source tree is not touched.
            base.pop("PYTHONDONTWRITEBYTECODE", None)
            base["PYTHONPYCACHEPREFIX"] = pycache
            with tempfile.TemporaryDirectory() as cache:
                _timed(kcrash, {**base, "KCRASH_CACHE": cache})
            _timed(drgn_cmd, base)
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                env = {**base, "KCRASH_CACHE": cache}
                rows["kcrash cold"].append(_timed(kcrash, env)[:2])
                rows["kcrash warm"].append(_timed(kcrash, env)[:2])
            rows["drgn"].append(_timed(drgn_cmd, base)[:2])
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
