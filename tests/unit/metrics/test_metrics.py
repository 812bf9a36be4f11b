"""kcrash.metrics: counters, phases, latency histogram, the Prometheus exposition (parsed back with
prometheus_client's own parser), the loopback HTTP server, the progress hook, and the root CLI
options ``--stats``/``--metrics`` (written also when the command fails)."""

from __future__ import annotations

import contextlib
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kcrash import metrics
from kcrash.cli import main


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    metrics.reset()
    yield
    metrics.reset()
    metrics.set_progress_hook(None)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_exposition_round_trips_through_the_prometheus_parser() -> None:
    metrics.COUNTERS.pages_read += 7
    metrics.COUNTERS.page_cache_hits += 3
    metrics.COUNTERS.page_cache_misses += 1
    metrics.COUNTERS.breakpoint_hits += 2
    metrics.record_phase("open", 0.25)
    metrics.record_phase("open", 0.5)
    metrics.observe_latency(0.003)
    metrics.observe_latency(20.0)
    got = _samples(metrics.exposition().decode())
    assert got[("kcrash_pages_read_total", ())] == 7
    assert got[("kcrash_breakpoint_hits_total", ())] == 2
    assert got[("kcrash_watchpoint_hits_total", ())] == 0
    assert got[("kcrash_page_cache_hit_ratio", ())] == 0.75
    assert got[("kcrash_phase_seconds_count", (("phase", "open"),))] == 2
    assert got[("kcrash_phase_seconds_sum", (("phase", "open"),))] == 0.75
    assert got[("kcrash_live_stop_resume_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("kcrash_live_stop_resume_seconds_bucket", (("le", "+Inf"),))] == 2
    assert got[("kcrash_live_stop_resume_seconds_count", ())] == 2


def test_hit_ratio_is_nan_before_any_lookup() -> None:
    assert metrics.snapshot().cache_hit_rate is None
    assert math.isnan(_samples(metrics.exposition().decode())[("kcrash_page_cache_hit_ratio", ())])


def test_phase_times_the_body_even_when_it_raises() -> None:
    with pytest.raises(ValueError), metrics.phase("boom"):
        raise ValueError
    count, seconds = metrics.snapshot().phases["boom"]
    assert count == 1 and seconds >= 0


def test_debug_time_counts_only_between_start_and_stop() -> None:
    metrics.start_debug()
    metrics.stop_debug()
    first = metrics.debug_time()
    assert first >= 0 and metrics.debug_time() == first  # stopped: not growing


def test_progress_without_hook_is_a_no_op_and_with_hook_reports() -> None:
    with metrics.progress("x") as update:
        update(1, 2)
    seen: list[tuple[str, int, int]] = []

    @contextlib.contextmanager
    def hook(description: str) -> Iterator[metrics.ProgressFn | None]:
        yield lambda done, total: seen.append((description, done, total))

    metrics.set_progress_hook(hook)
    with metrics.progress("indexing") as update:
        update(3, 4)
    assert seen == [("indexing", 3, 4)]


def test_server_binds_loopback_only_and_serves_the_metrics() -> None:
    metrics.COUNTERS.stack_traces_captured += 5
    port, stop = metrics.serve(0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        stop()
    assert _samples(text)[("kcrash_stack_traces_captured_total", ())] == 5


def test_cli_writes_metrics_even_when_the_command_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.dump"
    bad.write_bytes(b"\x00" * 4096)
    out = tmp_path / "m.prom"
    assert main(["--stats", "--metrics", str(out), "bt", str(bad)]) == 1
    got = _samples(out.read_text())
    assert got[("kcrash_stack_traces_captured_total", ())] == 0
    assert got[("kcrash_debug_time_seconds_total", ())] > 0
    err = capsys.readouterr().err
    assert "kcrash stats" in err and "total debug time" in err and "kcrash: error:" in err
