"""Breakpoint round trips per second on a live lab VM: kcrash vs gdb, side by side.

Usage:
    .venv/bin/python bench/live_breakpoints.py --kernel 6.1 [--hits 1000] [--function schedule] [--repeat 3]
    .venv/bin/python bench/live_breakpoints.py --target 127.0.0.1:PORT --qmp SOCK   (an already running guest)

One round trip = the guest hits a software breakpoint (Z0), the debugger runs a handler that counts
the hit, and the guest continues. gdb does the same with ``commands / silent / set $n = $n + 1 /
if $n < N / continue / end / end``; kcrash with ``session.break_at(fn, handler)`` where the handler
counts and returns whether N is reached. Both time the loop from the first ``continue`` to the Nth
hit, on the same paused-then-resumed VM, alternately. The breakpoint is on a hot function so the
debugger, not the guest, limits the rate. gdb runs without a vmlinux (``break *ADDRESS``; the
address comes from kcrash's kallsyms), so neither side pays for symbol loading inside the loop.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from kcrash.cli.live import attach_kernel


def kcrash_rate(target: str, qmp: str, function: str, hits: int) -> tuple[float, int]:
    count = [0]

    def handler(ctx: object) -> bool:
        count[0] += 1
        return count[0] >= hits

    with attach_kernel(target, qmp=qmp) as session:
        address = session.binder.resolve(function).address
        session.break_at(function, handler)
        start = time.perf_counter()
        session.cont(timeout=600)
        elapsed = time.perf_counter() - start
    return count[0] / elapsed, address


GDB_SCRIPT = """\
set pagination off
set confirm off
target remote {target}
set $n = 0
break *{address:#x}
commands
silent
set $n = $n + 1
if $n < {hits}
continue
end
end
python import time; __t = time.perf_counter()
continue
python print("GDB_ELAPSED", time.perf_counter() - __t)
print $n
delete
detach
"""


def gdb_rate(target: str, address: int, hits: int) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".gdb", delete=False) as f:
        f.write(GDB_SCRIPT.format(target=target, address=address, hits=hits))
    out = subprocess.run(["gdb", "-batch", "-nx", "-x", f.name], capture_output=True, text=True, timeout=900)
    Path(f.name).unlink()
    elapsed = next((float(line.split()[1]) for line in out.stdout.splitlines() if line.startswith("GDB_ELAPSED")),
                   None)
    count = next((int(line.split("=")[1]) for line in out.stdout.splitlines() if line.startswith("$1 =")), 0)
    if elapsed is None or count < hits:
        raise SystemExit(f"gdb run failed:\n{out.stdout}\n{out.stderr}")
    return count / elapsed


def run(target: str, qmp: str, function: str, hits: int, repeat: int) -> None:
    ours, theirs = [], []
    for i in range(repeat):
        rate, address = kcrash_rate(target, qmp, function, hits)
        ours.append(rate)
        theirs.append(gdb_rate(target, address, hits))
        print(f"run {i + 1}: kcrash {ours[-1]:.0f}/s  gdb {theirs[-1]:.0f}/s  ({function} at {address:#x})")
    k, g = statistics.median(ours), statistics.median(theirs)
    print(f"median round trips/s over {repeat} runs of {hits} hits: kcrash {k:.0f}, gdb {g:.0f}, ratio {k / g:.2f}x")


def with_lab_vm(kernel: str, body: callable) -> None:  # type: ignore[valid-type]
    from kcrash.lab.boot import BootOptions, boot_live

    cache = Path.home() / ".cache/kcrash"
    with tempfile.TemporaryDirectory() as tmp:
        qmp = Path(tmp) / "qmp.sock"
        stop = threading.Event()
        errors: list[BaseException] = []

        def on_ready(guest: object) -> None:
            def work() -> None:
                try:
                    body(f"127.0.0.1:{guest.gdb_port}", str(qmp))  # type: ignore[attr-defined]
                except BaseException as exc:  # noqa: BLE001 - reported after the VM is down
                    errors.append(exc)
                finally:
                    stop.set()
            threading.Thread(target=work, daemon=True).start()

        opts = BootOptions(kernel, kaslr=True, gdb_port=0, qmp_socket=qmp)
        runner = threading.Thread(target=boot_live, args=(cache, opts, on_ready), kwargs={"stop_after": 1800})
        runner.start()
        while runner.is_alive() and not stop.wait(0.5):
            pass
        import os
        import signal
        os.kill(os.getpid(), signal.SIGTERM) if runner.is_alive() else None
        runner.join()
        if errors:
            raise errors[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target")
    ap.add_argument("--qmp")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--function", default="schedule")
    ap.add_argument("--hits", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.target:
        run(args.target, args.qmp, args.function, args.hits, args.repeat)
    else:
        with_lab_vm(args.kernel, lambda t, q: run(t, q, args.function, args.hits, args.repeat))


if __name__ == "__main__":
    main()
