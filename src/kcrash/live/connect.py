"""
kcrash.live.connect
===================

:func:`attach`: connect to a gdb stub (``HOST:PORT`` or a serial device), learn the kernel's
VMCOREINFO (from QMP when a socket is given, else found in guest memory and validated), and return
a :class:`~kcrash.live.session.LiveSession`. A higher layer may pass ``binder_factory`` to give the
session symbols and types (the ``kcrash live`` command does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import FaultError, LiveTargetError
from kcrash.live.gdbremote.client import GdbRemoteClient
from kcrash.live.gdbremote.transport import open_transport
from kcrash.live.memory import LiveDump, find_vmcoreinfo_in_memory
from kcrash.live.qmp import QmpClient
from kcrash.live.session import Binder, LiveSession

__all__ = ["attach", "validate_vmcoreinfo"]

_START_KERNEL = 0xFFFFFFFF81000000


def attach(target: str, *, qmp: str | None = None, binder_factory: Callable[[LiveSession], Binder] | None = None,
           timeout: float = 5.0, hw_slots: int | None = None, keep_stopped: bool = False,
           baud: int = 115200) -> LiveSession:
    """Attach to ``target`` (the guest stops); use the session as a context manager."""
    client = GdbRemoteClient(open_transport(target, connect_timeout=timeout, baud=baud), timeout=timeout)
    qmp_client = None
    try:
        client.connect()
        qmp_client = QmpClient(qmp, timeout=max(timeout, 10.0)) if qmp else None
        kvm = qmp_client.kvm_enabled() if qmp_client is not None else None
        dump = LiveDump(client, None)
        dump.vmcoreinfo = _vmcoreinfo(dump, qmp_client)
        session = LiveSession(client, dump, qmp=qmp_client, hw_slots=hw_slots or (4 if kvm else None),
                              keep_stopped=keep_stopped, step_over_inserted=kvm is False,
                              reconnect=lambda: open_transport(target, connect_timeout=timeout, baud=baud))
    except BaseException:
        with contextlib.suppress(LiveTargetError):  # resume a QEMU guest the connect paused
            client.detach()
        if qmp_client is not None:
            qmp_client.close()
        raise
    if binder_factory is not None:
        try:
            session.binder = binder_factory(session)
        except BaseException:
            session.detach()
            raise
    return session


def _vmcoreinfo(dump: LiveDump, qmp: QmpClient | None) -> VmcoreInfo | None:
    info = qmp.read_vmcoreinfo() if qmp is not None else None
    if info is None and dump.has_physical:
        info = find_vmcoreinfo_in_memory(dump)
    if info is not None:
        validate_vmcoreinfo(dump, info)
    return info


def validate_vmcoreinfo(dump: LiveDump, info: VmcoreInfo) -> None:
    """Check that VMCOREINFO describes the running kernel: its ``KERNELOFFSET`` must put
    ``_text`` where kernel text is mapped, and ``init_uts_ns`` must hold its ``OSRELEASE``.
    Read through ``dump``, which puts the stub back in virtual mode after a physical scan (the
    in-memory VMCOREINFO search leaves it in physical mode)."""
    offset = info.kerneloffset
    uts = info.get_symbol_or_none("init_uts_ns")
    try:
        if offset is not None:
            dump.read_virtual_uncached(_START_KERNEL + offset, 1)
        if uts is not None and info.osrelease:
            name = _offset_or_zero(info, "uts_namespace.name")
            release = dump.read_virtual_uncached(uts + name + 65 * 2, 65).split(b"\0", 1)[0].decode("ascii", "replace")
            if release != info.osrelease:
                raise LiveTargetError(f"VMCOREINFO says {info.osrelease} but the running kernel is {release}")
    except FaultError as exc:
        raise LiveTargetError(f"VMCOREINFO does not match the running kernel: {exc}") from exc


def _offset_or_zero(info: VmcoreInfo, member: str) -> int:
    try:
        return info.get_offset(member)
    except LookupError:
        return 0
