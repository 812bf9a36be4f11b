"""The breadth matrix (issue #15): every capability on every lab kernel, with and without debuginfo.

Usage: .venv/bin/python bench/breadth.py CRASH_DIR... [--file vmcore.kdump]

For each lab crash directory (``kcrash lab crash`` output; its lab.json names the kernel), runs kcrash's
``sys``, ``ps``, ``log``, ``mod``, ``sym`` (200 kernel symbols), ``bt -a``, ``struct task_struct`` and
``report`` as separate processes with ``--json``, once with nothing but the dump and once with
``--vmlinux`` (the Debian ``-dbg`` vmlinux from the lab cache), and prints per capability whether each
exits 0 and whether both give the same answer (the vmlinux's DWARF adds source lines to the report).
Agreement of the no-debuginfo answers with drgn + vmlinux is the oracle suite's
(tests/oracle/test_analysis_drgn.py) and is cited, not re-measured, here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CAPABILITIES = {
    "dmesg": ["log"], "tasks": ["ps"], "modules": ["mod"], "system": ["sys"],
    "symbols": ["sym"], "all backtraces": ["bt", "-a"], "types": ["struct", "task_struct"], "report": ["report"],
}


def _vmlinux(release: str) -> Path | None:
    cache = Path(os.environ.get("KCRASH_CACHE", Path.home() / ".cache" / "kcrash"))
    for candidate in cache.glob(f"kernels/*/dbg/**/vmlinux*{release}*"):
        return candidate
    hits = list(cache.glob(f"kernels/*/dbg/usr/lib/debug/lib/modules/{release}/vmlinux"))
    return hits[0] if hits else None


def _run(args: list[str]) -> tuple[int, object, float]:
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kcrash", *args, "--json"], capture_output=True, text=True,
                          check=False, timeout=600)
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    return proc.returncode, data, time.monotonic() - began


_NAMES = ("function", "text", "crashing_function", "trace_function", "log_function", "ip_text", "title",
          "signature")


def _normalized(data: object, *, names: bool = True) -> object:
    # The file name differs between runs by design; without ``names``, function names (which may be
    # another alias of the same address: kallsyms and the ELF symbol table order aliases differently)
    # are left out too.
    drop = ("dump", "path", "files", "source", "ip_source", "snippet") + (() if names else _NAMES)
    if isinstance(data, dict):
        return {k: _normalized(v, names=names) for k, v in data.items() if k not in drop}
    if isinstance(data, list):
        return [_normalized(v, names=names) for v in data]
    return data


def _same(a: object, b: object) -> str:
    if _normalized(a) == _normalized(b):
        return "yes" if a == b or "source" not in json.dumps(b) else "yes (and file:line with inlines)"
    return "yes, but aliases named differently" if _normalized(a, names=False) == _normalized(b, names=False) \
        else "no"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("crashes", nargs="+", type=Path)
    ap.add_argument("--file", default="vmcore.kdump")
    args = ap.parse_args()
    print("| kernel | capability | no debuginfo | with --vmlinux | same answer |")
    print("|---|---|---|---|---|")
    for crash in args.crashes:
        lab = json.loads((crash / "lab.json").read_text())
        release = lab["kernel"]["release"]
        dump = str(crash / args.file)
        vmlinux = _vmlinux(release)
        names = _some_symbols(dump)
        for capability, command in CAPABILITIES.items():
            extra = names if command == ["sym"] else []
            code, plain, seconds = _run([command[0], dump, *command[1:], *extra])
            if vmlinux is None:
                print(f"| {release} | {capability} | exit {code} ({seconds:.1f} s) | no -dbg vmlinux cached | - |")
                continue
            code_v, with_v, seconds_v = _run([command[0], dump, *command[1:], *extra, "--vmlinux", str(vmlinux)])
            same = _same(plain, with_v)
            print(f"| {release} | {capability} | exit {code} ({seconds:.1f} s) | exit {code_v} ({seconds_v:.1f} s) | "
                  f"{same} |", flush=True)


def _some_symbols(dump: str) -> list[str]:
    from kcrash.analysis.target import open_target

    with open_target(dump, None, orc=False) as prog:
        table = prog.symbols
        names = [s.name for s in table.iter_symbols() if s.kind in "Tt"]  # type: ignore[attr-defined]
    step = max(1, len(names) // 200)
    return names[::step][:200]


if __name__ == "__main__":
    main()
