"""Shared fixtures for the oops parser tests: the corpus location, golden files and ``--update-golden``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kcrash.oops.corpus import CorpusScore, score_corpus

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpus"
FIXTURES = REPO / "tests" / "fixtures" / "oops"
GOLDEN = FIXTURES / "golden"

_SCORE: dict[str, CorpusScore] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes several seconds (big generated inputs)")


@pytest.fixture(scope="session")
def corpus_root() -> Path:
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_score(corpus_root: Path) -> CorpusScore:
    if "score" not in _SCORE:
        _SCORE["score"] = score_corpus(corpus_root)
    return _SCORE["score"]


class GoldenFile:
    """A JSON expectation file: compare, or record in update mode (written at session end)."""

    def __init__(self, path: Path, update: bool) -> None:
        self.path, self.update = path, update
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        self.dirty = False

    def check(self, key: str, got: Any) -> None:
        if self.update:
            if self.data.get(key) != got:
                self.data[key] = got
                self.dirty = True
            return
        assert key in self.data, f"no golden entry for {key}; run pytest --update-golden"
        assert got == self.data[key]

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(dict(sorted(self.data.items())), indent=1, sort_keys=True) + "\n")


@pytest.fixture(scope="session")
def golden(update_golden: bool) -> Iterator[dict[str, GoldenFile]]:
    files = {name: GoldenFile(GOLDEN / f"{name}.json", update_golden) for name in ("corpus", "fixtures")}
    yield files
    for f in files.values():
        f.save()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    score = _SCORE.get("score")
    if score is None:
        return
    terminalreporter.section("kcrash oops corpus score")
    for name, metric in score.metrics.items():
        terminalreporter.write_line(f"{name:<11} {metric.hits:>4}/{metric.total:<4} {metric.ratio:7.2%}")
