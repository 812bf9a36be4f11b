"""``kcrash oops parse|signature|score`` run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kcrash.cli import main
from kcrash.cli.app import kcrash

REPO = Path(__file__).resolve().parents[3]
FIXTURE = REPO / "tests" / "fixtures" / "oops" / "x86_64" / "002.txt"
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "console.log"
    path.write_bytes(FIXTURE.read_bytes().split(b"\n\n", 1)[1])
    return path


def test_parse_json_lists_reports(log_file: Path) -> None:
    result = CliRunner().invoke(kcrash, ["oops", "parse", "--json", str(log_file)])
    assert result.exit_code == 0, result.output
    items = json.loads(result.output)
    want = "BUG: unable to handle kernel NULL pointer dereference in kcrash_test_level2"
    assert [i["title"] for i in items] == [want]
    assert items[0]["crash_type"] == "NULL-POINTER-DEREFERENCE"
    assert items[0]["details"]["rip"]["module"] == "kcrash_test"


def test_parse_reads_stdin_and_finds_nothing_in_garbage() -> None:
    result = CliRunner().invoke(kcrash, ["oops", "parse", "--json", "-"], input=b"\x00\xff\xfe garbage\n" * 100)
    assert result.exit_code == 0
    assert json.loads(result.output) == []


def test_parse_text_output(log_file: Path) -> None:
    result = CliRunner().invoke(kcrash, ["oops", "parse", str(log_file)])
    assert result.exit_code == 0
    assert "NULL-POINTER-DEREFERENCE  BUG: unable to handle kernel NULL pointer dereference" in result.output


def test_signature_command(log_file: Path) -> None:
    result = CliRunner().invoke(kcrash, ["oops", "signature", "-"], input=log_file.read_bytes())
    assert result.exit_code == 0
    sig, title = result.output.strip().split("  ", 1)
    assert sig.startswith("kc1-") and len(sig) == 20 and title.endswith("in kcrash_test_level2")


def test_missing_file_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["oops", "parse", "/nonexistent/kcrash.log"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "kcrash: error: /nonexistent/kcrash.log: no such file"


def test_score_command() -> None:
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present")
    result = CliRunner().invoke(kcrash, ["oops", "score", "--check", str(CORPUS)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert {"detection", "title", "alt", "type", "corrupted", "guilty"} <= set(lines)
