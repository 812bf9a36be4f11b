"""kdump-compressed reader: versions, layouts, codecs, flattened, zero pages, faults, split dumps."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest

from kcrash.dumps import DumpWarning, open_dump
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.split import SplitDump
from kcrash.dumps.write.kdump_compressed import KdumpSpec, write_kdump
from kcrash.errors import FaultError

PAGE = 4096


def _pages(n: int = 64, seed: int = 0) -> dict[int, bytes]:
    rng = random.Random(seed)
    out = {}
    for pfn in range(n):
        kind = pfn % 4
        out[pfn] = (bytes(PAGE) if kind == 0 else rng.randbytes(PAGE) if kind == 1
                    else bytes([pfn % 251]) * PAGE if kind == 2 else (b"kcrash %d " % pfn) * 300 + bytes(PAGE))[:PAGE]
    return out


def _check_all(path: Path, pages: dict[int, bytes]) -> KdumpCompressed:
    dump = open_dump(path)
    assert isinstance(dump, KdumpCompressed)
    seg = dump.segments()[0]
    for pfn, data in pages.items():
        assert seg.read_fn(pfn * PAGE, PAGE) == data, pfn
    lo, hi = min(pages), max(pages) + 1
    assert seg.read_fn(lo * PAGE + 100, (hi - lo) * PAGE - 200) == b"".join(
        pages[p] for p in range(lo, hi))[100:-100]
    return dump


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd"])
@pytest.mark.parametrize("flattened", [False, True])
def test_codecs_round_trip(tmp_path: Path, codec: str, flattened: bool) -> None:
    pages = _pages()
    write_kdump(tmp_path / "d", KdumpSpec(pages, 80, codec=codec, flattened=flattened, raw_pfns=frozenset({5})))
    dump = _check_all(tmp_path / "d", pages)
    desc = dump.describe()
    assert codec in desc.codecs and "raw" in desc.codecs
    assert desc.pages.zero == 16 and desc.pages.present == 64
    # the 16 random pages do not compress and are stored raw; the other 32 are compressed
    assert (desc.pages.raw, desc.pages.compressed, desc.pages.lost) == (16, 32, 0)
    assert desc.format.endswith("(flattened)") == flattened


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize(("word", "align", "little", "machine"),
                         [(8, None, True, "x86_64"), (4, 4, True, "i686"), (4, 8, True, "arm"),
                          (8, None, False, "s390x"), (4, 8, False, "")])
def test_header_versions_and_layouts(tmp_path: Path, version: int, word: int, align: int | None,
                                     little: bool, machine: str) -> None:
    pages = _pages(16)
    spec = KdumpSpec(pages, 20, header_version=version, word_size=word, max_align=align, little_endian=little,
                     machine=machine, vmcoreinfo="OSRELEASE=1.2.3\n", dump_level=31)
    write_kdump(tmp_path / "d", spec)
    dump = _check_all(tmp_path / "d", pages)
    assert dump.header.header_version == version
    assert (dump.header.word_size, dump.header.little_endian) == (word, little)
    info = dump.vmcoreinfo_or_none()
    assert (info is not None and info.osrelease == "1.2.3") == (version >= 3)


def test_fault_reasons_and_zero_fill(tmp_path: Path) -> None:
    pages = _pages(32)
    excluded = frozenset({40, 41})
    write_kdump(tmp_path / "d", KdumpSpec({p: d for p, d in pages.items()}, 64, excluded=excluded, dump_level=31))
    dump = open_dump(tmp_path / "d")
    read = dump.segments()[0].read_fn
    with pytest.raises(FaultError, match="excluded by dump level 31") as exc:
        read(40 * PAGE + 8, 8)
    assert exc.value.physical and exc.value.address == 40 * PAGE
    with pytest.raises(FaultError, match="not RAM"):
        read(50 * PAGE, 8)
    assert dump.describe().pages.excluded == 2
    filled = open_dump(tmp_path / "d", zero_fill=True).segments()[0].read_fn
    assert filled(40 * PAGE, 16) == bytes(16)
    with pytest.raises(FaultError):
        filled(50 * PAGE, 8)


def test_incomplete_dump_warns_and_faults_lost_pages(tmp_path: Path) -> None:
    pages = _pages(32)
    write_kdump(tmp_path / "d", KdumpSpec(pages, 32, incomplete_after=20))
    with pytest.warns(DumpWarning, match="incomplete"):
        dump = open_dump(tmp_path / "d")
    read = dump.segments()[0].read_fn
    assert read(3 * PAGE, PAGE) == pages[3]
    with pytest.raises(FaultError, match="lost: dump incomplete"):
        read(25 * PAGE, 8)
    with pytest.raises(FaultError, match="lost"):
        read(0, 32 * PAGE)
    desc = dump.describe()
    assert desc.incomplete and desc.pages.lost == 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert open_dump(tmp_path / "d", zero_fill=True).segments()[0].read_fn(25 * PAGE, 8) == bytes(8)


def test_truncated_page_desc_area_reads_as_lost(tmp_path: Path) -> None:
    pages = _pages(32)
    layout = write_kdump(tmp_path / "d", KdumpSpec(pages, 32))
    with (tmp_path / "d").open("r+b") as f:
        f.truncate(layout.page_desc_offset + 10 * 24)
    with pytest.warns(DumpWarning):
        dump = open_dump(tmp_path / "d")
    with pytest.raises(FaultError, match="lost"):
        dump.segments()[0].read_fn(20 * PAGE, 8)


def test_split_set(tmp_path: Path) -> None:
    pages = _pages(48)
    for i, rng in enumerate([(0, 16), (16, 40), (40, 48)]):
        write_kdump(tmp_path / f"p{i}", KdumpSpec(pages, 48, split=rng, codec="zstd"))
    dump = open_dump([tmp_path / "p2", tmp_path / "p0", tmp_path / "p1"])
    assert isinstance(dump, SplitDump)
    from kcrash.memory import SegmentMap

    mem = SegmentMap(dump.segments())
    assert mem.read(0, 48 * PAGE, physical=True) == b"".join(pages[p] for p in range(48))
    assert dump.describe().pages.present == 48
    with pytest.raises(FaultError, match="another file"):
        open_dump(tmp_path / "p0").segments()[0].read_fn(20 * PAGE, 8)


def test_page_cache_is_bounded(tmp_path: Path) -> None:
    pages = _pages(64)
    write_kdump(tmp_path / "d", KdumpSpec(pages, 64))
    dump = KdumpCompressed.open(tmp_path / "d", cache_pages=8)
    for pfn in range(64):
        dump.read_page(pfn)
    assert len(dump._pages) == 8
