# Alembic environment of the crash database: runs online on the engine kcrash.fleet.db hands over in
# config.attributes["engine"] (no alembic.ini, no offline SQL mode).
from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from kcrash.fleet.models import Base


def _run(engine: Engine) -> None:
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


_run(context.config.attributes["engine"])
