"""``kcrash report`` in its three formats on real lab crashes, and ``--metrics`` counters against what
the command did.

- JSON of every crash kind on 6.12 validates against the published schema (``kcrash report --schema``)
  and is consistent with itself (task-state counts, blocked tasks, the crashing task's VMAs).
- The HTML of a lab dump opens in headless Chromium (Debian's ``chromium`` via Playwright; no browser
  download, no network): every section is present, and the lab's hostile kthread names appear as
  text, never as markup. A screenshot is saved under the test's tmp dir.
- ``kcrash --metrics FILE bt -a --json DUMP``: the Prometheus file parses with prometheus_client's
  parser; traces captured equal the stacks ``bt -a`` printed, frames unwound equal their frames, and
  pages/bytes were read. ``dump convert`` counts one dump collected of the size written.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kcrash import metrics
from kcrash.cli import main
from kcrash.lab.kinds import KINDS
from kcrash.report.html import SECTIONS
from support.browser import chromium_tab
from support.jsonout import from_hex

pytestmark = pytest.mark.lab

HOSTILE = '<i>x</i>&"\''
NONUTF8_TEXT = "nu\\xff\\xfe\\x01<b>"  # b"nu\xff\xfe\x01<b>": invalid UTF-8 as \xNN, the control byte shown as \x01


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if not s.labels}


@pytest.mark.parametrize("kind", KINDS)
def test_json_of_every_kind_validates(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    out = lab_crash(kind, "6.12")
    schema = json.loads(_run(capsys, "report", "--schema"))
    raw = json.loads(_run(capsys, "report", str(out / "vmcore.kdump"), "--format", "json"))
    jsonschema.validate(raw, schema, cls=jsonschema.Draft202012Validator)
    doc: dict[str, Any] = from_hex(raw)  # the values as numbers (addresses are "0x..." strings)
    counts = Counter(t["state"] for t in doc["tasks"])
    assert {s["state"]: s["count"] for s in doc["task_states"]} == counts
    assert sorted(b["task"]["pid"] for b in doc["blocked"]) == sorted(t["pid"] for t in doc["tasks"]
                                                                      if t["state"] == "D")
    comms = {t["comm"] for t in doc["tasks"]}
    assert {HOSTILE, NONUTF8_TEXT.replace("\\x01", "\x01"), "kcrash_sleeper"} <= comms
    assert doc["dump"]["format"].startswith("kdump-compressed") and doc["dump"]["size"] > 0
    assert doc["memory"]["top_slabs"] and doc["memory"]["total_bytes"] > doc["memory"]["free_bytes"] > 0
    regions = doc["regions"]
    if regions is not None and not regions["kernel_thread"]:
        starts = [r["start"] for r in regions["regions"]]
        assert starts == sorted(starts) and all(r["start"] < r["end"] for r in regions["regions"])
        assert any(r["perms"][2] == "x" for r in regions["regions"])  # a process maps some code


def test_html_in_headless_chromium(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    page_file = tmp_path / "report.html"
    _run(capsys, "report", str(lab_crash("BUG", "6.12") / "vmcore.kdump"), "--format", "html", "-o", str(page_file))
    with chromium_tab() as (page, requests):
        page.goto(page_file.as_uri())
        page.click("#expand-all")
        for section in SECTIONS:
            assert page.locator(f"#{section}").count() == 1, section
            assert page.locator(f"#{section}").is_visible(), section
        comms = page.locator("td.comm").all_inner_texts()
        assert HOSTILE in comms and NONUTF8_TEXT in comms
        assert page.locator("i").count() == 0  # the hostile name made no element
        assert page.locator("td.comm b").count() == 0
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page.locator("#tasks").screenshot(path=str(tmp_path / "tasks.png"))
    assert requests == [page_file.as_uri()]  # nothing else was fetched
    assert (tmp_path / "report.png").stat().st_size > 10_000


@pytest.mark.parametrize("fmt", ["kdump", "elf"])
def test_metrics_match_what_bt_did(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    monkeypatch.setenv("KCRASH_CACHE", str(tmp_path))
    dump = lab_crash("BUG", "6.12") / f"vmcore.{fmt}"
    prom = tmp_path / "bt.prom"
    metrics.reset()
    traces = from_hex(json.loads(_run(capsys, "--metrics", str(prom), "bt", "-a", "--json", str(dump))))
    got = _samples(prom.read_text())
    assert got["kcrash_stack_traces_captured_total"] == len(traces) == 2
    assert got["kcrash_stack_frames_unwound_total"] == sum(len(t["trace"]["frames"]) for t in traces)
    assert got["kcrash_pages_read_total"] > 0 and got["kcrash_dump_bytes_read_total"] > 0
    if fmt == "kdump":
        assert got["kcrash_pages_decompressed_total"] > 0
        lookups = got["kcrash_page_cache_hits_total"] + got["kcrash_page_cache_misses_total"]
        assert lookups > 0 and got["kcrash_page_cache_hit_ratio"] == got["kcrash_page_cache_hits_total"] / lookups
    assert got["kcrash_breakpoint_hits_total"] == 0 and got["kcrash_memory_dumps_collected_total"] == 0
    assert got["kcrash_debug_time_seconds_total"] > 0


def test_metrics_count_a_converted_dump(lab_crash: Callable[..., Path], capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    prom, out = tmp_path / "convert.prom", tmp_path / "out.kdump"
    metrics.reset()
    _run(capsys, "--metrics", str(prom), "dump", "convert", str(lab_crash("BUG", "6.12") / "vmcore.elf"), str(out))
    got = _samples(prom.read_text())
    assert got["kcrash_memory_dumps_collected_total"] == 1
    assert got["kcrash_memory_dump_bytes_total"] == out.stat().st_size
    phases = {s.labels["phase"]: s.value for f in text_string_to_metric_families(prom.read_text())
              for s in f.samples if s.name == "kcrash_phase_seconds_count"}
    assert phases["convert"] == 1
