"""
kcrash.fleet.ingest
===================

Filling the crash database from files: :func:`ingest` lists the files under the given paths, runs
:func:`kcrash.fleet.extract.extract_file` on each as one task of a :class:`concurrent.futures.Executor`
(a local process pool by default, a Dask cluster through ``distributed.Client(...).get_executor()``:
the same code), and writes the returned records itself: workers never touch the database. Records are
written in input order whatever order the tasks finish in (so a database is the same whichever executor
made it), deduplicated by ``content_hash`` and grouped by :class:`kcrash.fleet.buckets.Grouper`.

A task whose worker dies (killed, out of memory) or that raises is retried (``retries`` times; a dead
local pool is replaced); a file that still fails is reported in :attr:`IngestStats.errors`, never
dropped silently. Progress goes to an :class:`IngestObserver` (the CLI draws it); nothing is printed here.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

from sqlalchemy import insert, select

from kcrash.errors import FleetError
from kcrash.fleet.buckets import Grouper
from kcrash.fleet.extract import CrashRecord, ExtractOptions, FileResult, extract_file, iter_input_files
from kcrash.fleet.models import Bucket, Crash

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from kcrash.fleet.db import CrashDb

__all__ = [
    "ExtractTask",
    "IngestObserver",
    "IngestStats",
    "executor_from_spec",
    "ingest",
    "ingest_files",
    "write_results",
]

#: A task: path and options → the file's result (module-level, so that it pickles by reference).
ExtractTask = Callable[[str, ExtractOptions], FileResult]
_DEFAULT_OPTIONS: Final = ExtractOptions()
_COMMIT_RECORDS: Final = 500
_COMMIT_SECONDS: Final = 0.5


class IngestObserver(Protocol):
    """What the CLI's progress display gets told."""

    def started(self, files: int, total_bytes: int) -> None:
        """Ingestion of ``files`` files (``total_bytes`` in all) begins."""

    def file_done(self, result: FileResult, new_crashes: int) -> None:
        """One file was written (``new_crashes`` of its records were new)."""


@dataclass(slots=True)
class IngestStats:
    """What an ingest did: files read (and failed), bytes, crashes found, new, already known, buckets made,
    task attempts retried, seconds, and one line per failed file."""

    files: int = 0
    files_failed: int = 0
    bytes: int = 0
    crashes: int = 0
    new_crashes: int = 0
    duplicates: int = 0
    new_buckets: int = 0
    retried: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


# --- executors -------------------------------------------------------------------------------------


def _pool(workers: int) -> ProcessPoolExecutor:
    # forkserver: the coordinator has threads (progress, Dask client), which fork would copy mid-lock. The
    # server imports the extraction code once (the preload), so that each worker does not.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["kcrash.fleet.extract"])
    return ProcessPoolExecutor(workers, mp_context=context)


@contextmanager
def executor_from_spec(spec: str = "local") -> Iterator[tuple[Executor, int]]:
    """An executor and its worker count for ``spec``: ``local`` (a process pool, one worker per CPU),
    ``local:N`` (N workers), or ``dask://HOST:PORT`` (a Dask scheduler; needs ``distributed``)."""
    if spec == "local" or spec.startswith("local:"):
        workers = _local_workers(spec)
        with _pool(workers) as pool:
            yield pool, workers
        return
    if spec.startswith(("dask://", "tcp://", "tls://")):
        with _dask_executor(spec.removeprefix("dask://")) as pair:
            yield pair
        return
    raise FleetError(f"unknown executor {spec!r} (expected local, local:N or dask://HOST:PORT)")


def _local_workers(spec: str) -> int:
    if spec == "local":
        return os.cpu_count() or 1
    count = spec.removeprefix("local:")
    if not count.isdigit() or int(count) < 1:
        raise FleetError(f"bad executor {spec!r}: local:N needs a worker count N >= 1")
    return int(count)


@contextmanager
def _dask_executor(address: str) -> Iterator[tuple[Executor, int]]:
    # lazy: +671 ms CPU to import it after this module (measured, loaded host)
    from distributed import Client

    try:
        client = Client(address if "://" in address else f"tcp://{address}", timeout="20s")  # type: ignore[no-untyped-call]
    except OSError as exc:
        raise FleetError(f"cannot reach the Dask scheduler at {address}: {exc}") from exc
    try:
        threads = sum(client.nthreads().values()) or 1  # type: ignore[no-untyped-call]
        executor: Executor = client.get_executor(pure=False)  # type: ignore[no-untyped-call]
        with executor:
            yield executor, threads
    finally:
        client.close()  # type: ignore[no-untyped-call]


# --- the run ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Job:
    index: int
    path: str
    size: int
    attempts: int = 0
    result: FileResult | None = None


class _Runner:
    # Submits jobs in a bounded window, retries failures, and hands back results in input order.

    def __init__(
        self,
        executor: Executor,
        workers: int,
        task: ExtractTask,
        options: ExtractOptions,
        retries: int,
        replace_pool: Callable[[], Executor] | None,
    ) -> None:
        self.executor, self.task, self.options, self.retries = executor, task, options, retries
        self.replace_pool = replace_pool
        self.window = max(4 * workers, 8)
        self.running: dict[Future[FileResult], _Job] = {}
        self.stranded: list[_Job] = []
        self.retried = 0
        self.replaced = False

    def _submit(self, job: _Job) -> None:
        job.attempts += 1
        self.running[self.executor.submit(self.task, job.path, self.options)] = job

    def run(self, jobs: list[_Job]) -> Iterator[_Job]:
        todo, waiting = deque(jobs), deque(jobs)
        while waiting:
            while todo and len(self.running) < self.window:
                self._submit(todo.popleft())
            while waiting and waiting[0].result is not None:
                yield waiting.popleft()
            if self.running:
                self._collect()

    def _collect(self) -> None:
        done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
        broken = False
        for future in done:
            job = self.running.pop(future)
            try:
                job.result = future.result()
            except Exception as exc:  # a dead worker or a bug in extraction: retry
                broken = broken or _is_broken_pool(exc)
                self._retry(job, exc)
        if broken and self.replace_pool is not None:
            self._restart()

    def _retry(self, job: _Job, exc: BaseException) -> None:
        self.retried += 1
        if _is_broken_pool(exc) and self.replace_pool is not None:
            self.stranded.append(job)  # attempts are judged in _restart
        elif job.attempts > self.retries:
            self._fail(job, exc)
        else:
            self._submit(job)

    def _fail(self, job: _Job, exc: BaseException) -> None:
        reason = "its worker died" if _is_broken_pool(exc) else f"{type(exc).__name__}: {exc}".rstrip(": ")
        job.result = FileResult(job.path, job.size, "", (), f"{job.path}: failed {job.attempts} times: {reason}")

    def _restart(self) -> None:
        # A dead process took the local pool down, and every task queued in it failed with it: which one
        # killed it is unknown. Resubmit them on a new pool; one that was already stranded `retries` times
        # runs alone in a pool of its own, so that only a file that kills its worker by itself fails.
        jobs = sorted(self.stranded + list(self.running.values()), key=lambda j: j.index)
        self.running.clear()
        self.stranded = []
        assert self.replace_pool is not None
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor, self.replaced = self.replace_pool(), True
        for job in jobs:
            if job.attempts > self.retries:
                self._isolated(job)
            else:
                self._submit(job)

    def _isolated(self, job: _Job) -> None:
        job.attempts += 1
        with _pool(1) as alone:
            try:
                job.result = alone.submit(self.task, job.path, self.options).result()
            except Exception as exc:
                self._fail(job, exc)


def _is_broken_pool(exc: BaseException) -> bool:
    return isinstance(exc, BrokenProcessPool)


def _job_list(paths: Iterable[str | os.PathLike[str]]) -> list[_Job]:
    jobs = []
    for index, path in enumerate(iter_input_files(paths)):
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        jobs.append(_Job(index, str(path), size))
    return jobs


class _Writer:
    # The coordinator's side: results are buffered, then written in one batch: known hashes looked up
    # at once, buckets assigned in memory, new buckets flushed, crash rows inserted in bulk.

    def __init__(self, session: Session, stats: IngestStats) -> None:
        self.session, self.stats = session, stats
        self.grouper = Grouper(session)
        self.seen: set[str] = set()
        self.batch: list[FileResult] = []
        self.records, self.last_commit = 0, time.monotonic()
        self.now = dt.datetime.now(dt.UTC).replace(tzinfo=None)

    def add(self, result: FileResult) -> list[tuple[FileResult, int]]:
        """Buffer ``result``; when the batch is full, write it and return each file with its new crashes."""
        self.batch.append(result)
        self.records += len(result.records)
        if self.records >= _COMMIT_RECORDS or time.monotonic() - self.last_commit > _COMMIT_SECONDS:
            return self.commit()
        return []

    def _known(self, hashes: list[str]) -> set[str]:
        known: set[str] = set()
        for i in range(0, len(hashes), 500):
            chunk = hashes[i : i + 500]
            known.update(self.session.scalars(select(Crash.content_hash).where(Crash.content_hash.in_(chunk))))
        return known

    def commit(self) -> list[tuple[FileResult, int]]:
        batch, self.batch = self.batch, []
        known = self._known([r.content_hash for result in batch for r in result.records])
        done: list[tuple[FileResult, int]] = []
        rows: list[tuple[CrashRecord, Bucket]] = []
        for result in batch:
            new = [r for r in result.records if r.content_hash not in known and r.content_hash not in self.seen]
            self.seen.update(r.content_hash for r in new)
            rows.extend((record, self.grouper.bucket_for(record)) for record in new)
            self.stats.duplicates += len(result.records) - len(new)
            done.append((result, len(new)))
        self.grouper.flush()
        if rows:
            self.session.execute(insert(Crash), [_crash_row(record, bucket.id, self.now) for record, bucket in rows])
        self.grouper.finish()
        self.session.commit()
        self.records, self.last_commit = 0, time.monotonic()
        return done


def _crash_row(record: CrashRecord, bucket_id: int, now: dt.datetime) -> dict[str, object]:
    return dict(
        content_hash=record.content_hash,
        source=record.source,
        path=record.path,
        host=record.host,
        kernel_release=record.kernel_release,
        build_id=record.build_id,
        arch=record.arch,
        crash_time=record.crash_time,
        ingested_at=now,
        title=record.title,
        signature=record.signature,
        kind=record.kind,
        taints=record.taints,
        guilty_frame=record.guilty_frame,
        guilty_file=record.guilty_file,
        excerpt=record.excerpt,
        report_json=record.report_json,
        report_html=record.report_html,
        bucket_id=bucket_id,
    )


def ingest_files(
    db: CrashDb,
    paths: Iterable[str | os.PathLike[str]],
    executor: Executor,
    workers: int,
    *,
    options: ExtractOptions = _DEFAULT_OPTIONS,
    observer: IngestObserver | None = None,
    task: ExtractTask = extract_file,
    retries: int = 2,
    replace_pool: Callable[[], Executor] | None = None,
) -> IngestStats:
    """Ingest every file under ``paths`` into ``db``, extracting on ``executor`` (``workers`` wide).
    ``task`` replaces :func:`~kcrash.fleet.extract.extract_file` (tests); ``replace_pool`` makes a new
    executor when a local pool breaks."""
    start = time.monotonic()
    stats = IngestStats()
    jobs = _job_list(paths)
    if observer is not None:
        observer.started(len(jobs), sum(j.size for j in jobs))
    runner = _Runner(executor, workers, task, options, retries, replace_pool)
    with db.sessions(autoflush=False) as session:
        writer = _Writer(session, stats)
        for job in runner.run(jobs):
            assert job.result is not None
            _report(stats, observer, writer.add(job.result))
        _report(stats, observer, writer.commit())
    if runner.replaced:
        runner.executor.shutdown(wait=True)
    stats.new_buckets = writer.grouper.created
    stats.retried, stats.seconds = runner.retried, time.monotonic() - start
    return stats


def _report(stats: IngestStats, observer: IngestObserver | None, written: list[tuple[FileResult, int]]) -> None:
    for result, new in written:
        _count(stats, result, new)
        if observer is not None:
            observer.file_done(result, new)


def _count(stats: IngestStats, result: FileResult, new: int) -> None:
    stats.files += 1
    stats.bytes += result.size
    stats.crashes += len(result.records)
    stats.new_crashes += new
    if result.error is not None:
        stats.files_failed += 1
        stats.errors.append(result.error)


def write_results(db: CrashDb, results: Iterable[FileResult], *, observer: IngestObserver | None = None) -> IngestStats:
    """Write already extracted results into ``db`` as :func:`ingest_files` does (dedup, buckets, batches):
    for records made elsewhere (a synthetic fleet, another collector)."""
    start = time.monotonic()
    stats = IngestStats()
    with db.sessions(autoflush=False) as session:
        writer = _Writer(session, stats)
        for result in results:
            _report(stats, observer, writer.add(result))
        _report(stats, observer, writer.commit())
    stats.new_buckets, stats.seconds = writer.grouper.created, time.monotonic() - start
    return stats


def ingest(
    db: CrashDb,
    paths: Iterable[str | os.PathLike[str]],
    *,
    executor: str = "local",
    options: ExtractOptions = _DEFAULT_OPTIONS,
    observer: IngestObserver | None = None,
    retries: int = 2,
) -> IngestStats:
    """Ingest every file under ``paths`` into ``db`` on the executor named by ``executor`` (see
    :func:`executor_from_spec`).

    >>> from kcrash.fleet.db import open_db
    >>> ingest(open_db("sqlite://"), [], executor="local:1").files
    0
    """
    with executor_from_spec(executor) as (pool, workers):
        local = executor == "local" or executor.startswith("local:")
        return ingest_files(
            db,
            paths,
            pool,
            workers,
            options=options,
            observer=observer,
            retries=retries,
            replace_pool=(lambda: _pool(workers)) if local else None,
        )
