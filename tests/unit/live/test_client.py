"""GdbRemoteClient against a scripted stub (MockTransport): handshake, registers, memory, points,
execution, acks, timeouts, dead peers and malformed packets."""

from __future__ import annotations

import time

import pytest
from gdbstub_fake import FakeStub

from kcrash.errors import FaultError, GdbRemoteProtocolError, LiveTargetError, TargetNotStoppedError
from kcrash.live.gdbremote.client import GdbRemoteClient
from kcrash.live.gdbremote.packets import frame
from kcrash.live.gdbremote.transport import open_transport
from support.mock_transport import MockTransport, Raw


def connected(stub: FakeStub, **kw: float) -> GdbRemoteClient:
    client = GdbRemoteClient(stub.transport(), **kw)
    client.connect()
    return client


def test_handshake_reads_features_and_register_layout_from_xml() -> None:
    stub = FakeStub()
    client = connected(stub)
    assert client.features["PacketSize"] == "1000" and client.packet_size == 0x1000
    assert client.architecture == "i386:x86-64"
    assert [r.name for r in client.registers][:3] == ["rax", "rbx", "rcx"]
    assert b"qXfer:features:read:core.xml:0,ff0" in stub.log  # the include was followed
    assert client.last_stop is not None and client.last_stop.thread == "01"


def test_no_ack_mode_is_negotiated_when_offered() -> None:
    stub = FakeStub(supported=b"PacketSize=400;QStartNoAckMode+")
    client = connected(stub)
    assert not client.ack_mode and b"QStartNoAckMode" in stub.log
    assert client.registers == []  # no qXfer: layout unknown, and 'g' says so
    with pytest.raises(GdbRemoteProtocolError, match="register layout"):
        client.read_registers()


def test_stale_stop_reply_on_connect_is_skipped() -> None:
    stub = FakeStub()
    transport = stub.transport()
    transport.push(b"T02thread:01;")  # QEMU stops a running guest on connect and says so
    client = GdbRemoteClient(transport)
    client.connect()
    assert client.features["PacketSize"] == "1000"


def test_registers_g_and_p() -> None:
    stub = FakeStub()
    stub.regs.update(rip=0xFFFFFFFF81000010, rsp=0xFFFFC90000003F00, eflags=0x202)
    client = connected(stub)
    regs = client.read_registers()
    assert regs["rip"] == 0xFFFFFFFF81000010 and regs["eflags"] == 0x202 and regs["gs_base"] == 0
    assert client.read_register("rsp") == 0xFFFFC90000003F00


def test_memory_reads_are_chunked_and_faults_name_the_address() -> None:
    stub = FakeStub()
    stub.memory[:6] = b"kcrash"
    client = connected(stub)
    assert client.read_memory(stub.memory_base, 6) == b"kcrash"
    data = client.read_memory(stub.memory_base, 5000)
    assert len(data) == 5000
    assert sum(1 for p in stub.log if p.startswith(b"m")) == 1 + 3  # 2048 bytes per packet
    with pytest.raises(FaultError) as info:
        client.read_memory(0x1000, 8)
    assert info.value.address == 0x1000 and "E14" in str(info.value)


def test_memory_write_prefers_binary_x() -> None:
    stub = FakeStub()
    client = connected(stub)
    client.write_memory(stub.memory_base + 16, b"hello")
    assert stub.memory[16:21] == b"hello"
    assert any(p.startswith(b"X") and p.endswith(b"hello") for p in stub.log)


def test_points_inserted_unsupported_and_refused() -> None:
    stub = FakeStub()
    client = connected(stub)
    assert client.insert_point("write", 0x1000, 8) and (2, 0x1000, 8) in stub.points
    assert client.remove_point("write", 0x1000, 8) and not stub.points
    stub.z_reply = b""
    assert client.insert_point("read", 0x1000, 8) is False
    stub.z_reply = b"E22"
    with pytest.raises(LiveTargetError, match="refused 'Z1,1000,1'"):
        client.insert_point("hardware", 0x1000, 1)


def test_continue_stop_and_interrupt() -> None:
    stub = FakeStub()
    client = connected(stub)
    client.insert_point("software", stub.memory_base + 4, 1)
    client.resume()
    stop = client.wait_stop(1.0)
    assert stop is not None and stop.thread == "01" and not client.running
    stub.points.clear()
    stub.run_forever = True
    client.resume()
    assert client.wait_stop(0.01) is None and client.running
    with pytest.raises(TargetNotStoppedError):
        client.request(b"g")
    assert client.interrupt().signal == 2 and not client.running
    assert client.step("01").signal == 5 and b"vCont;s:01" in stub.log


def test_silent_stub_times_out_with_the_packet_named() -> None:
    client = GdbRemoteClient(MockTransport(lambda data: None), timeout=0.2)
    start = time.monotonic()
    with pytest.raises(LiveTargetError, match="no reply from mock to 'qSupported"):
        client.connect()
    assert time.monotonic() - start < 2.0


def test_peer_dying_mid_command_is_a_clear_error() -> None:
    stub = FakeStub()
    transport = stub.transport()
    client = GdbRemoteClient(transport, timeout=5.0)
    client.connect()
    transport.close_peer()
    start = time.monotonic()
    with pytest.raises(LiveTargetError, match="closed the connection"):
        client.read_memory(stub.memory_base, 8)
    assert time.monotonic() - start < 1.0


def test_malformed_and_unexpected_replies_name_the_packet() -> None:
    replies = {b"m": b"zz!!"}
    stub = FakeStub()

    def handler(data: bytes) -> bytes | None:
        for prefix, reply in replies.items():
            if data.startswith(prefix):
                return reply
        return stub.handle(data)  # type: ignore[return-value]

    client = GdbRemoteClient(MockTransport(handler))
    client.connect()
    with pytest.raises(GdbRemoteProtocolError, match=r"memory reply to 'm.*': 'zz!!'"):
        client.read_memory(stub.memory_base, 2)
    replies[b"qfThreadInfo"] = b"OK"
    with pytest.raises(GdbRemoteProtocolError, match="'OK' in a thread list"):
        client.thread_ids()


def test_nak_triggers_a_resend_and_bad_checksums_are_nakked() -> None:
    stub = FakeStub()
    sent_once: set[bytes] = set()

    def handler(data: bytes) -> object:
        if data == b"g" and data not in sent_once:
            sent_once.add(data)
            return Raw(b"$" + b"00" * 8 + b"#00")  # corrupt checksum: the client must answer '-'
        return stub.handle(data)

    transport = MockTransport(handler)  # type: ignore[arg-type]
    client = GdbRemoteClient(transport)
    client.connect()
    transport._last = frame(stub._g(b"g"))  # what the stub "resends" on '-'
    regs = client.read_registers()
    assert regs["rax"] == 0 and client.counters.packets_received >= 5


def test_counters_count_packets_and_bytes() -> None:
    stub = FakeStub()
    client = connected(stub)
    before = client.counters.packets_sent
    client.read_memory(stub.memory_base, 8)
    assert client.counters.packets_sent == before + 1
    assert client.counters.bytes_received > client.counters.packets_received * 4


def test_open_transport_rejects_garbage_targets() -> None:
    with pytest.raises(LiveTargetError, match="neither HOST:PORT nor a serial"):
        open_transport("no-such-thing")
    with pytest.raises(LiveTargetError, match="cannot connect"):
        open_transport("127.0.0.1:1", connect_timeout=0.5)


def test_serial_transport_over_a_pty() -> None:
    import os
    import threading

    from kcrash.live.gdbremote.packets import PacketParser
    from kcrash.live.gdbremote.transport import SerialTransport

    master, slave = os.openpty()
    path = os.ttyname(slave)
    stub = FakeStub()

    def serve() -> None:  # the stub end of the line: answer each packet, kgdb-style with acks
        parser = PacketParser()
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:
                return
            for event in parser.feed(data):
                if hasattr(event, "data"):
                    reply = stub.handle(event.data)  # type: ignore[union-attr]
                    if isinstance(reply, bytes):
                        os.write(master, b"+" + frame(reply))

    threading.Thread(target=serve, daemon=True).start()
    transport = SerialTransport(path, 115200)
    client = GdbRemoteClient(transport, timeout=2.0)
    try:
        assert client.connect().thread == "01"
        stub.memory[:4] = b"kgdb"
        assert client.read_memory(stub.memory_base, 4) == b"kgdb"
        assert transport.description == f"{path}@115200"
    finally:
        client.close()
        os.close(master)
        os.close(slave)
    with pytest.raises(LiveTargetError, match="unsupported baud"):
        SerialTransport(path, 12345)
