"""The dashboard's routes through FastAPI's TestClient, on SQLite and PostgreSQL, on a small crash
database written row by row (tests/support/fleet_synth.py): HTML and JSON on the same routes, the
bucket list's three sort orders (expected orders computed here from the rows), a bucket's per-release
table, sparkline and samples, a crash and a dump's stored HTML report, 64-bit values as hex strings in
JSON, merges and unmerges through the forms, and the errors (404, 400, a refused merge, a cross-origin
form)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kcrash.fleet import queries
from kcrash.fleet.dashboard import create_app, sparkline_points
from kcrash.fleet.db import open_db
from support.fleet_synth import crash_row, insert_rows

T0 = dt.datetime(2026, 10, 3, 12, 0, 0)
IP = 0xFFFFFFFFC0A81234
REPORT = {"context": {"ip": IP, "pid": 7, "registers": [["rip", IP]]}, "verdict": "BUG in kcrash_test_do_bug"}
HTML = "<!DOCTYPE html><html><body><h1 id='verdict'>stored report</h1></body></html>"
# signature -> crash times (days after T0); the three bucket orders differ by count, first and last seen
TIMES = {"sigA": [0, 1, 2], "sigB": [-5, 9], "sigC": [3, 4, 5, 6]}


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, int]]]:
    url = f"sqlite:///{tmp_path / 'd.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = open_db(url)
    rows = [
        crash_row(i * 10 + k, sig, T0 + dt.timedelta(days=d), host=f"h{k}", kernel_release=f"6.1.0-{50 + k}-amd64")
        for i, (sig, days) in enumerate(TIMES.items())
        for k, d in enumerate(days)
    ]
    rows.append(
        crash_row(
            99,
            "sigA",
            T0 + dt.timedelta(days=1, hours=3),
            source="dump",
            title="title of sigA",
            report_json=json.dumps(REPORT),
            report_html=HTML,
        )
    )
    ids = insert_rows(db.engine, rows)
    with TestClient(create_app(db)) as test_client:
        yield test_client, ids
    db.close()


def _times(sig: str) -> list[dt.datetime]:
    times = [T0 + dt.timedelta(days=d) for d in TIMES[sig]]
    return [*times, T0 + dt.timedelta(days=1, hours=3)] if sig == "sigA" else times  # the dump


def _expected_order(sort: str, descending: bool) -> list[str]:
    def key(sig: str) -> tuple[object, ...]:
        times = _times(sig)
        return {"count": (len(times), max(times)), "first_seen": (min(times),), "last_seen": (max(times),)}[sort]

    return sorted(TIMES, key=key, reverse=descending)


def _row_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr class="bucket-row" data-id="(\d+)">', html)]


def test_index_sorts_in_html_and_json(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    for sort in queries.SORT_KEYS:
        for order in ("desc", "asc"):
            expected = [ids[s] for s in _expected_order(sort, order == "desc")]
            page = http.get("/", params={"sort": sort, "order": order})
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert _row_ids(page.text) == expected, (sort, order)
            data = http.get("/", params={"sort": sort, "order": order}, headers={"Accept": "application/json"}).json()
            assert [b["id"] for b in data["buckets"]] == expected, (sort, order)
            assert data["sort"] == sort and data["descending"] == (order == "desc") and data["total"] == 3


def test_index_counts_and_times(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    data = http.get("/?format=json").json()
    got = {b["id"]: (b["crash_count"], b["first_seen"], b["last_seen"]) for b in data["buckets"]}
    expected = {
        ids[sig]: (len(t), min(t).isoformat() + "Z", max(t).isoformat() + "Z")
        for sig, t in ((sig, _times(sig)) for sig in TIMES)
    }
    assert got == expected


def test_sort_links_toggle_the_order(client: tuple[TestClient, dict[str, int]]) -> None:
    http, _ = client
    html = http.get("/?sort=first_seen&order=desc").text
    assert 'id="sort-first_seen" href="?sort=first_seen&amp;order=asc"' in html
    assert 'id="sort-count" href="?sort=count&amp;order=desc"' in html


def test_bucket_page(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    html = http.get(f"/bucket/{ids['sigC']}").text
    releases = re.findall(r'<tr class="release-row"><td class="mono">([^<]+)</td>', html)
    assert releases == [f"6.1.0-{50 + k}-amd64" for k in range(4)]  # version order
    points = re.search(r'<polyline points="([^"]+)"', html)
    assert points is not None and len(points.group(1).split()) == 4  # days 3..6, one a day
    assert html.count('class="sample-row"') == 4
    assert 'id="merge-form"' in html


def test_bucket_json_and_samples_link_reports(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    data = http.get(f"/bucket/{ids['sigA']}", headers={"Accept": "application/json"}).json()
    assert data["bucket"]["crash_count"] == 4
    assert [d["count"] for d in data["days"]] == [1, 2, 1]
    dump = next(c for c in data["samples"] if c["has_html"])
    html = http.get(f"/bucket/{ids['sigA']}").text
    assert f'href="/crash/{dump["id"]}/report.html"' in html
    log = next(c for c in data["samples"] if not c["has_html"])
    assert f'<a class="report-link" href="/crash/{log["id"]}">' in html


def test_crash_page_json_hex_and_stored_report(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    sample = next(c for c in http.get(f"/bucket/{ids['sigA']}?format=json").json()["samples"] if c["has_html"])
    data = http.get(f"/crash/{sample['id']}", headers={"Accept": "application/json"}).json()
    assert data["report"]["context"]["ip"] == f"0x{IP:x}"  # beyond 2^53: a hex string
    assert data["report"]["context"]["registers"] == [["rip", f"0x{IP:x}"]]
    assert data["report"]["context"]["pid"] == 7 and "report_json" not in data
    assert data["bucket_id"] == ids["sigA"] and data["crash_time"] == "2026-10-04T15:00:00Z"
    page = http.get(f"/crash/{sample['id']}")
    assert "Full HTML report of the dump" in page.text and f'href="/bucket/{ids["sigA"]}"' in page.text
    stored = http.get(f"/crash/{sample['id']}/report.html")
    assert stored.status_code == 200 and stored.text == HTML


def test_a_log_crash_has_no_stored_report(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    sample = next(c for c in http.get(f"/bucket/{ids['sigB']}?format=json").json()["samples"])
    assert http.get(f"/crash/{sample['id']}/report.html").status_code == 404
    page = http.get(f"/crash/{sample['id']}").text
    assert "report 1" in page or "report 10" in page or "report 11" in page  # its excerpt


def test_errors(client: tuple[TestClient, dict[str, int]]) -> None:
    http, _ = client
    assert http.get("/bucket/999").status_code == 404
    assert http.get("/crash/999").status_code == 404
    assert http.get("/?sort=title").status_code == 400
    assert http.get("/?order=up").status_code == 400
    assert http.get("/?limit=0").status_code == 400


def test_merge_and_unmerge_through_the_forms(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    done = http.post(f"/bucket/{ids['sigB']}/merge", data={"into": str(ids["sigC"])}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == f"/bucket/{ids['sigC']}"
    data = http.get(f"/bucket/{ids['sigC']}?format=json").json()
    assert data["bucket"]["crash_count"] == len(TIMES["sigB"]) + len(TIMES["sigC"])
    assert [m["id"] for m in data["merged"]] == [ids["sigB"]]
    assert [m["how"] for m in data["merges"]] == ["manual"]
    moved = http.get(f"/bucket/{ids['sigB']}", follow_redirects=False)
    assert moved.status_code == 307 and moved.headers["location"] == f"/bucket/{ids['sigC']}"
    assert len(_row_ids(http.get("/").text)) == 2
    assert 'class="unmerge"' in http.get(f"/bucket/{ids['sigC']}").text
    back = http.post(f"/bucket/{ids['sigB']}/unmerge", follow_redirects=False)
    assert back.status_code == 303
    assert http.get(f"/bucket/{ids['sigC']}?format=json").json()["bucket"]["crash_count"] == len(TIMES["sigC"])
    assert len(_row_ids(http.get("/").text)) == 3


def test_refused_merges(client: tuple[TestClient, dict[str, int]]) -> None:
    http, ids = client
    same = http.post(f"/bucket/{ids['sigA']}/merge", data={"into": str(ids["sigA"])})
    assert same.status_code == 409 and 'id="error"' in same.text and "already one bucket" in same.text
    assert f"#{ids['sigA']}" in same.text  # the bucket's own page
    bad = http.post(f"/bucket/{ids['sigA']}/merge", data={"into": "x"})
    assert bad.status_code == 409 and "merge into which bucket?" in bad.text
    missing = http.post(f"/bucket/{ids['sigA']}/merge", data={"into": "999"})
    assert missing.status_code == 409 and "no bucket 999" in missing.text
    as_json = http.post(f"/bucket/{ids['sigA']}/merge", data={"into": "999"}, headers={"Accept": "application/json"})
    assert (as_json.status_code, as_json.json()) == (409, {"detail": "no bucket 999"})
    assert 'id="error"' not in http.get(f"/bucket/{ids['sigA']}?error=spoofed").text  # no error from the URL
    foreign = http.post(
        f"/bucket/{ids['sigA']}/merge", data={"into": str(ids["sigB"])}, headers={"Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    assert http.get(f"/bucket/{ids['sigA']}?format=json").json()["merged"] == []


def test_stats_page(client: tuple[TestClient, dict[str, int]]) -> None:
    http, _ = client
    data = http.get("/stats?format=json").json()
    assert (data["crashes"], data["buckets"]) == (sum(map(len, TIMES.values())) + 1, 3)
    assert "<dt>crashes</dt><dd>10</dd>" in http.get("/stats").text


def test_sparkline_points() -> None:
    days = [queries.DayCount(dt.date(2026, 1, d), n) for d, n in ((1, 2), (2, 0), (3, 4))]
    assert sparkline_points(days, width=100, height=10) == "0.0,5.0 50.0,10.0 100.0,0.0"
    assert sparkline_points([]) == ""
