"""kcrash.lab.locks.cache_lock: an exclusive flock on ``cache/.NAME.lock`` held for the block (another
open file description cannot take it meanwhile), released after it, even when the block raises."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from kcrash.lab.locks import cache_lock


def _try_lock(path: Path) -> bool:
    with path.open("w") as other:
        try:
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(other, fcntl.LOCK_UN)
        return True


def test_held_for_the_block_only(tmp_path: Path) -> None:
    cache = tmp_path / "new" / "cache"  # created on demand
    lock = cache / ".kmod.lock"
    with cache_lock(cache, "kmod"):
        assert lock.exists()
        assert not _try_lock(lock)
        assert _try_lock(cache / ".other.lock")  # other names are independent
    assert _try_lock(lock)


def test_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), cache_lock(tmp_path, "debs"):
        raise RuntimeError("build failed")
    assert _try_lock(tmp_path / ".debs.lock")
