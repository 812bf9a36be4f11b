"""The DUMP argument of the analysis commands also names a live kernel (``gdb:HOST:PORT[?qmp=SOCKET]``,
issues 17 and 18): :class:`~kcrash.cli.params.DumpOrLive`, and the one-line, bounded error of a dead target."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kcrash.cli import app, main
from kcrash.cli.params import DumpOrLive, LiveTarget, parse_live_target
from kcrash.errors import CliError


def convert(text: str) -> object:
    return DumpOrLive().convert(text, None, None)


def test_parse_live_target_reads_stub_and_qmp() -> None:
    assert parse_live_target("gdb:127.0.0.1:1234") == LiveTarget("127.0.0.1:1234", None)
    assert parse_live_target("gdb::1234") == LiveTarget("localhost:1234", None)
    assert parse_live_target("gdb:host:9?qmp=/tmp/q.sock") == LiveTarget("host:9", "/tmp/q.sock")
    assert parse_live_target("vmcore.elf") is None


@pytest.mark.parametrize("text", ["gdb:", "gdb:host", "gdb:host:0", "gdb:host:70000", "gdb:host:x",
                                  "gdb:host:1?qmp=", "gdb:host:1?sock=/q", "gdb:host:1?qmp"])
def test_parse_live_target_rejects_malformed(text: str) -> None:
    with pytest.raises(CliError) as info:
        parse_live_target(text)
    assert info.value.exit_code == 2


def test_dump_or_live_keeps_the_live_spec_and_checks_files(tmp_path: Path) -> None:
    dump = tmp_path / "vmcore"
    dump.write_bytes(b"x")
    assert convert("gdb:localhost:1234?qmp=/q") == "gdb:localhost:1234?qmp=/q"
    assert convert(str(dump)) == str(dump)
    with pytest.raises(click.BadParameter, match="does not exist"):
        convert(str(tmp_path / "missing"))
    with pytest.raises(click.BadParameter, match="is a directory"):
        convert(str(tmp_path))
    with pytest.raises(click.BadParameter, match="gdb:HOST:PORT"):
        convert("gdb:nohost")


def test_missing_dump_file_is_the_same_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app.kcrash, ["ps", str(tmp_path / "missing"), "--json"])
    assert result.exit_code == 2
    assert f"Invalid value for 'DUMP': File '{tmp_path / 'missing'}' does not exist." in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
def silent_stub() -> Iterator[int]:
    """A TCP port that accepts connections but never answers (a hung gdb stub)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize("command", [["ps"], ["kmem", "-s"], ["log"], ["rd", "jiffies"]])
def test_refused_connection_is_one_line_error(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    code = main([command[0], f"gdb:127.0.0.1:{_free_port()}", *command[1:], "--json"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("kcrash: error: cannot connect to gdb stub at 127.0.0.1"), err
    assert time.monotonic() - started < 10


def test_silent_stub_is_one_line_error_after_the_timeout(silent_stub: int, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KCRASH_LIVE_TIMEOUT", "0.5")
    started = time.monotonic()
    code = main(["ps", f"gdb:127.0.0.1:{silent_stub}", "--json"])
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no reply from 127.0.0.1" in err, err
    assert elapsed < 8, elapsed


def test_symbol_file_options_are_refused_live(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sysmap = tmp_path / "System.map"
    sysmap.write_text("ffffffff81000000 T _text\n")
    code = main(["ps", "gdb:127.0.0.1:1", "--system-map", str(sysmap)])
    assert code == 2
    assert "not used on a live target" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "reason"), [
    (["dump", "info", "gdb:127.0.0.1:1"], "kcrash sys describes a running kernel"),
    (["dump", "convert", "gdb:127.0.0.1:1", "out.kdump"], "kcrash collect qemu"),
])
def test_file_only_commands_refuse_a_live_target(args: list[str], reason: str) -> None:
    result = CliRunner().invoke(app.kcrash, args)
    assert result.exit_code == 2
    assert "is a live target: " in result.output and reason in result.output
