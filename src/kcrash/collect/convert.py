"""
kcrash.collect.convert
======================

Filter and rewrite a dump, as makedumpfile does in a capture kernel: any dump kcrash reads (a
``/proc/vmcore``-style ELF file, QEMU's ELF or kdump output, a kdump-compressed file) goes in;
the pages the dump level excludes (:mod:`kcrash.collect.pageclass`) and, with ``dump_level & 1``,
the all-zero pages stay out; a kdump-compressed file (plain or flattened, any codec) or a
``/proc/vmcore``-shaped ELF file comes out (:mod:`kcrash.dumps.write.stream`). The notes (CPU
registers, VMCOREINFO) are copied. :class:`FilterReport` counts excluded pages per class the way
makedumpfile's report does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from kcrash.collect.pageclass import DL_EXCLUDE_ZERO, PageClass, classify_pages, find_mem_map
from kcrash.collect.source import DumpPages, dump_pages
from kcrash.dumps.base import DumpFormat
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.dumps.write.compress import CODECS
from kcrash.dumps.write.notes import build_note
from kcrash.dumps.write.stream import (
    DumpMeta,
    ElfSegment,
    PageSource,
    Progress,
    WriteResult,
    page_runs,
    write_elf_dump,
    write_kdump_dump,
)
from kcrash.errors import FaultError, MissingDebugInfoError, ValidationError
from kcrash.memory.kernel import KernelMemory, open_kernel_memory
from kcrash.metrics import COUNTERS, phase

__all__ = ["FORMATS", "ConvertOptions", "ConvertResult", "FilterReport", "build_filter", "convert_dump",
           "default_threads", "dump_meta", "filter_and_write", "trim_to_mem_map", "write_filtered"]

#: output formats: kdump-compressed, its flattened (pipe) form, ELF
FORMATS = ("kdump", "flat", "elf")
_ZERO_SCAN_PAGES = 4096


@dataclass(frozen=True, slots=True)
class ConvertOptions:
    """How to filter and write: dump level 0–31, codec, output format, compression processes
    (``threads``: 1 compresses in this process; the file is the same for every count)."""

    dump_level: int = 31
    codec: str = "zlib"
    format: str = "kdump"
    threads: int = 1

    def validate(self) -> None:
        """Raise :class:`ValidationError` for an impossible combination."""
        if not 0 <= self.dump_level <= 31:
            raise ValidationError(f"dump level {self.dump_level} is not in 0..31")
        if self.codec not in CODECS:
            raise ValidationError(f"unknown codec {self.codec!r} (one of {', '.join(CODECS)})")
        if self.format not in FORMATS:
            raise ValidationError(f"unknown output format {self.format!r} (one of {', '.join(FORMATS)})")
        if self.threads < 1:
            raise ValidationError("--threads must be at least 1")


@dataclass(frozen=True, slots=True)
class FilterReport:
    """Pages per class, in makedumpfile's report terms (``excluded`` maps class name → pages)."""

    ram_pages: int
    present_pages: int
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        """Return the pages left in the dump."""
        return self.present_pages - sum(self.excluded.values())


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """The written file and what was left out."""

    write: WriteResult
    report: FilterReport
    seconds: float


_NAMES = {PageClass.CACHE: "cache", PageClass.CACHE_PRIVATE: "cache_private", PageClass.USER: "user",
          PageClass.FREE: "free", PageClass.HWPOISON: "hwpoison", PageClass.OFFLINE: "offline"}


def build_filter(pages: DumpPages, mem: KernelMemory | None, info: VmcoreInfo | None, level: int
                 ) -> tuple[npt.NDArray[np.bool_], dict[str, int]]:
    """Return (dumpable bitmap, excluded pages per class) for ``level`` (zero pages not yet counted).

    Without VMCOREINFO (or its ``mem_section`` facts) only zero pages can be excluded; a level that
    asks for more raises :class:`~kcrash.errors.MissingDebugInfoError`.
    """
    present = pages.present
    counts = dict.fromkeys(_NAMES.values(), 0)
    if info is None or mem is None or "mem_section" not in info.symbols:
        if level & ~DL_EXCLUDE_ZERO:
            raise MissingDebugInfoError(f"dump level {level} needs VMCOREINFO with SYMBOL(mem_section)")
        return present.copy(), counts
    try:
        classes = classify_pages(mem, info, len(present), level)
    except MissingDebugInfoError:
        if level & ~DL_EXCLUDE_ZERO:
            raise
        return present.copy(), counts  # hwpoison/offline need struct page; zero pages still go
    excluded = (classes > 0) & present
    for value, name in _NAMES.items():
        counts[name] = int(np.count_nonzero(excluded & (classes == value)))
    return present & ~excluded, counts


def trim_to_mem_map(pages: DumpPages, mem: KernelMemory | None, info: VmcoreInfo | None) -> None:
    """Drop RAM above the last memory section that has a ``mem_map`` (firmware ROM such as QEMU's
    BIOS at 0xfffc0000): the kernel does not manage it, and makedumpfile sets ``max_mapnr`` there too."""
    if mem is None or info is None or "mem_section" not in info.symbols:
        return
    try:
        chunks = find_mem_map(mem, info, len(pages.ram))
    except (MissingDebugInfoError, FaultError):
        return
    if chunks:
        end = chunks[-1].end_pfn
        pages.ram, pages.present = pages.ram[:end], pages.present[:end]
        bs = pages.page_size
        pages.segments = [s for s in pages.segments if s.p_paddr < end * bs]


def _zero_scan(source: PageSource, dumpable: npt.NDArray[np.bool_]) -> int:
    # ELF output needs the zero pages out of the bitmap before the headers are written.
    bs = source.page_size
    zero = 0
    for start, end in page_runs(dumpable):
        for pfn in range(start, end, _ZERO_SCAN_PAGES):
            n = min(_ZERO_SCAN_PAGES, end - pfn)
            words = np.frombuffer(source.read_pages(pfn, n), dtype=np.uint64).reshape(n, bs // 8)
            empty = ~words.any(axis=1)
            dumpable[pfn:pfn + n] &= ~empty
            zero += int(np.count_nonzero(empty))
    return zero


def _raw_notes(dump: DumpFormat) -> bytes:
    return b"".join(build_note(n.name, n.n_type, n.desc) for n in dump.notes())


def _utsname(mem: KernelMemory | None, info: VmcoreInfo | None) -> bytes:
    if mem is None or info is None or "init_uts_ns" not in info.symbols:
        release = (info.osrelease or "") if info is not None else ""
        return b"Linux".ljust(65, b"\0") + bytes(65) + release.encode()[:64].ljust(65, b"\0")
    try:
        return mem.read(info.get_symbol("init_uts_ns") + info.offsets.get("uts_namespace.name", 0), 6 * 65)
    except FaultError:
        return b""


def dump_meta(dump: DumpFormat, mem: KernelMemory | None, level: int) -> DumpMeta:
    """Return the header facts of a dump written from ``dump`` at dump level ``level``."""
    info = dump.vmcoreinfo_or_none()
    cpus = sum(1 for n in dump.notes() if n.name == "CORE" and n.n_type == 1)
    phys_base = info.get_number_or_none("phys_base") if info is not None else None
    if phys_base is None and mem is not None:
        phys_base = mem.layout.phys_base
    stamp = (info.crashtime if info is not None else None) or 0  # 0 when unknown, as makedumpfile and QEMU
    return DumpMeta(notes=_raw_notes(dump), utsname=_utsname(mem, info), nr_cpus=max(cpus, 1),
                    phys_base=phys_base or 0, dump_level=level, timestamp=stamp)


def write_filtered(out: Path, pages: PageSource, segments: Sequence[ElfSegment], ram: npt.NDArray[np.bool_],
                   dumpable: npt.NDArray[np.bool_], meta: DumpMeta, opts: ConvertOptions,
                   progress: Progress | None = None) -> tuple[WriteResult, int]:
    """Write the dumpable pages as ``opts.format``; return the result and the zero pages left out.

    :param segments: the physical ranges (ELF output has one PT_LOAD run list per segment)
    """
    if opts.format == "elf":
        zero = _zero_scan(pages, dumpable) if opts.dump_level & DL_EXCLUDE_ZERO else 0
        return write_elf_dump(out, pages, segments, dumpable, meta.notes, progress=progress), zero
    result = write_kdump_dump(out, pages, ram, dumpable, meta, codec=opts.codec, flattened=opts.format == "flat",
                              threads=opts.threads, progress=progress)
    return result, result.zero_pages


def default_threads(codec: str) -> int:
    """Return the compression processes to use for ``codec`` (``dump convert``, ``collect vmcore``).

    zlib and zstd spend about 45 us per page in C: they scale with the CPUs this process may run on
    (at most 64), each a forked worker (:class:`~kcrash.dumps.write.workers.ForkPool`; threads do
    not scale, the GIL serialises the Python around each page). LZO and snappy take a few us per
    page: on 2 CPUs a second process cost more CPU (pipes, fork) than it saved (measured on the
    4 GiB lab dump, bench/RESULTS.md), and ``none`` has nothing to spread: one, in this process.

    :param codec: a name of :data:`~kcrash.dumps.write.compress.CODECS`
    :return: the process count, at least 1

    >>> default_threads("lzo")
    1
    """
    if codec not in ("zlib", "zstd"):
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, 64)


def convert_dump(dump: DumpFormat, out: Path, opts: ConvertOptions, progress: Progress | None = None
                 ) -> ConvertResult:
    """Filter ``dump`` at ``opts.dump_level`` and write it to ``out`` (see the module docstring)."""
    opts.validate()
    start = time.monotonic()
    with phase("convert"):
        result, report = _convert(dump, out, opts, progress)
    COUNTERS.memory_dumps_collected += 1
    COUNTERS.memory_dump_bytes += result.size
    return ConvertResult(result, report, time.monotonic() - start)


def _convert(dump: DumpFormat, out: Path, opts: ConvertOptions, progress: Progress | None
             ) -> tuple[WriteResult, FilterReport]:
    def write(pages: DumpPages, dumpable: npt.NDArray[np.bool_], meta: DumpMeta) -> tuple[WriteResult, int]:
        return write_filtered(out, pages, pages.segments, pages.ram, dumpable, meta, opts, progress)

    return filter_and_write(dump, opts, write)


def filter_and_write(dump: DumpFormat, opts: ConvertOptions,
                     write: Callable[[DumpPages, npt.NDArray[np.bool_], DumpMeta], tuple[WriteResult, int]]
                     ) -> tuple[WriteResult, FilterReport]:
    """The steps ``convert`` and ``collect vmcore`` share: the dump's pages (trimmed to ``mem_map``),
    makedumpfile's filter at ``opts.dump_level`` and the dump's metadata, handed to ``write`` (which
    returns the result and the zero pages it dropped); the pages are closed after.
    """
    info = dump.vmcoreinfo_or_none()
    mem = open_kernel_memory(dump) if info is not None else None
    pages = dump_pages(dump)
    try:
        trim_to_mem_map(pages, mem, info)
        dumpable, counts = build_filter(pages, mem, info, opts.dump_level)
        meta = dump_meta(dump, mem, opts.dump_level)
        result, zero = write(pages, dumpable, meta)
    finally:
        pages.close()
    report = FilterReport(int(np.count_nonzero(pages.ram)), int(np.count_nonzero(pages.present)),
                          {"zero": zero, **counts})
    return result, report
