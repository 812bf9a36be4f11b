"""kcrash.live.qmp over qemu.qmp: replies, QMP errors and failures become values or one-line LiveTargetErrors."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.errors import LiveTargetError
from kcrash.live.qmp import QmpClient
from support.qmp_peer import GREETING, requests


def _fake_qemu(answer: Callable[[str, dict[str, object]], dict[str, object]], *, greet: bool = True) -> socket.socket:
    # A QEMU that greets, accepts qmp_capabilities and answers each command with answer(name, arguments).
    ours, theirs = socket.socketpair()

    def serve() -> None:
        try:
            if not greet:
                time.sleep(10)  # silent far longer than the client's timeout
                return
            theirs.sendall(GREETING + b"\n")
            for request in requests(theirs):
                name = request.get("execute", "")
                reply = {"return": {}} if name == "qmp_capabilities" else answer(name, request.get("arguments", {}))
                theirs.sendall(json.dumps({**reply, "id": request.get("id")}).encode() + b"\r\n")
        except OSError:
            pass
        finally:
            theirs.close()

    threading.Thread(target=serve, daemon=True).start()
    return ours


def test_status_kvm_and_execute() -> None:
    replies = {"query-status": {"status": "paused", "running": False}, "query-kvm": {"enabled": True, "present": True}}
    seen: list[tuple[str, object]] = []

    def answer(name: str, arguments: dict[str, object]) -> dict[str, object]:
        seen.append((name, arguments))
        return {"return": replies.get(name, {})}

    client = QmpClient(_fake_qemu(answer), timeout=5)
    try:
        assert client.status() == "paused"
        assert client.kvm_enabled() is True
        assert client.execute("cont") == {}
        client.execute("stop", {"x": 1})
    finally:
        client.close()
    assert seen == [("query-status", {}), ("query-kvm", {}), ("cont", {}), ("stop", {"x": 1})]


def test_a_qmp_error_is_one_line() -> None:
    def answer(name: str, arguments: dict[str, object]) -> dict[str, object]:
        return {"error": {"class": "CommandNotFound", "desc": f"The command {name} has not been found"}}

    client = QmpClient(_fake_qemu(answer), timeout=5)
    try:
        with pytest.raises(LiveTargetError, match=r"^QMP bogus failed: The command bogus has not been found$"):
            client.execute("bogus")
    finally:
        client.close()


def test_no_greeting_times_out() -> None:
    start = time.monotonic()
    with pytest.raises(LiveTargetError, match=r"^QMP at socket did not answer within 0.3 s$"):
        QmpClient(_fake_qemu(lambda n, a: {}, greet=False), timeout=0.3)
    assert time.monotonic() - start < 5  # not the 10 s the peer stays silent


def test_no_socket_is_a_connect_error(tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    with pytest.raises(LiveTargetError, match=rf"^cannot connect to QMP at {path}: ") as info:
        QmpClient(path, timeout=2)
    assert "\n" not in str(info.value)
    with pytest.raises(LiveTargetError, match="bad port"):
        QmpClient("localhost:http", timeout=2)
