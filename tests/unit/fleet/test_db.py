"""The crash database opens, creates its schema through Alembic, and the ORM matches the migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from kcrash.errors import FleetDbError
from kcrash.fleet.db import DEFAULT_URL, current_revision, head_revision, open_db
from kcrash.fleet.models import Base, GroupingConfig


def test_default_url_is_a_sqlite_file() -> None:
    assert DEFAULT_URL == "sqlite:///crashes.db"


def test_open_creates_every_table_at_head(tmp_path: Path) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        assert current_revision(db.engine) == head_revision()
        assert set(Base.metadata.tables) <= set(inspect(db.engine).get_table_names())
        with db.sessions() as session:
            versions = session.scalars(select(GroupingConfig.version)).all()
        assert versions and min(versions) == 1
    finally:
        db.close()


def test_orm_models_equal_the_migrated_schema(tmp_path: Path) -> None:
    db = open_db(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        db.close()


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    open_db(url).close()
    db = open_db(url)
    assert current_revision(db.engine) == head_revision()
    db.close()


def test_bad_url_is_a_fleet_error() -> None:
    with pytest.raises(FleetDbError, match="cannot use database URL"):
        open_db("nosuchdialect://x")
