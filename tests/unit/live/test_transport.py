"""kcrash.live.gdbremote.transport: both transports end a lost peer with one LiveTargetError naming
the device, and read nothing when nothing arrives in time."""

from __future__ import annotations

import os
import socket

import pytest

from kcrash.errors import LiveTargetError
from kcrash.live.gdbremote.transport import SerialTransport, TcpTransport


def test_serial_reads_writes_and_a_hung_up_line_is_one_error() -> None:
    master, slave = os.openpty()
    line = SerialTransport(os.ttyname(slave), 115200)
    try:
        assert line.recv(0.01) == b""
        line.send(b"$g#67")
        assert os.read(master, 64) == b"$g#67"
        os.write(master, b"+")
        assert line.recv(1.0) == b"+"
        os.close(master)  # the other end goes away: reads fail with EIO
        with pytest.raises(LiveTargetError, match=r"^serial device /dev/pts/\d+@115200 (failed|hung up)"):
            line.recv(1.0)
    finally:
        line.close()
        os.close(slave)


def test_tcp_peer_closing_is_one_error() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    conn = TcpTransport("127.0.0.1", port, connect_timeout=2.0)
    peer, _ = server.accept()
    try:
        conn.send(b"x" * 10_000)
        got = b""
        while len(got) < 10_000:
            got += peer.recv(65536)
        assert got == b"x" * 10_000 and conn.recv(0.01) == b""
        peer.sendall(b"+$OK#9a")
        assert conn.recv(1.0) == b"+$OK#9a"
        peer.close()
        with pytest.raises(LiveTargetError, match=f"127.0.0.1:{port} closed the connection"):
            conn.recv(1.0)
    finally:
        conn.close()
        server.close()
