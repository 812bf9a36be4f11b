"""
kcrash.lab.boot
===============

A live lab guest that does not crash: the test module loaded, background processes running, a
``sleep 1`` loop driving the scheduler. For live-debugging work over the QEMU gdbstub (bound to
127.0.0.1) and QMP. Guest RAM is a shared memory-backend file (``LiveGuest.ram_file``), so
``kcrash collect qemu --qmp SOCK`` can dump the running guest. It runs until the caller's stop event
is set or the guest exits, then QEMU is shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kcrash.errors import LabError, LabTimeoutError
from kcrash.lab.crash import kernel_cmdline
from kcrash.lab.prepare import prepare_kernel
from kcrash.lab.qemu import Vm, VmConfig, free_tcp_port, serial_tail, shm_ram_file

__all__ = ["BootOptions", "LiveGuest", "boot_live"]

READY_MARKER = "kcrash-lab: ready kind=none"


@dataclass(frozen=True, slots=True)
class BootOptions:
    """How to boot a live guest. ``gdb_port`` 0 picks a free port; None disables the gdbstub."""

    kernel: str = "6.1"
    kaslr: bool = False
    mem: str = "256M"
    smp: int = 2
    gdb_port: int | None = 0
    qmp_socket: Path | None = None
    serial: Path | None = None
    boot_timeout: float = 90.0
    #: the guest architecture (``x86_64``, ``arm64``: :mod:`kcrash.lab.arches`)
    arch: str = "x86_64"


@dataclass(frozen=True, slots=True)
class LiveGuest:
    """What a caller needs to attach to a running guest."""

    release: str
    gdb_port: int | None
    qmp_socket: Path | None
    serial: Path
    boot_seconds: float
    ram_file: Path | None = None


async def _wait_ready(vm: Vm, serial: Path, timeout: float) -> float:
    start = time.monotonic()
    await vm.execute("cont")
    while time.monotonic() - start < timeout:
        if serial.exists() and READY_MARKER in serial.read_text(errors="replace"):
            return time.monotonic() - start
        if vm.proc is not None and vm.proc.poll() is not None:
            raise LabError(f"QEMU exited during boot (status {vm.proc.returncode})")
        await asyncio.sleep(0.25)
    raise LabTimeoutError(f"the live guest was not ready within {timeout:.0f} s", serial_tail(serial))


async def _run(cfg: VmConfig, opts: BootOptions, release: str, on_ready: Callable[[LiveGuest], None],
               stop: asyncio.Event) -> None:
    async with Vm(cfg) as vm:
        seconds = await _wait_ready(vm, cfg.serial, opts.boot_timeout)
        on_ready(LiveGuest(release, cfg.gdb_port, opts.qmp_socket, cfg.serial, seconds, cfg.ram_file))
        while not stop.is_set() and vm.proc is not None and vm.proc.poll() is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)


def boot_live(cache: Path, opts: BootOptions, on_ready: Callable[[LiveGuest], None],
              stop_after: float | None = None) -> None:
    """Boot a live guest, call ``on_ready`` once it is up, run until interrupted or ``stop_after`` s."""
    prepared = prepare_kernel(cache, opts.kernel, opts.arch)
    gdb_port = free_tcp_port() if opts.gdb_port == 0 else opts.gdb_port
    extra: tuple[str, ...] = ()
    if opts.qmp_socket is not None:
        extra = ("-qmp", f"unix:{opts.qmp_socket},server=on,wait=off")
    with tempfile.TemporaryDirectory(prefix="kcrash-lab-") as tmp:
        serial = opts.serial or Path(tmp) / "console.log"
        cfg = VmConfig(prepared.vmlinuz, prepared.initramfs, kernel_cmdline(None, opts.kaslr, opts.arch), serial,
                       Path(tmp) / "qmp.sock", opts.mem, opts.smp, gdb_port, extra, shm_ram_file("live"), opts.arch)

        async def main() -> None:
            stop = asyncio.Event()
            # Ctrl-C and SIGTERM both end the wait and shut the guest down. (Left to asyncio.run's own
            # SIGINT handling, the cancellation could be lost in the polling wait_for — Python 3.11's
            # wait_for may swallow a cancel that races its timeout — and the guest ran on to --duration.)
            for signum in (signal.SIGINT, signal.SIGTERM):
                asyncio.get_running_loop().add_signal_handler(signum, stop.set)
            if stop_after is not None:
                asyncio.get_running_loop().call_later(stop_after, stop.set)
            await _run(cfg, opts, prepared.package.release, on_ready, stop)

        asyncio.run(main())
