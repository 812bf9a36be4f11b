"""``kcrash triage list|show|stats|serve`` in-process on a small crash database written row by row
(tests/support/fleet_synth.py): the list's orders and columns, a bucket's per-release table and a
crash in text and JSON (times as ISO 8601 UTC, a dump's addresses as hex strings), one-line errors,
and ``serve`` binding 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from kcrash.cli import main
from support.fleet_synth import crash_row, insert_rows

T0 = dt.datetime(2026, 8, 1, 6, 30, 0)
IP = 0xFFFFFFFF8123ABCD
# signature -> (days after T0, release) of its crashes
CRASHES = {
    "sigA": [(0, "6.1.0-56-amd64"), (1, "6.1.0-56-amd64"), (4, "6.12.120")],
    "sigB": [(2, "6.12.120")],
    "sigC": [(-3, "5.10.0-46-amd64"), (3, "6.1.0-57-amd64")],
}


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, dict[str, int]]:
    from kcrash.fleet.db import open_db

    url = f"sqlite:///{tmp_path / 'c.db'}"
    crash_db = open_db(url)
    rows = [
        crash_row(i * 10 + k, sig, T0 + dt.timedelta(days=d), kernel_release=rel, host=f"h{k}")
        for i, (sig, crashes) in enumerate(CRASHES.items())
        for k, (d, rel) in enumerate(crashes)
    ]
    rows[0]["report_json"] = json.dumps({"context": {"ip": IP}})
    rows[0]["source"] = "dump"
    ids = insert_rows(crash_db.engine, rows)
    crash_db.close()
    return url, ids


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _times(sig: str) -> list[dt.datetime]:
    return [T0 + dt.timedelta(days=d) for d, _ in CRASHES[sig]]


def test_list_by_count_then_first_seen(db: tuple[str, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = db
    lines = _run(capsys, "triage", "list", "--db", url).splitlines()
    assert lines[0].split() == ["bucket", "crashes", "first", "seen", "last", "seen", "title"]
    by_count = sorted(CRASHES, key=lambda s: (len(CRASHES[s]), max(_times(s))), reverse=True)
    assert [int(line.split()[0]) for line in lines[1:]] == [ids[s] for s in by_count]
    first = lines[1].split()
    assert (
        first[1] == str(len(CRASHES["sigA"])) and f"{first[2]} {first[3]}" == f"{min(_times('sigA')):%Y-%m-%d %H:%M:%S}"
    )
    oldest = _run(capsys, "triage", "list", "--db", url, "--sort", "first_seen", "--asc", "--limit", "1").splitlines()
    assert int(oldest[1].split()[0]) == ids[min(CRASHES, key=lambda s: min(_times(s)))]
    assert oldest[-1] == "(2 more buckets: --limit)"


def test_list_json(db: tuple[str, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = db
    data = json.loads(_run(capsys, "triage", "list", "--db", url, "--sort", "last_seen", "--json"))
    assert [b["id"] for b in data["buckets"]] == [
        ids[s] for s in sorted(CRASHES, key=lambda s: max(_times(s)), reverse=True)
    ]
    assert data["buckets"][0]["last_seen"] == f"{max(_times('sigA')).isoformat()}Z"


def test_show_bucket(db: tuple[str, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = db
    out = _run(capsys, "triage", "show", "--db", url, str(ids["sigC"]))
    assert out.startswith(f"bucket {ids['sigC']}: title of sigC")
    releases = [line.split()[0] for line in out.split("per release:\n")[1].split("\n\n")[0].splitlines()]
    assert releases == ["5.10.0-46-amd64", "6.1.0-57-amd64"]
    data = json.loads(_run(capsys, "triage", "show", "--db", url, str(ids["sigA"]), "--json"))
    assert [(r["kernel_release"], r["crash_count"]) for r in data["releases"]] == [
        ("6.1.0-56-amd64", 2),
        ("6.12.120", 1),
    ]
    assert data["host_count"] == 3 and sum(d["count"] for d in data["days"]) == 3


def test_show_crash_with_hex_addresses(db: tuple[str, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    url, ids = db
    bucket = json.loads(_run(capsys, "triage", "show", "--db", url, str(ids["sigA"]), "--json"))
    dump = next(c for c in bucket["samples"] if c["source"] == "dump")
    data = json.loads(_run(capsys, "triage", "show", "--db", url, "--crash", str(dump["id"]), "--json"))
    assert data["report"]["context"]["ip"] == f"0x{IP:x}" and "report_json" not in data
    assert data["bucket_id"] == ids["sigA"] and data["crash_time"] == f"{T0.isoformat()}Z"
    text = _run(capsys, "triage", "show", "--db", url, "--crash", str(dump["id"]))
    assert text.startswith(f"crash {dump['id']}: title of sigA") and "report 0" in text


def test_stats(db: tuple[str, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = db
    total = sum(map(len, CRASHES.values()))
    out = _run(capsys, "triage", "stats", "--db", url)
    assert out.startswith(f"{total} crashes in 3 buckets")
    data = json.loads(_run(capsys, "triage", "stats", "--db", url, "--json"))
    assert data["crashes"] == total and data["releases"] == len({r for c in CRASHES.values() for _, r in c})


def test_errors_are_one_line(db: tuple[str, dict[str, int]], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = db
    assert main(["triage", "show", "--db", url, "999"]) != 0
    err = capsys.readouterr().err
    assert err.strip() == "kcrash: error: no bucket 999"
    assert main(["triage", "list", "--db", "nosuchdialect://x"]) != 0
    assert "cannot use database URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "host", "port"), [((), "127.0.0.1", 8000), (("--host", "0.0.0.0", "--port", "9"), "0.0.0.0", 9)]
)
def test_serve_binds_localhost_by_default(
    db: tuple[str, dict[str, int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    host: str,
    port: int,
) -> None:
    import uvicorn
    from fastapi import FastAPI

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    _run(capsys, "triage", "serve", "--db", db[0], *args)
    assert (seen["host"], seen["port"]) == (host, port) and isinstance(seen["app"], FastAPI)
