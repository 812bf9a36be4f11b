"""kcrash.collect.source's physical reader on /proc/vmcore's layout: the kernel text PT_LOAD lies inside a
System RAM PT_LOAD (kexec-tools writes both), and RAM past the text's end still reads its own bytes
(it read zeros before: a lab kdump lost every page between the kernel image and crashkernel=)."""

from __future__ import annotations

import os
from pathlib import Path

from kcrash.collect.source import _disjoint, _Reader
from kcrash.dumps.base import DumpFormat


def test_text_piece_inside_ram_piece_is_dropped() -> None:
    ram, text = (0x1000, 0x10000, 0), (0x4000, 0x2000, 0x20000)
    assert _disjoint([ram, text]) == [ram]


def test_partial_overlap_is_cut() -> None:
    assert _disjoint([(0, 0x2000, 100), (0x1000, 0x2000, 500)]) == [(0, 0x2000, 100), (0x2000, 0x1000, 500 + 0x1000)]


def test_ram_after_the_text_piece_reads_its_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 0x140  # 0x14000 bytes: RAM at file offset 0, a text copy at 0x10000
    path = tmp_path / "vmcore"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    reader = _Reader([(0x1000, 0x10000, 0), (0x4000, 0x2000, 0x10000)], fd, DumpFormat.__new__(DumpFormat))  # type: ignore[misc]
    try:
        # past the text piece's end, inside the RAM piece
        assert reader.read(0x8000, 16) == data[0x7000:0x7010]
        # across the text piece's end
        assert reader.read(0x5FF8, 16) == data[0x4FF8:0x5008]
    finally:
        reader.close()
