"""QEMU command line and helpers (no guest is started here)."""

from __future__ import annotations

import socket
from pathlib import Path

from kcrash.lab.qemu import VmConfig, free_tcp_port, qemu_command, serial_tail


def _cfg(tmp_path: Path, gdb: int | None = None) -> VmConfig:
    return VmConfig(tmp_path / "vmlinuz", tmp_path / "initrd", "console=ttyS0", tmp_path / "serial.log",
                    tmp_path / "qmp.sock", "128M", 2, gdb)


def test_command_has_the_devices_a_crash_needs(tmp_path: Path) -> None:
    cmd = qemu_command(_cfg(tmp_path))
    joined = " ".join(cmd)
    assert cmd[0] == "qemu-system-x86_64"
    for piece in ("-accel tcg", "-device vmcoreinfo", "-device pvpanic", "-action panic=pause",
                  "-no-reboot", "-m 128M", "-smp 2", f"-qmp unix:{tmp_path}/qmp.sock", "-S"):
        assert piece in joined
    assert cmd[cmd.index("-append") + 1] == "console=ttyS0"
    assert "-gdb" not in cmd


def test_gdbstub_binds_to_loopback_only(tmp_path: Path) -> None:
    cmd = qemu_command(_cfg(tmp_path, gdb=4321))
    assert cmd[cmd.index("-gdb") + 1] == "tcp:127.0.0.1:4321"


def test_free_port_is_bindable() -> None:
    port = free_tcp_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_serial_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(100)) + b"\xff bad utf8\n")
    tail = serial_tail(log, lines=3)
    assert tail.splitlines() == ["line 98", "line 99", "\ufffd bad utf8"]
    assert serial_tail(tmp_path / "missing") == ""


def test_ram_file_becomes_a_shared_memory_backend(tmp_path: Path) -> None:
    from dataclasses import replace

    cmd = qemu_command(replace(_cfg(tmp_path), ram_file=tmp_path / "guest.ram"))
    obj = cmd[cmd.index("-object") + 1]
    assert obj == f"memory-backend-file,id=ram0,size=128M,mem-path={tmp_path}/guest.ram,share=on"
    assert cmd[cmd.index("-machine") + 1] == "memory-backend=ram0"
    assert "-object" not in qemu_command(_cfg(tmp_path))


def test_stale_ram_files_of_dead_runners_are_removed(tmp_path: Path) -> None:
    import os
    import subprocess

    from kcrash.lab.qemu import _remove_stale_ram_files

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"kcrash-live-{dead.pid}-0011aabb.ram"
    alive = tmp_path / f"kcrash-live-{os.getpid()}-0011aabb.ram"
    other = tmp_path / "unrelated.ram"
    for p in (stale, alive, other):
        p.write_bytes(b"x")
    _remove_stale_ram_files(tmp_path)
    assert not stale.exists() and alive.exists() and other.exists()


def test_arm64_guests_run_on_the_virt_machine_without_pvpanic(tmp_path: Path) -> None:
    from dataclasses import replace

    cmd = qemu_command(replace(_cfg(tmp_path), append="console=ttyAMA0", arch="arm64"))
    joined = " ".join(cmd)
    assert cmd[0] == "qemu-system-aarch64"
    assert cmd[cmd.index("-machine") + 1] == "virt" and cmd[cmd.index("-cpu") + 1].startswith("max")
    assert "-device vmcoreinfo" in joined and "pvpanic" not in joined and "-action" not in cmd


def test_wait_console_returns_at_the_marker_and_times_out_without_it(tmp_path: Path) -> None:
    import asyncio

    import pytest

    from kcrash.errors import LabTimeoutError
    from kcrash.lab.qemu import Vm

    cfg = _cfg(tmp_path)
    vm = Vm(cfg)
    sent: list[str] = []

    async def execute(cmd: str, args: object = None, timeout: float = 120) -> None:
        sent.append(cmd)

    vm.execute = execute  # type: ignore[method-assign]
    cfg.serial.write_bytes(b"[ 1.0] Kernel panic - not syncing: x\n---[ end Kernel panic - not syncing: x ]---\n")
    asyncio.run(vm.wait_console(b"---[ end Kernel panic", 5))
    assert sent == ["cont"]
    cfg.serial.write_bytes(b"[ 1.0] booting\n")
    with pytest.raises(LabTimeoutError, match="end Kernel panic"):
        asyncio.run(vm.wait_console(b"---[ end Kernel panic", 0.3))
