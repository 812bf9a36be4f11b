"""kcrash.cli.system: usage errors are one line and exit 2 before a dump is opened; the text of files,
net (devices) and net -s (sockets, one no task holds) at a fixed layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.analysis.system import NetDevice, OpenFile, TaskFiles, TaskSocket
from kcrash.cli import main
from kcrash.cli.system import _print_devices, _print_files, _print_sockets
from kcrash.helpers.linux.net import IfAddress, SockInfo


@pytest.fixture
def dump(tmp_path: Path) -> str:
    path = tmp_path / "vmcore"
    path.write_bytes(b"not a dump")
    return str(path)


def test_pid_without_s_is_one_line(dump: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["net", dump, "5"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1 and "goes with -s" in err, err


@pytest.mark.parametrize("args", [["files", "{dump}", "pid7"], ["net", "{dump}", "-s", "x"]])
def test_bad_pid_is_click_usage_error(dump: str, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main([a.format(dump=dump) for a in args])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "neither a PID" in err and "Traceback" not in err, err


def test_not_a_dump_is_one_line(dump: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mount", dump])
    out, err = capsys.readouterr()
    assert code != 0 and out == "" and err.count("\n") == 1, err


def test_files_text(capsys: pytest.CaptureFixture[str]) -> None:
    _print_files(TaskFiles(157, 0xFFFF88800543B080, "sleep", "/", "/tmp", (
        OpenFile(3, 0xFFFF888004C903C0, 0xFFFF888004417480, 0xFFFF88800420EA10, 0o100755, "REG", "/init"),
        OpenFile(9, 0xFFFF888004C90000, 0, 0, 0, "?", "", "unreadable at 0x10"))))
    assert capsys.readouterr().out.splitlines() == [
        'PID: 157     TASK: ffff88800543b080  COMMAND: "sleep"',
        "ROOT: /    CWD: /tmp",
        " FD FILE             DENTRY           INODE            TYPE PATH",
        "  3 ffff888004c903c0 ffff888004417480 ffff88800420ea10 REG  /init",
        "  9 ffff888004c90000 0000000000000000 0000000000000000 ?    (unreadable: unreadable at 0x10)"]
    _print_files(TaskFiles(2, 0xFFFF888004258000, "kthreadd", "/", "/", ()))
    assert capsys.readouterr().out.splitlines()[-1] == "No open files"


def test_net_text(capsys: pytest.CaptureFixture[str]) -> None:
    _print_devices([NetDevice(0xFFFF888004D0E000, 0xFFFF888004D0E168, "lo", 1, 9, ("UP", "LOOPBACK"), "UNKNOWN",
                              65536, "00:00:00:00:00:00", (IfAddress("127.0.0.1", 8, "lo"),),
                              (IfAddress("::1", 128, "host"),))])
    assert capsys.readouterr().out.splitlines() == [
        "NET_DEVICE       NAME       IP ADDRESS(ES)               STATE",
        "ffff888004d0e000 lo         127.0.0.1/8, ::1/128         UP,LOOPBACK oper UNKNOWN mtu 65536 "
        "mac 00:00:00:00:00:00"]


def test_net_s_text(capsys: pytest.CaptureFixture[str]) -> None:
    listen = SockInfo(0xFFFF888004434D00, 0xFFFF8880054A5C40, "INET6", "STREAM", "TCP", "LISTEN", "::", "::", 4321, 0)
    accepted = SockInfo(0, 0xFFFF8880054A0000, "INET", "STREAM", "TCP", "ESTABLISHED", "127.0.0.1", "127.0.0.1",
                        4321, 45796)
    unix = SockInfo(0xFFFF888004434000, 0xFFFF888005000000, "UNIX", "STREAM", "0", "LISTEN", "/run/x", "", 0, 0)
    _print_sockets([TaskSocket(160, 0xFFFF888004258000, "nc", 3, 0xFFFF888004C900C0, listen),
                    TaskSocket(1, 0xFFFF888004258000, "init", 4, 0xFFFF888004C90000, unix),
                    TaskSocket(None, None, "", None, None, accepted)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["160", "nc", "3", "ffff888004434d00", "ffff8880054a5c40", "INET6", "STREAM", "TCP",
                                "[::]:4321", "[::]:0", "LISTEN"]
    assert lines[2].split()[-4:] == ["0", "/run/x", "-", "LISTEN"]
    assert lines[3].split() == ["-", "(no", "task)", "-", "0000000000000000", "ffff8880054a0000", "INET", "STREAM",
                                "TCP", "127.0.0.1:4321", "127.0.0.1:45796", "ESTABLISHED"]
