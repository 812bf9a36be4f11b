"""Invariants shared by the property/fuzz tests of the parsers of untrusted bytes (issue #16): a
parser ends in a kcrash error (a :class:`~kcrash.errors.KcrashError` subclass) or a result, never
another exception; one example takes well under a second; absurd size fields do not make it
allocate more than a small, stated amount."""

from __future__ import annotations

import contextlib
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from kcrash.errors import CorruptDumpError, KcrashError

T = TypeVar("T")

#: the most one fuzz example may take (wall clock; the machine is shared, so with a wide margin)
EXAMPLE_SECONDS = 1.0
#: the most a parser may allocate on an input with absurd size fields
MEMORY_CAP = 64 << 20


def parse_or_kcrash_error(parse: Callable[[], T], *, seconds: float = EXAMPLE_SECONDS,
                          need_offset: bool = False) -> T | KcrashError:
    """Run ``parse``: return its result or the KcrashError it raised (any other exception fails the
    test, as does taking more than ``seconds``). ``need_offset``: a CorruptDumpError must say where."""
    start = time.perf_counter()
    try:
        result: T | KcrashError = parse()
    except KcrashError as exc:
        if need_offset and isinstance(exc, CorruptDumpError):
            assert exc.offset is not None, f"CorruptDumpError without an offset: {exc}"
        result = exc
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"one example took {elapsed:.2f} s (limit {seconds} s)"
    return result


def peak_allocation(run: Callable[[], object]) -> int:
    """Run ``run`` (a KcrashError it raises is expected) and return the peak bytes it allocated."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with contextlib.suppress(KcrashError):
            run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
