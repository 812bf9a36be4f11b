"""Streaming writers: filtered kdump (plain/flattened, every codec, threads) and ELF files read back
page for page through our readers; incomplete files (disk full, interruption) are flagged, renamed,
and still readable with a DumpWarning."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import numpy as np
import pytest

from kcrash.dumps import DumpWarning, open_dump
from kcrash.dumps.write.compress import CODECS, PageCompressor
from kcrash.dumps.write.notes import build_prstatus, build_vmcoreinfo_note
from kcrash.dumps.write.output import DumpOutput, OutputFull, temporary_path
from kcrash.dumps.write.stream import DumpMeta, ElfSegment, page_runs, write_elf_dump, write_kdump_dump
from kcrash.errors import FaultError

PAGES = 600


class Source:
    """RAM of PAGES pages: random, text-like and zero pages."""

    page_size = 4096

    def __init__(self, seed: int = 3) -> None:
        rng = random.Random(seed)
        pages = []
        for _ in range(PAGES):
            r = rng.random()
            pages.append(bytes(4096) if r < 0.3 else rng.randbytes(4096) if r < 0.6
                         else bytes(rng.choice(b"ab \0") for _ in range(4096)))
        self.data = b"".join(pages)

    def page(self, pfn: int) -> bytes:
        return self.data[pfn * 4096:(pfn + 1) * 4096]

    def read_pages(self, pfn: int, count: int) -> bytes:
        return self.data[pfn * 4096:(pfn + count) * 4096]


@pytest.fixture(scope="module")
def source() -> Source:
    return Source()


def _bitmaps(seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ram = np.ones(PAGES, dtype=bool)
    ram[100:140] = False  # a hole
    dumpable = ram & (rng.random(PAGES) < 0.7)
    return ram, dumpable


def _meta(level: int = 31) -> DumpMeta:
    notes = build_prstatus(1, {"rip": 0xFFFFFFFF81000000, "rsp": 0x1000}) + \
        build_vmcoreinfo_note("OSRELEASE=6.1.0-test\nPAGESIZE=4096\n")
    uts = b"".join(f.ljust(65, b"\0") for f in (b"Linux", b"host", b"6.1.0-test", b"#1", b"x86_64", b""))
    return DumpMeta(notes=notes, utsname=uts, nr_cpus=1, phys_base=0, dump_level=level, timestamp=1234)


def _check_pages(path: Path, source: Source, ram: np.ndarray, dumpable: np.ndarray) -> None:
    dump = open_dump(path)
    try:
        for pfn in range(PAGES):
            if dumpable[pfn]:
                assert dump.segments()[0].read_fn(pfn * 4096, 4096) == source.page(pfn) if pfn < 100 else True
        seg_read = {s.start: s for s in dump.segments()}
        for pfn in np.flatnonzero(dumpable):
            seg = next(s for s in seg_read.values() if s.start <= pfn * 4096 < s.end)
            assert seg.read_fn(int(pfn) * 4096, 4096) == source.page(int(pfn)), pfn
    finally:
        dump.close()


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("flattened", [False, True])
def test_kdump_round_trip(tmp_path: Path, source: Source, codec: str, flattened: bool) -> None:
    ram, dumpable = _bitmaps()
    out = tmp_path / "out.kdump"
    result = write_kdump_dump(out, source, ram, dumpable, _meta(), codec=codec, flattened=flattened, threads=2)
    assert not result.incomplete and result.path == out and out.exists()
    assert not temporary_path(out).exists()
    zero = sum(1 for p in np.flatnonzero(dumpable) if source.page(int(p)) == bytes(4096))
    assert result.zero_pages == zero > 0
    _check_pages(out, source, ram, dumpable)
    dump = open_dump(out)
    desc = dump.describe()
    assert desc.header_version == 6 and desc.dump_level == 31 and not desc.incomplete
    assert desc.pages.present == int(dumpable.sum()) and desc.pages.zero == zero
    assert desc.pages.excluded == int((ram & ~dumpable).sum())
    assert dump.vmcoreinfo_or_none().osrelease == "6.1.0-test"  # type: ignore[union-attr]
    assert desc.utsname["nodename"] == "host"
    excluded = int(np.flatnonzero(ram & ~dumpable)[0])
    with pytest.raises(FaultError, match="excluded"):
        dump.segments()[0].read_fn(excluded * 4096, 8) if excluded < 100 else \
            dump.segments()[1].read_fn(excluded * 4096, 8)
    dump.close()


def test_level_without_zero_bit_keeps_zero_pages_as_data(tmp_path: Path, source: Source) -> None:
    ram, dumpable = _bitmaps()
    result = write_kdump_dump(tmp_path / "d0", source, ram, dumpable, _meta(level=0), codec="zlib")
    assert result.zero_pages == 0
    assert open_dump(tmp_path / "d0").describe().pages.zero == 0
    _check_pages(tmp_path / "d0", source, ram, dumpable)


def test_elf_round_trip_and_excluded_read_as_zero(tmp_path: Path, source: Source) -> None:
    ram, dumpable = _bitmaps()
    segs = [ElfSegment(0, 0xFFFF888000000000, 100 * 4096), ElfSegment(140 * 4096, 140 * 4096, (PAGES - 140) * 4096)]
    out = tmp_path / "out.elf"
    result = write_elf_dump(out, source, segs, dumpable, _meta().notes)
    assert not result.incomplete and result.pages_written == int(dumpable.sum())
    dump = open_dump(out)
    assert dump.ehdr["e_flags"] == 0  # type: ignore[attr-defined]
    phys = [s for s in dump.segments() if s.physical]
    for pfn in range(PAGES):
        if not ram[pfn]:
            continue
        seg = next(s for s in phys if s.start <= pfn * 4096 < s.end)
        expect = source.page(pfn) if dumpable[pfn] else bytes(4096)
        assert seg.read_fn(pfn * 4096, 4096) == expect, pfn
    virt = [s for s in dump.segments() if not s.physical]
    assert virt and virt[0].start == 0xFFFF888000000000 + virt[0].start - virt[0].start
    dump.close()


def test_page_runs() -> None:
    bits = np.array([0, 1, 1, 0, 1, 0, 0, 1], dtype=bool)
    assert page_runs(bits) == [(1, 3), (4, 5), (7, 8)]
    assert page_runs(np.zeros(4, dtype=bool)) == []


def test_compressor_stores_incompressible_pages_raw() -> None:
    rnd, text = os.urandom(4096), b"abcd" * 1024
    for codec in ("zlib", "lzo", "snappy", "zstd"):
        comp = PageCompressor(codec)
        (stored_rnd, flag_rnd), (stored_txt, flag_txt) = comp.compress([rnd, text])
        assert (stored_rnd, flag_rnd) == (rnd, 0)
        assert flag_txt != 0 and len(stored_txt) < 4096
        # pack: the same bytes, back to back, for the chosen pages of a chunk
        sizes, flags, blob = comp.pack(text + rnd + text, np.array([0, 1, 2]))
        assert list(sizes) == [len(stored_txt), 4096, len(stored_txt)] and list(flags) == [flag_txt, 0, flag_txt]
        assert blob == stored_txt + rnd + stored_txt
        assert comp.pack(rnd + text, np.array([1]))[2] == stored_txt
    assert PageCompressor("none").compress([text]) == [(text, 0)]
    with pytest.raises(ValueError, match="unknown codec"):
        PageCompressor("lz4")


class FullAfter(DumpOutput):
    """A DumpOutput whose device fills up after ``limit`` bytes of page data."""

    limit = 200_000

    def write(self, offset: int, data: bytes | memoryview) -> None:
        if offset > 3 * 4096 and len(data) > 4096:
            FullAfter.limit -= len(data)
            if FullAfter.limit < 0:
                self.failure = "No space left on device"
                raise OutputFull(self.failure)
        super().write(offset, data)


@pytest.mark.parametrize("flattened", [False, True])
def test_disk_full_gives_flagged_readable_file(tmp_path: Path, source: Source, monkeypatch: pytest.MonkeyPatch,
                                                flattened: bool) -> None:
    import kcrash.dumps.write.stream as stream

    FullAfter.limit = 200_000
    monkeypatch.setattr(stream, "DumpOutput", FullAfter)
    monkeypatch.setattr(stream, "_CHUNK_PAGES", 64)
    ram, dumpable = _bitmaps()
    out = tmp_path / "full.kdump"
    result = write_kdump_dump(out, source, ram, dumpable, _meta(), codec="none", flattened=flattened)
    assert result.incomplete and result.reason == "No space left on device"
    assert 0 < result.pages_written < result.pages_total
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dump = open_dump(out)
    assert any(issubclass(w.category, DumpWarning) for w in caught)
    desc = dump.describe()
    assert desc.incomplete and "incomplete" in desc.status_flags
    assert desc.pages.lost == result.pages_total - result.pages_written
    first = int(np.flatnonzero(dumpable)[0])
    assert dump.segments()[0].read_fn(first * 4096, 4096) == source.page(first)
    last = int(np.flatnonzero(dumpable)[-1])
    with pytest.raises(FaultError, match="lost"):
        next(s for s in dump.segments() if s.start <= last * 4096 < s.end).read_fn(last * 4096, 8)
    dump.close()


def test_interrupted_writer_keeps_flagged_file(tmp_path: Path, source: Source) -> None:
    class Boom(Source):
        calls = 0

        def read_pages(self, pfn: int, count: int) -> bytes:
            Boom.calls += 1
            if Boom.calls > 1:
                raise KeyboardInterrupt
            return super().read_pages(pfn, count)

    _ram, dumpable = _bitmaps()
    out = tmp_path / "int.elf"
    with pytest.raises(KeyboardInterrupt):
        write_elf_dump(out, Boom(), [ElfSegment(0, 0, PAGES * 4096)], dumpable, _meta().notes)
    with pytest.warns(DumpWarning):
        dump = open_dump(out)
    assert dump.describe().incomplete
    dump.close()
