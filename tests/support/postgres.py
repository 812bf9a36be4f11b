"""A throw-away PostgreSQL server for tests: Debian's ``postgresql-15`` binaries, started in a temporary
directory on a free port, reachable through a unix socket only, removed at the end.

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user (``runuser``)
in a directory that user owns. Where PostgreSQL is not installed the fixtures skip with the reason.
Fixtures: ``postgres_server`` (session: the server's base URL) and ``postgres_url`` (a fresh empty
database per test). Import both into a ``conftest.py`` to use them.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["postgres_server", "postgres_url", "running_postgres"]

_COUNTER = itertools.count()


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    shutil.chown(root, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def running_postgres() -> Iterator[str]:
    """Start a server; yield ``postgresql+psycopg://kcrash@/postgres?host=DIR&port=N``; stop and delete it."""
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb; apt install postgresql-15)")
    root = Path(tempfile.mkdtemp(prefix="kcrash-pg-"))
    prefix = _as_postgres(root)
    data, port = root / "data", _free_port()
    options = (
        f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "kcrash",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *prefix,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        try:
            yield f"postgresql+psycopg://kcrash@/postgres?host={root}&port={port}"
        finally:
            subprocess.run(
                [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The session's PostgreSQL server (its ``postgres`` database URL)."""
    with running_postgres() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new empty database on the session's server, for one test."""
    import psycopg

    name = f"t{os.getpid()}_{next(_COUNTER)}"
    conninfo = postgres_server.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.replace("/postgres?", f"/{name}?")
