"""The fleet dashboard in headless Chromium (Debian's ``chromium`` driven by Playwright; no browser
download, no network): ``kcrash triage serve`` runs in a subprocess on a crash database made by
``kcrash triage ingest`` from real inputs — 34 logs of the shared syzkaller corpus (copied with their
modification times spread over 34 days, ingested as three hosts) and the lab's BUG dump of 6.12 with
its console log — and the browser

- opens the bucket list and sorts it by first seen, newest then oldest first (the first-seen column
  follows), and by count;
- follows the dump's bucket link (found by the title the oops parser gives the console log): the
  per-release table names the dump's kernel release, the sparkline is drawn;
- follows the sample's link to the dump's stored HTML report (the report's own sections) and, from a
  log crash, to its crash page with the report text;
- merges a bucket into another through the bucket page's form: the target's page lists it as merged
  and the bucket list has one row fewer.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from kcrash.oops import decode_log, parse_all
from support.browser import chromium_tab
from support.fleet_synth import CORPUS, corpus_logs

pytestmark = pytest.mark.lab

DAY = 86400


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"kcrash triage serve exited: {server.stderr.read().decode() if server.stderr else ''}"
            )
        try:
            _get_json(base + "/stats")
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("kcrash triage serve did not answer within 60 s")


@pytest.fixture(scope="module")
def fleet_db(lab_crash: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    lab = lab_crash("BUG", "6.12", False)
    tmp = tmp_path_factory.mktemp("fleet")
    url = f"sqlite:///{tmp / 'crashes.db'}"
    logs = corpus_logs()[::20][:34]
    hosts: dict[str, list[str]] = {"web1": [], "web2": [], "db1": []}
    for i, src in enumerate(logs):
        copy = tmp / "logs" / f"{i:02d}-{src.parent.name}-{src.name}.log"
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, copy)
        stamp = 1_790_000_000 + i * DAY + i * 977  # one log a day, at varied hours
        os.utime(copy, (stamp, stamp))
        hosts[list(hosts)[i % 3]].append(str(copy))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KCRASH_CACHE", str(tmp / "cache"))
        for host, paths in hosts.items():
            assert main(["triage", "ingest", "--db", url, "-q", "--executor", "local:1", "--host", host, *paths]) == 0
        dump_args = [str(lab / "vmcore.kdump"), str(lab / "console.log")]
        assert main(["triage", "ingest", "--db", url, "-q", "--executor", "local:1", *dump_args]) == 0
    return url, lab


@pytest.fixture(scope="module")
def server(fleet_db: tuple[str, Path]) -> Iterator[str]:
    port = _free_port()
    argv = [sys.executable, "-m", "kcrash", "triage", "serve", "--db", fleet_db[0], "--port", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    with chromium_tab() as (tab, requests):
        yield tab
        assert all(url.startswith(server) for url in requests), requests  # nothing loaded from elsewhere


def _dump_title(lab: Path) -> str:
    return parse_all(decode_log((lab / "console.log").read_bytes()))[0].title


def test_index_sorts_by_first_seen_and_count(server: str, page: Any) -> None:
    total = _get_json(server + "/?limit=1000")["total"]
    page.goto(server + "/")
    rows = page.locator("#buckets tr.bucket-row")
    assert rows.count() == total > 10
    counts = [int(c) for c in page.locator("#buckets td.count").all_inner_texts()]
    assert counts == sorted(counts, reverse=True)  # by count, largest first
    page.click("#sort-first_seen")
    assert page.url.endswith("?sort=first_seen&order=desc")
    newest_first = page.locator("#buckets td.first-seen").all_inner_texts()
    assert newest_first == sorted(newest_first, reverse=True) and len(set(newest_first)) > 10
    page.click("#sort-first_seen")  # again: oldest first
    assert page.url.endswith("?sort=first_seen&order=asc")
    assert page.locator("#buckets td.first-seen").all_inner_texts() == sorted(newest_first)
    page.click("#sort-last_seen")
    last = page.locator("#buckets td.last-seen").all_inner_texts()
    assert last == sorted(last, reverse=True)


def test_the_dumps_bucket_page_and_its_report(server: str, page: Any, fleet_db: tuple[str, Path]) -> None:
    lab = fleet_db[1]
    release = json.loads((lab / "lab.json").read_text())["kernel"]["release"]
    page.goto(server + "/")
    page.locator("a.bucket-link", has_text=_dump_title(lab)).first.click()
    assert "/bucket/" in page.url
    assert page.locator("#title").inner_text() == _dump_title(lab)
    assert release in page.locator("#releases").inner_text()
    spark = page.locator("#sparkline polyline")
    assert page.locator("#sparkline").is_visible() and spark.get_attribute("points")
    sources = page.locator("#samples tr.sample-row").all_inner_texts()
    assert any("dump" in s for s in sources) and any("log" in s for s in sources)  # the dump and its console
    bucket_url = page.url
    page.locator("#samples a.report-link", has_text="HTML report").first.click()
    assert page.url.endswith("/report.html")
    assert page.locator("#verdict").count() == 1 and page.locator("#backtrace").count() == 1
    assert "kcrash_test_do_bug" in page.locator("#backtrace").inner_text()
    page.goto(bucket_url)
    page.locator("#samples a.report-link", has_text="log report").first.click()
    assert "/crash/" in page.url and "kcrash_test_do_bug" in page.locator("#excerpt").inner_text()


def test_merge_through_the_form(server: str, page: Any) -> None:
    before = _get_json(server + "/?limit=1000")
    source, target = before["buckets"][-1]["id"], before["buckets"][-2]["id"]
    page.goto(f"{server}/bucket/{source}")
    page.fill("#merge-into", str(target))
    page.locator("#merge-form button").click()
    page.wait_for_url(f"{server}/bucket/{target}")
    merged = page.locator("#merged tr.merged-row")
    assert merged.count() == 1 and f"#{source}" in merged.inner_text()
    assert "manual" in page.locator("#merge-history").inner_text()
    page.goto(server + "/?limit=1000")
    assert page.locator("#buckets tr.bucket-row").count() == before["total"] - 1
    page.goto(f"{server}/bucket/{source}")  # the merged bucket's page is its target's
    assert page.url == f"{server}/bucket/{target}"
