"""Golden expectations: the full parse result of every corpus case and every own fixture.

``pytest --update-golden`` rewrites tests/fixtures/oops/golden/*.json and the headers of
tests/fixtures/oops/<arch>/*.txt (never the shared corpus; ``#`` comment lines of a fixture header, which say
where the log comes from, are kept); review the diff. Own fixtures also pin kcrash's guilty function
(``GUILTY:``), which the syzkaller corpus does not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kcrash.oops.corpus import guilty_of, iter_guilty_cases, iter_report_cases, read_report_case
from kcrash.oops.model import OopsReport
from kcrash.oops.parser import parse_all

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpus"
FIXTURES = sorted((REPO / "tests" / "fixtures" / "oops").glob("*/[0-9]*.txt"))


def _summary(rep: OopsReport) -> dict[str, Any]:
    d = rep.details
    return {
        "title": rep.title, "alt": list(rep.alt_titles), "type": rep.crash_type, "frame": rep.frame,
        "guilty_function": rep.guilty_function, "corrupted": rep.corrupted_reason, "start": rep.start_pos,
        "end": rep.end_pos,
        "signature": rep.signature, "guilty_file": rep.guilty_file,
        "rip": d.rip.function if d.rip else None, "frames": [f.function for f in d.call_trace][:8],
        "cpu": d.cpu, "pid": d.pid, "comm": d.comm, "release": d.kernel_release,
    }


def _case_names() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return [c.name for c in iter_report_cases(CORPUS)]


@pytest.mark.parametrize("name", _case_names())
def test_corpus_case_matches_golden(name: str, golden: dict[str, Any]) -> None:
    case = read_report_case(CORPUS / "syzkaller-linux-reports" / name, name)
    golden["corpus"].check(name, [_summary(r) for r in parse_all(case.log)][:5])


def test_guilty_cases_match_golden(corpus_root: Path, golden: dict[str, Any]) -> None:
    got = {case.name: guilty_of(case) for case in iter_guilty_cases(corpus_root)}
    assert got
    golden["corpus"].check("guilty", got)


def _comments(path: Path) -> list[str]:
    # The "#" lines of a fixture's header (its provenance), kept by --update-golden.
    head = path.read_text(encoding="latin-1").split("\n\n", 1)[0]
    return [line for line in head.split("\n") if line.startswith("#")]


def _headers(reports: list[OopsReport], comments: list[str]) -> str:
    lines = list(comments)
    if reports:
        rep = reports[0]
        lines += [f"TITLE: {rep.title}", *(f"ALT: {a}" for a in rep.alt_titles)]
        lines += [f"TYPE: {rep.crash_type}"] if rep.crash_type else []
        lines += [f"FRAME: {rep.frame}"] if rep.frame else []
        lines += [f"GUILTY: {rep.guilty_function}"] if rep.guilty_function else []
        lines += ["CORRUPTED: Y"] if rep.corrupted else []
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("path", FIXTURES, ids=[f"{p.parent.name}/{p.name}" for p in FIXTURES])
def test_fixture_matches_its_headers(path: Path, update_golden: bool, golden: dict[str, Any]) -> None:
    case = read_report_case(path)
    reports = parse_all(case.log)
    if update_golden:
        path.write_text(_headers(reports, _comments(path)) + "\n" + case.log, encoding="latin-1")
    else:
        assert reports, "no report found"
        rep = reports[0]
        assert rep.title == case.want("TITLE")
        assert rep.alt_titles == case.alt_titles
        assert rep.crash_type == case.want("TYPE")
        assert rep.frame == case.want("FRAME")
        assert rep.guilty_function == case.want("GUILTY")
        assert ("Y" if rep.corrupted else "N") == case.want("CORRUPTED", "N")
    golden["fixtures"].check(f"{path.parent.name}/{path.name}", [_summary(r) for r in reports])
