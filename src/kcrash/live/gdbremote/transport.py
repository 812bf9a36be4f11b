"""
kcrash.live.gdbremote.transport
===============================

Byte transports for the GDB remote protocol: :class:`TcpTransport` (the QEMU gdbstub, or kgdb
behind a TCP bridge such as ``agent-proxy``) and :class:`SerialTransport` (a tty such as
``/dev/ttyS0`` or a pty; raw mode, a chosen baud rate). :func:`open_transport` picks one from a
target string. Transports move bytes only; framing is in :mod:`~kcrash.live.gdbremote.packets`.
The tests' scripted peer (like httpx's ``MockTransport(handler)``) lives in
``tests/support/mock_transport.py``, outside the package.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from kcrash.errors import LiveTargetError

__all__ = ["SerialTransport", "TcpTransport", "Transport", "open_transport"]

#: the most bytes one read asks for
_CHUNK = 65536
_BAUDS = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
          115200: termios.B115200}


class Transport(Protocol):
    """A bidirectional byte stream to a stub."""

    description: str

    def send(self, data: bytes) -> None:
        """Write all of ``data``; raise LiveTargetError if the peer is gone."""
        ...

    def recv(self, timeout: float) -> bytes:
        """Return the bytes available within ``timeout`` s (b"" if none); raise LiveTargetError
        when the peer closed the connection."""
        ...

    def close(self) -> None:
        """Close the stream (idempotent)."""
        ...


class TcpTransport:
    """A TCP connection, e.g. ``localhost:1234`` (QEMU ``-gdb tcp::1234``)."""

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0) -> None:
        self.description = f"{host}:{port}"
        try:
            self._sock: socket.socket | None = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise LiveTargetError(f"cannot connect to gdb stub at {host}:{port}: {exc.strerror or exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.setblocking(False)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise LiveTargetError(f"connection to {self.description} is closed")
        return self._sock

    def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        sock = self._socket()
        _send_all(sock, sock.send, data, self._lost)

    def recv(self, timeout: float) -> bytes:
        """Return what arrives within ``timeout`` s."""
        sock = self._socket()
        return _recv_within(sock, lambda: sock.recv(_CHUNK), timeout, self._lost,
                            f"{self.description} closed the connection")

    def _lost(self, exc: OSError) -> str:
        return f"lost connection to {self.description}: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


class SerialTransport:
    """A serial device (kgdb over ``kgdboc``) in raw mode at ``baud``."""

    def __init__(self, path: str, baud: int = 115200) -> None:
        self.description = f"{path}@{baud}"
        if baud not in _BAUDS:
            raise LiveTargetError(f"unsupported baud rate {baud} (use one of {sorted(_BAUDS)})")
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as exc:
            raise LiveTargetError(f"cannot open serial device {path}: {exc.strerror}") from exc
        with contextlib.suppress(termios.error):  # a plain file or FIFO in tests has no tty attributes
            tty.setraw(self._fd)
            attrs = termios.tcgetattr(self._fd)
            attrs[4] = attrs[5] = _BAUDS[baud]
            termios.tcsetattr(self._fd, termios.TCSANOW, attrs)

    def _descriptor(self) -> int:
        if self._fd is None:
            raise LiveTargetError(f"serial device {self.description} is closed")
        return self._fd

    def send(self, data: bytes) -> None:
        """Write all of ``data``."""
        fd = self._descriptor()
        _send_all(fd, lambda view: os.write(fd, view), data, self._failed)

    def recv(self, timeout: float) -> bytes:
        """Return what arrives within ``timeout`` s."""
        fd = self._descriptor()
        return _recv_within(fd, lambda: os.read(fd, _CHUNK), timeout, self._failed,
                            f"serial device {self.description} hung up")

    def _failed(self, exc: OSError) -> str:
        return f"serial device {self.description} failed: {exc.strerror}"

    def close(self) -> None:
        """Close the device."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _send_all(handle: socket.socket | int, write: Callable[[memoryview], int], data: bytes,
              failed: Callable[[OSError], str]) -> None:
    # Write all of ``data`` to a non-blocking socket or descriptor, waiting while it is full.
    view = memoryview(data)
    while view:
        try:
            view = view[write(view):]
        except BlockingIOError:
            select.select([], [handle], [], 1.0)
        except OSError as exc:
            raise LiveTargetError(failed(exc)) from exc


def _recv_within(handle: socket.socket | int, read: Callable[[], bytes], timeout: float,
                 failed: Callable[[OSError], str], hung_up: str) -> bytes:
    # What a non-blocking socket or descriptor has within ``timeout`` s (b"" for nothing); end of
    # file means the peer is gone.
    ready, _, _ = select.select([handle], [], [], max(timeout, 0.0))
    if not ready:
        return b""
    try:
        data = read()
    except BlockingIOError:
        return b""
    except OSError as exc:
        raise LiveTargetError(failed(exc)) from exc
    if not data:
        raise LiveTargetError(hung_up)
    return data


def open_transport(target: str, *, connect_timeout: float = 5.0, baud: int = 115200) -> Transport:
    """Open ``HOST:PORT``, ``:PORT``, ``tcp:HOST:PORT`` or a serial device path (``/dev/ttyS0``,
    ``serial:/dev/pts/3``)."""
    if target.startswith("serial:"):
        return SerialTransport(target[len("serial:"):], baud)
    if target.startswith("/") or Path(target).exists():
        return SerialTransport(target, baud)
    host, sep, port = target.removeprefix("tcp:").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise LiveTargetError(f"target {target!r} is neither HOST:PORT nor a serial device path")
    return TcpTransport(host or "localhost", int(port), connect_timeout=connect_timeout)
