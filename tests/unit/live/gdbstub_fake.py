"""A scripted gdb stub for the live-session tests (drives tests/support/mock_transport.py::MockTransport).

Two vCPUs, an x86-64 target description, a little memory, Z0–Z4 bookkeeping. ``vCont;c`` stops at
once on the first inserted point it can "hit" (breakpoints report rip = address, write watchpoints
bump the watched u64 and report ``watch:``), or keeps running until an interrupt. Every packet is
logged in ``log`` so tests can check what the client sent. ``stale_watch`` makes the next stop reply
(of a continue or a step) also carry ``watch:ADDR``, as QEMU 7.2 does for a vCPU that kept an
unreported watchpoint hit from an earlier stop.
"""

from __future__ import annotations

from kcrash.live.gdbremote.packets import INTERRUPT
from support.mock_transport import MockReply, MockTransport, Raw

TARGET_XML = b"""<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target>
<architecture>i386:x86-64</architecture><xi:include href="core.xml"/></target>"""

_REGS = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", *[f"r{i}" for i in range(8, 16)], "rip"]
CORE_XML = ("<?xml version=\"1.0\"?><feature name=\"org.gnu.gdb.i386.core\">"
            + "".join(f'<reg name="{n}" bitsize="64"/>' for n in _REGS)
            + '<reg name="eflags" bitsize="32"/><reg name="cs" bitsize="32"/>'
            + '<reg name="gs_base" bitsize="64"/><reg name="k_gs_base" bitsize="64"/></feature>').encode()


class FakeStub:
    """State of the fake target; call :meth:`transport` to get a MockTransport bound to it."""

    def __init__(self, *, memory_base: int = 0xFFFFFFFF81000000, memory_size: int = 0x4000,
                 supported: bytes = b"PacketSize=1000;qXfer:features:read+;vContSupported+",
                 z_reply: bytes = b"OK", hw_limit: int | None = None, run_forever: bool = False) -> None:
        self.memory_base = memory_base
        self.memory = bytearray(memory_size)
        self.regs = {n: 0 for n in _REGS} | {"eflags": 0x246, "cs": 0x10, "gs_base": 0, "k_gs_base": 0}
        self.points: set[tuple[int, int, int]] = set()
        self.log: list[bytes] = []
        self.supported = supported
        self.z_reply = z_reply
        self.hw_limit = hw_limit
        self.run_forever = run_forever
        self.running = False
        self.detached = False
        self.thread = "01"
        self.phys = False
        self.stale_watch: int | None = None

    def transport(self) -> MockTransport:
        return MockTransport(self.handle)

    # --- packet handling -------------------------------------------------------------------------

    def handle(self, data: bytes) -> MockReply:
        self.log.append(data)
        if data == INTERRUPT:
            return self._stop(b"T02thread:%s;" % self.thread.encode()) if self.running else None
        for prefix, fn in self._table():
            if data.startswith(prefix):
                return fn(data)
        return b""

    def _table(self) -> list[tuple[bytes, object]]:
        return [(b"qSupported", lambda d: self.supported), (b"qXfer:features:read:", self._xfer),
                (b"?", lambda d: b"T05thread:01;"), (b"g", self._g), (b"p", self._p), (b"m", self._m),
                (b"X", self._x), (b"M", self._bigm), (b"Z", self._z), (b"z", self._z), (b"vCont?", self._vq),
                (b"vCont;c", self._cont), (b"vCont;s", self._step), (b"c", self._cont), (b"s", self._step),
                (b"H", lambda d: b"OK"), (b"qfThreadInfo", lambda d: b"m01,02"),
                (b"qsThreadInfo", lambda d: b"l"), (b"Qqemu.PhyMemMode:", self._phys), (b"D", self._detach),
                (b"qRcmd,", lambda d: b"OK"), (b"QStartNoAckMode", lambda d: b"OK")]

    def _xfer(self, data: bytes) -> bytes:
        annex, _, rest = data[len(b"qXfer:features:read:"):].partition(b":")
        doc = {b"target.xml": TARGET_XML, b"core.xml": CORE_XML}.get(annex)
        if doc is None:
            return b"E00"
        off, length = (int(x, 16) for x in rest.split(b","))
        chunk = doc[off:off + length]
        return (b"l" if off + length >= len(doc) else b"m") + chunk

    def _g(self, data: bytes) -> bytes:
        out = b"".join(self.regs[n].to_bytes(8, "little") for n in _REGS)
        out += self.regs["eflags"].to_bytes(4, "little") + self.regs["cs"].to_bytes(4, "little")
        out += self.regs["gs_base"].to_bytes(8, "little") + self.regs["k_gs_base"].to_bytes(8, "little")
        return out.hex().encode()

    def _p(self, data: bytes) -> bytes:
        num = int(data[1:], 16)
        return self.regs[_REGS[num]].to_bytes(8, "little").hex().encode() if num < len(_REGS) else b"E01"

    def _span(self, data: bytes) -> tuple[int, int] | None:
        addr, _, length = data[1:].split(b":")[0].partition(b",")
        off = int(addr, 16) - self.memory_base
        n = int(length, 16)
        return (off, n) if off >= 0 and off + n <= len(self.memory) else None

    def _m(self, data: bytes) -> bytes:
        span = self._span(data)
        if span is None:
            return b"E14"
        return bytes(self.memory[span[0]:span[0] + span[1]]).hex().encode()

    def _x(self, data: bytes) -> bytes:
        span = self._span(data)
        if span is None:
            return b"E14"
        payload = data.split(b":", 1)[1]
        self.memory[span[0]:span[0] + span[1]] = payload  # tests write no escaped bytes
        return b"OK"

    def _bigm(self, data: bytes) -> bytes:
        span = self._span(data)
        if span is None:
            return b"E14"
        self.memory[span[0]:span[0] + span[1]] = bytes.fromhex(data.split(b":", 1)[1].decode())
        return b"OK"

    def _z(self, data: bytes) -> bytes:
        kind, addr, length = (int(x, 16) for x in data[1:].split(b","))
        key = (kind, addr, length)
        if data[:1] == b"Z":
            if self.z_reply != b"OK":
                return self.z_reply
            hw = sum(1 for p in self.points if p[0] != 0)
            if kind != 0 and self.hw_limit is not None and hw >= self.hw_limit:
                return b"E22"
            self.points.add(key)
        else:
            if key not in self.points:
                return b"E22"
            self.points.discard(key)
        return b"OK"

    def _vq(self, data: bytes) -> bytes:
        return b"vCont;c;C;s;S"

    def _stop(self, reply: bytes) -> bytes:
        self.running = False
        if self.stale_watch is not None and reply.startswith(b"T05") and b"watch:" not in reply:
            reply += b"watch:%x;" % self.stale_watch
            self.stale_watch = None  # QEMU clears the hit once it reports it
        return reply

    def _cont(self, data: bytes) -> MockReply:
        self.running = True
        if self.run_forever:
            return None
        for kind, addr, _length in sorted(self.points):
            if kind in (0, 1):
                self.regs["rip"] = addr
                return self._stop(b"T05thread:%s;" % self.thread.encode())
            if kind in (2, 4):
                off = addr - self.memory_base
                value = int.from_bytes(self.memory[off:off + 8], "little") + 1
                self.memory[off:off + 8] = value.to_bytes(8, "little")
                return self._stop(b"T05thread:%s;watch:%x;" % (self.thread.encode(), addr))
        return None

    def _step(self, data: bytes) -> bytes:
        self.regs["rip"] += 1
        return self._stop(b"T05thread:%s;" % self.thread.encode())

    def _phys(self, data: bytes) -> bytes:
        self.phys = data.endswith(b"1")
        return b"OK"

    def _detach(self, data: bytes) -> bytes:
        self.detached = True
        return b"OK"


__all__ = ["CORE_XML", "TARGET_XML", "FakeStub", "Raw"]
