"""
kcrash.lab.locks
================

The lab's one locking rule: an exclusive ``flock`` on a named file in the cache, so concurrent kcrash
processes (two labs, parallel test workers) never fetch, unpack or build into the same place at once.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["cache_lock"]


@contextmanager
def cache_lock(cache: Path, name: str) -> Iterator[None]:
    """An exclusive lock on ``name`` in the cache (the file ``cache/.NAME.lock``), held for the block."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
