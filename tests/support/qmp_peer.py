"""The QEMU side of a QMP connection, for tests of :mod:`kcrash.live.qmp` over a socket pair."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

GREETING = b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}}'


def requests(sock: socket.socket) -> Iterator[dict[str, Any]]:
    # qemu.qmp sends its JSON objects back to back, with no newline (QEMU parses a JSON stream).
    buf, decoder = "", json.JSONDecoder()
    while chunk := sock.recv(65536):
        buf += chunk.decode()
        while buf.strip():
            try:
                request, end = decoder.raw_decode(buf.lstrip())
            except ValueError:
                break
            buf = buf.lstrip()[end:]
            yield request
