"""
kcrash.dumps.write.workers
==========================

A small pool of forked worker processes for the dump writers' page compression: CPython's GIL
serialises the Python around each page's compression call, so threads do not scale for 4 KiB pages,
while processes do. :class:`ForkPool` forks ``workers`` copies of the writing process (so a worker
reads its pages itself, through the same open file descriptors; ``pread`` keeps no shared file
offset), hands each one tasks of two integers through a pipe and returns the workers' answers in
the order the tasks were submitted, whichever worker did them. The next task goes to the worker with
the fewest tasks in flight, so a worker slowed down by another load on its CPU takes fewer.

A task's answer is the list of buffers the job returns, sent back as one length-prefixed message.
An exception in a worker comes back pickled and is raised again in the parent by
:meth:`ForkPool.result` (as a :class:`~kcrash.errors.KcrashError` with its message when it does not
survive pickling); a worker that dies without an answer raises :class:`~kcrash.errors.KcrashError`
there. Workers end when their task pipe closes
(:meth:`ForkPool.close`) and never run the parent's ``atexit`` handlers or flush its buffers; they
ignore SIGINT (a terminal's Ctrl-C reaches the whole process group: the parent handles it, keeps what
was written and closes the pool).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import signal
import struct
from collections import deque
from collections.abc import Callable, Sequence

from kcrash.errors import KcrashError

__all__ = ["ForkPool", "Job"]

#: a task ``(a, b)`` → the buffers of its answer (joined by the pool)
Job = Callable[[int, int], Sequence[bytes | memoryview]]
_TASK = struct.Struct("<qq")
_ANSWER = struct.Struct("<qB")  # payload length, 0 = answer / 1 = pickled exception
_PIPE_SIZE = 1 << 20


class ForkPool:
    """``workers`` forked processes running ``job``; answers come back in submission order."""

    def __init__(self, job: Job, workers: int) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self._pids: list[int] = []
        self._tasks: list[int] = []  # write ends, one per worker
        self._answers: list[int] = []  # read ends
        self._busy: list[int] = []
        self._order: deque[int] = deque()  # worker of each task in flight, oldest first
        try:
            for _ in range(workers):
                self._spawn(job)
        except BaseException:
            self.close()
            raise

    def _spawn(self, job: Job) -> None:
        task_r, task_w = os.pipe()
        answer_r, answer_w = os.pipe()
        for fd in (task_w, answer_w):
            with contextlib.suppress(AttributeError, OSError):  # a bigger pipe: fewer wake-ups
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                gc.disable()  # a collection would write to every inherited object's page (copy on write)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops and closes the pool
                os.close(task_w)
                os.close(answer_r)
                for fd in self._tasks + self._answers:  # the other workers' parent ends
                    os.close(fd)
                _serve(job, task_r, answer_w)
                status = 0
            finally:
                os._exit(status)
        os.close(task_r)
        os.close(answer_w)
        self._pids.append(pid)
        self._tasks.append(task_w)
        self._answers.append(answer_r)
        self._busy.append(0)

    @property
    def workers(self) -> int:
        """Return the number of worker processes."""
        return len(self._pids)

    @property
    def in_flight(self) -> int:
        """Return the tasks submitted whose answers were not yet taken."""
        return len(self._order)

    def submit(self, a: int, b: int) -> None:
        """Queue the task ``(a, b)`` on the least busy worker."""
        worker = min(range(len(self._busy)), key=self._busy.__getitem__)
        _write_all(self._tasks[worker], _TASK.pack(a, b))
        self._busy[worker] += 1
        self._order.append(worker)

    def result(self) -> memoryview:
        """Return the answer to the oldest task in flight (the job's buffers, joined).

        :raises Exception: what the job raised in the worker
        """
        worker = self._order.popleft()
        self._busy[worker] -= 1
        fd = self._answers[worker]
        head = _read_exact(fd, _ANSWER.size)
        if head is None:
            raise KcrashError("a compression worker process died")
        size, failed = _ANSWER.unpack(head)
        body = _read_exact(fd, size)
        if body is None:
            raise KcrashError("a compression worker process died")
        if failed:
            exc = pickle.loads(body)
            raise exc if isinstance(exc, BaseException) else KcrashError(str(exc))
        return body

    def close(self) -> None:
        """End the workers (they finish the task at hand) and wait for them."""
        for fd in self._tasks + self._answers:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._tasks, self._answers = [], []
        for pid in self._pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self._pids, self._busy = [], []
        self._order.clear()


def _serve(job: Job, tasks: int, answers: int) -> None:
    # A worker's loop: one task in, one answer out, until the task pipe closes (or the parent goes).
    while True:
        raw = _read_exact(tasks, _TASK.size)
        if raw is None:
            return
        a, b = _TASK.unpack(raw)
        try:
            parts = list(job(a, b))
            failed = 0
        except Exception as exc:  # sent to the parent, raised there
            try:
                blob = pickle.dumps(exc)
                pickle.loads(blob)  # an exception whose __init__ takes other arguments does not load
            except Exception:
                blob = pickle.dumps(KcrashError(str(exc) or type(exc).__name__))
            parts = [blob]
            failed = 1
        size = sum(len(p) for p in parts)
        try:
            _write_all(answers, _ANSWER.pack(size, failed), *parts)
        except BrokenPipeError:
            return


def _write_all(fd: int, *parts: bytes | memoryview) -> None:
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        done = os.writev(fd, views)
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


def _read_exact(fd: int, size: int) -> memoryview | None:
    # ``size`` bytes from a pipe, or None at end of file before them.
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return None
        got += n
    return view
