"""
kcrash.analysis.dumpinfo
========================

The report's facts about the dump file itself (:class:`~kcrash.report.model.DumpMetadata`): format,
codecs, dump level, size on disk, when it was collected, completeness and page counts, from the
format reader's header description. The collection time is the header's timestamp (kdump), else
the kernel's ``CRASHTIME`` from VMCOREINFO, else the file's modification time (QEMU records
neither); ``collected_from`` says which. Nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from kcrash.dumps import open_dump
from kcrash.dumps.base import DumpFormat
from kcrash.report import model

__all__ = ["dump_metadata"]


def dump_metadata(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
                  opened: DumpFormat | None = None) -> model.DumpMetadata:
    """Describe the dump at ``paths`` (one file, or the parts of a split dump); ``opened`` is that
    dump already open (it is described, not reopened, and left open)."""
    files = [os.fspath(paths)] if isinstance(paths, (str, os.PathLike)) else [os.fspath(p) for p in paths]
    dump = opened if opened is not None else open_dump(files)
    try:
        desc = dump.describe()
        info = dump.vmcoreinfo_or_none()
    finally:
        if opened is None:
            dump.close()
    collected, source = _collected(desc.timestamp, info.crashtime if info is not None else None, files[0])
    return model.DumpMetadata(
        path=files[0] if len(files) == 1 else " ".join(files), format=desc.format, codecs=tuple(desc.codecs),
        dump_level=desc.dump_level, size=sum(os.path.getsize(f) for f in files), collected=collected,
        collected_from=source, incomplete=desc.incomplete,
        pages_total=desc.pages.present + desc.pages.excluded + desc.pages.lost,
        pages_dumped=desc.pages.present)


def _collected(timestamp: int | None, crashtime: int | None, path: str) -> tuple[int, str]:
    if timestamp:
        return timestamp, "header"
    if crashtime:
        return crashtime, "vmcoreinfo"
    return int(os.stat(path).st_mtime), "file mtime"
