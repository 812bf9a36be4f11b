"""The writers' fork pool: answers in submission order whatever worker did them, exceptions come back,
a dead worker is an error, and the kdump writer's file is the same for 1, 2 and 3 processes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from kcrash.dumps.write.stream import DumpMeta, write_kdump_dump
from kcrash.dumps.write.workers import ForkPool
from kcrash.errors import FaultError, KcrashError


def _job(a: int, b: int) -> list[bytes]:
    if a == -1:
        raise ValueError("bad task")
    if a < 0:
        raise FaultError(a, True, "not in the dump")
    if a % 3 == 0:
        time.sleep(0.01)  # the slow tasks finish after later ones on other workers
    return [f"{a}:{b}:".encode(), str(os.getpid()).encode()]


def test_answers_come_in_submission_order() -> None:
    pool = ForkPool(_job, 3)
    try:
        pids = set()
        for a in range(40):
            pool.submit(a, a * a)
        assert pool.in_flight == 40
        for a in range(40):
            task, square, pid = bytes(pool.result()).split(b":")
            assert (int(task), int(square)) == (a, a * a)
            pids.add(int(pid))
        assert pool.in_flight == 0
        assert len(pids) == 3 and os.getpid() not in pids
    finally:
        pool.close()


def test_worker_exception_is_raised_in_the_parent() -> None:
    pool = ForkPool(_job, 2)
    try:
        pool.submit(1, 0)
        pool.submit(-5, 0)
        pool.submit(2, 0)
        assert bytes(pool.result()).startswith(b"1:0:")
        with pytest.raises(KcrashError, match="not in the dump"):  # FaultError's arguments do not pickle
            pool.result()
        assert bytes(pool.result()).startswith(b"2:0:")  # the pool goes on
        pool.submit(-1, 0)
        with pytest.raises(ValueError, match="bad task"):
            pool.result()
    finally:
        pool.close()


def _sleepy(a: int, b: int) -> list[bytes]:
    time.sleep(5)
    return [b"late"]


def test_dead_worker_is_an_error_not_a_hang() -> None:
    pool = ForkPool(_sleepy, 1)
    try:
        pool.submit(0, 0)
        os.kill(pool._pids[0], signal.SIGKILL)
        with pytest.raises(KcrashError, match="died"):
            pool.result()
    finally:
        pool.close()


def test_close_ends_every_worker() -> None:
    pool = ForkPool(_job, 2)
    pids = list(pool._pids)
    pool.submit(1, 1)
    pool.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    with pytest.raises(ValueError, match="at least one"):
        ForkPool(_job, 0)


class _Pages:
    page_size = 4096

    def __init__(self, n: int) -> None:
        rng = np.random.default_rng(7)
        pages = []
        for pfn in range(n):
            kind = pfn % 5
            if kind == 0:
                pages.append(bytes(4096))
            elif kind == 1:
                pages.append(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
            else:
                pages.append((f"page {pfn} ".encode() * 1024)[:4096])
        self.data = b"".join(pages)

    def read_pages(self, pfn: int, count: int) -> memoryview:
        return memoryview(self.data)[pfn * 4096:(pfn + count) * 4096]


@pytest.mark.parametrize("codec", ["zlib", "lzo", "none", "zstd", "snappy"])
def test_kdump_file_is_the_same_for_every_process_count(tmp_path: Path, codec: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import kcrash.dumps.write.stream as stream

    monkeypatch.setattr(stream, "_CHUNK_PAGES", 16)
    n = 700
    source = _Pages(n)
    ram = np.ones(n, dtype=np.bool_)
    dumpable = ram.copy()
    dumpable[100:180] = False
    dumpable[::7] = False
    meta = DumpMeta(notes=b"", dump_level=31)
    files = []
    for workers in (1, 2, 3):
        out = tmp_path / f"{codec}-{workers}.kdump"
        result = write_kdump_dump(out, source, ram, dumpable, meta, codec=codec, threads=workers)
        assert not result.incomplete and result.pages_written == int(dumpable.sum())
        files.append(out.read_bytes())
    assert files[0] == files[1] == files[2]


def _children() -> set[int]:
    # this process's children, zombies included (other tests' long-lived children are left alone)
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(p) for p in f.read().split())
    return pids


def test_interrupted_pool_writer_keeps_a_flagged_file_and_no_workers(tmp_path: Path) -> None:
    from kcrash.dumps import open_dump
    from kcrash.dumps.base import DumpWarning

    n = 600
    source = _Pages(n)
    ram = np.ones(n, dtype=np.bool_)
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "int.kdump"
    before = set(os.listdir("/proc/self/task"))
    children_before = _children()
    with pytest.raises(KeyboardInterrupt):
        write_kdump_dump(out, source, ram, ram.copy(), DumpMeta(notes=b"", dump_level=31), codec="zlib", threads=2,
                         progress=progress)
    assert set(os.listdir("/proc/self/task")) == before
    assert _children() == children_before  # every worker was waited for (a zombie is still listed)
    with pytest.warns(DumpWarning):
        dump = open_dump(out)
    assert dump.describe().incomplete
    dump.close()
