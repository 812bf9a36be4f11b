"""
kcrash.analysis.dumpinfo
========================

The report's facts about the dump file itself (:class:`~kcrash.report.model.DumpMetadata`): format,
codecs, dump level, size on disk, when it was collected, completeness and page counts, from the
format reader's header description. The collection time is the header's timestamp (kdump), else
the kernel's ``CRASHTIME`` from VMCOREINFO, else the file's modification time (QEMU records
neither); ``collected_from`` says which. :func:`debuginfo_sources` says how the symbols, types and
unwind tables were found. Nothing here prints.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kcrash.dumps import open_dump
from kcrash.dumps.base import DumpFormat
from kcrash.errors import KcrashError
from kcrash.report import model

if TYPE_CHECKING:
    from kcrash.types.program import Program

__all__ = ["debuginfo_sources", "dump_metadata"]


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


def debuginfo_sources(prog: Program) -> dict[str, str]:
    """How the kernel's symbols, types and unwind tables of ``prog`` were found, one line each
    (``symbols``, ``types``, ``unwind``), for ``dump info``."""
    from kcrash.debuginfo.symbols import SymbolTable
    from kcrash.helpers.linux.stack import kernel_unwinder

    symbols = prog.symbols
    facts = {"symbols": f"{symbols.source} ({symbols.num_symbols():,} symbols)"
             if isinstance(symbols, SymbolTable) else "unknown"}
    try:
        start, stop = prog.symbol_address("__start_BTF"), prog.symbol_address("__stop_BTF")
        facts["types"] = f"BTF in the kernel image, __start_BTF..__stop_BTF ({stop - start:,} bytes)"
    except KcrashError as exc:
        facts["types"] = f"unavailable: {exc}"
    try:
        unwinder = kernel_unwinder(prog)
    except KcrashError as exc:
        facts["unwind"] = f"unavailable: {exc}"
        return facts
    if unwinder.orc_error is not None:
        facts["unwind"] = f"no usable ORC table ({unwinder.orc_error}): frame pointers and stack scan, unreliable"
    else:
        tables = unwinder.orc.tables
        vmlinux = next(t for t in tables if t.name == "vmlinux")
        facts["unwind"] = (f"ORC from __start_orc_unwind_ip ({len(vmlinux.ips):,} entries, {vmlinux.format} layout)"
                           f", {len(tables) - 1} module table(s)")
    return facts
