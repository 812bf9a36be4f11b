"""
kcrash.live.gdbremote.packets
=============================

Pure framing of the GDB Remote Serial Protocol: bytes in, bytes out, no sockets. Covers packet
framing (``$data#cs``), checksums, binary escaping (``}`` + byte XOR 0x20), run-length decoding
(``x*N``), the incremental :class:`PacketParser` that splits a byte stream into acks, naks,
packets and notifications, hex helpers, and the parsers of the replies kcrash relies on: stop
replies (``S``/``T``/``W``/``X`` with ``thread:``, ``watch:``, ``rwatch:``, ``awatch:``),
``qSupported`` features, thread lists and ``E NN`` errors. The target description XML lives in
:mod:`kcrash.live.gdbremote.tdesc`; transports and request/response in ``transport``/``client``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from kcrash.errors import GdbRemoteProtocolError

__all__ = [
    "ACK",
    "INTERRUPT",
    "NAK",
    "Ack",
    "BadChecksum",
    "Event",
    "Nak",
    "Notification",
    "Packet",
    "PacketParser",
    "StopReply",
    "checksum",
    "decode_hex",
    "encode_hex",
    "error_code_or_none",
    "escape_binary",
    "frame",
    "parse_stop_reply",
    "parse_supported",
    "parse_thread_list",
    "rle_decode",
    "unescape_binary",
]

ACK = b"+"
NAK = b"-"
#: the raw byte that interrupts a running target
INTERRUPT = b"\x03"
_ESCAPED = frozenset(b"#$}*")
_MAX_RLE_DIGITS = 1 << 20


def checksum(data: bytes) -> int:
    """Return the modulo-256 sum of ``data``."""
    return sum(data) & 0xFF


def frame(data: bytes) -> bytes:
    """Return ``$data#cs``; ``data`` must already be escaped."""
    return b"$" + data + b"#" + b"%02x" % checksum(data)


def escape_binary(data: bytes) -> bytes:
    """Escape ``#``, ``$``, ``}`` and ``*`` as ``}`` followed by the byte XOR 0x20."""
    if not any(b in _ESCAPED for b in data):
        return data
    out = bytearray()
    for b in data:
        if b in _ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape_binary(data: bytes) -> bytes:
    """Undo :func:`escape_binary`; a trailing lone ``}`` is a protocol error."""
    if b"}" not in data:
        return data
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                raise GdbRemoteProtocolError(f"packet {_show(data)} ends inside an escape")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def rle_decode(data: bytes) -> bytes:
    """Expand run-length encoding: ``x*N`` repeats ``x`` ``N - 29`` more times."""
    if b"*" not in data:
        return data
    out = bytearray()
    i = 0
    while i < len(data):
        b = data[i]
        if b == 0x2A:  # '*'
            if not out or i + 1 >= len(data) or data[i + 1] < 29 + 3:
                raise GdbRemoteProtocolError(f"bad run-length encoding in packet {_show(data)}")
            out += bytes((out[-1],)) * (data[i + 1] - 29)
            i += 2
            continue
        out.append(b)
        i += 1
    return bytes(out)


def encode_hex(data: bytes) -> bytes:
    """Return the lower-case hex of ``data``."""
    return data.hex().encode()


def decode_hex(text: bytes, what: str = "hex data") -> bytes:
    """Decode hex digits (``xx`` pairs); raise GdbRemoteProtocolError naming ``what`` on bad input."""
    try:
        return bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GdbRemoteProtocolError(f"malformed {what}: {_show(text)}") from exc


def error_code_or_none(reply: bytes) -> int | None:
    """Return NN of an ``ENN`` error reply (also ``E.text``), else None."""
    if len(reply) == 3 and reply[:1] == b"E":
        try:
            return int(reply[1:], 16)
        except ValueError:
            return None
    if reply.startswith(b"E."):
        return 0
    return None


def _show(data: bytes, limit: int = 60) -> str:
    text = data[:limit].decode("latin-1")
    return repr(text + ("…" if len(data) > limit else ""))


# --- incremental stream parsing -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ack:
    """A ``+`` from the peer."""


@dataclass(frozen=True, slots=True)
class Nak:
    """A ``-`` from the peer: resend the last packet."""


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet whose checksum matched (``data`` unescaped and RLE-expanded is up to the caller:
    use :func:`rle_decode`; binary payloads then :func:`unescape_binary`)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Notification:
    """An asynchronous ``%name:data#cs`` notification (non-stop mode); never acknowledged."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BadChecksum:
    """A packet whose checksum did not match: the receiver answers ``-`` (in ack mode)."""

    data: bytes
    expected: int
    received: int


Event = Ack | Nak | Packet | Notification | BadChecksum


@dataclass(slots=True)
class PacketParser:
    """Split a byte stream into :data:`Event` objects. Bytes outside packets other than ``+``/``-``
    (and 0x03 on the server side) are noise: counted in ``garbage`` and dropped."""

    max_packet: int = 1 << 20
    garbage: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    # how far the pending packet was searched for its ``#`` (so a packet fed a byte at a time is
    # searched once, not once per byte: that was quadratic up to ``max_packet``)
    _searched: int = 1

    def feed(self, data: bytes) -> Iterator[Event]:
        """Add ``data`` and yield every complete event it finishes."""
        self._buf += data
        while self._buf:
            event = self._next()
            if event is None:
                return
            yield event

    def _next(self) -> Event | None:
        # A loop over the noise, not a call per noise byte (a few thousand bytes of garbage were a
        # RecursionError); bounded by the buffer.
        buf = self._buf
        while buf:
            head = buf[0]
            if head in b"$%":
                return self._packet(head)
            del buf[0]
            if head == 0x2B:
                return Ack()
            if head == 0x2D:
                return Nak()
            self.garbage += 1
        return None

    def _packet(self, head: int) -> Event | None:
        buf = self._buf
        end = buf.find(b"#", self._searched)
        if end < 0:
            self._searched = max(len(buf), 1)
        if end < 0 or len(buf) < end + 3:
            if len(buf) > self.max_packet:
                raise GdbRemoteProtocolError(f"packet longer than {self.max_packet} bytes: {_show(bytes(buf))}")
            return None
        data = bytes(buf[1:end])
        cs_text = bytes(buf[end + 1:end + 3])
        del buf[:end + 3]
        self._searched = 1
        try:
            received = int(cs_text, 16)
        except ValueError:
            raise GdbRemoteProtocolError(f"malformed checksum {cs_text!r} after packet {_show(data)}") from None
        if head == 0x25:
            return Notification(data)
        expected = checksum(data)
        if expected != received:
            return BadChecksum(data, expected, received)
        return Packet(data)


# --- replies ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopReply:
    """Why the target stopped. ``kind`` is ``"signal"``, ``"exited"`` or ``"terminated"``;
    ``watch_kind`` is ``"watch"``, ``"rwatch"`` or ``"awatch"`` when a watchpoint fired, with its
    ``watch_address``. ``registers`` maps register numbers (as the stub numbers them) to raw bytes."""

    kind: str
    signal: int
    thread: str | None = None
    watch_kind: str | None = None
    watch_address: int | None = None
    registers: dict[int, bytes] = field(default_factory=dict)
    reason: str | None = None

    @property
    def is_exit(self) -> bool:
        """True when the target exited or was killed (no more stops will come)."""
        return self.kind != "signal"


_WATCH_KEYS = {b"watch": "watch", b"rwatch": "rwatch", b"awatch": "awatch"}


def parse_stop_reply(reply: bytes) -> StopReply:
    """Parse ``S NN``, ``T NN k:v;…``, ``W NN`` and ``X NN`` stop replies."""
    if len(reply) < 3 or reply[:1] not in b"STWX":
        raise GdbRemoteProtocolError(f"unexpected packet {_show(reply)} where a stop reply was expected")
    try:
        sig = int(reply[1:3], 16)
    except ValueError:
        raise GdbRemoteProtocolError(f"malformed stop reply {_show(reply)}") from None
    kind = {b"W": "exited", b"X": "terminated"}.get(reply[:1], "signal")
    if reply[:1] != b"T":
        return StopReply(kind, sig)
    return _parse_t_pairs(reply, sig)


def _parse_t_pairs(reply: bytes, sig: int) -> StopReply:
    thread = watch_kind = reason = None
    watch_address = None
    registers: dict[int, bytes] = {}
    for pair in reply[3:].split(b";"):
        if not pair:
            continue
        key, sep, value = pair.partition(b":")
        if not sep:
            raise GdbRemoteProtocolError(f"malformed stop reply {_show(reply)}: {_show(pair)} has no ':'")
        if key == b"thread":
            thread = value.decode("ascii", "replace")
        elif key in _WATCH_KEYS:
            watch_kind, watch_address = _WATCH_KEYS[key], _hex_int(value, reply)
        elif key in (b"swbreak", b"hwbreak", b"library", b"replaylog", b"exec", b"create", b"core"):
            reason = key.decode()
        elif _is_hex(key):
            registers[int(key, 16)] = decode_hex(value, f"register value in stop reply {_show(reply)}")
    return StopReply("signal", sig, thread, watch_kind, watch_address, registers, reason)


def _is_hex(text: bytes) -> bool:
    return bool(text) and all(c in b"0123456789abcdefABCDEF" for c in text)


def _hex_int(value: bytes, packet: bytes) -> int:
    if not _is_hex(value):
        raise GdbRemoteProtocolError(f"malformed address {_show(value)} in packet {_show(packet)}")
    return int(value, 16)


def parse_supported(reply: bytes) -> dict[str, str | bool]:
    """Parse a ``qSupported`` reply: ``name=value`` → str, ``name+`` → True, ``name-`` → False."""
    features: dict[str, str | bool] = {}
    for item in reply.decode("ascii", "replace").split(";"):
        if not item:
            continue
        if "=" in item:
            name, _, value = item.partition("=")
            features[name] = value
        elif item[-1] in "+-?":
            features[item[:-1]] = item[-1] == "+"
        else:
            features[item] = True
    return features


def parse_thread_list(reply: bytes) -> tuple[list[str], bool]:
    """Parse one ``qfThreadInfo``/``qsThreadInfo`` reply: ``(thread ids, last chunk?)``."""
    if reply == b"l":
        return [], True
    if reply[:1] not in (b"m", b"l"):
        raise GdbRemoteProtocolError(f"unexpected packet {_show(reply)} in a thread list")
    ids = [t.decode("ascii", "replace") for t in reply[1:].split(b",") if t]
    return ids, reply[:1] == b"l"
