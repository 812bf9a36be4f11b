"""
kcrash.live.gdbremote.client
============================

:class:`GdbRemoteClient`: request/response over a :class:`~kcrash.live.gdbremote.transport.Transport`.
It does the handshake (acks, ``qSupported``, ``QStartNoAckMode``, the target description with its
includes, ``?``), registers (``g``/``p``/``P``, laid out from the target XML), memory (``m``,
``M``/``X``, QEMU's ``Qqemu.PhyMemMode``), break- and watchpoints (``Z0``–``Z4``/``z``), execution
(``c``/``s``/``vCont``, the 0x03 interrupt, stop replies), vCPU threads (``Hg``/``Hc``,
``qfThreadInfo``), ``qRcmd`` and ``D``. Every wait has a deadline: a silent or dead peer gives a
:class:`~kcrash.errors.LiveTargetError` naming the packet, never a hang. Counters of packets and
bytes are kept in :attr:`GdbRemoteClient.counters`. No knowledge of kernels or symbols.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import deque
from dataclasses import dataclass

from kcrash.errors import FaultError, GdbRemoteProtocolError, LiveTargetError, TargetNotStoppedError
from kcrash.live.gdbremote.packets import (
    ACK,
    INTERRUPT,
    NAK,
    Ack,
    BadChecksum,
    Event,
    Nak,
    Notification,
    Packet,
    PacketParser,
    StopReply,
    decode_hex,
    encode_hex,
    error_code_or_none,
    escape_binary,
    frame,
    parse_stop_reply,
    parse_supported,
    parse_thread_list,
    rle_decode,
)
from kcrash.live.gdbremote.tdesc import RegisterInfo, number_registers, parse_target_xml
from kcrash.live.gdbremote.transport import Transport
from kcrash.metrics import COUNTERS

__all__ = ["BREAKPOINT_TYPES", "ClientCounters", "GdbRemoteClient"]

#: ``Z`` packet types by name
BREAKPOINT_TYPES = {"software": 0, "hardware": 1, "write": 2, "read": 3, "access": 4}
_CLIENT_FEATURES = b"qSupported:multiprocess-;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386"
_STALE_STOP = re.compile(rb"[ST][0-9a-fA-F]{2}($|[0-9a-zA-Z]+:)")


@dataclass(slots=True)
class ClientCounters:
    """Traffic counters (packets exclude ``+``/``-`` acks; bytes include everything)."""

    packets_sent: int = 0
    packets_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmits: int = 0


def _show(data: bytes, limit: int = 40) -> str:
    text = data[:limit].decode("latin-1")
    return repr(text + ("…" if len(data) > limit else ""))


class GdbRemoteClient:
    """One connection to a GDB remote stub (all-stop mode)."""

    def __init__(self, transport: Transport, *, timeout: float = 5.0, max_retries: int = 3) -> None:
        self.transport = transport
        self.timeout = timeout
        self.max_retries = max_retries
        self.counters = ClientCounters()
        self.features: dict[str, str | bool] = {}
        self.registers: list[RegisterInfo] = []
        self.architecture: str | None = None
        self.ack_mode = True
        self.running = False
        self.closed = False
        self.last_stop: StopReply | None = None
        self.console: list[str] = []
        self._parser = PacketParser()
        self._events: deque[Event] = deque()
        self._g_layout: dict[str, tuple[int, int]] = {}
        self._selected: dict[str, str] = {}
        self._x_supported: bool | None = None
        self._vcont: set[str] | None = None
        self._ack_pending = False

    # --- framing over the transport ---------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.closed:
            raise LiveTargetError(f"connection to {self.transport.description} is closed")
        if self._ack_pending:
            # The ack of the last packet travels with the next write (one segment, not two).
            data, self._ack_pending = ACK + data, False
        try:
            self.transport.send(data)
        except LiveTargetError:
            self.closed = True
            raise
        self.counters.bytes_sent += len(data)
        COUNTERS.gdb_bytes_sent += len(data)

    def _timeout(self, what: bytes, seconds: float) -> LiveTargetError:
        return LiveTargetError(f"no reply from {self.transport.description} to {_show(what)} within {seconds:g} s")

    def _next_event(self, deadline: float, what: bytes) -> Event | None:
        if self._ack_pending and not self._events:
            self._write(b"")  # never wait with an ack still owed
        while not self._events:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                data = self.transport.recv(min(left, 1.0))
            except LiveTargetError as exc:
                self.closed = True
                raise LiveTargetError(f"{exc} (while waiting for the reply to {_show(what)})") from exc
            self.counters.bytes_received += len(data)
            COUNTERS.gdb_bytes_received += len(data)
            self._events.extend(self._parser.feed(data))
        return self._events.popleft()

    def send_packet(self, data: bytes, timeout: float | None = None) -> None:
        """Send one packet (escaped by the caller); in ack mode wait for ``+`` and resend on ``-``."""
        framed = frame(data)
        self._write(framed)
        self.counters.packets_sent += 1
        COUNTERS.gdb_packets_sent += 1
        if not self.ack_mode:
            return
        seconds = timeout or self.timeout
        deadline = time.monotonic() + seconds
        retries = 0
        while True:
            event = self._next_event(deadline, data)
            if event is None:
                raise self._timeout(data, seconds)
            if isinstance(event, Ack):
                return
            if isinstance(event, Nak):
                retries += 1
                if retries > self.max_retries:
                    raise GdbRemoteProtocolError(f"packet {_show(data)} rejected {retries} times by the stub")
                self.counters.retransmits += 1
                self._write(framed)
            else:  # a packet arrived before the ack: keep it for the reader
                self._events.appendleft(event)
                return

    def receive_packet(self, timeout: float | None = None, what: bytes = b"") -> bytes:
        """Wait for the next packet and return its RLE-expanded data (console ``O`` packets excluded)."""
        seconds = self.timeout if timeout is None else timeout
        data = self.receive_packet_or_none(seconds, what)
        if data is None:
            raise self._timeout(what, seconds)
        return data

    def receive_packet_or_none(self, timeout: float, what: bytes = b"") -> bytes | None:
        """Like :meth:`receive_packet`, but return None when nothing arrives within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            event = self._next_event(deadline, what)
            if event is None:
                return None
            if isinstance(event, (Ack, Nak, Notification)):
                continue
            if isinstance(event, BadChecksum):
                self._bad_checksum(event)
                continue
            assert isinstance(event, Packet)
            self.counters.packets_received += 1
            COUNTERS.gdb_packets_received += 1
            if self.ack_mode:
                self._ack_pending = True
            data = rle_decode(event.data)
            if data[:1] == b"O" and data != b"OK" and self._is_console(data):
                continue
            return data

    def _bad_checksum(self, event: BadChecksum) -> None:
        if not self.ack_mode:
            raise GdbRemoteProtocolError(f"packet {_show(event.data)} has checksum {event.received:02x}, "
                                         f"expected {event.expected:02x}")
        self._write(NAK)

    def _is_console(self, data: bytes) -> bool:
        try:
            self.console.append(bytes.fromhex(data[1:].decode("ascii")).decode("utf-8", "replace"))
        except ValueError:
            return False
        return True

    def request(self, data: bytes, timeout: float | None = None) -> bytes:
        """Send a packet and return the reply; the target must be stopped."""
        if self.running:
            raise TargetNotStoppedError(f"cannot send {_show(data)}: the target is running")
        self.send_packet(data, timeout)
        return self.receive_packet(timeout, data)

    def _request_ok(self, data: bytes, what: str) -> None:
        reply = self.request(data)
        if reply != b"OK":
            raise LiveTargetError(f"{what} failed: stub answered {_show(reply)} to {_show(data)}")

    # --- handshake --------------------------------------------------------------------------

    def connect(self) -> StopReply:
        """Negotiate features, no-ack mode and the register layout; return why the target is stopped."""
        self._write(ACK)
        reply = self.request(_CLIENT_FEATURES)
        # QEMU stops a running guest when gdb connects and may send that stop reply first.
        while _STALE_STOP.match(reply):
            reply = self.receive_packet(what=_CLIENT_FEATURES)
        self.features = parse_supported(reply)
        if self.features.get("QStartNoAckMode") and self.request(b"QStartNoAckMode") == b"OK":
            self.ack_mode = False
        if self.features.get("qXfer:features:read"):
            self._load_target_description()
        stop = parse_stop_reply(self.request(b"?"))
        self.last_stop = stop
        if stop.thread is not None:
            self._selected = {"g": stop.thread}
        return stop

    @property
    def packet_size(self) -> int:
        """The largest packet the stub accepts (``PacketSize``, default 400 bytes)."""
        value = self.features.get("PacketSize")
        try:
            return int(value, 16) if isinstance(value, str) else 400
        except ValueError:
            return 400

    def read_xfer(self, obj: str, annex: str) -> bytes:
        """Read a whole ``qXfer:<obj>:read:<annex>`` object."""
        chunk = max(self.packet_size - 16, 64)
        out = bytearray()
        while True:
            packet = f"qXfer:{obj}:read:{annex}:{len(out):x},{chunk:x}".encode()
            reply = self.request(packet)
            if reply[:1] not in (b"m", b"l"):
                raise GdbRemoteProtocolError(f"unexpected reply {_show(reply)} to {_show(packet)}")
            out += reply[1:]
            if reply[:1] == b"l" or len(reply) == 1:
                return bytes(out)

    def _load_target_description(self) -> None:
        pending, seen = ["target.xml"], set()
        regs: list[RegisterInfo] = []
        while pending:
            annex = pending.pop(0)
            if annex in seen:
                continue
            seen.add(annex)
            desc = parse_target_xml(self.read_xfer("features", annex), annex)
            self.architecture = self.architecture or desc.architecture
            regs.extend(desc.registers)
            pending.extend(desc.includes)
        self.registers = number_registers(regs)

    # --- registers --------------------------------------------------------------------------

    def read_registers(self) -> dict[str, int]:
        """Read the ``g`` block of the selected thread: register name → value (little-endian)."""
        raw = decode_hex(self.request(b"g"), "register block ('g' reply)")
        if not self.registers:
            raise GdbRemoteProtocolError("the stub gave no target description: register layout unknown")
        values, pos = {}, 0
        for reg in self.registers:
            if pos + reg.size > len(raw):
                break
            self._g_layout[reg.name] = (pos, reg.size)
            values[reg.name] = int.from_bytes(raw[pos:pos + reg.size], "little")
            pos += reg.size
        return values

    def register_info(self, name: str) -> RegisterInfo:
        """Return the description of register ``name``."""
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise LiveTargetError(f"the target has no register {name!r}")

    def read_register(self, name: str) -> int:
        """Read one register with ``p``."""
        reg = self.register_info(name)
        reply = self.request(b"p%x" % reg.regnum)
        if error_code_or_none(reply) is not None or not reply:
            raise LiveTargetError(f"cannot read register {name}: stub answered {_show(reply)}")
        return int.from_bytes(decode_hex(reply, f"register {name} ('p' reply)"), "little")

    def write_register(self, name: str, value: int) -> None:
        """Write one register with ``P``."""
        reg = self.register_info(name)
        data = (value & ((1 << reg.bitsize) - 1)).to_bytes(reg.size, "little")
        self._request_ok(b"P%x=" % reg.regnum + encode_hex(data), f"writing register {name}")

    # --- memory -----------------------------------------------------------------------------

    @property
    def max_read(self) -> int:
        """The largest ``m`` read per packet (half the packet size, hex-encoded reply)."""
        return max(min(self.packet_size // 2, 4096), 16)

    def read_memory(self, address: int, size: int, *, physical: bool = False) -> bytes:
        """Read ``size`` bytes; raise FaultError at the first unreadable byte."""
        out = bytearray()
        while len(out) < size:
            pos = address + len(out)
            n = min(size - len(out), self.max_read)
            packet = b"m%x,%x" % (pos, n)
            reply = self.request(packet)
            if error_code_or_none(reply) is not None or not reply:
                raise FaultError(pos, physical, f"the stub answered {reply.decode('latin-1') or 'nothing'}")
            data = decode_hex(reply, f"memory reply to {_show(packet)}")
            if len(data) > n:
                raise GdbRemoteProtocolError(f"stub returned {len(data)} bytes to {_show(packet)}")
            out += data
        return bytes(out)

    def write_memory(self, address: int, data: bytes) -> None:
        """Write ``data`` with ``X`` (binary) when the stub has it, else ``M``."""
        if self._x_supported is None:
            self._x_supported = self.request(b"X%x,0:" % address) == b"OK"
        step = max(self.packet_size // 2 - 32, 16)
        for off in range(0, len(data), step):
            part = data[off:off + step]
            if self._x_supported:
                packet = b"X%x,%x:" % (address + off, len(part)) + escape_binary(part)
            else:
                packet = b"M%x,%x:" % (address + off, len(part)) + encode_hex(part)
            reply = self.request(packet)
            if reply != b"OK":
                raise FaultError(address + off, False, f"write refused: stub answered {_show(reply)}")

    def set_physical_mode(self, enabled: bool) -> bool:
        """Switch QEMU's gdbstub between virtual and physical addresses; False if unsupported."""
        return self.request(b"Qqemu.PhyMemMode:%d" % int(enabled)) == b"OK"

    # --- break- and watchpoints --------------------------------------------------------------

    def insert_point(self, kind: str, address: int, length: int) -> bool:
        """Insert a ``Z`` point (``kind`` a key of :data:`BREAKPOINT_TYPES`); False if the stub
        does not support that type; LiveTargetError if it refuses (e.g. out of debug registers)."""
        return self._point(b"Z", kind, address, length)

    def remove_point(self, kind: str, address: int, length: int) -> bool:
        """Remove a ``z`` point; False if the type is unsupported."""
        return self._point(b"z", kind, address, length)

    def _point(self, op: bytes, kind: str, address: int, length: int) -> bool:
        packet = op + b"%d,%x,%x" % (BREAKPOINT_TYPES[kind], address, length)
        reply = self.request(packet)
        if reply == b"OK":
            return True
        if reply == b"":
            return False
        raise LiveTargetError(f"stub refused {_show(packet)} ({kind} point at {address:#x}): {_show(reply)}")

    # --- threads and execution ----------------------------------------------------------------

    def thread_ids(self) -> list[str]:
        """Return every thread (QEMU: one per vCPU)."""
        ids, done = parse_thread_list(self.request(b"qfThreadInfo"))
        while not done:
            more, done = parse_thread_list(self.request(b"qsThreadInfo"))
            ids += more
        return ids

    def select_thread(self, thread: str, op: str = "g") -> None:
        """Select ``thread`` for register/memory access (``g``) or execution (``c``)."""
        if self._selected.get(op) == thread:
            return
        self._request_ok(f"H{op}{thread}".encode(), f"selecting thread {thread}")
        self._selected[op] = thread

    def _vcont_actions(self) -> set[str]:
        if self._vcont is None:
            reply = self.request(b"vCont?")
            self._vcont = set(reply.decode("ascii", "replace").split(";")[1:]) if reply.startswith(b"vCont") else set()
        return self._vcont

    def resume(self, *, step_thread: str | None = None) -> None:
        """Continue every vCPU, or single-step only ``step_thread`` (others stay stopped)."""
        if self.running:
            raise LiveTargetError("the target is already running")
        if step_thread is not None and "s" in self._vcont_actions():
            packet = f"vCont;s:{step_thread}".encode()
        elif step_thread is not None:
            self.select_thread(step_thread, "c")
            packet = b"s"
        else:
            packet = b"vCont;c" if "c" in self._vcont_actions() else b"c"
        self.send_packet(packet)
        self.running = True
        self._selected.pop("g", None)

    def wait_stop(self, timeout: float) -> StopReply | None:
        """Wait up to ``timeout`` s for a stop reply; None if the target is still running."""
        if not self.running:
            raise LiveTargetError("wait_stop() while the target is not running")
        data = self.receive_packet_or_none(timeout, b"(stop reply)")
        if data is None:
            return None
        stop = parse_stop_reply(data)
        self.running = False
        self.last_stop = stop
        if stop.thread is not None:
            self._selected["g"] = stop.thread
        return stop

    def step(self, thread: str, timeout: float | None = None) -> StopReply:
        """Single-step ``thread`` and return the stop reply."""
        self.resume(step_thread=thread)
        stop = self.wait_stop(self.timeout if timeout is None else timeout)
        if stop is None:
            raise LiveTargetError(f"single-step of thread {thread} did not stop within {self.timeout:g} s")
        return stop

    def interrupt(self, timeout: float | None = None) -> StopReply:
        """Stop a running target (raw 0x03) and return the stop reply."""
        self._write(INTERRUPT)
        stop = self.wait_stop(self.timeout if timeout is None else timeout)
        if stop is None:
            raise LiveTargetError(f"{self.transport.description} did not stop within {self.timeout:g} s "
                                  f"of an interrupt")
        return stop

    def monitor(self, command: str) -> str:
        """Run a monitor command (``qRcmd``; QEMU: HMP) and return its output."""
        start = len(self.console)
        reply = self.request(b"qRcmd," + encode_hex(command.encode()))
        if reply != b"OK" and error_code_or_none(reply) is None and reply:
            self.console.append(decode_hex(reply, "qRcmd reply").decode("utf-8", "replace"))
        return "".join(self.console[start:])

    def detach(self) -> None:
        """Send ``D`` (QEMU resumes the guest) and close the connection."""
        try:
            if not self.closed and not self.running:
                self.request(b"D", timeout=min(self.timeout, 2.0))
        finally:
            self.close()

    def close(self) -> None:
        """Close the transport without detaching."""
        if self._ack_pending and not self.closed:
            with contextlib.suppress(LiveTargetError):
                self._write(b"")
        self.closed = True
        self.transport.close()
