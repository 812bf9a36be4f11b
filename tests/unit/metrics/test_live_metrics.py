"""A live session (against the fake GDB stub of the live tests) feeds kcrash.metrics: breakpoint and
watchpoint hits, stops/resumes with their latency histogram, and GDB packets/bytes agree with the
session's own counters; the Prometheus exposition shows them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kcrash import metrics
from kcrash.live.gdbremote.client import GdbRemoteClient
from kcrash.live.memory import LiveDump
from kcrash.live.session import HitContext, LiveSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "live"))
from gdbstub_fake import FakeStub

BASE = 0xFFFFFFFF81000000


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()


def test_live_counters_reach_the_metrics() -> None:
    stub = FakeStub()
    stub.memory[0x100:0x108] = (41).to_bytes(8, "little")
    hits: list[int] = []

    def handler(ctx: HitContext) -> bool:
        hits.append(ctx.pc)
        return len(hits) == 3

    client = GdbRemoteClient(stub.transport(), timeout=1.0)
    client.connect()
    with LiveSession(client, LiveDump(client, None), reconnect=stub.transport) as session:
        session.break_at(hex(BASE + 0x40), handler)
        session.cont()
        session.delete(1)
        session.watch(hex(BASE + 0x100))
        session.cont()
        own = session.metrics()
    snap = metrics.snapshot()
    assert snap.counters["breakpoint_hits"] == own["breakpoint_hits"] == 3
    assert snap.counters["watchpoint_hits"] == own["watchpoint_hits"] == 1
    assert snap.counters["live_resumes"] == own["resumes"] == snap.latency_count
    assert snap.counters["live_stops"] >= own["stops"]
    assert snap.counters["gdb_packets_sent"] >= own["packets_sent"] > 0  # + the detach packets after metrics()
    assert snap.counters["gdb_bytes_received"] >= own["bytes_received"] > 0
    text = metrics.exposition().decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
    assert samples["kcrash_breakpoint_hits_total"] == 3 and samples["kcrash_watchpoint_hits_total"] == 1
    assert samples["kcrash_live_stop_resume_seconds_count"] == own["resumes"]
