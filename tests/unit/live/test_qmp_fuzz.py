"""Property tests of QMP reply handling on hostile bytes from QEMU: the client's line reader and
reply dispatch (``QmpClient`` over :mod:`qemu.qmp`), and the capture code's use of the replies and of HMP text
(``collect.qemu``). Each ends in a result or a LiveTargetError, in bounded time and memory."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kcrash.collect.qemu import capture_guest, parse_info_registers, parse_mtree_ram
from kcrash.live.qmp import QmpClient
from support.fuzzing import MEMORY_CAP, parse_or_kcrash_error, peak_allocation
from support.qmp_peer import GREETING, requests

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                         st.sampled_from(["return", "error", "event", "status", "enabled", "desc", "id", "share"]),
                         inner, max_size=3), max_leaves=8)
_LINES = st.one_of(_JSON.map(lambda v: json.dumps(v).encode()),
                   st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")),
                   st.sampled_from([b"[" * 100_000, b'{"return": ' * 50_000, b"1" * 5000, b'"\\ud800"', b"\xff"]))


def _serve(theirs: socket.socket, lines: list[bytes], tail: bytes) -> None:
    # The QEMU side: greeting, then one of ``lines`` per request (a JSON object gets the request's
    # id, as QEMU echoes it; anything else goes as it is), then ``tail`` and the end of the stream.
    try:
        theirs.sendall(GREETING + b"\n")
        todo = list(lines)
        for request in requests(theirs):
            ident = request.get("id")
            if request.get("execute") == "qmp_capabilities":
                theirs.sendall(json.dumps({"return": {}, "id": ident}).encode() + b"\n")
                continue
            if not todo:
                break
            line = todo.pop(0)
            try:
                value = json.loads(line)
            except (ValueError, RecursionError, UnicodeDecodeError):
                value = None
            if isinstance(value, dict):
                line = json.dumps({**value, "id": ident}).encode()
            theirs.sendall(line + b"\n")
        theirs.sendall(tail)
    except OSError:
        pass
    finally:
        theirs.close()


def _client(lines: list[bytes], tail: bytes = b"", timeout: float = 0.5) -> QmpClient:
    # A QmpClient (qemu.qmp underneath) wired to a socket pair whose peer answers with ``lines``.
    ours, theirs = socket.socketpair()
    threading.Thread(target=_serve, args=(theirs, lines, tail), daemon=True).start()
    return QmpClient(ours, timeout=timeout)


@settings(max_examples=100, deadline=None)
@given(st.lists(_LINES, max_size=5))
def test_client_on_hostile_replies(lines: list[bytes]) -> None:
    client = _client(lines)

    def session() -> None:
        client.status()
        client.kvm_enabled()
        client.execute("stop")

    try:
        parse_or_kcrash_error(session)
    finally:
        client.close()


def test_a_reply_without_end_is_bounded() -> None:
    client = _client([], tail=b'{"return": "' + b"x" * (20 << 20), timeout=30.0)
    try:
        assert peak_allocation(client.status) < MEMORY_CAP
    finally:
        client.close()


_HMP = st.lists(st.sampled_from([
    "CPU#0\n", "CPU#1\n", "RAX=0000000000000001 RBX=ffff\n", "RIP=ffffffff81000000 RFL=00000246\n", "CR0=80050033\n",
    "CS =0010 0000000000000000 ffffffff 00a09b00\n", "FlatView #0\n", ' AS "memory", root: system\n',
    "  0000000000000000-000000000009ffff (prio 0, ram): pc.ram\n",
    "  00000000000c0000-00000000000fffff (prio 1, rom): pc.ram @00000000000c0000\n",
    "  ffffffffffffffff-0000000000000000 (prio 0, ram): pc.ram\n", "RIP=" + "f" * 5000 + "\n",
]), max_size=12).map("".join)


@settings(max_examples=150, deadline=None)
@given(_HMP, st.text(max_size=40))
def test_hmp_text_parsers(text: str, junk: str) -> None:
    parse_or_kcrash_error(lambda: parse_info_registers(text + junk))
    parse_or_kcrash_error(lambda: parse_mtree_ram(text + junk, "pc.ram"))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["query-status", "stop", "query-memdev", "qom-get", "human-monitor-command"]),
                       _JSON, max_size=5), _HMP)
def test_capture_on_hostile_replies(replies: dict[str, Any], hmp: str) -> None:
    async def execute(command: str, arguments: dict[str, Any] | None) -> Any:
        if command == "human-monitor-command" and command not in replies:
            return hmp
        return replies.get(command)

    parse_or_kcrash_error(lambda: asyncio.run(capture_guest(execute)))
