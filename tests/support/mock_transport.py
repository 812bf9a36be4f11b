"""
support.mock_transport
======================

:class:`MockTransport`: a scripted GDB-remote peer for the client tests, like httpx's
``MockTransport(handler)``. The handler gets each packet's data and returns the reply; the transport
frames it, acknowledges packets until ``QStartNoAckMode`` is answered ``OK``, and can drop the
connection. It satisfies :class:`kcrash.live.gdbremote.transport.Transport`. Moved out of the package
(issue 22 item 6): nothing in ``src/`` uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kcrash.errors import LiveTargetError
from kcrash.live.gdbremote.packets import INTERRUPT, Nak, Packet, PacketParser, frame

__all__ = ["MockHandler", "MockReply", "MockTransport", "Raw"]


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes a :class:`MockTransport` handler sends as is (unframed), e.g. a corrupt packet."""

    data: bytes


#: a mock handler gets each packet's data (or :data:`~kcrash.live.gdbremote.packets.INTERRUPT`)
#: and returns reply packet data, a list of replies, :class:`Raw` bytes, or None (no reply)
MockReply = bytes | Raw | list[bytes | Raw] | None
MockHandler = Callable[[bytes], MockReply]


class MockTransport:
    """A scripted stub: frames the handler's replies, acknowledges packets until
    ``QStartNoAckMode`` is answered ``OK``, and can be made to drop the connection (``close_peer``)."""

    def __init__(self, handler: MockHandler) -> None:
        self.description = "mock"
        self.handler = handler
        self.sent: list[bytes] = []
        self.ack_mode = True
        self.peer_closed = False
        self._parser = PacketParser()
        self._pending = bytearray()
        self._last = b""

    def send(self, data: bytes) -> None:
        """Feed the client's bytes to the scripted stub."""
        if self.peer_closed:
            raise LiveTargetError("mock peer closed the connection")
        if data.lstrip(b"+") == INTERRUPT:
            self._reply(self.handler(INTERRUPT))
            return
        for event in self._parser.feed(data):
            if isinstance(event, Packet):
                self.sent.append(event.data)
                if self.ack_mode:
                    self._pending += b"+"
                self._answer(event.data)
            elif isinstance(event, Nak):
                self._pending += self._last

    def _answer(self, data: bytes) -> None:
        reply = self.handler(data)
        self._reply(reply)
        if data == b"QStartNoAckMode" and reply == b"OK":
            self.ack_mode = False

    def _reply(self, reply: MockReply) -> None:
        items = reply if isinstance(reply, list) else [] if reply is None else [reply]
        for item in items:
            out = item.data if isinstance(item, Raw) else frame(item)
            self._last = out
            self._pending += out

    def push(self, reply: MockReply) -> None:
        """Make the stub send ``reply`` unprompted (e.g. a stop reply while running)."""
        self._reply(reply)

    def recv(self, timeout: float) -> bytes:
        """Return what the stub has queued; b"" if nothing (no real waiting)."""
        if not self._pending and self.peer_closed:
            raise LiveTargetError("mock peer closed the connection")
        data = bytes(self._pending)
        self._pending.clear()
        return data

    def close_peer(self) -> None:
        """Simulate the target dying."""
        self.peer_closed = True

    def close(self) -> None:
        """Nothing to release."""
