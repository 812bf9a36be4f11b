"""
kcrash.live
===========

Live kernel debugging over the GDB Remote Serial Protocol (QEMU gdbstub; kgdb over a TCP bridge or a
serial line), and the running kernel as one more memory source. :func:`attach` returns a
:class:`LiveSession` (break- and watchpoints with Python handlers, run control, clean detach,
metrics); :class:`LiveDump` is the memory source :func:`kcrash.memory.open_kernel_memory` accepts
like a dump. Protocol framing is in :mod:`kcrash.live.gdbremote` (pure ``packets``, ``tdesc``;
``transport``, ``client``). Symbols and types reach a session through a :class:`Binder` supplied by
a higher layer (``kcrash.cli.live.attach_kernel`` gives kallsyms + BTF).
"""

from kcrash.live.breakpoints import Breakpoint
from kcrash.live.connect import attach
from kcrash.live.memory import LiveDump
from kcrash.live.session import AddressBinder, Binder, HitContext, LiveSession, Location

__all__ = ["AddressBinder", "Binder", "Breakpoint", "HitContext", "LiveDump", "LiveSession", "Location", "attach"]
