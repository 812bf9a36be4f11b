"""Lab faults: timeouts show the console, no QEMU survives, two labs run at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcrash.errors import LabTimeoutError
from kcrash.lab.crash import CrashOptions, run_crash

pytestmark = pytest.mark.lab


def _qemu_pids(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and marker.encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def _wait_gone(marker: str, seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while _qemu_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _qemu_pids(marker)


def test_guest_that_never_panics_times_out_with_the_console_tail(kcrash_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(LabTimeoutError) as info:
        # 10 s: the console has the banner even on a loaded machine, and HUNG_ABBA's watchdog
        # (10 s hung-task timeout, after boot) cannot have fired yet
        run_crash(kcrash_cache, CrashOptions("HUNG_ABBA", "6.1", timeout=10), out)
    assert "within 10 s" in str(info.value)
    assert "Linux version" in (out / "console.log").read_text(errors="replace")
    assert info.value.serial_tail.strip()
    assert _wait_gone(str(out)) == []


@pytest.fixture()
def two_live_guests(kcrash_cache: Path, tmp_path: Path) -> Iterator[list[tuple[subprocess.Popen[str], Path]]]:
    env = {**os.environ, "KCRASH_CACHE": str(kcrash_cache)}
    guests = []
    for i in range(2):
        serial = tmp_path / f"serial{i}.log"
        cmd = [sys.executable, "-m", "kcrash", "lab", "boot", "--kernel", "6.1", "--mem", "128M", "--smp", "1",
               "--serial", str(serial), "--duration", "120"]
        guests.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
                       serial))
    yield guests
    for proc, _ in guests:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _read_until_up(proc: subprocess.Popen[str], timeout: float = 120) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("press Ctrl-C"):
            return lines
    raise AssertionError(f"guest did not come up: {lines} {proc.stderr.read() if proc.stderr else ''}")


def test_two_labs_at_once_and_no_qemu_left_behind(two_live_guests: list[tuple[subprocess.Popen[str], Path]]) -> None:
    ports = []
    for proc, serial in two_live_guests:
        lines = _read_until_up(proc)
        gdb_line = next(line for line in lines if line.startswith("gdb:"))
        ports.append(int(gdb_line.rsplit(":", 1)[1].rstrip("'")))
        assert len(_qemu_pids(str(serial))) == 1
    assert ports[0] != ports[1]
    (killed, serial_k), (stopped, serial_s) = two_live_guests
    killed.kill()  # SIGKILL: no cleanup code runs, the kernel's parent-death signal must take QEMU down
    stopped.send_signal(signal.SIGINT)  # Ctrl-C: clean shutdown
    assert stopped.wait(timeout=30) in (0, 130)
    assert _wait_gone(str(serial_k)) == []
    assert _wait_gone(str(serial_s)) == []


def _qmp_status(sock: Path) -> str:
    import asyncio

    from qemu.qmp import QMPClient

    async def ask() -> str:
        client = QMPClient("test")
        await client.connect(str(sock))
        try:
            status = await client.execute("query-status")
        finally:
            await client.disconnect()
        assert isinstance(status, dict)
        return str(status["status"])

    return asyncio.run(ask())


def test_live_guest_gdbstub_and_qmp_answer(kcrash_cache: Path, tmp_path: Path) -> None:
    import socket
    import threading

    from kcrash.lab.boot import BootOptions, LiveGuest, boot_live

    replies: list[bytes] = []
    statuses: list[str] = []
    qmp = tmp_path / "user-qmp.sock"

    def probe(guest: LiveGuest) -> None:
        assert guest.qmp_socket == qmp
        # The user-facing QMP monitor answers (from another thread: boot_live's event loop is busy here).
        worker = threading.Thread(target=lambda: statuses.append(_qmp_status(qmp)))
        worker.start()
        worker.join(timeout=30)
        assert guest.gdb_port is not None
        with socket.create_connection(("127.0.0.1", guest.gdb_port), timeout=10) as s:
            s.sendall(b"$?#3f")
            data = b""
            while b"#" not in data.lstrip(b"+")[1:] and len(data) < 4096:
                data += s.recv(4096)
            replies.append(data)

    opts = BootOptions("6.1", mem="128M", smp=1, qmp_socket=qmp, serial=tmp_path / "s.log")
    boot_live(kcrash_cache, opts, probe, stop_after=1)
    assert statuses == ["running"]
    assert replies and replies[0].lstrip(b"+").startswith((b"$T", b"$S"))
    assert _wait_gone(str(tmp_path / "s.log")) == []
