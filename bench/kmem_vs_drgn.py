"""``kcrash kmem -s`` and ``kcrash kmem ADDR``×1000 (no vmlinux) against drgn 0.3.0's slab and
address-identification helpers with the Debian -dbg vmlinux, side by side on the same lab dump, in one run.

Usage:
    .venv/bin/python bench/kmem_vs_drgn.py [--kind BUG] [--kernel 6.12] [--repeat 5] [--samples 1000]

Two races, each as fresh processes under ``/usr/bin/time -f '%e %M'`` (wall seconds, peak RSS KiB),
alternating, kcrash with a warm ``KCRASH_CACHE`` (a first untimed run fills it):

* ``slab caches``: ``kcrash kmem DUMP -s`` vs a drgn script printing, for every cache of
  ``for_each_slab_cache``, its name, object size and ``slab_cache_usage`` (slabs, objects, free).
* ``identify``: ``kcrash kmem DUMP -`` with the addresses on stdin vs a drgn script calling
  ``identify_address`` on each (with its ``cache`` dict, as drgn recommends for many addresses). The
  addresses (``--samples``, seeded) are drawn once, untimed, by a drgn script: allocated and free slab objects, ``struct page``s, task stacks, kernel text, vmalloc areas and
  module memory, in equal shares.
Both sides include their start-up (drgn: loading the vmlinux's DWARF; kcrash: kallsyms, BTF).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from report_vs_drgn import _crash, _timed

_DRGN_PRELUDE = r'''
import contextlib, random, sys
import drgn
dump, *debug = sys.argv[1:]
prog = drgn.Program()
prog.set_core_dump(dump)
with contextlib.suppress(drgn.MissingDebugInfoError):
    prog.load_debug_info(debug)
'''

DRGN_SLAB = _DRGN_PRELUDE + r'''
from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage
for cache in for_each_slab_cache(prog):
    usage = slab_cache_usage(cache)
    print(hex(cache.value_()), cache.object_size.value_(), usage.num_objs - usage.free_objs, usage.num_objs,
          usage.num_slabs, cache.name.string_().decode())
'''

DRGN_IDENTIFY = _DRGN_PRELUDE + r'''
from drgn.helpers.common.memory import identify_address
cache = {}  # drgn's documented speed-up for identifying many addresses
for line in sys.stdin:
    print(line.strip(), identify_address(prog, int(line, 16), cache=cache))
'''

DRGN_SAMPLE = _DRGN_PRELUDE + r'''
from drgn.helpers.linux.mm import for_each_vmap_area, for_each_page, page_to_virt
from drgn.helpers.linux.module import for_each_module, module_address_regions
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_for_each_allocated_object
count = int(sys.stdin.readline())
rng = random.Random(17)
share = count // 6
caches = list(for_each_slab_cache(prog))
slab = []
for cache in rng.sample(caches, min(40, len(caches))):
    for i, obj in enumerate(slab_cache_for_each_allocated_object(cache, "void")):
        slab.append(obj.value_() + rng.randrange(max(1, cache.object_size.value_())))
        if i > 50:
            break
pages = [p.value_() for p in (prog["vmemmap"] + rng.randrange(prog["max_pfn"].value_()) for _ in range(share))]
stacks = [t.stack.value_() + rng.randrange(16384) for t in rng.sample(list(for_each_task(prog)), share // 4 + 1)]
text = [prog.symbol("_stext").address + rng.randrange(prog.symbol("_etext").address - prog.symbol("_stext").address)
        for _ in range(share)]
areas = [a for a in for_each_vmap_area(prog) if a.vm]
vmalloc = [(lambda a: a.va_start.value_() + rng.randrange(a.va_end.value_() - a.va_start.value_()))(rng.choice(areas))
           for _ in range(share)]
regions = [r for m in for_each_module(prog) for r in module_address_regions(m) if r[1]]
modules = [(lambda r: r[0] + rng.randrange(r[1]))(rng.choice(regions)) for _ in range(share)]
picked = rng.sample(slab, min(len(slab), count - 4 * share - len(stacks))) + pages + stacks + text + vmalloc + modules
for a in picked[:count]:
    print(hex(a))
'''


def _median(runs: list[tuple[float, int]]) -> tuple[float, float]:
    return statistics.median(w for w, _ in runs), statistics.median(r for _, r in runs) / 1024


def _race(name: str, kcrash: list[str], drgn: list[str], env: dict[str, str], repeat: int,
          stdin: str | None) -> None:
    rows: dict[str, list[tuple[float, int]]] = {"drgn": [], "kcrash": []}
    _timed(kcrash, env, stdin)
    _timed(drgn, env, stdin)
    for _ in range(repeat):
        rows["kcrash"].append(_timed(kcrash, env, stdin)[:2])
        rows["drgn"].append(_timed(drgn, env, stdin)[:2])
    drgn_wall, drgn_rss = _median(rows["drgn"])
    print(f"\n{name}: {repeat} runs each, median")
    print(f"{'tool':<8} {'wall s':>7} {'peak RSS MiB':>13} {'wall ratio':>11} {'RSS ratio':>10}   all walls")
    for tool, runs in rows.items():
        wall, rss = _median(runs)
        print(f"{tool:<8} {wall:7.2f} {rss:13.1f} {wall / drgn_wall:11.2f} {rss / drgn_rss:10.2f}   "
              f"{' '.join(f'{w:.2f}' for w, _ in runs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="BUG")
    parser.add_argument("--kernel", default="6.12")
    parser.add_argument("--format", default="vmcore.elf")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    out, _vmlinux, debug = _crash(args.kind, args.kernel)
    dump = str(out / args.format)
    kcrash = str(Path(sys.executable).with_name("kcrash"))
    python = sys.executable
    with tempfile.TemporaryDirectory() as pycache, tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": pycache, "KCRASH_CACHE": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        addresses = _timed([python, "-c", DRGN_SAMPLE, dump, *debug], env, f"{args.samples}\n")[2]
        print(f"dump: {dump} ({Path(dump).stat().st_size:,} bytes); {len(addresses.split())} sampled addresses")
        _race("slab caches (kmem -s)", [kcrash, "kmem", dump, "-s"], [python, "-c", DRGN_SLAB, dump, *debug],
              env, args.repeat, None)
        _race(f"identify ×{len(addresses.split())} (kmem ADDR)", [kcrash, "kmem", dump, "-"],
              [python, "-c", DRGN_IDENTIFY, dump, *debug], env, args.repeat, addresses)


if __name__ == "__main__":
    main()
