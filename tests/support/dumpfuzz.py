"""Helpers of the dump-format fuzz tests: a synthetic dump of each kind, written once, and a reader
that opens a damaged copy and reads everything it can, letting only KcrashError escape."""

from __future__ import annotations

import contextlib
import functools
import tempfile
import warnings
from pathlib import Path

from kcrash.dumps import cpu_states, open_dump
from kcrash.dumps.write.kdump_compressed import KdumpLayout
from kcrash.errors import KcrashError
from kcrash.memory import SegmentMap
from support.synthetic import SyntheticKernel, make_synthetic_kernel


@functools.cache
def kernel() -> SyntheticKernel:
    return make_synthetic_kernel(seed=5)


@functools.cache
def original(kind: str) -> tuple[bytes, KdumpLayout | None]:
    """The bytes of a small synthetic dump: ``elf``, ``kdump`` or ``flat`` (and the kdump layout)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / kind
        layout = None
        if kind == "elf":
            kernel().write_elf(path)
        else:
            layout = kernel().write_kdump(path, flattened=kind == "flat", codec="zlib")
        return path.read_bytes(), layout


def read_everything(data: bytes) -> None:
    """Write ``data`` to a file, open it as a dump and read its headers, notes and some pages."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed"
        path.write_bytes(data)
        exercise(path, span=1 << 20, read=1 << 14, ranges=64)


def exercise(path: Path, *, span: int = 1 << 23, read: int = 1 << 16, ranges: int | None = None) -> None:
    """Open ``path`` as a dump and read its headers, notes and, in each of its first ``ranges``
    physical ranges, ``read`` bytes every 64 KiB of the first ``span`` bytes; only KcrashError escapes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dump = open_dump(path)
    try:
        dump.describe()
        cpu_states(dump.notes())
        dump.vmcoreinfo_or_none()
        mem = SegmentMap(dump.segments())
        for start, end in mem.ranges(physical=True)[:ranges]:
            for addr in range(start, min(end, start + span), 1 << 16):
                with contextlib.suppress(KcrashError):
                    mem.read(addr, min(read, end - addr), physical=True)
    finally:
        dump.close()
