"""Issue 22, item 10, on the lab's BUG dump of 6.12 (a module built under ``6.12.118+deb12-amd64-….build``):
``oops parse`` of the console log and ``report --source-dir`` of the dump, checked against the log's own
text (the ``kernel BUG at FILE:LINE!`` line, found with plain string operations, and its line number
as ``grep -n`` counts it) and against the lab module's source (the line shown is the ``BUG();``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kcrash.cli import main
from kcrash.oops import iter_reports_in_file

pytestmark = [pytest.mark.lab]

_SOURCE_DIR = Path(__file__).resolve().parents[2] / "src" / "kcrash" / "lab" / "kmod"


def _bug_line(console: Path) -> tuple[int, str, int]:
    # (1-based line number, FILE, LINE) of the log's "kernel BUG at FILE:LINE!" line
    lines = console.read_bytes().decode("latin-1").split("\n")
    number, text = next((n, t) for n, t in enumerate(lines, 1) if "kernel BUG at " in t)
    where = text.split("kernel BUG at ", 1)[1].rstrip("\r").rstrip("!")
    file, line = where.rsplit(":", 1)
    return number, file, int(line)


def test_oops_parse_of_the_console_log(lab_crash: Callable[..., Path]) -> None:
    console = lab_crash("BUG", "6.12", False) / "console.log"
    number, file, _ = _bug_line(console)
    assert "+" in file  # the case of the issue: 6.12.118+deb12-amd64-….build
    (rep,) = [r for r in iter_reports_in_file(console) if r.title.startswith("kernel BUG")]
    assert rep.guilty_file == file
    assert rep.start_line == number
    text = console.read_bytes().decode("latin-1")
    assert rep.end_line == text.count("\n", 0, rep.end_pos) + 1 >= rep.start_line


def test_report_source_dir_shows_the_bug_line_without_debuginfo(lab_crash: Callable[..., Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = lab_crash("BUG", "6.12", False)
    _, file, line = _bug_line(out / "console.log")
    assert main(["report", str(out / "vmcore.kdump"), "--source-dir", str(_SOURCE_DIR), "--format", "json",
                 "-o", str(tmp_path / "r.json")]) == 0
    snippet = json.loads((tmp_path / "r.json").read_text())["context"]["snippet"]
    assert snippet["file"] == str(_SOURCE_DIR / Path(file).name) and snippet["line"] == line
    source = (_SOURCE_DIR / "kcrash_test.c").read_text().splitlines()
    assert snippet["lines"][line - snippet["first"]] == source[line - 1] and "BUG();" in source[line - 1]
    assert "no source snippet" not in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(out / "vmcore.kdump"), "--source-dir", str(empty), "--format", "json",
                 "-o", str(tmp_path / "r2.json")]) == 0
    err = capsys.readouterr().err
    assert f"kcrash: warning: no source snippet: kcrash_test.c ({file}:{line}) not found under {empty}\n" in err
