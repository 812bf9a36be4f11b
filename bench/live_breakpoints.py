"""Breakpoint round trips per second on a live lab VM: kcrash vs gdb, side by side.

Usage:
    .venv/bin/python bench/live_breakpoints.py --kernel 6.1 [--hits 1000] [--function schedule] [--repeat 3]
    .venv/bin/python bench/live_breakpoints.py --target 127.0.0.1:PORT --qmp SOCK   (an already running guest)

One round trip = the guest hits a software breakpoint (Z0), the debugger runs a handler that counts
the hit, and the guest continues. gdb does the same with ``commands / silent / set $n = $n + 1 /
if $n < N / continue / end / end``; kcrash with ``session.break_at(fn, handler)`` where the handler
counts and returns whether N is reached. Both time the loop from the first ``continue`` to the Nth
hit, on the same VM, alternately. The lab guest is idle (a ``sleep 1`` loop), so the hit rate is
mostly bounded by how often the guest calls the function; the debugger's own cost shows in the
second number, the time the guest stays stopped per hit, measured on the wire by a proxy
(:class:`StopTimer`) that both debuggers go through. The breakpoint is on a hot function so the
debugger, not the guest, limits the rate. gdb runs without a vmlinux (``break *ADDRESS``; the
address comes from kcrash's kallsyms), so neither side pays for symbol loading inside the loop.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kcrash.analysis.live import attach_kernel
from kcrash.live.gdbremote.packets import Packet, PacketParser


class StopTimer:
    """A TCP proxy between a debugger and the stub that times, per breakpoint hit, how long the
    guest stays stopped: from the stub's stop reply to the debugger's next continue (``c`` or
    ``vCont;c``), step-overs included. The same proxy serves both debuggers, so it costs both alike."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.upstream = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.stopped: list[float] = []
        self._stop_at: float | None = None
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            down, _ = self.server.accept()
            up = socket.create_connection(self.upstream)
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(up, down, True), daemon=True).start()
            self._pump(down, up, False)

    def _pump(self, src: socket.socket, dst: socket.socket, from_stub: bool) -> None:
        parser = PacketParser()
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            now = time.perf_counter()
            for event in parser.feed(data.replace(b"\x03", b"")):
                if isinstance(event, Packet):
                    self._note(event.data, from_stub, now)
            dst.sendall(data)

    def _note(self, packet: bytes, from_stub: bool, now: float) -> None:
        if from_stub and packet[:1] in (b"T", b"S") and self._stop_at is None:
            self._stop_at = now
        elif not from_stub and (packet == b"c" or packet.startswith(b"vCont;c")) and self._stop_at is not None:
            self.stopped.append(now - self._stop_at)
            self._stop_at = None

    def take(self) -> float:
        """Mean stopped time per hit (s) since the last call."""
        values, self.stopped = self.stopped[1:], []  # the first continue follows the attach, not a hit
        self._stop_at = None
        return statistics.mean(values) if values else float("nan")


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
    timer = StopTimer(target)
    ours, theirs, our_stop, their_stop = [], [], [], []
    for i in range(repeat):
        rate, address = kcrash_rate(timer.address, qmp, function, hits)
        ours.append(rate)
        our_stop.append(timer.take())
        theirs.append(gdb_rate(timer.address, address, hits))
        their_stop.append(timer.take())
        print(f"run {i + 1}: kcrash {ours[-1]:.0f}/s, {our_stop[-1] * 1e3:.2f} ms stopped per hit; "
              f"gdb {theirs[-1]:.0f}/s, {their_stop[-1] * 1e3:.2f} ms stopped per hit  ({function} at {address:#x})")
    k, g = statistics.median(ours), statistics.median(theirs)
    ks, gs = statistics.median(our_stop), statistics.median(their_stop)
    print(f"median over {repeat} runs of {hits} hits: round trips/s kcrash {k:.0f}, gdb {g:.0f}, ratio {k / g:.2f}x; "
          f"guest stopped per hit kcrash {ks * 1e3:.2f} ms, gdb {gs * 1e3:.2f} ms, gdb/kcrash {gs / ks:.2f}x")


def with_lab_vm(kernel: str, body: Callable[[str, str], None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sock = Path(tmp) / "qmp.sock"
        cmd = [sys.executable, "-m", "kcrash", "lab", "boot", "--kernel", kernel, "--kaslr", "--gdb", "0",
               "--qmp", str(sock), "--duration", "1800"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            port = None
            for line in proc.stdout or ():
                m = re.search(r"target remote 127\.0\.0\.1:(\d+)", line)
                if m:
                    port = m.group(1)
                    break
            if port is None:
                raise SystemExit("the lab guest did not come up")
            body(f"127.0.0.1:{port}", str(sock))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target")
    ap.add_argument("--qmp")
    ap.add_argument("--kernel", default="6.1")
    ap.add_argument("--function", default="_raw_spin_lock_irqsave")
    ap.add_argument("--hits", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.target:
        run(args.target, args.qmp, args.function, args.hits, args.repeat)
    else:
        with_lab_vm(args.kernel, lambda t, q: run(t, q, args.function, args.hits, args.repeat))


if __name__ == "__main__":
    main()
