"""kcrash.dumps.base: the records every format hands upward (MemorySegment, PageCounts,
DumpDescription), the one-line missing-pages warning, and both real formats answering the
DumpFormat protocol on the same synthetic kernel."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from kcrash.dumps.base import DumpDescription, DumpWarning, MemorySegment, PageCounts, missing_pages_warning
from kcrash.dumps.registry import open_dump
from support.synthetic import make_synthetic_kernel


def test_memory_segment() -> None:
    seg = MemorySegment(0x1000, 0x2000, lambda a, n: bytes(n), physical=True)
    assert seg.end == 0x3000
    assert seg.read_fn(0x1000, 4) == bytes(4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        seg.start = 0  # type: ignore[misc]


def test_missing_pages_warning() -> None:
    line = missing_pages_warning("/d/vmcore", "cut short", 1_234, 10_000)
    assert line.startswith("/d/vmcore: cut short — 1,234 of 10,000 pages missing (87 % present)")
    assert "\n" not in line
    assert "(0 % present)" in missing_pages_warning("x", "flagged incomplete", 0, 0)
    assert issubclass(DumpWarning, UserWarning)


def test_description_defaults() -> None:
    desc = DumpDescription("p", "elf", (), PageCounts(4096))
    assert (desc.pages.present, desc.pages.lost, desc.incomplete, desc.split, desc.utsname) == (0, 0, False, None, {})


@pytest.mark.parametrize("kind", ["elf", "kdump"])
def test_formats_answer_the_protocol(kind: str, tmp_path: Path) -> None:
    k = make_synthetic_kernel()
    path = tmp_path / "vmcore"
    if kind == "elf":
        k.write_elf(path)
    else:
        k.write_kdump(path)
    dump = open_dump(path)
    try:
        assert dump.path == path
        assert dump.format_name in ("elf", "kdump-compressed")
        head = path.read_bytes()[:8192]
        assert type(dump).sniff(head)
        phys = [s for s in dump.segments() if s.physical]
        assert phys and all(isinstance(s, MemorySegment) and s.size > 0 for s in phys)
        # the text page the synthetic kernel wrote at physical 0x1000 reads back through the segments
        low = next(s for s in phys if s.start <= 0x1000 < s.end)
        assert low.read_fn(0x1000, 10) == b"low memory"
        assert any(n.name == "CORE" for n in dump.notes())
        info = dump.vmcoreinfo_or_none()
        assert info is not None and info.raw["OSRELEASE"] == "6.1.0-synthetic"
        assert info.get_symbol("_stext") == k.stext
        desc = dump.describe()
        assert isinstance(desc, DumpDescription) and desc.path == str(path)
        assert desc.format.startswith(dump.format_name) and desc.pages.page_size == 4096
    finally:
        dump.close()
