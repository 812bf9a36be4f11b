"""Fixtures of the fleet tests: a throw-away PostgreSQL server (tests/support/postgres.py) and the corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.postgres import postgres_server, postgres_url

__all__ = ["corpus_dir", "postgres_server", "postgres_url"]

REPO = Path(__file__).resolve().parents[3]
CORPUS = REPO.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared syzkaller corpus of real console logs."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    return CORPUS
