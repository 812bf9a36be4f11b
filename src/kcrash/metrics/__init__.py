"""
kcrash.metrics
==============

The debugger's own metrics, per process (the article's ``struct debug_metrics``): breakpoint and
watchpoint hits, stack traces captured, memory dumps collected with their total size, pages read and
decompressed, the page cache's hits and misses, bytes read from dump files, GDB remote packets and
bytes, live stop→resume latency, time per phase and total debug time.

Every layer may count here (this package imports nothing from kcrash), so the counters are plain
integers bumped on the hot paths (one attribute add; no lock, no import of prometheus_client). The
Prometheus view (:func:`registry`, :func:`exposition`, :func:`serve`) and :func:`snapshot` read
them when asked. Long work announces itself with :func:`progress` (a no-op unless the CLI installed
a hook with :func:`set_progress_hook`) and is timed with :func:`phase`. This package neither prints
nor reads the environment.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

__all__ = [
    "COUNTERS",
    "COUNTER_HELP",
    "LATENCY_BUCKETS",
    "Counters",
    "ProgressFn",
    "ProgressHook",
    "Snapshot",
    "debug_time",
    "exposition",
    "observe_latency",
    "phase",
    "progress",
    "record_phase",
    "registry",
    "reset",
    "serve",
    "set_progress_hook",
    "snapshot",
    "start_debug",
    "stop_debug",
]

#: ``progress(done, total)`` of one piece of long work
ProgressFn = Callable[[int, int], None]
#: ``hook(description)``: a context manager giving a :data:`ProgressFn` (or None: no display)
ProgressHook = Callable[[str], AbstractContextManager[ProgressFn | None]]

#: upper bounds (seconds) of the stop→resume latency histogram
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class Counters:
    """Monotonic counts; the field name plus ``_total`` is the Prometheus name (``kcrash_`` prefix)."""

    breakpoint_hits: int = 0
    watchpoint_hits: int = 0
    stack_traces_captured: int = 0
    stack_frames_unwound: int = 0
    memory_dumps_collected: int = 0
    memory_dump_bytes: int = 0
    pages_read: int = 0
    pages_decompressed: int = 0
    page_cache_hits: int = 0
    page_cache_misses: int = 0
    dump_bytes_read: int = 0
    gdb_packets_sent: int = 0
    gdb_packets_received: int = 0
    gdb_bytes_sent: int = 0
    gdb_bytes_received: int = 0
    live_stops: int = 0
    live_resumes: int = 0


#: the help text of each counter
COUNTER_HELP: dict[str, str] = {
    "breakpoint_hits": "Breakpoint hits reported by live targets.",
    "watchpoint_hits": "Watchpoint hits reported by live targets.",
    "stack_traces_captured": "Stacks unwound (one per task or CPU walked).",
    "stack_frames_unwound": "Frames found by the unwinder (scan frames included).",
    "memory_dumps_collected": "Dump files written (collection from a guest or conversion).",
    "memory_dump_bytes": "Total size in bytes of the dump files written.",
    "pages_read": "Pages of memory read from dump files (page cache misses that reached the file).",
    "pages_decompressed": "Pages decompressed from kdump-compressed files.",
    "page_cache_hits": "Page reads served by the decompressed-page cache.",
    "page_cache_misses": "Page reads the decompressed-page cache could not serve.",
    "dump_bytes_read": "Bytes read from dump files.",
    "gdb_packets_sent": "GDB remote protocol packets sent.",
    "gdb_packets_received": "GDB remote protocol packets received.",
    "gdb_bytes_sent": "Bytes sent to GDB remote stubs.",
    "gdb_bytes_received": "Bytes received from GDB remote stubs.",
    "live_stops": "Times a live target stopped (breakpoint, watchpoint, step, interrupt).",
    "live_resumes": "Times a live target was resumed.",
}


@dataclass(slots=True)
class _Timings:
    # phase name -> (count, seconds); latency histogram counts per bucket (+Inf last); debug time.
    phases: dict[str, tuple[int, float]] = field(default_factory=dict)
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    debug_seconds: float = 0.0
    debug_started: float | None = None


#: the process's counters: bump with ``COUNTERS.pages_read += n``
COUNTERS = Counters()
_TIMINGS = _Timings()
_PROGRESS: list[ProgressHook] = []


def reset() -> None:
    """Zero every counter and timing (tests; a long-running process starting over)."""
    for f in fields(Counters):
        setattr(COUNTERS, f.name, 0)
    fresh = _Timings()
    for name in ("phases", "latency_buckets", "latency_sum", "debug_seconds", "debug_started"):
        setattr(_TIMINGS, name, getattr(fresh, name))


# -- timings ------------------------------------------------------------------------------------

def record_phase(name: str, seconds: float) -> None:
    """Add one run of phase ``name`` that took ``seconds``."""
    count, total = _TIMINGS.phases.get(name, (0, 0.0))
    _TIMINGS.phases[name] = (count + 1, total + seconds)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the ``with`` body as one run of phase ``name`` (also when it raises). Nested phases
    are each timed in full, so phase times may add up to more than the debug time."""
    start = time.perf_counter()
    try:
        yield
    finally:
        record_phase(name, time.perf_counter() - start)


def observe_latency(seconds: float) -> None:
    """Add one live stop→resume interval to the latency histogram."""
    _TIMINGS.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
    _TIMINGS.latency_sum += seconds


def start_debug() -> None:
    """Start the debug-time clock (the CLI does this when a command starts)."""
    if _TIMINGS.debug_started is None:
        _TIMINGS.debug_started = time.perf_counter()


def stop_debug() -> None:
    """Stop the debug-time clock, adding the time since :func:`start_debug`."""
    if _TIMINGS.debug_started is not None:
        _TIMINGS.debug_seconds += time.perf_counter() - _TIMINGS.debug_started
        _TIMINGS.debug_started = None


def debug_time() -> float:
    """Seconds spent in commands so far (the running one included)."""
    running = 0.0 if _TIMINGS.debug_started is None else time.perf_counter() - _TIMINGS.debug_started
    return _TIMINGS.debug_seconds + running


# -- progress -----------------------------------------------------------------------------------

def set_progress_hook(hook: ProgressHook | None) -> None:
    """Install (None: remove) what draws progress; only the CLI does this, for a terminal."""
    _PROGRESS[:] = [hook] if hook is not None else []


def _ignore(done: int, total: int) -> None:
    pass


@contextmanager
def progress(description: str) -> Iterator[ProgressFn]:
    """A ``progress(done, total)`` callback for long work, drawn by the installed hook (if any)."""
    if not _PROGRESS:
        yield _ignore
        return
    with _PROGRESS[0](description) as update:
        yield update if update is not None else _ignore


# -- views --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Snapshot:
    """The metrics at one moment, as plain values (for ``--stats`` and ``--json``)."""

    counters: dict[str, int]
    phases: dict[str, tuple[int, float]]
    latency_count: int
    latency_sum: float
    debug_seconds: float
    #: cumulative (upper bound, count) pairs of the latency histogram, ``inf`` last
    latency_buckets: tuple[tuple[float, int], ...]

    @property
    def cache_hit_rate(self) -> float | None:
        """Page-cache hits over lookups (None before any lookup)."""
        lookups = self.counters["page_cache_hits"] + self.counters["page_cache_misses"]
        return self.counters["page_cache_hits"] / lookups if lookups else None


def snapshot() -> Snapshot:
    """Copy the current values."""
    return Snapshot({f.name: getattr(COUNTERS, f.name) for f in fields(Counters)}, dict(_TIMINGS.phases),
                    sum(_TIMINGS.latency_buckets), _TIMINGS.latency_sum, debug_time(), _latency_buckets())


def registry() -> CollectorRegistry:
    """A prometheus_client registry exposing these metrics (read at every collection)."""
    # lazy: +124 ms CPU to import it after this module (measured, loaded host)
    from kcrash.metrics._prometheus import make_registry

    return make_registry()


def exposition() -> bytes:
    """The metrics in the Prometheus text exposition format."""
    # lazy: +80 ms CPU to import it after this module (measured, loaded host)
    from prometheus_client import generate_latest

    return generate_latest(registry())


def serve(port: int, addr: str = "127.0.0.1") -> tuple[int, Callable[[], None]]:
    """Serve the metrics over HTTP on ``addr:port`` (loopback by default) from a daemon thread;
    return the port bound (``port`` 0 picks a free one) and a function that stops the server."""
    # lazy: +124 ms CPU to import it after this module (measured, loaded host)
    from kcrash.metrics._prometheus import start_server

    return start_server(port, addr)


def _latency_buckets() -> tuple[tuple[float, int], ...]:
    # Cumulative (upper bound, count) pairs, +Inf last, as Prometheus histograms want them.
    out, running = [], 0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), _TIMINGS.latency_buckets, strict=True):
        running += count
        out.append((bound, running))
    return tuple(out)
