"""
kcrash.live.gdbremote
=====================

The GDB Remote Serial Protocol: :mod:`~kcrash.live.gdbremote.packets` (pure framing, checksums,
escaping, stop replies), :mod:`~kcrash.live.gdbremote.tdesc` (target description XML),
:mod:`~kcrash.live.gdbremote.transport` (TCP, serial) and
:mod:`~kcrash.live.gdbremote.client` (request/response, run control, counters).
"""

from kcrash.live.gdbremote.client import ClientCounters, GdbRemoteClient
from kcrash.live.gdbremote.transport import SerialTransport, TcpTransport, open_transport

__all__ = ["ClientCounters", "GdbRemoteClient", "SerialTransport", "TcpTransport", "open_transport"]
