"""
kcrash.metrics._prometheus
==========================

The Prometheus view of :mod:`kcrash.metrics`: a custom prometheus_client collector that reads the
plain counters at every scrape, a registry holding only it, and the loopback HTTP server.
Imported only when metrics are exported, so ordinary commands do not pay for prometheus_client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

import kcrash.metrics as m

__all__ = ["KcrashCollector", "make_registry", "start_server"]


class KcrashCollector(Collector):
    """Yields every kcrash metric from the process's counters."""

    def collect(self) -> Iterator[Metric]:
        """The metric families, read now."""
        snap = m.snapshot()
        for f in fields(m.Counters):
            yield CounterMetricFamily(f"kcrash_{f.name}", m.COUNTER_HELP[f.name], value=snap.counters[f.name])
        rate = snap.cache_hit_rate
        yield GaugeMetricFamily("kcrash_page_cache_hit_ratio",
                                "Page-cache hits over lookups (NaN before any lookup).",
                                value=float("nan") if rate is None else rate)
        yield CounterMetricFamily("kcrash_debug_time_seconds", "Time spent in kcrash commands.",
                                  value=snap.debug_seconds)
        yield self._phases(snap)
        yield self._latency(snap)

    @staticmethod
    def _phases(snap: m.Snapshot) -> Metric:
        family = SummaryMetricFamily("kcrash_phase_seconds", "Time per phase of the work (nested phases overlap).",
                                     labels=["phase"])
        for name, (count, seconds) in sorted(snap.phases.items()):
            family.add_metric([name], count_value=count, sum_value=seconds)
        return family

    @staticmethod
    def _latency(snap: m.Snapshot) -> Metric:
        buckets = [(_bound(bound), count) for bound, count in snap.latency_buckets]
        return HistogramMetricFamily("kcrash_live_stop_resume_seconds",
                                     "Live targets: time from a stop to the next resume.",
                                     buckets=buckets, sum_value=snap.latency_sum)


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def make_registry() -> CollectorRegistry:
    """A registry with the kcrash collector only (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KcrashCollector())
    return registry


def start_server(port: int, addr: str) -> tuple[int, Callable[[], None]]:
    """Start the metrics HTTP server on ``addr:port``; return the bound port and a stopper."""
    server, thread = start_http_server(port, addr=addr, registry=make_registry())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return int(server.server_address[1]), stop
