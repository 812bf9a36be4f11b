"""The capture-kernel collector: ``kcrash collect vmcore`` vs ``makedumpfile`` with the same arguments, side by side.

Usage: .venv/bin/python bench/collect_vs_makedumpfile.py VMCORE [--repeat R] [--workdir DIR] [--json]
                                                          [--kcrash-threads default,1,2] [--before SRC]

VMCORE is a /proc/vmcore-shaped ELF file (``kcrash.dumps.write.elf_vmcore.convert_to_proc_vmcore`` of a lab
dump; makedumpfile 1.7.2 cannot read QEMU's own ELF). For each codec flag at ``-d 31`` (``-c`` zlib, ``-l`` lzo,
none; ``-z`` zstd and ``-p`` snappy for kcrash only: Debian's makedumpfile is built without them) both tools run
as whole processes under ``/usr/bin/time`` with the same argument vector (kcrash as ``kcrash collect vmcore
ARGS``, the way kdump-tools would run it through a ``makedumpfile`` shim), alternating, R times; the median
wall and CPU (user + system) time, peak RSS, output size, the ratios kcrash/makedumpfile and whether the two files are
byte-identical are printed. kcrash runs with compiled bytecode in a private ``PYTHONPYCACHEPREFIX`` (one
untimed run fills it), with its default compression processes (``--num-threads``; the CPUs it may use, for zlib
and zstd); ``--kcrash-threads default,1,2`` runs it once per listed count as its own tool (``kcrash``,
``kcrash-t1``, ``kcrash-t2``), interleaved with the others. The load average (``/proc/loadavg``) before and after
is printed: the machine may be shared. ``--before SRC`` adds the tool ``kcrash-before``: the same command with
``PYTHONPATH=SRC`` (an older tree's ``src``, e.g. ``git archive COMMIT src | tar -x -C DIR``), interleaved too.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    # wall seconds, CPU seconds (user + system: fairer than wall on a shared, loaded machine), peak RSS MiB
    run = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", *cmd], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{run.stderr[-2000:]}")
    wall, user, system, rss = run.stderr.strip().splitlines()[-1].split()
    return float(wall), float(user) + float(system), int(rss) // 1024


_FLAGS = (("zlib", "-c", True), ("lzo", "-l", True), ("none", None, True), ("zstd", "-z", False),
          ("snappy", "-p", False))


def loadavg() -> str:
    """Return the first three fields of /proc/loadavg (1, 5 and 15 minutes)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cmds(src: str, out: str, flag: str | None, with_mdf: bool,
          threads: tuple[str, ...] = ("default",), before: bool = False) -> dict[str, list[str]]:
    args = ([flag] if flag else []) + ["-d", "31", src]
    kcrash = str(Path(sys.executable).with_name("kcrash"))
    cmds = {}
    if before:  # default threads, from the older tree
        cmds["kcrash-before"] = [kcrash, "collect", "vmcore", *args, out + ".kcrash-before"]
    for t in threads:
        name, extra = ("kcrash", []) if t == "default" else (f"kcrash-t{t}", ["--num-threads", t])
        cmds[name] = [kcrash, "collect", "vmcore", *extra, *args, out + "." + name]
    if with_mdf:
        cmds["makedumpfile"] = ["makedumpfile", *args, out + ".m"]
    return cmds


def run(src: str, repeat: int, workdir: str, env: dict[str, str],
        codecs: tuple[str, ...] | None = None, threads: tuple[str, ...] = ("default",),
        before: str | None = None) -> list[dict[str, object]]:
    """Median rows per (codec, tool); ``codecs`` limits the codecs run (default: all of ``_FLAGS``)."""
    rows: list[dict[str, object]] = []
    for codec, flag, with_mdf in _FLAGS:
        if codecs is not None and codec not in codecs:
            continue
        out = os.path.join(workdir, codec)
        cmds = _cmds(src, out, flag, with_mdf, threads, before is not None)
        envs = {name: {**env, "PYTHONPATH": before} if name == "kcrash-before" and before else env for name in cmds}
        samples: dict[str, list[tuple[float, float, int]]] = {k: [] for k in cmds}
        for _ in range(repeat):
            for name, cmd in cmds.items():
                Path(cmd[-1]).unlink(missing_ok=True)
                samples[name].append(_timed(cmd, envs[name]))
        for name, cmd in cmds.items():
            same = filecmp.cmp(cmd[-1], out + ".m", shallow=False) if with_mdf and name != "makedumpfile" else None
            rows.append({"codec": codec, "tool": name, "wall": statistics.median(s[0] for s in samples[name]),
                         "cpu": statistics.median(s[1] for s in samples[name]),
                         "rss_mib": max(s[2] for s in samples[name]), "size": os.path.getsize(cmd[-1]),
                         "identical": same})
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    ref = {r["codec"]: r for r in rows if r["tool"] == "makedumpfile"}
    print(f"{'codec':>6} {'tool':>12} {'wall s':>7} {'CPU s':>6} {'RSS MiB':>7} {'size':>11} {'wall ratio':>10} "
          f"{'CPU ratio':>9} {'same bytes':>10}")
    for r in rows:
        base = ref.get(r["codec"])
        wr = f"{r['wall'] / base['wall']:.2f}" if base and base["wall"] else "-"  # type: ignore[operator]
        cr = f"{r['cpu'] / base['cpu']:.2f}" if base and base["cpu"] else "-"  # type: ignore[operator]
        same = "-" if r["identical"] is None else str(r["identical"])
        print(f"{r['codec']:>6} {r['tool']:>12} {r['wall']:>7.2f} {r['cpu']:>6.2f} {r['rss_mib']:>7} {r['size']:>11,} "
              f"{wr:>10} {cr:>9} {same:>10}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmcore")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--kcrash-threads", default="default", help="comma-separated: default and/or counts")
    ap.add_argument("--before", help="an older kcrash src tree, run as the tool kcrash-before")
    args = ap.parse_args()
    threads = tuple(args.kcrash_threads.split(","))
    print(f"# load average before: {loadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp, tempfile.TemporaryDirectory() as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        warm = _cmds(args.vmcore, os.path.join(tmp, "warm"), "-l", False)["kcrash"]
        _timed(warm, env)
        if args.before:  # its bytecode too
            Path(warm[-1]).unlink()
            _timed(warm, {**env, "PYTHONPATH": args.before})
        rows = run(args.vmcore, args.repeat, tmp, env, threads=threads, before=args.before)
    print(f"# load average after: {loadavg()}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(rows)


if __name__ == "__main__":
    main()
