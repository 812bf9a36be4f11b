"""kcrash.metrics._prometheus directly: the registry holds the kcrash collector only (no process or
platform collectors), every counter of kcrash.metrics.Counters becomes one counter family read at
collection time (not at registration), and the latency histogram's last bucket is ``+Inf``. The
exposition text and the HTTP server are tested through kcrash.metrics in test_metrics.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields

import pytest

from kcrash import metrics
from kcrash.metrics._prometheus import KcrashCollector, make_registry


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def test_registry_has_only_kcrash_metrics() -> None:
    names = {family.name for family in make_registry().collect()}
    assert names and all(name.startswith("kcrash_") for name in names)
    assert {f"kcrash_{f.name}" for f in fields(metrics.Counters)} <= names


def test_values_are_read_at_collection() -> None:
    registry = make_registry()
    metrics.COUNTERS.pages_read += 11  # after registration
    families = {family.name: family for family in KcrashCollector().collect()}
    assert families["kcrash_pages_read"].samples[0].value == 11
    assert registry.get_sample_value("kcrash_pages_read_total") == 11


def test_latency_histogram_ends_at_inf() -> None:
    metrics.observe_latency(1e9)
    histogram = next(f for f in KcrashCollector().collect() if f.name == "kcrash_live_stop_resume_seconds")
    buckets = [s for s in histogram.samples if s.name.endswith("_bucket")]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 1
    assert all(s.value == 0 for s in buckets[:-1])
