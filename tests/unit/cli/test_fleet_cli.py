"""``kcrash triage ingest|merge|unmerge|fix`` run in-process on a small SQLite database."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from kcrash.cli import main
from kcrash.cli.app import kcrash
from kcrash.fleet.db import open_db
from kcrash.fleet.models import Bucket, Crash
from kcrash.oops.parser import parse_all

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "oops" / "x86_64"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    for name in ("001.txt", "002.txt", "003.txt"):
        (folder / name.replace(".txt", ".log")).write_bytes((FIXTURES / name).read_bytes().split(b"\n\n", 1)[1])
    return folder


def _run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(kcrash, ["triage", *args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert isinstance(data, dict)
    return data


def test_ingest_json_counts_and_is_idempotent(tmp_path: Path, logs: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    expected = sum(len(parse_all(p.read_text("latin-1"))) > 0 for p in logs.iterdir())
    first = _run("ingest", "--db", url, "--executor", "local:1", "--host", "h1", str(logs))
    assert (first["files"], first["files_failed"], first["errors"]) == (3, 0, [])
    assert first["new_crashes"] == first["crashes"] and int(first["crashes"]) >= expected  # type: ignore[call-overload]
    again = _run("ingest", "--db", url, "--executor", "local:1", "--host", "h1", str(logs))
    assert (again["new_crashes"], again["duplicates"]) == (0, first["crashes"])
    db = open_db(url)
    with db.sessions() as session:
        assert set(session.scalars(select(Crash.host))) == {"h1"}
        assert len(session.scalars(select(Crash.id)).all()) == first["crashes"]
    db.close()


def test_ingest_text_summary(tmp_path: Path, logs: Path) -> None:
    result = CliRunner().invoke(kcrash, ["triage", "ingest", "--db", f"sqlite:///{tmp_path / 'c.db'}", str(logs)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("3 files (") and "new buckets" in result.output


def test_merge_unmerge_fix(tmp_path: Path, logs: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    _run("ingest", "--db", url, "--executor", "local:1", str(logs))
    db = open_db(url)
    with db.sessions() as session:
        a, b = session.scalars(select(Bucket.id).where(Bucket.merged_into_id.is_(None)).order_by(Bucket.id)).all()[:2]
    assert _run("merge", "--db", url, str(b), str(a)) == {"merge_id": 1, "source_bucket": b, "target_bucket": a}
    assert _run("unmerge", "--db", url, str(b)) == {"merge_id": 1, "source_bucket": b, "target_bucket": a}
    fixed = _run("fix", "--db", url, "--release", "99.0", str(a))
    assert fixed == {"bucket": a, "status": "fixed", "fixed_in_release": "99.0"}
    with db.sessions() as session:
        assert session.get_one(Bucket, a).status == "fixed"
    db.close()


def test_errors_are_one_line(tmp_path: Path, logs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    assert main(["triage", "merge", "--db", url, "1", "2"]) == 1
    assert capsys.readouterr().err == "kcrash: error: no bucket 1\n"
    assert main(["triage", "ingest", "--db", url, "--executor", "nope", str(logs)]) == 1
    assert "unknown executor 'nope'" in capsys.readouterr().err
    assert main(["triage", "fix", "--db", url, "--release", "x", "1"]) == 1
    assert capsys.readouterr().err.startswith("kcrash: error: not a kernel release: 'x'")


def test_merge_unmerge_fix_text(tmp_path: Path, logs: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    _run("ingest", "--db", url, "--executor", "local:1", str(logs))
    with contextlib.closing(open_db(url)) as db, db.sessions() as session:
        a, b = session.scalars(select(Bucket.id).where(Bucket.merged_into_id.is_(None)).order_by(Bucket.id)).all()[:2]

    def text(*args: str) -> str:
        result = CliRunner().invoke(kcrash, ["triage", *args, "--db", url])
        assert result.exit_code == 0, result.output
        return result.output

    assert text("merge", str(b), str(a)) == f"bucket {b} merged into bucket {a} (merge 1)\n"
    assert text("unmerge", str(b)) == f"bucket {b} is no longer merged into bucket {a}\n"
    assert text("fix", "--release", "99.0", str(a)) == f"bucket {a}: fixed (fixed in 99.0)\n"
