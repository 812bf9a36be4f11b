"""Decoding a 30-frame oops: ``kcrash decode`` (cold and warm) against decode_stacktrace.sh's method
(one ``addr2line -f -i`` process per frame) and one batched ``llvm-symbolizer --inlining`` call.

Usage: .venv/bin/python bench/symbolize_vs_addr2line.py VMLINUX LOG... [--repeat N] [--frames 30]
       [--no-bytecode-cache]

The oops: the first report of the first LOG, its call trace extended to ``--frames`` vmlinux frames with
real frames (``func+off/size`` as the kernel printed them) from the other LOGs, so every address was
really printed by that kernel. Module frames are left out so both peers read one object. Every
measurement is a whole process (wall from fork to exit, peak RSS from ``wait4``); medians of N.
"cold" runs ``kcrash decode`` with an empty cache directory, "warm" with the directory a cold run
filled (the index by build-id: aranges, code symbols, the units and functions touched). The
addresses for the peers come from ``nm`` beforehand (not timed: the script would run it per frame).

Bytecode: kcrash runs with compiled bytecode, as an installed package has it. ``PYTHONDONTWRITEBYTECODE``
is removed from the environment of every timed process and ``PYTHONPYCACHEPREFIX`` points at a private
temporary directory (the source tree is not touched); one untimed ``kcrash decode`` run with its own
empty cache and one untimed ``kcrash --help`` fill it first. ``--no-bytecode-cache`` keeps the caller's
environment as it is (under ``PYTHONDONTWRITEBYTECODE`` every run then recompiles kcrash's modules).
The peers are native programs and get the same environment.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

_FRAME = re.compile(r"^(?P<pre>.*?\s)(?P<q>\? )?(?P<name>[A-Za-z_][\w.]*)"
                    r"\+(?P<off>0x[0-9a-f]+)/(?P<size>0x[0-9a-f]+)\s*$")
KCRASH = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "kcrash")


def run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    start = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          stdin=subprocess.PIPE if stdin is not None else None, text=True) as proc:
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss / 1024


def build_log(logs: list[Path], frames: int) -> tuple[str, list[tuple[str, int]]]:
    """A console log with one oops whose call trace has ``frames`` vmlinux frames."""
    lines = logs[0].read_text(errors="replace").splitlines()
    start = next(i for i, line in enumerate(lines) if "Call Trace:" in line)
    head = list(lines[:start + 1])
    seen: list[str] = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            found = _FRAME.match(line)
            if found and not line.rstrip().endswith("]") and found.group("name") + found.group("off") not in seen:
                seen.append(found.group("name") + found.group("off"))
                head.append(f"{found.group('pre')}{found.group('q') or ''}{found.group('name')}+"
                            f"{found.group('off')}/{found.group('size')}")
            if len(seen) == frames:
                break
        if len(seen) == frames:
            break
    picked = [(m.group("name"), int(m.group("off"), 16)) for m in map(_FRAME.match, head) if m]
    if len(picked) < frames:
        raise SystemExit(f"only {len(picked)} vmlinux frames in the logs")
    return "\n".join([*head, " </TASK>", ""]), picked[:frames]


def nm_addresses(vmlinux: Path, frames: list[tuple[str, int]]) -> list[int]:
    out = subprocess.run(["nm", str(vmlinux)], capture_output=True, text=True, check=True).stdout
    first: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            first.setdefault(parts[2], int(parts[0], 16))
    return [first[name] + off for name, off in frames]


def median(samples: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def bytecode_env(work: Path, keep: bool) -> dict[str, str]:
    """The environment of every timed process: compiled bytecode in a private cache unless ``keep``."""
    env = dict(os.environ)
    if not keep:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("vmlinux", type=Path)
    ap.add_argument("logs", type=Path, nargs="+")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="Keep PYTHONDONTWRITEBYTECODE if set (every run recompiles uncached modules).")
    args = ap.parse_args()
    text, frames = build_log(args.logs, args.frames)
    addresses = nm_addresses(args.vmlinux, frames)
    work = Path(tempfile.mkdtemp(prefix="kcrash-bench-"))
    log = work / "oops.log"
    log.write_text(text)
    decode = [KCRASH, "decode", str(log), "--debuginfo", str(args.vmlinux)]
    results: dict[str, tuple[float, float]] = {}
    base = bytecode_env(work, args.no_bytecode_cache)
    if not args.no_bytecode_cache:
        # Untimed: fills the private bytecode cache (its own index cache, removed after).
        run(decode, {**base, "KCRASH_CACHE": str(work / "warm-up")})
        run([KCRASH, "--help"], base)
        shutil.rmtree(work / "warm-up")

    cold = []
    for k in range(args.repeat):
        env = {**base, "KCRASH_CACHE": str(work / f"cold{k}")}
        cold.append(run(decode, env))
    results["kcrash decode, cold (no cache)"] = median(cold)
    warm_env = {**base, "KCRASH_CACHE": str(work / "cold0")}
    results["kcrash decode, warm (index cached)"] = median([run(decode, warm_env) for _ in range(args.repeat)])
    results["kcrash --help (CLI start-up alone)"] = median([run([KCRASH, "--help"], base)
                                                            for _ in range(args.repeat)])
    per_frame = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        rss = 0.0
        for address in addresses:
            rss = max(rss, run(["addr2line", "-f", "-i", "-e", str(args.vmlinux), hex(address)], base)[1])
        per_frame.append((time.perf_counter() - start, rss))
    results[f"addr2line -f -i, one process per frame ({len(addresses)})"] = median(per_frame)
    if shutil.which("llvm-symbolizer"):
        batch = ["llvm-symbolizer", "--inlining", "-e", str(args.vmlinux), *map(hex, addresses)]
        results["llvm-symbolizer --inlining, one batched call"] = median([run(batch, base) for _ in range(args.repeat)])
    index = sum(f.stat().st_size for f in (work / "cold0").rglob("*") if f.is_file())
    report(results, index, len(addresses))
    shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, tuple[float, float]], index_bytes: int, frames: int) -> None:
    for name, (wall, rss) in results.items():
        print(f"{name:<52} wall {wall:6.3f} s   peak RSS {rss:6.1f} MiB")
    cold = results["kcrash decode, cold (no cache)"][0]
    warm = results["kcrash decode, warm (index cached)"][0]
    a2l = next(v[0] for k, v in results.items() if k.startswith("addr2line"))
    print(f"frames={frames}  cold/addr2line-per-frame = {cold / a2l:.3f}  (target <= 0.3)")
    llvm = results.get("llvm-symbolizer --inlining, one batched call")
    if llvm:
        print(f"warm/llvm-symbolizer-batched = {warm / llvm[0]:.3f}  (target <= 1.0)")
    print(f"one-time index cost: cold - warm = {cold - warm:.3f} s; index on disk {index_bytes / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
