"""
kcrash.dumps.split
==================

A ``makedumpfile --split`` set: several kdump-compressed files of one crash, each holding the pages
of its ``[start_pfn_64, end_pfn_64)`` range with full-size bitmaps. :class:`SplitDump` joins the
parts into one dump; notes and VMCOREINFO come from the first part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from kcrash.dumps.base import DumpDescription, MemorySegment, PageCounts
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.notes import Note
from kcrash.dumps.vmcoreinfo import VmcoreInfo
from kcrash.errors import DumpFormatError

__all__ = ["SplitDump"]


class SplitDump:
    """The parts of one split dump, ordered by pfn range."""

    format_name: ClassVar[str] = "kdump-compressed (split)"

    def __init__(self, parts: Sequence[KdumpCompressed]) -> None:
        if not parts:
            raise DumpFormatError("a split dump needs at least one file")
        self.parts = sorted(parts, key=lambda p: p.pfn_range()[0])
        self._check()
        self.path = self.parts[0].path

    def _check(self) -> None:
        first = self.parts[0].header
        for part in self.parts:
            h = part.header
            if not h.split:
                raise DumpFormatError(f"{part.path}: not part of a --split dump set")
            if (h.max_mapnr, h.block_size) != (first.max_mapnr, first.block_size):
                raise DumpFormatError(f"{part.path}: belongs to another dump "
                                      "(max_mapnr or block_size differ)")
        for a, b in zip(self.parts, self.parts[1:], strict=False):
            if a.pfn_range()[1] > b.pfn_range()[0]:
                raise DumpFormatError(f"{a.path} and {b.path} cover overlapping pfn ranges")

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Split parts are sniffed as kdump-compressed files; this format is never sniffed."""
        return False

    @property
    def machine(self) -> str:
        """Return the first part's machine."""
        return self.parts[0].machine

    def segments(self) -> Sequence[MemorySegment]:
        """Return each part's physical segment."""
        return [seg for part in self.parts for seg in part.segments()]

    def notes(self) -> Sequence[Note]:
        """Return the first part's notes."""
        return self.parts[0].notes()

    def vmcoreinfo_or_none(self) -> VmcoreInfo | None:
        """Return the first part's VMCOREINFO."""
        return self.parts[0].vmcoreinfo_or_none()

    def describe(self) -> DumpDescription:
        """Return the first part's header facts with page counts summed over the parts."""
        descs = [p.describe() for p in self.parts]
        pages = PageCounts(descs[0].pages.page_size, *(sum(getattr(d.pages, f) for d in descs) for f in
                                                       ("present", "excluded", "zero", "lost",
                                                        "compressed", "raw")))
        codecs = tuple(sorted({c for d in descs for c in d.codecs}))
        return replace(descs[0], format=self.format_name, pages=pages, codecs=codecs,
                       incomplete=any(d.incomplete for d in descs), split=None,
                       files=tuple(str(p.path) for p in self.parts))

    def close(self) -> None:
        """Close every part."""
        for part in self.parts:
            part.close()
