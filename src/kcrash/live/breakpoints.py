"""
kcrash.live.breakpoints
=======================

Break- and watchpoints of a live session: the :class:`Breakpoint` records (kind, address, length,
condition, handler, hit count, enabled) and the :class:`BreakpointTable` that inserts them into the
stub (``Z0``–``Z4``) and removes them (``z``), keeps the count of hardware debug-register slots
(``hw_slots``: 4 under KVM, unlimited under TCG where QEMU emulates them) and refuses clearly when a
new hardware break- or watchpoint would exceed it. Resolving symbols and typed expressions to
addresses is the session's binder's job; this module sees addresses only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kcrash.errors import LiveTargetError

if TYPE_CHECKING:
    from kcrash.live.gdbremote.client import GdbRemoteClient
    from kcrash.live.session import HitContext

__all__ = ["KINDS", "WATCH_KINDS", "Breakpoint", "BreakpointTable", "Condition", "Handler"]

#: kinds of points and their ``Z`` types: software/hardware breakpoints, write/read/access watchpoints
KINDS = ("software", "hardware", "write", "read", "access")
WATCH_KINDS = ("write", "read", "access")
_HW_KINDS = ("hardware", *WATCH_KINDS)
_WATCH_LENGTHS = (1, 2, 4, 8)

#: ``condition(ctx) -> bool``: stop only when true
Condition = Callable[["HitContext"], bool]
#: ``handler(ctx) -> bool | None``: True (stop and report) or False/None (continue)
Handler = Callable[["HitContext"], "bool | None"]


@dataclass(slots=True)
class Breakpoint:
    """One break- or watchpoint. ``spec`` is what the user wrote (``jiffies_64``,
    ``schedule+4``, ``0xffffffff81000000``); ``function`` the symbol whose prototype types the
    arguments, when known. ``old_value`` holds the watched bytes as last seen."""

    number: int
    kind: str
    address: int
    length: int
    spec: str
    condition: Condition | None = None
    handler: Handler | None = None
    function: str | None = None
    enabled: bool = True
    inserted: bool = False
    hits: int = 0
    ignore_count: int = 0
    old_value: bytes | None = None

    @property
    def is_watchpoint(self) -> bool:
        """True for write/read/access watchpoints."""
        return self.kind in WATCH_KINDS

    @property
    def uses_hw_slot(self) -> bool:
        """True when the point needs a debug register (hardware breakpoints, watchpoints)."""
        return self.kind in _HW_KINDS

    def covers(self, address: int) -> bool:
        """True if a watchpoint report of ``address`` belongs to this point."""
        return self.address <= address < self.address + self.length


def _check(kind: str, length: int) -> None:
    if kind not in KINDS:
        raise LiveTargetError(f"unknown breakpoint kind {kind!r} (use one of {', '.join(KINDS)})")
    if kind in WATCH_KINDS and length <= 0:
        raise LiveTargetError(f"watchpoint length must be positive, not {length}")


class BreakpointTable:
    """The session's points, numbered from 1, and their state in the stub."""

    def __init__(self, client: GdbRemoteClient, hw_slots: int | None = None) -> None:
        self.client = client
        self.hw_slots = hw_slots
        self._points: dict[int, Breakpoint] = {}
        self._next = 1

    def __iter__(self) -> Iterator[Breakpoint]:
        return iter(list(self._points.values()))

    def __len__(self) -> int:
        return len(self._points)

    def get(self, number: int) -> Breakpoint:
        """Return point ``number``; LiveTargetError if there is none."""
        try:
            return self._points[number]
        except KeyError:
            raise LiveTargetError(f"no breakpoint or watchpoint number {number}") from None

    def hw_in_use(self) -> int:
        """Debug-register slots used by enabled points (a watchpoint longer than 8 bytes or
        unaligned takes one slot per aligned 1/2/4/8-byte piece, as x86 debug registers do)."""
        return sum(len(_pieces(bp.address, bp.length)) if bp.is_watchpoint else 1
                   for bp in self._points.values() if bp.enabled and bp.uses_hw_slot)

    def add(self, kind: str, address: int, length: int, spec: str, **options: object) -> Breakpoint:
        """Create a point and insert it (the target must be stopped)."""
        _check(kind, length)
        bp = Breakpoint(self._next, kind, address, length, spec, **options)  # type: ignore[arg-type]
        self._ensure_slots(bp)
        self._points[bp.number] = bp
        self._next += 1
        try:
            self.insert(bp)
        except BaseException:
            del self._points[bp.number]
            raise
        return bp

    def _ensure_slots(self, bp: Breakpoint, extra: int | None = None) -> None:
        if self.hw_slots is None or not bp.uses_hw_slot:
            return
        need = extra if extra is not None else (len(_pieces(bp.address, bp.length)) if bp.is_watchpoint else 1)
        used = self.hw_in_use()
        if used + need > self.hw_slots:
            raise LiveTargetError(
                f"{bp.kind} point at {bp.spec} needs {need} hardware debug register(s) but {used} of the "
                f"target's {self.hw_slots} are in use (KVM has 4): delete or disable a hardware "
                f"breakpoint or watchpoint first, or use a software breakpoint")

    def insert(self, bp: Breakpoint) -> None:
        """Insert ``bp`` into the stub (no-op if already there or disabled)."""
        if bp.inserted or not bp.enabled:
            return
        done: list[tuple[int, int]] = []
        try:
            for address, length in self.stub_pieces(bp):
                if not self.client.insert_point(bp.kind, address, length):
                    raise LiveTargetError(f"the stub does not support {bp.kind} points (Z{_ztype(bp.kind)})")
                done.append((address, length))
        except LiveTargetError as exc:
            for address, length in done:
                self.client.remove_point(bp.kind, address, length)
            raise LiveTargetError(_insert_failure(bp, exc, self.hw_in_use())) from exc
        bp.inserted = True

    def stub_pieces(self, bp: Breakpoint) -> list[tuple[int, int]]:
        """The ``(address, length)`` pairs ``bp`` occupies in the stub."""
        if not bp.is_watchpoint:
            return [(bp.address, 1)]
        return _pieces(bp.address, bp.length)

    def remove(self, bp: Breakpoint) -> None:
        """Remove ``bp`` from the stub (it stays in the table)."""
        if not bp.inserted:
            return
        for address, length in self.stub_pieces(bp):
            self.client.remove_point(bp.kind, address, length)
        bp.inserted = False

    def delete(self, number: int) -> Breakpoint:
        """Remove point ``number`` from the stub and the table."""
        bp = self.get(number)
        self.remove(bp)
        del self._points[number]
        return bp

    def enable(self, number: int) -> Breakpoint:
        """Enable and insert point ``number``."""
        bp = self.get(number)
        if not bp.enabled:
            bp.enabled = False
            self._ensure_slots(bp)
            bp.enabled = True
            self.insert(bp)
        return bp

    def disable(self, number: int) -> Breakpoint:
        """Disable and remove point ``number`` (its slot is freed)."""
        bp = self.get(number)
        self.remove(bp)
        bp.enabled = False
        return bp

    def at_pc(self, pc: int) -> list[Breakpoint]:
        """Enabled breakpoints (not watchpoints) at ``pc``."""
        return [bp for bp in self._points.values() if bp.enabled and not bp.is_watchpoint and bp.address == pc]

    def watching(self, address: int, kind: str | None) -> list[Breakpoint]:
        """Enabled watchpoints that cover a reported ``address`` (and match ``kind`` when given:
        ``watch``/``rwatch``/``awatch``)."""
        wanted = {"watch": ("write", "access"), "rwatch": ("read", "access"), "awatch": WATCH_KINDS}
        kinds = wanted.get(kind or "", WATCH_KINDS)
        return [bp for bp in self._points.values() if bp.enabled and bp.kind in kinds and bp.covers(address)]

    def remove_all(self) -> list[str]:
        """Remove every inserted point from the stub; return the failures (never raises for one)."""
        failures = []
        for bp in self:
            try:
                self.remove(bp)
            except LiveTargetError as exc:
                failures.append(f"#{bp.number} {bp.spec}: {exc}")
        return failures


def _ztype(kind: str) -> int:
    return KINDS.index(kind)


def _pieces(address: int, length: int) -> list[tuple[int, int]]:
    # Split [address, address+length) into naturally aligned 1/2/4/8-byte pieces.
    pieces, pos, end = [], address, address + length
    while pos < end:
        size = next(s for s in reversed(_WATCH_LENGTHS) if pos % s == 0 and pos + s <= end)
        pieces.append((pos, size))
        pos += size
    return pieces


def _insert_failure(bp: Breakpoint, exc: LiveTargetError, used: int) -> str:
    text = f"cannot insert {bp.kind} point #{bp.number} at {bp.spec} ({bp.address:#x}): {exc}"
    if bp.uses_hw_slot:
        text += (f"; the target may be out of hardware debug registers ({used} in use; KVM has 4): "
                 f"delete or disable one")
    return text
