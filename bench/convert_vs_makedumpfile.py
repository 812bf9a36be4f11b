"""Filtering and compression: ``kcrash dump convert`` vs ``makedumpfile`` on the same input, side by side.

Usage: .venv/bin/python bench/convert_vs_makedumpfile.py VMCORE [--repeat R] [--threads N] [--workdir DIR]

VMCORE is a /proc/vmcore-shaped ELF file (``kcrash.dumps.write.elf_vmcore.convert_to_proc_vmcore`` of a lab
dump; makedumpfile 1.7.2 cannot read QEMU's own ELF). For each case (level 31: zlib, lzo; zstd for kcrash
only, since Debian's makedumpfile lacks it) every run is a whole process under ``/usr/bin/time`` (wall seconds,
peak RSS); runs of the two tools alternate, the median of R is reported with the ratio kcrash/makedumpfile
and the output sizes. kcrash runs with compiled bytecode in a private ``PYTHONPYCACHEPREFIX`` (filled by an
untimed run; ``--no-bytecode-cache`` keeps a ``PYTHONDONTWRITEBYTECODE`` environment as it is). kcrash is run
twice per case: the ``kcrash`` CLI (the real command, including the
start-up of the whole CLI) and ``python -c`` calling :func:`kcrash.collect.convert.convert_dump` (the same
work without importing every other subcommand).
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

_API = ("import sys; from pathlib import Path; from kcrash.dumps import open_dump; "
        "from kcrash.collect.convert import ConvertOptions, convert_dump; "
        "r = convert_dump(open_dump(sys.argv[1]), Path(sys.argv[2]), "
        "ConvertOptions(int(sys.argv[3]), sys.argv[4], 'kdump', int(sys.argv[5]))); "
        "assert not r.write.incomplete")


_SUFFIX = {"makedumpfile": ".mdf", "kcrash-cli": ".cli", "kcrash-api": ".api"}


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    run = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{run.stderr[-2000:]}")
    wall, rss = run.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) // 1024


def _commands(src: str, out: str, level: int, codec: str, threads: int) -> dict[str, list[str] | None]:
    kcrash = str(Path(sys.executable).with_name("kcrash"))
    mdf_flag = {"zlib": "-c", "lzo": "-l"}.get(codec)
    return {
        "makedumpfile": ["makedumpfile", "-d", str(level), mdf_flag, src, out + ".mdf"] if mdf_flag else None,
        "kcrash-cli": [kcrash, "dump", "convert", src, out + ".cli", "-d", str(level), "-c", codec,
                       "--threads", str(threads)],
        "kcrash-api": [sys.executable, "-c", _API, src, out + ".api", str(level), codec, str(threads)],
    }


def run(src: str, repeat: int, threads: int, workdir: str,
        env: dict[str, str] | None = None) -> list[dict[str, object]]:
    rows = []
    for level, codec in ((31, "zlib"), (31, "lzo"), (31, "zstd")):
        out = os.path.join(workdir, f"d{level}-{codec}")
        cmds = {k: v for k, v in _commands(src, out, level, codec, threads).items() if v is not None}
        times: dict[str, list[tuple[float, int]]] = {k: [] for k in cmds}
        for _ in range(repeat):
            for name, cmd in cmds.items():
                Path(out + _SUFFIX[name]).unlink(missing_ok=True)
                times[name].append(_timed(cmd, env))
        for name, samples in times.items():
            suffix = _SUFFIX[name]
            rows.append({"level": level, "codec": codec, "tool": name,
                         "wall": statistics.median(s[0] for s in samples),
                         "rss_mib": max(s[1] for s in samples), "size": os.path.getsize(out + suffix)})
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    ref = {(r["level"], r["codec"]): r for r in rows if r["tool"] == "makedumpfile"}
    print(f"{'level':>5} {'codec':>5} {'tool':>13} {'wall s':>7} {'RSS MiB':>7} {'size':>11} {'wall ratio':>10} "
          f"{'size ratio':>10}")
    for r in rows:
        base = ref.get((r["level"], r["codec"]))
        wr = f"{r['wall'] / base['wall']:.2f}" if base and base["wall"] else "-"  # type: ignore[operator]
        sr = f"{r['size'] / base['size']:.3f}" if base else "-"  # type: ignore[operator]
        print(f"{r['level']:>5} {r['codec']:>5} {r['tool']:>13} {r['wall']:>7.2f} {r['rss_mib']:>7} "
              f"{r['size']:>11,} {wr:>10} {sr:>10}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vmcore")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="Keep PYTHONDONTWRITEBYTECODE if set (every kcrash run recompiles its modules).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp, tempfile.TemporaryDirectory() as pycache:
        env = None
        if not args.no_bytecode_cache:
            # kcrash gets compiled bytecode, as an installed package has (this sandbox sets
            # PYTHONDONTWRITEBYTECODE and the editable checkout has no .pyc): a private cache
            # directory, filled by one untimed run of each kcrash command; the tree is not touched.
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = pycache
            for name, cmd in _commands(args.vmcore, os.path.join(tmp, "warmup"), 31, "lzo", 1).items():
                if name != "makedumpfile" and cmd is not None:
                    _timed(cmd, env)
                    Path(os.path.join(tmp, "warmup") + _SUFFIX[name]).unlink(missing_ok=True)
        rows = run(args.vmcore, args.repeat, args.threads, tmp, env)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(rows)


if __name__ == "__main__":
    main()
