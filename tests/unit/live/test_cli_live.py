"""``kcrash live`` error paths: one clear line and exit status 1, never a traceback or a hang."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kcrash", "live", *args], capture_output=True, text=True, timeout=60)


def test_refused_connection_is_one_line() -> None:
    out = run("127.0.0.1:1")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == ["kcrash: error: cannot connect to gdb stub at 127.0.0.1:1: "
                                               "Connection refused"]


def test_bad_target_string() -> None:
    out = run("not-a-target")
    assert out.returncode == 1 and "neither HOST:PORT nor a serial device" in out.stderr
    assert "Traceback" not in out.stderr


def test_silent_stub_times_out_within_the_timeout() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    conns: list[socket.socket] = []
    threading.Thread(target=lambda: conns.append(server.accept()[0]), daemon=True).start()
    start = time.monotonic()
    out = run(f"127.0.0.1:{port}", "--timeout", "1", "-x", "regs")
    assert time.monotonic() - start < 30
    assert out.returncode == 1 and "no reply from 127.0.0.1:" in out.stderr and "'qSupported" in out.stderr
    server.close()


def test_garbage_from_the_stub_is_a_protocol_error_naming_the_packet() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"+$OK#9a")  # OK is no answer to qSupported... then a bogus stop reply
        conn.recv(4096)
        conn.sendall(b"+$Zebra#" + b"%02x" % (sum(b"Zebra") & 0xFF))
        time.sleep(2)

    threading.Thread(target=serve, daemon=True).start()
    out = run(f"127.0.0.1:{port}", "--timeout", "2", "-x", "regs")
    assert out.returncode == 1 and "'Zebra'" in out.stderr and "Traceback" not in out.stderr
    server.close()
