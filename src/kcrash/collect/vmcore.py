"""
kcrash.collect.vmcore
=====================

The core collector of a capture kernel: read ``/proc/vmcore`` (an ELF core with ``PT_LOAD``s and
the VMCOREINFO note, as the kernel's ``fs/proc/vmcore.c`` presents the crashed kernel's memory),
filter it at a makedumpfile dump level and write a kdump-compressed file, or its flattened form to a
pipe (``makedumpfile -F``). The filtering and the writers are :mod:`kcrash.collect.convert`'s; this
module adds the stream output and makedumpfile's process conventions as data:
:data:`MAKEDUMPFILE_EXIT` (the exit codes of makedumpfile 1.7.2, ``makedumpfile.h``: ``COMPLETED`` 0,
``FAILED`` 1, ``WRONG_RELEASE`` 2; its internal ``NOSPACE`` (-1) is no exit code: a full disk ends in
``FAILED`` after the header is flagged ``DUMP_DH_COMPRESSED_INCOMPLETE``) and the message-level bits
(``ML_PRINT_*``). Argument parsing and printing stay in :mod:`kcrash.cli.collect`.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kcrash.collect.convert import (
    ConvertOptions,
    ConvertResult,
    FilterReport,
    default_threads,
    filter_and_write,
    write_filtered,
)
from kcrash.collect.source import DumpPages
from kcrash.dumps.base import DumpFormat
from kcrash.dumps.write.output import StreamOutput
from kcrash.dumps.write.stream import DumpMeta, Progress, WriteResult, write_kdump_dump
from kcrash.errors import ValidationError
from kcrash.metrics import COUNTERS, phase

__all__ = ["COMPLETED", "FAILED", "MAKEDUMPFILE_EXIT", "ML_PRINT_COMMON_MSG", "ML_PRINT_DEBUG_MSG",
           "ML_PRINT_ERROR_MSG", "ML_PRINT_PROGRESS", "ML_PRINT_REPORT_MSG", "WRONG_RELEASE", "Collection",
           "collect_vmcore", "collect_vmcore_retrying", "default_threads"]

# makedumpfile.h (1.7.2), "Result of command": the process exit status of makedumpfile.
COMPLETED = 0
FAILED = 1
WRONG_RELEASE = 2  # only with -x VMLINUX whose utsname.release differs; kcrash reads no vmlinux
#: name → exit status, as makedumpfile 1.7.2 returns them from main()
MAKEDUMPFILE_EXIT = {"COMPLETED": COMPLETED, "FAILED": FAILED, "WRONG_RELEASE": WRONG_RELEASE}

# makedumpfile.h, "Message Level": --message-level is a sum of these (default 7).
ML_PRINT_PROGRESS = 0x01
ML_PRINT_COMMON_MSG = 0x02
ML_PRINT_ERROR_MSG = 0x04
ML_PRINT_DEBUG_MSG = 0x08
ML_PRINT_REPORT_MSG = 0x10


@dataclass(frozen=True, slots=True)
class Collection:
    """A finished (or stopped) collection: what the converter reports, and where it went."""

    result: ConvertResult
    streamed: bool

    @property
    def exit_status(self) -> int:
        """Return makedumpfile's exit status for this outcome (``FAILED`` when incomplete)."""
        return FAILED if self.result.write.incomplete else COMPLETED


def collect_vmcore(dump: DumpFormat, out: Path | None, opts: ConvertOptions, *, stream_fd: int | None = None,
                   progress: Progress | None = None) -> Collection:
    """Filter ``dump`` at ``opts.dump_level`` into ``out`` or, with ``stream_fd``, as a flattened
    stream on that descriptor (``opts.format`` must then be ``"flat"``).

    A full disk (or a closed pipe) keeps what was written, flagged incomplete
    (:attr:`WriteResult.incomplete`), like makedumpfile; :attr:`Collection.exit_status` is then 1.
    """
    opts.validate()
    if (stream_fd is None) == (out is None):
        raise ValidationError("give an output file or a stream, not both")
    if stream_fd is not None and opts.format != "flat":
        raise ValidationError("a stream carries only the flattened format")
    start = time.monotonic()
    with phase("convert"):
        write, report = _collect(dump, out, opts, stream_fd, progress)
    COUNTERS.memory_dumps_collected += 1
    COUNTERS.memory_dump_bytes += write.size
    return Collection(ConvertResult(write, report, time.monotonic() - start), stream_fd is not None)


def collect_vmcore_retrying(dump: DumpFormat, out: Path, opts: ConvertOptions, levels: Sequence[int], *,
                            progress: Progress | None = None,
                            on_retry: Callable[[int], None] | None = None) -> Collection:
    """makedumpfile's ``-d DL1,DL2,...``: write at ``levels[0]``; when the disk fills up (``ENOSPC``;
    makedumpfile's ``NOSPACE``), delete the cut dump and write again at the next level, calling
    ``on_retry(level)`` first (makedumpfile 1.7.2 ``create_dumpfile``: "Retry to create a dumpfile by
    dump_level(N)."). The last attempt's dump is kept, flagged incomplete if it was cut too.
    """
    if not levels:
        raise ValidationError("no dump level")
    for i, level in enumerate(levels):
        collection = collect_vmcore(dump, out, replace(opts, dump_level=level), progress=progress)
        w = collection.result.write
        if not (w.incomplete and w.reason == os.strerror(errno.ENOSPC)) or i + 1 == len(levels):
            break
        if on_retry is not None:
            on_retry(levels[i + 1])
        out.unlink(missing_ok=True)
    return collection


def _collect(dump: DumpFormat, out: Path | None, opts: ConvertOptions, stream_fd: int | None,
             progress: Progress | None) -> tuple[WriteResult, FilterReport]:
    def write(pages: DumpPages, dumpable: npt.NDArray[np.bool_], meta: DumpMeta) -> tuple[WriteResult, int]:
        if stream_fd is None:
            assert out is not None
            return write_filtered(out, pages, pages.segments, pages.ram, dumpable, meta, opts, progress)
        result = write_kdump_dump(Path("<stdout>"), pages, pages.ram, dumpable, meta, codec=opts.codec,
                                  flattened=True, threads=opts.threads, progress=progress,
                                  output=StreamOutput(stream_fd))
        return result, result.zero_pages

    return filter_and_write(dump, opts, write)
