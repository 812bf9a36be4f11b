"""Pure framing of the GDB remote protocol: no sockets."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcrash.errors import GdbRemoteProtocolError
from kcrash.live.gdbremote.packets import (
    Ack,
    BadChecksum,
    Nak,
    Notification,
    Packet,
    PacketParser,
    checksum,
    decode_hex,
    error_code_or_none,
    escape_binary,
    frame,
    parse_stop_reply,
    parse_supported,
    parse_thread_list,
    rle_decode,
    unescape_binary,
)
from kcrash.live.gdbremote.tdesc import number_registers, parse_target_xml


def test_frame_and_checksum_match_the_spec_examples() -> None:
    assert frame(b"?") == b"$?#3f"
    assert frame(b"g") == b"$g#67"
    assert frame(b"") == b"$#00"
    assert checksum(b"OK") == 0x9A


@given(st.binary(max_size=300))
def test_escape_roundtrip_and_no_special_bytes_left(data: bytes) -> None:
    escaped = escape_binary(data)
    assert not any(b in b"#$*" for b in escaped)
    assert unescape_binary(escaped) == data


def test_escape_examples() -> None:
    assert escape_binary(b"a}b#") == b"a}]b}\x03"
    with pytest.raises(GdbRemoteProtocolError, match="ends inside an escape"):
        unescape_binary(b"ab}")


def test_rle_decode() -> None:
    # "0* " = '0' repeated 1 + (32 - 29) = 4 times
    assert rle_decode(b"0* ") == b"0000"
    assert rle_decode(b"ab*\"c") == b"abbbbbbc"
    with pytest.raises(GdbRemoteProtocolError, match="run-length"):
        rle_decode(b"*!")


def test_parser_splits_acks_packets_notifications_across_chunks() -> None:
    parser = PacketParser()
    stream = b"+" + frame(b"OK") + b"-" + b"%Stop:T05#" + b"%02x" % checksum(b"Stop:T05") + frame(b"m1,2")
    events = []
    for i in range(len(stream)):  # one byte at a time
        events.extend(parser.feed(stream[i:i + 1]))
    assert events == [Ack(), Packet(b"OK"), Nak(), Notification(b"Stop:T05"), Packet(b"m1,2")]


def test_parser_reports_bad_checksum_and_skips_garbage() -> None:
    parser = PacketParser()
    events = list(parser.feed(b"xx$OK#00" + frame(b"E01")))
    assert events == [BadChecksum(b"OK", 0x9A, 0), Packet(b"E01")]
    assert parser.garbage == 2


def test_a_megabyte_of_garbage_is_skipped_in_one_pass() -> None:
    # a call per garbage byte was a RecursionError after a few thousand bytes
    parser = PacketParser()
    began = time.monotonic()
    events = list(parser.feed(b"\x00" * (1 << 20) + b"+" + frame(b"OK")))
    assert time.monotonic() - began < 1.0
    assert events == [Ack(), Packet(b"OK")]
    assert parser.garbage == 1 << 20


def test_a_large_packet_fed_a_byte_at_a_time_is_searched_once() -> None:
    payload = b"a" * 200_000
    parser = PacketParser()
    stream = frame(payload)
    events = []
    began = time.monotonic()
    for i in range(len(stream)):
        events.extend(parser.feed(stream[i:i + 1]))
    assert time.monotonic() - began < 1.0
    assert events == [Packet(payload)]


def test_parser_rejects_non_hex_checksum_naming_the_packet() -> None:
    with pytest.raises(GdbRemoteProtocolError, match="'OK'"):
        list(PacketParser().feed(b"$OK#zz"))


def test_parser_limits_packet_size() -> None:
    with pytest.raises(GdbRemoteProtocolError, match="longer than"):
        list(PacketParser(max_packet=16).feed(b"$" + b"a" * 40))


def test_stop_replies() -> None:
    s = parse_stop_reply(b"T05thread:02;")
    assert (s.kind, s.signal, s.thread, s.watch_kind) == ("signal", 5, "02", None)
    w = parse_stop_reply(b"T05thread:p1.1;watch:ffffffff82a0a000;")
    assert (w.thread, w.watch_kind, w.watch_address) == ("p1.1", "watch", 0xFFFFFFFF82A0A000)
    assert parse_stop_reply(b"T05rwatch:10;").watch_kind == "rwatch"
    assert parse_stop_reply(b"T05awatch:10;").watch_kind == "awatch"
    r = parse_stop_reply(b"T0510:0100000000000000;06:ff00000000000000;swbreak:;")
    assert r.registers == {0x10: b"\x01" + b"\0" * 7, 6: b"\xff" + b"\0" * 7} and r.reason == "swbreak"
    assert parse_stop_reply(b"S02").signal == 2
    assert parse_stop_reply(b"W00").is_exit and parse_stop_reply(b"X09").kind == "terminated"


@pytest.mark.parametrize("reply", [b"OK", b"T", b"Tzz", b"T05thread", b"T05watch:xyz;", b"T0510:zz;"])
def test_malformed_stop_replies_name_the_packet(reply: bytes) -> None:
    with pytest.raises(GdbRemoteProtocolError) as info:
        parse_stop_reply(reply)
    assert repr(reply.decode()) in str(info.value)


def test_supported_threads_errors_hex() -> None:
    f = parse_supported(b"PacketSize=1000;qXfer:features:read+;multiprocess-;QStartNoAckMode+")
    assert f == {"PacketSize": "1000", "qXfer:features:read": True, "multiprocess": False, "QStartNoAckMode": True}
    assert parse_thread_list(b"m01,02") == (["01", "02"], False)
    assert parse_thread_list(b"l") == ([], True)
    with pytest.raises(GdbRemoteProtocolError, match="thread list"):
        parse_thread_list(b"OK")
    assert error_code_or_none(b"E14") == 0x14 and error_code_or_none(b"OK") is None
    assert error_code_or_none(b"E.no memory") == 0
    with pytest.raises(GdbRemoteProtocolError, match="register"):
        decode_hex(b"zz", "register")


def test_target_description_with_undeclared_xi_include() -> None:
    doc = parse_target_xml(b'<target><architecture>i386:x86-64</architecture><xi:include href="a.xml"/></target>')
    assert doc.architecture == "i386:x86-64" and doc.includes == ("a.xml",)
    feat = parse_target_xml(b'<feature><reg name="rax" bitsize="64"/><reg name="eflags" bitsize="32" '
                            b'type="i386_eflags"/><reg name="x" bitsize="8" regnum="40"/><reg name="y" bitsize="8"/>'
                            b"</feature>")
    regs = number_registers(list(feat.registers))
    assert [(r.name, r.regnum, r.size) for r in regs] == [("rax", 0, 8), ("eflags", 1, 4), ("x", 40, 1), ("y", 41, 1)]
    with pytest.raises(GdbRemoteProtocolError, match=r"target\.xml"):
        parse_target_xml(b"<target><reg")
