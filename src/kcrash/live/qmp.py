"""
kcrash.live.qmp
===============

A small synchronous QMP client (QEMU Machine Protocol: one JSON object per line over a Unix or
TCP socket) for what live debugging needs beside the gdbstub: the run state (``query-status``,
``stop``, ``cont``), whether KVM is in use (``query-kvm``), and the guest's VMCOREINFO. QMP has no
"read VMCOREINFO" command; :meth:`QmpClient.read_vmcoreinfo` asks QEMU for an ELF dump of one
page of guest memory (``dump-guest-memory`` with ``begin``/``length``): its notes carry the
VMCOREINFO the guest registered with ``-device vmcoreinfo`` (the guest must have ``qemu_fw_cfg``).
The note is parsed by :mod:`kcrash.dumps`; the caller validates it against the running kernel.
Asynchronous events are skipped.
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import cast

from kcrash.dumps.elf_vmcore import ElfVmcore
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import KcrashError, LiveTargetError

__all__ = ["QmpClient"]

JsonValue = dict[str, object] | list[object] | str | int | float | bool | None
_MAX_LINE = 16 << 20  # one reply; the longest QEMU sends (HMP text of 'info mtree -f') is far shorter


class QmpClient:
    """A QMP connection (Unix socket path or ``HOST:PORT``)."""

    def __init__(self, address: str, *, timeout: float = 10.0) -> None:
        self.address = address
        self.timeout = timeout
        self._buf = b""
        try:
            if ":" in address and not address.startswith(("/", ".")):
                host, _, port = address.rpartition(":")
                self._sock = socket.create_connection((host, int(port)), timeout=timeout)
            else:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(address)
        except (OSError, ValueError) as exc:
            raise LiveTargetError(f"cannot connect to QMP at {address}: {exc}") from exc
        greeting = self._recv()
        if not isinstance(greeting, dict) or "QMP" not in greeting:
            raise LiveTargetError(f"{address} did not send a QMP greeting")
        self.execute("qmp_capabilities")

    def _recv(self) -> JsonValue:
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                raise LiveTargetError(f"QMP at {self.address} did not answer within {self.timeout:g} s")
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                raise LiveTargetError(f"QMP at {self.address} failed: {exc}") from exc
            if not chunk:
                raise LiveTargetError(f"QMP at {self.address} closed the connection")
            self._buf += chunk
            if len(self._buf) > _MAX_LINE and b"\n" not in chunk:  # the line so far had none
                raise LiveTargetError(f"QMP at {self.address} sent a line longer than {_MAX_LINE} bytes")
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            return cast(JsonValue, json.loads(line))
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise LiveTargetError(f"QMP at {self.address} sent malformed JSON: {line[:80]!r}") from exc

    def execute(self, command: str, arguments: dict[str, object] | None = None) -> JsonValue:
        """Run ``command`` and return its ``return`` value; LiveTargetError on a QMP error."""
        msg: dict[str, object] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(msg).encode() + b"\r\n")
        except OSError as exc:
            raise LiveTargetError(f"QMP at {self.address} failed: {exc}") from exc
        while True:
            reply = self._recv()
            if isinstance(reply, dict) and "event" in reply:
                continue
            if isinstance(reply, dict) and "error" in reply:
                err = reply["error"]
                desc = err.get("desc") if isinstance(err, dict) else err
                raise LiveTargetError(f"QMP {command} failed: {desc}")
            if isinstance(reply, dict) and "return" in reply:
                return cast(JsonValue, reply["return"])
            raise LiveTargetError(f"unexpected QMP reply to {command}: {str(reply)[:80]}")

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
        """Close the connection."""
        with contextlib.suppress(OSError):
            self._sock.close()
