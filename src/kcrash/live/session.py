"""
kcrash.live.session
===================

:class:`LiveSession`: live debugging of a kernel behind a gdb stub. It owns the
:class:`~kcrash.live.gdbremote.client.GdbRemoteClient`, the :class:`~kcrash.live.memory.LiveDump`
memory source and the :class:`~kcrash.live.breakpoints.BreakpointTable`; runs the target, matches
each stop to its break- or watchpoints, applies conditions and ignore counts, calls Python handlers
``handler(ctx)`` with a :class:`HitContext` and resumes unless a handler asks to stop; steps over
breakpoints; keeps :class:`SessionCounters`; and always detaches cleanly (every point removed, the
target left running unless ``keep_stopped``), also after Ctrl-C, exceptions and lost connections
(it reconnects once to clean up). Names, typed expressions, the current task and typed function
arguments come from a :class:`Binder` that a higher layer supplies; without one, only addresses
and raw registers are known.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

from kcrash import metrics
from kcrash.errors import LiveTargetError, MissingDebugInfoError
from kcrash.live.breakpoints import WATCH_KINDS, Breakpoint, BreakpointTable, Condition, Handler
from kcrash.live.gdbremote.client import GdbRemoteClient
from kcrash.live.gdbremote.packets import StopReply

if TYPE_CHECKING:
    from kcrash.live.gdbremote.transport import Transport
    from kcrash.live.memory import LiveDump
    from kcrash.live.qmp import QmpClient

__all__ = ["ARGUMENT_REGISTERS", "AddressBinder", "Binder", "HitContext", "LiveSession", "Location",
           "SessionCounters", "thread_cpu"]

#: x86-64 System V / kernel calling convention: integer arguments 1–6
ARGUMENT_REGISTERS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
_POLL = 0.25


@dataclass(frozen=True, slots=True)
class Location:
    """Where a spec resolved: ``address``, the natural ``size`` of the object (watchpoints),
    the ``function`` whose prototype types breakpoint arguments, and a display ``description``."""

    address: int
    size: int | None = None
    function: str | None = None
    description: str = ""


class Binder(Protocol):
    """What a higher layer knows about the kernel: symbols, types, tasks."""

    def resolve(self, spec: str) -> Location:
        """Resolve ``symbol``, ``symbol+offset``, an address or a typed expression."""
        ...

    def symbolize(self, address: int) -> str:
        """Return ``symbol+0xoff`` (or hex) for messages."""
        ...

    def current_task(self, ctx: HitContext) -> object:
        """Return the task running on the CPU that stopped (``struct task_struct *``)."""
        ...

    def arguments(self, ctx: HitContext, function: str | None) -> dict[str, object]:
        """Return the arguments of ``function`` at its entry, by name, as typed objects."""
        ...

    def value(self, ctx: HitContext, bp: Breakpoint, data: bytes) -> object:
        """Return watched bytes as a typed value (or the bytes themselves)."""
        ...

    def invalidate(self) -> None:
        """Forget anything cached about target memory (it is about to run)."""
        ...


def _parse_int(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


class AddressBinder:
    """The binder without debug info: numeric addresses, raw argument registers."""

    def resolve(self, spec: str) -> Location:
        """Accept ``0xADDR`` or ``0xADDR+OFF``."""
        base, _, off = spec.replace(" ", "").partition("+")
        address, offset = _parse_int(base), _parse_int(off or "0")
        if address is None or offset is None:
            raise MissingDebugInfoError(f"cannot resolve {spec!r} without symbols: give an address")
        return Location(address + offset, None, None, f"{address + offset:#x}")

    def symbolize(self, address: int) -> str:
        """Hex only."""
        return f"{address:#x}"

    def current_task(self, ctx: HitContext) -> object:
        """Needs symbols and types."""
        raise MissingDebugInfoError("the current task needs kernel symbols and types")

    def arguments(self, ctx: HitContext, function: str | None) -> dict[str, object]:
        """The six argument registers, untyped."""
        return {f"arg{i}": ctx.registers[r] for i, r in enumerate(ARGUMENT_REGISTERS)}

    def value(self, ctx: HitContext, bp: Breakpoint, data: bytes) -> object:
        """The bytes."""
        return data

    def invalidate(self) -> None:
        """Nothing cached."""


def thread_cpu(thread: str) -> int:
    """Return the CPU number of a QEMU gdbstub thread id (``01`` or ``p1.02`` → 0)."""
    tail = thread.rpartition(".")[2].lstrip("p")
    try:
        return max(int(tail, 16) - 1, 0)
    except ValueError:
        return 0


@dataclass(slots=True)
class SessionCounters:
    """Live-session metrics; stop→resume latency is from the stop reply to the resume packet."""

    breakpoint_hits: int = 0
    watchpoint_hits: int = 0
    handler_calls: int = 0
    stops: int = 0
    resumes: int = 0
    latency_count: int = 0
    latency_total: float = 0.0
    latency_max: float = 0.0
    #: ``watch:`` reports that matched no watchpoint (QEMU's left-over hits, see ``_watched``)
    stale_watch_reports: int = 0

    def record_latency(self, seconds: float) -> None:
        """Add one stop→resume interval."""
        self.latency_count += 1
        self.latency_total += seconds
        self.latency_max = max(self.latency_max, seconds)

    @property
    def latency_mean(self) -> float:
        """Mean stop→resume latency in seconds (0 when none)."""
        return self.latency_total / self.latency_count if self.latency_count else 0.0


class HitContext:
    """What a handler sees at a stop: the breakpoint, CPU, registers, and (through the binder)
    the current task and the function's typed arguments. For watchpoints, ``old_value`` and
    ``new_value`` hold the watched bytes before and after (``old``/``new`` typed)."""

    def __init__(self, session: LiveSession, stop: StopReply, thread: str,
                 registers: dict[str, int] | None = None) -> None:
        self.session = session
        self.stop = stop
        self.thread = thread
        if registers is not None:
            self.__dict__["registers"] = registers
        self.breakpoint: Breakpoint | None = None
        self.old_value: bytes | None = None
        self.new_value: bytes | None = None

    @property
    def cpu(self) -> int:
        """The CPU that stopped."""
        return thread_cpu(self.thread)

    @cached_property
    def registers(self) -> dict[str, int]:
        """All registers of the stopped vCPU (read on first use: one ``g`` packet)."""
        return self.session.client.read_registers()

    @cached_property
    def pc(self) -> int:
        """The instruction pointer (one ``p`` packet unless the registers are already read)."""
        regs = self.__dict__.get("registers")
        return regs["rip"] if regs is not None else self.session.client.read_register("rip")

    @cached_property
    def task(self) -> object:
        """The current task (``struct task_struct *``) of the stopped CPU."""
        return self.session.binder.current_task(self)

    @cached_property
    def args(self) -> dict[str, object]:
        """The function's arguments by name (typed when the binder has BTF)."""
        function = self.breakpoint.function if self.breakpoint is not None else None
        return self.session.binder.arguments(self, function)

    @property
    def old(self) -> object:
        """The watched value before the access, typed when possible."""
        return self._typed(self.old_value)

    @property
    def new(self) -> object:
        """The watched value after the access, typed when possible."""
        return self._typed(self.new_value)

    def _typed(self, data: bytes | None) -> object:
        if data is None or self.breakpoint is None:
            return None
        return self.session.binder.value(self, self.breakpoint, data)

    @property
    def symbol(self) -> str:
        """``pc`` as ``symbol+0xoff``."""
        return self.session.binder.symbolize(self.pc)

    def read(self, address: int, size: int) -> bytes:
        """Read virtual memory as the stopped CPU sees it (kernel cached, user space direct)."""
        return self.session.read(address, size)


class LiveSession:
    """A debugging session on one stub; use as a context manager so it always detaches."""

    def __init__(self, client: GdbRemoteClient, dump: LiveDump, *, binder: Binder | None = None,
                 qmp: QmpClient | None = None, hw_slots: int | None = None, keep_stopped: bool = False,
                 reconnect: Callable[[], Transport] | None = None, step_over_inserted: bool = False) -> None:
        self.client = client
        self.dump = dump
        self.binder: Binder = binder or AddressBinder()
        self.qmp = qmp
        self.keep_stopped = keep_stopped
        self.breakpoints = BreakpointTable(client, hw_slots)
        self.counters = SessionCounters()
        self.step_over_inserted = step_over_inserted
        self.last: HitContext | None = None
        self.detached = False
        self._reconnect = reconnect
        self._stopped_at = time.perf_counter()

    # --- context manager ----------------------------------------------------------------------

    def __enter__(self) -> LiveSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # --- points -------------------------------------------------------------------------------

    def break_at(self, spec: str, handler: Handler | None = None, *, condition: Condition | None = None,
                 hardware: bool = False, ignore: int = 0) -> Breakpoint:
        """Break at ``symbol``, ``symbol+offset`` or an address; ``handler(ctx)`` returns whether to stop."""
        loc = self.binder.resolve(spec)
        kind = "hardware" if hardware else "software"
        return self.breakpoints.add(kind, loc.address, 1, loc.description or spec, handler=handler,
                                    condition=condition, function=loc.function, ignore_count=ignore)

    def watch(self, spec: str, *, length: int | None = None, kind: str = "write", handler: Handler | None = None,
              condition: Condition | None = None, ignore: int = 0) -> Breakpoint:
        """Watch ``length`` bytes (default: the size of the expression's type, else 8) for
        ``kind`` accesses (``write``, ``read``, ``access``)."""
        if kind not in WATCH_KINDS:
            raise LiveTargetError(f"watch kind must be one of {', '.join(WATCH_KINDS)}, not {kind!r}")
        loc = self.binder.resolve(spec)
        size = length or loc.size or 8
        bp = self.breakpoints.add(kind, loc.address, size, loc.description or spec, handler=handler,
                                  condition=condition, ignore_count=ignore)
        bp.old_value = self._peek(bp.address, size)
        return bp

    def _peek(self, address: int, size: int) -> bytes | None:
        try:
            return self.dump.read_virtual_uncached(address, size)
        except LiveTargetError:
            return None

    def delete(self, number: int) -> Breakpoint:
        """Delete point ``number``."""
        return self.breakpoints.delete(number)

    def enable(self, number: int) -> Breakpoint:
        """Enable point ``number``."""
        return self.breakpoints.enable(number)

    def disable(self, number: int) -> Breakpoint:
        """Disable point ``number``."""
        return self.breakpoints.disable(number)

    # --- state --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the target runs."""
        return self.client.running

    @property
    def thread(self) -> str:
        """The thread (vCPU) of the last stop."""
        stop = self.client.last_stop
        return stop.thread if stop is not None and stop.thread else "1"

    def registers(self) -> dict[str, int]:
        """Registers of the stopped vCPU."""
        return self.client.read_registers()

    def read(self, address: int, size: int) -> bytes:
        """Read virtual memory of the stopped vCPU (the kernel half cached until resume)."""
        if address >= 0xFFFF800000000000:
            return self.dump.read_virtual(address, size)
        return self.dump.read_virtual_uncached(address, size)

    def metrics(self) -> dict[str, float | int]:
        """Counters of the session and the connection, flat."""
        c, m = self.counters, self.client.counters
        return {"breakpoint_hits": c.breakpoint_hits, "watchpoint_hits": c.watchpoint_hits,
                "handler_calls": c.handler_calls, "stops": c.stops, "resumes": c.resumes,
                "stop_resume_latency_mean_s": c.latency_mean, "stop_resume_latency_max_s": c.latency_max,
                "packets_sent": m.packets_sent, "packets_received": m.packets_received,
                "bytes_sent": m.bytes_sent, "bytes_received": m.bytes_received,
                "memory_cache_hits": self.dump.counters.hits, "memory_cache_misses": self.dump.counters.misses,
                "stale_watch_reports": c.stale_watch_reports}

    # --- execution ----------------------------------------------------------------------------

    def cont(self, timeout: float | None = None) -> HitContext | None:
        """Run until a stop to report (a point without handler, a handler returning True, an
        unexpected stop); return its context. With ``timeout``, interrupt the target after that
        many seconds and return None. Ctrl-C stops the target and re-raises KeyboardInterrupt."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            stop = self._resume_and_wait(deadline)
            if stop is None:
                return None
            ctx = self._dispatch(stop)
            if ctx is not None:
                self.last = ctx
                return ctx

    def run_for(self, seconds: float) -> HitContext | None:
        """Let the target run (handlers fire) for ``seconds``; return an early reported stop or None."""
        return self.cont(timeout=seconds)

    def _resume_and_wait(self, deadline: float | None) -> StopReply | None:
        pending = self._step_over()
        if pending is not None:
            return pending
        self._mark_resume()
        self.client.resume()
        try:
            while True:
                left = _POLL if deadline is None else min(_POLL, deadline - time.monotonic())
                if left <= 0:
                    self.client.interrupt()
                    self._mark_stop()
                    return None
                stop = self.client.wait_stop(left)
                if stop is not None:
                    self._mark_stop()
                    return stop
        except KeyboardInterrupt:
            if self.client.running and not self.client.closed:
                self.client.interrupt()
                self._mark_stop()
            raise

    def _mark_resume(self) -> None:
        self.dump.invalidate()
        self.binder.invalidate()
        self.counters.resumes += 1
        self.counters.record_latency(time.perf_counter() - self._stopped_at)
        metrics.COUNTERS.live_resumes += 1
        metrics.observe_latency(time.perf_counter() - self._stopped_at)

    def _mark_stop(self) -> None:
        self._stopped_at = time.perf_counter()
        self.counters.stops += 1
        metrics.COUNTERS.live_stops += 1

    def _step_over(self) -> StopReply | None:
        # Resuming on an inserted breakpoint would hit it again: step that vCPU alone first.
        last = self.last
        points = self._points_at_stop()
        if last is None or not points:
            return None
        stop = self._step_past(points, last.thread)
        return stop if stop.signal != 5 or self._watched(stop) else None

    def _points_at_stop(self) -> list[Breakpoint]:
        # The inserted breakpoints at the pc of the current stop (none once the target has moved on).
        last = self.last
        if last is None or last.stop is not self.client.last_stop:
            return []
        return [bp for bp in self.breakpoints.at_pc(last.pc) if bp.inserted]

    def _step_past(self, points: list[Breakpoint], thread: str) -> StopReply:
        # One instruction of ``thread`` with ``points`` lifted for it; QEMU under TCG ignores
        # breakpoints while single-stepping (step_over_inserted), so there the points can stay.
        if not self.step_over_inserted:
            for bp in points:
                self.breakpoints.remove(bp)
        self._mark_resume()
        stop = self.client.step(thread)
        self._mark_stop()
        for bp in points:
            self.breakpoints.insert(bp)
        return stop

    def step(self) -> HitContext:
        """Execute one instruction on the stopped vCPU (``next-instruction``)."""
        stop = self._step_past(self._points_at_stop(), self.thread)
        ctx = HitContext(self, stop, stop.thread or self.thread, self.client.read_registers())
        self.last = ctx
        return ctx

    def interrupt(self) -> HitContext:
        """Stop a running target."""
        stop = self.client.interrupt()
        self._mark_stop()
        ctx = HitContext(self, stop, stop.thread or self.thread, self.client.read_registers())
        self.last = ctx
        return ctx

    def _dispatch(self, stop: StopReply) -> HitContext | None:
        if stop.is_exit:
            raise LiveTargetError(f"the target {stop.kind} (status {stop.signal})")
        ctx = HitContext(self, stop, stop.thread or self.thread)
        self.last = ctx
        watched = self._watched(stop)
        # Breakpoints at pc count whatever the stop reply says: the next resume steps over them, so
        # they are hit now or never (a watch report may come with a breakpoint stop, see _watched).
        hit = self.breakpoints.at_pc(ctx.pc)
        self.counters.watchpoint_hits += bool(watched)
        self.counters.breakpoint_hits += bool(hit)
        metrics.COUNTERS.watchpoint_hits += bool(watched)
        metrics.COUNTERS.breakpoint_hits += bool(hit)
        if not watched and not hit:
            return ctx
        reporting = [bp for bp in [*watched, *hit] if self._hit(ctx, bp)]
        if not reporting:
            return None
        ctx.breakpoint = reporting[0]
        return ctx

    def _watched(self, stop: StopReply) -> list[Breakpoint]:
        # QEMU's gdbstub (7.2) puts a vCPU's watchpoint hit into a stop reply only when that vCPU is
        # the one reported. When two vCPUs stop at once (one at a watchpoint, the other at a
        # breakpoint) the unreported one keeps its hit, also after the watchpoint is removed, and
        # its next reported stop, e.g. at a breakpoint in a later session, carries that stale
        # ``watch:`` address (read from the freed watchpoint). A report that matches none of our
        # watchpoints is therefore no watchpoint hit; the stop is judged by its pc.
        if stop.watch_address is None:
            return []
        points = self.breakpoints.watching(stop.watch_address, stop.watch_kind)
        if not points:
            self.counters.stale_watch_reports += 1
        return points

    def _hit(self, ctx: HitContext, bp: Breakpoint) -> bool:
        bp.hits += 1
        ctx.breakpoint = bp
        ctx.__dict__.pop("args", None)
        if bp.is_watchpoint:
            ctx.old_value, ctx.new_value = bp.old_value, self._peek(bp.address, bp.length)
            bp.old_value = ctx.new_value
        if bp.hits <= bp.ignore_count:
            return False
        if bp.condition is not None and not bp.condition(ctx):
            return False
        if bp.handler is None:
            return True
        self.counters.handler_calls += 1
        return bool(bp.handler(ctx))

    # --- detach -------------------------------------------------------------------------------

    def detach(self, keep_stopped: bool | None = None) -> list[str]:
        """Remove every point and leave the target running (or stopped with ``keep_stopped``).
        Returns problems that did not prevent the detach; raises LiveTargetError only when the
        target could not be reached at all (after one reconnection attempt)."""
        if self.detached:
            return []
        self.detached = True
        keep = self.keep_stopped if keep_stopped is None else keep_stopped
        try:
            return self._detach_on(self.client, keep)
        except (LiveTargetError, KeyboardInterrupt) as exc:
            return self._recover(keep, exc)

    def _detach_on(self, client: GdbRemoteClient, keep: bool) -> list[str]:
        if client.running:
            client.interrupt()
        failures = self.breakpoints.remove_all() if client is self.client else _remove_on(client, self.breakpoints)
        if client.closed:
            raise LiveTargetError(failures[0] if failures else f"lost {client.transport.description}")
        if keep:
            client.close()  # QEMU keeps the guest paused when gdb goes away without 'D'
        else:
            client.detach()  # 'D': QEMU removes its points and resumes the guest
        if self.qmp is not None:
            self.qmp.close()
        return failures

    def _recover(self, keep: bool, exc: BaseException) -> list[str]:
        self.client.close()
        if self._reconnect is None:
            raise LiveTargetError(f"lost the target before detaching ({exc}); its break- and watchpoints "
                                  f"may still be inserted") from exc
        try:
            client = GdbRemoteClient(self._reconnect(), timeout=self.client.timeout)
            client.connect()
            return [f"reconnected after: {exc}", *self._detach_on(client, keep)]
        except LiveTargetError as again:
            raise LiveTargetError(f"lost the target ({exc}) and could not reconnect to remove "
                                  f"{len(self.breakpoints)} point(s): {again}") from again


def _remove_on(client: GdbRemoteClient, table: BreakpointTable) -> list[str]:
    # Remove the table's points through a fresh connection (the old one is gone).
    failures = []
    for bp in table:
        for address, length in table.stub_pieces(bp):
            try:
                client.remove_point(bp.kind, address, length)
            except LiveTargetError as exc:
                failures.append(f"#{bp.number} {bp.spec}: {exc}")
        bp.inserted = False
    return failures
