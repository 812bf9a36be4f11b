"""
kcrash.lab.qemu
===============

Run a lab guest under ``qemu-system-x86_64`` (TCG) and drive it over QMP with the QEMU project's
own client (:mod:`qemu.qmp`): start paused, resume, wait for an event such as
``GUEST_PANICKED``, stop, dump guest memory, quit. QEMU is always killed when the runner exits,
and dies with this process (``PR_SET_PDEATHSIG``), so no guest is ever left behind. Building the
guest's files is elsewhere (:mod:`kcrash.lab.initramfs`).

With ``VmConfig.ram_file`` set, guest RAM is a shared memory-backend file (``-object
memory-backend-file,id=ram0,...,share=on -machine memory-backend=ram0``), which is what
``kcrash collect qemu`` reads; the file is deleted when the VM is closed. :func:`shm_ram_file`
picks a name in ``/dev/shm`` (tmpfs) when it exists.

``VmConfig.arch`` ``arm64`` runs ``qemu-system-aarch64 -M virt -cpu max`` instead (TCG too). Debian's
arm64 kernels have no pvpanic driver, so there is no ``GUEST_PANICKED`` event: :meth:`Vm.wait_console`
watches the serial log for the end of the panic instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import EventListener, QMPClient, QMPError

from kcrash.errors import LabError, LabTimeoutError, LabToolMissingError
from kcrash.lab.arches import HOST_ARCH, LAB_ARCHES, get_arch

__all__ = ["QEMU_BINARY", "RAM_BACKEND_ID", "Vm", "VmConfig", "free_tcp_port", "qemu_command",
           "serial_tail", "shm_ram_file"]

QEMU_BINARY = LAB_ARCHES[HOST_ARCH].qemu
_PR_SET_PDEATHSIG = 1
#: the id of the memory backend holding guest RAM (``-machine memory-backend=``)
RAM_BACKEND_ID = "ram0"


@dataclass(frozen=True, slots=True)
class VmConfig:
    """Everything that defines one guest run."""

    vmlinuz: Path
    initrd: Path
    append: str
    serial: Path
    qmp_socket: Path
    mem: str = "256M"
    smp: int = 2
    gdb_port: int | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)
    #: guest RAM in this shared file (for ``kcrash collect qemu``); None = QEMU's anonymous RAM
    ram_file: Path | None = None
    #: the guest architecture (a key of :data:`kcrash.lab.arches.LAB_ARCHES`)
    arch: str = HOST_ARCH


def shm_ram_file(tag: str) -> Path:
    """A fresh path for a guest RAM file, in ``/dev/shm`` when it exists (else the temp directory).

    The name carries our pid. A runner that is killed (SIGKILL) cannot delete its file, so files of
    processes that no longer exist are removed here first (they would hold the guest's RAM size of
    tmpfs, i.e. memory, forever).
    """
    # lazy: +4 ms CPU to import it after this module (measured, loaded host)
    import tempfile

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    _remove_stale_ram_files(base)
    return base / f"kcrash-{tag}-{os.getpid()}-{os.urandom(4).hex()}.ram"


def _remove_stale_ram_files(base: Path) -> None:
    for path in base.glob("kcrash-*-*-*.ram"):
        try:
            pid = int(path.name.split("-")[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError, IndexError):
            continue


def qemu_command(cfg: VmConfig, binary: str | None = None) -> list[str]:
    """The QEMU command line for ``cfg`` (the guest starts paused; QMP connects back to us)."""
    arch = get_arch(cfg.arch)
    cmd = [
        binary or arch.qemu, *arch.machine, "-accel", "tcg", "-m", cfg.mem, "-smp", str(cfg.smp),
        "-display", "none", "-monitor", "none", "-nodefaults", "-no-user-config",
        "-serial", f"file:{cfg.serial}",
        "-kernel", str(cfg.vmlinuz), "-initrd", str(cfg.initrd), "-append", cfg.append,
        "-device", "vmcoreinfo", *arch.panic_devices,
        "-qmp", f"unix:{cfg.qmp_socket}", "-no-reboot", "-S",
    ]
    if cfg.gdb_port is not None:
        cmd += ["-gdb", f"tcp:127.0.0.1:{cfg.gdb_port}"]
    if cfg.ram_file is not None:
        cmd += ["-object", f"memory-backend-file,id={RAM_BACKEND_ID},size={cfg.mem},mem-path={cfg.ram_file},"
                           "share=on", "-machine", f"memory-backend={RAM_BACKEND_ID}"]
    return cmd + list(cfg.extra)


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serial_tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a serial log (empty if it does not exist)."""
    try:
        data = path.read_bytes()[-16384:]
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Vm:
    """One running guest. Use as ``async with Vm(cfg) as vm:``; QEMU is killed on exit."""

    def __init__(self, cfg: VmConfig, binary: str | None = None) -> None:
        self.cfg = cfg
        self.binary = binary or get_arch(cfg.arch).qemu
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp = QMPClient("kcrash-lab")
        self.started_at = 0.0

    async def __aenter__(self) -> Vm:
        if shutil.which(self.binary) is None:
            raise LabToolMissingError(self.binary, get_arch(self.cfg.arch).qemu_package)
        try:
            await self._launch()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _launch(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.cfg.qmp_socket.unlink()
        await self.qmp.start_server(str(self.cfg.qmp_socket))
        self.proc = subprocess.Popen(
            qemu_command(self.cfg, self.binary), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, preexec_fn=_die_with_parent, start_new_session=True)
        try:
            await asyncio.wait_for(self.qmp.accept(), timeout=30)
        except (TimeoutError, QMPError, OSError) as exc:
            raise LabError(f"QEMU did not connect to QMP: {self._stderr() or exc}") from exc
        self.started_at = time.monotonic()

    def _stderr(self) -> str:
        if self.proc is None or self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return " | ".join(self.proc.stderr.read().decode(errors="replace").strip().splitlines()[-3:])

    async def execute(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 120) -> Any:
        """Run one QMP command; QEMU errors become :class:`LabError`."""
        try:
            return await asyncio.wait_for(self.qmp.execute(cmd, args), timeout=timeout)
        except QMPError as exc:
            raise LabError(f"QMP {cmd} failed: {exc}") from exc
        except TimeoutError as exc:
            raise LabError(f"QMP {cmd} timed out after {timeout:.0f} s") from exc

    async def wait_event(self, names: tuple[str, ...], timeout: float,
                         on_tick: Callable[[], Awaitable[None]] | None = None) -> dict[str, Any]:
        """Resume the guest and wait for one of the QMP events ``names``.

        ``on_tick`` runs about every 0.25 s while waiting (to watch the serial log, say).
        Raises :class:`LabTimeoutError` with the serial tail when time runs out, and
        :class:`LabError` when QEMU exits first.
        """
        listener = EventListener(names)
        with self.qmp.listen(listener):
            await self.execute("cont")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    event = await asyncio.wait_for(listener.get(), timeout=0.25)
                    return dict(event)
                except TimeoutError:
                    pass
                if self.proc is not None and self.proc.poll() is not None:
                    raise LabError(f"QEMU exited (status {self.proc.returncode}) before {'/'.join(names)}: "
                                   f"{self._stderr()}")
                if on_tick is not None:
                    await on_tick()
        raise LabTimeoutError(f"no {'/'.join(names)} from the guest within {timeout:.0f} s",
                              serial_tail(self.cfg.serial))

    async def wait_console(self, marker: bytes, timeout: float) -> None:
        """Resume the guest and wait until ``marker`` appears in its serial log (for guests without
        pvpanic). Raises :class:`LabTimeoutError` with the serial tail when time runs out, and
        :class:`LabError` when QEMU exits first."""
        await self.execute("cont")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if marker in self.cfg.serial.read_bytes():
                    return
            if self.proc is not None and self.proc.poll() is not None:
                raise LabError(f"QEMU exited (status {self.proc.returncode}) before {marker.decode()!r} on the "
                               f"console: {self._stderr()}")
            await asyncio.sleep(0.1)
        raise LabTimeoutError(f"no {marker.decode()!r} on the guest console within {timeout:.0f} s",
                              serial_tail(self.cfg.serial))

    async def dump(self, path: Path, fmt: str = "elf") -> float:
        """``dump-guest-memory`` (paging off) into ``path``; returns the seconds it took."""
        args: dict[str, Any] = {"paging": False, "protocol": f"file:{path}"}
        if fmt != "elf":
            args["format"] = fmt
        start = time.monotonic()
        await self.execute("dump-guest-memory", args, timeout=600)
        return time.monotonic() - start

    async def close(self) -> None:
        """Quit QEMU politely if possible, then make sure the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.qmp.execute("quit"), timeout=2)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.qmp.disconnect(), timeout=2)
        self.kill()
        with contextlib.suppress(FileNotFoundError):
            self.cfg.qmp_socket.unlink()
        if self.cfg.ram_file is not None:
            self.cfg.ram_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kill QEMU (and its process group) now and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
