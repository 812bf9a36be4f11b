"""The parser measured against the shared syzkaller corpus headers (scores are computed, not recorded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kcrash.oops.corpus import CorpusScore, iter_report_cases
from kcrash.oops.parser import parse

TARGETS = {"detection": 0.99, "title": 0.97, "alt": 0.95, "type": 0.97, "corrupted": 0.95, "guilty": 0.90}


@pytest.mark.parametrize("metric", sorted(TARGETS))
def test_corpus_score_meets_target(corpus_score: CorpusScore, metric: str) -> None:
    m = corpus_score.metrics[metric]
    assert m.total > 0
    assert m.ratio >= TARGETS[metric], f"{metric}: {m.hits}/{m.total}, missed {m.misses}"


def test_corpus_has_expected_size(corpus_score: CorpusScore) -> None:
    assert corpus_score.metrics["detection"].total >= 600
    assert corpus_score.metrics["guilty"].total >= 50


def test_report_positions_follow_the_invariants(corpus_root: Path) -> None:
    checked = 0
    for case in iter_report_cases(corpus_root):
        rep = parse(case.log)
        if rep is None:
            continue
        checked += 1
        assert rep.start_pos < rep.end_pos <= len(case.log), case.name
        assert rep.start_pos < rep.skip_pos <= rep.end_pos, case.name
        assert rep.title and rep.report, case.name
        if rep.start_pos:
            again = parse(case.log, rep.start_pos)
            assert again is not None and (again.title, again.start_pos) == (rep.title, rep.start_pos), case.name
            after = parse(case.log, rep.end_pos)
            assert after is None or after.title != rep.title, case.name
        if "START" in case.headers:
            assert rep.start_pos == case.log.index(case.headers["START"]), case.name
    assert checked > 500
