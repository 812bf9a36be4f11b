"""
kcrash.fleet.db
===============

Opening the crash database: :func:`open_db` makes an engine for a SQLAlchemy URL (``sqlite:///crashes.db``
by default, ``postgresql+psycopg://user@host/db`` for teams), brings the schema to the newest Alembic
revision (:mod:`kcrash.fleet.migrations`, run programmatically, no ``alembic.ini``) and returns a
:class:`CrashDb` holding the engine and a session factory. Queries and writes live elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from kcrash.errors import FleetDbError

__all__ = [
    "DEFAULT_URL",
    "CrashDb",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "migrations_dir",
    "open_db",
    "upgrade",
]

#: The database used when none is given: a SQLite file in the current directory.
DEFAULT_URL: Final = "sqlite:///crashes.db"


@dataclass(frozen=True, slots=True)
class CrashDb:
    """An open crash database: ``engine`` and ``sessions`` (a session factory bound to it)."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def close(self) -> None:
        """Release the engine's connections."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cursor = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite connections get foreign keys on and write-ahead logging."""
    try:
        engine = create_engine(make_url(url))
    except (ArgumentError, ImportError, ValueError) as exc:
        raise FleetDbError(f"cannot use database URL {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration pointing at the packaged migrations, to run on ``engine``."""
    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir())
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory(migrations_dir()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise FleetDbError("no migrations found in kcrash.fleet.migrations")
    return head


def migrations_dir() -> str:
    return str(files("kcrash.fleet") / "migrations")


def current_revision(engine: Engine) -> str | None:
    """The revision the database at ``engine`` is at (``None`` for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to ``revision`` on ``engine``."""
    try:
        command.upgrade(alembic_config(engine), revision)
    except SQLAlchemyError as exc:
        raise FleetDbError(f"cannot upgrade the crash database: {exc}") from exc


def open_db(url: str = DEFAULT_URL, *, migrate: bool = True) -> CrashDb:
    """Open (and create or upgrade, unless ``migrate`` is false) the crash database at ``url``.

    >>> db = open_db("sqlite://")
    >>> db.close()
    """
    engine = make_engine(url)
    try:
        if migrate:
            upgrade(engine)
        else:
            engine.connect().close()
    except SQLAlchemyError as exc:
        engine.dispose()
        raise FleetDbError(f"cannot open crash database {url!r}: {exc}") from exc
    return CrashDb(url, engine, sessionmaker(engine, expire_on_commit=False))
