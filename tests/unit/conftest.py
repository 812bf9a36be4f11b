"""Options and fixtures shared by the unit tests: ``--update-golden`` rewrites golden files (the oops
expectations under tests/fixtures/oops, the report snapshots under tests/fixtures/report)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite golden files (tests/fixtures/oops, tests/fixtures/report) instead of comparing")


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))
