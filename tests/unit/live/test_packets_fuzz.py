"""Property tests of the GDB remote protocol on hostile bytes from the stub: the packet parser, the
reply parsers (stop replies, qSupported, thread lists, RLE, binary escapes, hex, target
descriptions) and the client's handling of the replies. Each ends in a result or a kcrash error
(GdbRemoteProtocolError, LiveTargetError, FaultError), in bounded time and memory."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.live.gdbremote.client import GdbRemoteClient
from kcrash.live.gdbremote.packets import (
    PacketParser,
    decode_hex,
    error_code_or_none,
    frame,
    parse_stop_reply,
    parse_supported,
    parse_thread_list,
    rle_decode,
    unescape_binary,
)
from kcrash.live.gdbremote.tdesc import number_registers, parse_target_xml
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation
from support.mock_transport import MockTransport, Raw

_PIECES = [b"$", b"#", b"%", b"+", b"-", b"}", b"*", b"T05", b"S05", b"W00", b"X09", b"thread:01;", b"watch:",
           b"awatch:ffff;", b"06:0123456789abcdef;", b"swbreak:;", b"OK", b"E01", b"E.x", b"m", b"l", b"00", b"zz",
           b"PacketSize=", b"qXfer:features:read+", b";", b":", b",", b"\x03", b"\xff"]
_HOSTILE = st.lists(st.one_of(st.sampled_from(_PIECES), st.binary(max_size=8)), max_size=30).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(st.lists(_HOSTILE, max_size=6), st.integers(16, 1 << 20))
def test_packet_parser_on_hostile_streams(chunks: list[bytes], max_packet: int) -> None:
    parser = PacketParser(max_packet=max_packet)

    def feed() -> int:
        return sum(len(list(parser.feed(chunk))) for chunk in chunks)

    parse_or_kcrash_error(feed)
    assert len(parser._buf) <= max(max_packet, 0) + max((len(c) for c in chunks), default=0)


@settings(max_examples=300, deadline=None)
@given(_HOSTILE)
def test_reply_parsers_on_hostile_replies(reply: bytes) -> None:
    for parse in (parse_stop_reply, parse_supported, parse_thread_list, rle_decode, unescape_binary, decode_hex,
                  error_code_or_none):
        parse_or_kcrash_error(lambda p=parse: p(reply))  # type: ignore[misc]


_XML = st.lists(st.sampled_from([
    b"<?xml version='1.0'?>", b"<target>", b"</target>", b"<architecture>i386:x86-64</architecture>",
    b"<feature name='x'>", b"</feature>", b"<reg name='rax' bitsize='64'/>", b"<reg name='r' bitsize='-1'/>",
    b"<reg name='z' bitsize='99999999999999999999'/>", b"<reg bitsize='8'/>", b"<reg name='q' bitsize='x'/>",
    b"<reg name='y' bitsize='32' regnum='4294967296'/>", b"<xi:include href='core.xml'/>", b"<include href=''/>",
    b"<!DOCTYPE t [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>", b"&b;", b"<", b"\xff",
]), max_size=14).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(_XML)
def test_target_descriptions_on_hostile_xml(text: bytes) -> None:
    result = parse_or_kcrash_error(lambda: parse_target_xml(text))
    if not isinstance(result, Exception):
        for reg in number_registers(list(result.registers)):
            assert reg.bitsize > 0 and reg.size >= 1


def _client_with(replies: list[bytes | Raw]) -> GdbRemoteClient:
    script = iter(replies)

    def handler(packet: bytes) -> bytes | Raw | None:
        return next(script, b"E01")

    return GdbRemoteClient(MockTransport(handler), timeout=0.02)


_REPLY = st.one_of(_HOSTILE, _HOSTILE.map(lambda b: Raw(frame(b))), _HOSTILE.map(Raw))


@settings(max_examples=50, deadline=None)
@given(st.lists(_REPLY, max_size=12))
def test_client_on_hostile_replies(replies: list[bytes | Raw]) -> None:
    client = _client_with(replies)

    def session() -> None:
        client.connect()
        client.read_memory(0xFFFFFFFF81000000, 64)
        client.read_registers()
        client.thread_ids()
        client.monitor("info registers")

    parse_or_kcrash_error(session, seconds=3.0)


def test_absurd_register_sizes_are_cheap() -> None:
    xml = b"<target><reg name='huge' bitsize='1099511627776'/><reg name='rip' bitsize='64'/></target>"
    supported = b"PacketSize=ffffffffffff;qXfer:features:read+"

    def session() -> None:
        client = _client_with([supported, b"l" + xml, b"S05", b"00" * 8])
        client.connect()
        client.read_registers()
        client.write_register("huge", 1)

    assert peak_allocation(session) < MEMORY_CAP
