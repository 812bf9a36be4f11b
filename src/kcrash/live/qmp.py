"""
kcrash.live.qmp
===============

The QMP side of live debugging (QEMU Machine Protocol), beside the gdbstub: the run state
(``query-status``, ``stop``, ``cont``), whether KVM is in use (``query-kvm``), and the guest's
VMCOREINFO. The protocol is :mod:`qemu.qmp`'s (the client the lab uses too): its asyncio
:class:`~qemu.qmp.QMPClient` runs in a private event loop, so callers stay synchronous, every wait is
bounded by the client's timeout, and the library's errors become one-line
:class:`~kcrash.errors.LiveTargetError`\\ s. QMP has no "read VMCOREINFO" command;
:meth:`QmpClient.read_vmcoreinfo` asks QEMU for an ELF dump of one page of guest memory
(``dump-guest-memory`` with ``begin``/``length``): its notes carry the VMCOREINFO the guest registered
with ``-device vmcoreinfo`` (the guest must have ``qemu_fw_cfg``). The note is parsed by
:mod:`kcrash.dumps`; the caller validates it against the running kernel. Events are not read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from kcrash.dumps.elf_vmcore import ElfVmcore
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import KcrashError, LiveTargetError

__all__ = ["QmpClient"]

JsonValue = dict[str, object] | list[object] | str | int | float | bool | None
_T = TypeVar("_T")

# qemu.qmp logs a failed connection or reader task at ERROR level; with no handler configured, Python
# would print those on stderr beside our own one-line error. A NullHandler keeps them for an
# application that configures logging and silent otherwise.
logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())


class QmpClient:
    """A QMP connection: a Unix socket path, ``HOST:PORT``, or a connected socket."""

    def __init__(self, address: str | socket.socket, *, timeout: float = 10.0) -> None:
        self.address = address if isinstance(address, str) else "socket"
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._qmp = QMPClient("kcrash")
        try:
            self._run(self._qmp.connect(_socket_address(address)), None)
        except BaseException:
            self.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, _T], command: str | None) -> _T:
        # Run one library call in the private loop, bounded by the timeout; map its errors to ours.
        # ``command`` is the QMP command run, None for the connection itself.
        try:
            return self._loop.run_until_complete(asyncio.wait_for(coro, self.timeout))
        except TimeoutError:
            raise LiveTargetError(f"QMP at {self.address} did not answer within {self.timeout:g} s") from None
        except ExecuteError as exc:
            raise LiveTargetError(f"QMP {command} failed: {_one_line(exc)}") from exc
        except (QMPError, OSError, EOFError, ValueError, RecursionError) as exc:  # Recursion: JSON nested deep
            if command is None:
                raise LiveTargetError(f"cannot connect to QMP at {self.address}: {_one_line(exc)}") from exc
            raise LiveTargetError(f"QMP at {self.address} failed: {_one_line(exc)}") from exc

    def execute(self, command: str, arguments: dict[str, object] | None = None) -> JsonValue:
        """Run ``command`` and return its ``return`` value; LiveTargetError on a QMP error."""
        return self._run(self._qmp.execute(command, arguments), command)  # type: ignore[return-value]

    def status(self) -> str:
        """Return the run state (``running``, ``paused``, ``debug``, …)."""
        reply = self.execute("query-status")
        return str(reply.get("status")) if isinstance(reply, dict) else "unknown"

    def kvm_enabled(self) -> bool:
        """Return True if the guest runs under KVM (4 debug registers for Z1–Z4)."""
        reply = self.execute("query-kvm")
        return bool(reply.get("enabled")) if isinstance(reply, dict) else False

    def read_vmcoreinfo(self) -> VmcoreInfo | None:
        """Return the guest's VMCOREINFO (from the notes of a one-page ELF dump), or None."""
        with tempfile.TemporaryDirectory(prefix="kcrash-qmp-") as tmp:
            path = Path(tmp) / "notes.elf"
            self.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path}",
                                               "begin": 0, "length": 4096, "format": "elf"})
            try:
                dump = ElfVmcore.open(path)
            except KcrashError as exc:
                raise LiveTargetError(f"QEMU's ELF dump of {self.address} is unreadable: {exc}") from exc
            try:
                return dump.vmcoreinfo_or_none()
            finally:
                dump.close()

    def close(self) -> None:
        """Close the connection (bounded by the timeout)."""
        if self._loop.is_closed():
            return
        with contextlib.suppress(LiveTargetError):
            self._run(self._qmp.disconnect(), "disconnect")
        self._loop.close()


def _socket_address(address: str | socket.socket) -> str | tuple[str, int] | socket.socket:
    if isinstance(address, socket.socket) or ":" not in address or address.startswith(("/", ".")):
        return address
    host, _, port = address.rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise LiveTargetError(f"cannot connect to QMP at {address}: bad port {port!r}") from None


def _one_line(exc: BaseException) -> str:
    # qemu.qmp's ConnectError says "Failed to establish connection: [Errno 2] …"; keep the first line.
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
