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
    assert json.loads(result.stdout) == []
    assert result.stderr == "kcrash: -: no crash report found\n"


def test_nothing_found_is_said_on_stderr(tmp_path: Path, log_file: Path) -> None:
    # a JSON file (the lab's lab.json) and a clean log: exit 0, nothing on stdout, one line on stderr each
    lab_json = tmp_path / "lab.json"
    lab_json.write_text(json.dumps({"kind": "BUG", "crash_function": "kcrash_test_do_bug"}))
    result = CliRunner().invoke(kcrash, ["oops", "parse", str(lab_json), str(log_file)])
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1 and result.stdout.startswith(f"{log_file}:")
    assert result.stderr == f"kcrash: {lab_json}: no crash report found\n"
    result = CliRunner().invoke(kcrash, ["oops", "parse", "--json", str(lab_json)])
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])
    assert result.stderr == f"kcrash: {lab_json}: no crash report found\n"


def test_signature_of_a_binary_file(tmp_path: Path, log_file: Path) -> None:
    binary = tmp_path / "vmcore.kdump"
    binary.write_bytes(b"KDUMP   \x00\x00\x00\x06" + bytes(range(256)) * 16)
    result = CliRunner().invoke(kcrash, ["oops", "signature", str(binary)])
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == f"kcrash: {binary}: no crash report found (a binary file, not a console or dmesg log)\n"
    # a binary file with oops text in it (printk formats in a vmcore): the reports, and a warning
    binary.write_bytes(b"\x00" * 64 + log_file.read_bytes())
    result = CliRunner().invoke(kcrash, ["oops", "signature", str(binary)])
    assert result.exit_code == 0 and result.stdout.startswith("kc1-")
    assert result.stderr.startswith(f"kcrash: warning: {binary} is a binary file, not a console or dmesg log")


def test_found_reports_say_nothing_on_stderr(log_file: Path) -> None:
    result = CliRunner().invoke(kcrash, ["oops", "signature", str(log_file)])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("kc1-")


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
