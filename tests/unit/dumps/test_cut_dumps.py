"""Dumps cut short at any byte, and damaged pages: every page whose bytes survive reads as in the whole
file, the rest fault naming why, the dump warns once with the count of missing pages, and
``describe()`` counts present and missing pages."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcrash.dumps import DumpWarning, open_dump
from kcrash.dumps.flattened import FlatFile
from kcrash.dumps.kdump_header import read_kdump_header
from kcrash.dumps.write.kdump_compressed import KdumpSpec, write_kdump
from kcrash.errors import CorruptDumpError, FaultError, KcrashError
from kcrash.memory import SegmentMap
from support.synthetic import make_synthetic_kernel

PAGE = 4096
N = 600


def _pages() -> dict[int, bytes]:
    rng = random.Random(11)
    out = {}
    for pfn in range(N):
        if pfn % 29 == 0:
            out[pfn] = bytes(PAGE)
        elif pfn % 31 == 0:
            out[pfn] = rng.randbytes(PAGE)
        else:
            out[pfn] = ((b"pfn %d " % pfn) + rng.randbytes(24)) * 100 + bytes(PAGE)
    return {p: d[:PAGE] for p, d in out.items()}


_WHOLE: dict[str, bytes] = {}
PAGES = _pages()


def _whole(tmp: Path, kind: str) -> bytes:
    if kind not in _WHOLE:
        path = tmp / f"whole-{kind}"
        if kind == "elf":
            make_synthetic_kernel(seed=5).write_elf(path)
        else:
            write_kdump(path, KdumpSpec(PAGES, N, flattened=kind == "flat"))
        _WHOLE[kind] = path.read_bytes()
    return _WHOLE[kind]


def _reference(tmp: Path, kind: str) -> dict[int, bytes]:
    path = tmp / f"ref-{kind}"
    path.write_bytes(_whole(tmp, kind))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DumpWarning)
        dump = open_dump(path)
    mem = SegmentMap(dump.segments())
    pages = {addr // PAGE: mem.read(addr, PAGE, physical=True)
             for start, end in mem.ranges(physical=True) for addr in range(start, end, PAGE)}
    dump.close()
    return pages


def _open_cut(tmp: Path, kind: str, length: int) -> tuple[object, list[str]]:
    path = tmp / f"cut-{kind}"
    path.write_bytes(_whole(tmp, kind)[:length])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DumpWarning)
        dump = open_dump(path)
    return dump, [str(w.message) for w in caught if issubclass(w.category, DumpWarning)]


def _bitmaps_kept(path: Path) -> bool:
    # the synthetic flattened writer scatters its records: the bitmaps may come late in the file
    view = FlatFile(path)
    header = read_kdump_header(view)
    kept = view.covers(header.bitmap_offset, 2 * header.bitmap_len)
    view.close()
    return kept


def _read_all(dump: object, reference: dict[int, bytes]) -> tuple[int, int]:
    """Read every page of the reference; return (pages equal to the reference, pages faulting)."""
    mem = SegmentMap(dump.segments())  # type: ignore[attr-defined]
    same = missing = 0
    for pfn, want in reference.items():
        try:
            got = mem.read(pfn * PAGE, PAGE, physical=True)
        except FaultError as exc:
            assert "cut short" in exc.reason or "lost" in exc.reason or "unreadable" in exc.reason
            missing += 1
            continue
        assert got == want, f"pfn {pfn} reads different bytes from the cut file"
        same += 1
    return same, missing


@pytest.mark.parametrize("kind", ["elf", "kdump", "flat"])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9, 0.99])
def test_cut_dump_keeps_every_surviving_page(tmp_path: Path, kind: str, fraction: float) -> None:
    reference = _reference(tmp_path, kind)
    length = int(len(_whole(tmp_path, kind)) * fraction)
    try:
        dump, messages = _open_cut(tmp_path, kind, length)
    except CorruptDumpError as exc:
        assert kind == "flat" and "bitmaps are missing" in str(exc) and not _bitmaps_kept(tmp_path / "cut-flat")
        return
    same, missing = _read_all(dump, reference)
    counts = dump.describe().pages  # type: ignore[attr-defined]
    assert missing > 0 and same > 0
    assert len(messages) == 1 and "cut short" in messages[0] and f"{missing:,} of" in messages[0]
    assert counts.lost == missing
    assert dump.describe().incomplete  # type: ignore[attr-defined]
    # roughly the fraction of the file that survives survives as pages (headers and bitmaps aside)
    assert abs(same / len(reference) - fraction) < 0.2


@pytest.mark.parametrize("kind", ["elf", "kdump", "flat"])
def test_whole_dump_does_not_warn(tmp_path: Path, kind: str) -> None:
    reference = _reference(tmp_path, kind)
    dump, messages = _open_cut(tmp_path, kind, len(_whole(tmp_path, kind)))
    assert messages == []
    assert _read_all(dump, reference) == (len(reference), 0)
    assert dump.describe().pages.lost == 0  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["elf", "kdump", "flat"]), cut=st.floats(0.05, 1.0))
def test_any_cut_reads_what_it_holds(tmp_path: Path, kind: str, cut: float) -> None:
    reference = _reference(tmp_path, kind)
    data = _whole(tmp_path, kind)
    try:
        dump, _ = _open_cut(tmp_path, kind, int(len(data) * cut))
    except KcrashError:  # only when what locates the pages (headers, bitmaps) is gone
        return
    same, missing = _read_all(dump, reference)
    assert same + missing == len(reference)
    assert dump.describe().pages.lost == missing  # type: ignore[attr-defined]


def test_damaged_page_is_one_missing_page(tmp_path: Path) -> None:
    path = tmp_path / "d"
    write_kdump(path, KdumpSpec(PAGES, N))
    dump = open_dump(path)
    desc = dump._desc(dump._bm2.rank(100))  # type: ignore[attr-defined]
    assert desc is not None and desc[2] != 0
    data = bytearray(path.read_bytes())
    data[desc[0]:desc[0] + desc[1]] = bytes(b ^ 0xA5 for b in data[desc[0]:desc[0] + desc[1]])
    path.write_bytes(data)
    mem = SegmentMap(open_dump(path).segments())
    with pytest.raises(FaultError, match="unreadable") as exc:
        mem.read(99 * PAGE, 3 * PAGE, physical=True)
    assert exc.value.address == 100 * PAGE
    assert mem.read(99 * PAGE, PAGE, physical=True) == PAGES[99]
    assert mem.read(101 * PAGE, 200 * PAGE, physical=True) == b"".join(PAGES[p] for p in range(101, 301))


def test_split_set_with_one_part_cut_short(tmp_path: Path) -> None:
    # makedumpfile --split: three files; the middle one cut in half. The other parts read whole, the
    # cut part's surviving pages read as written, the rest fault; one warning names the count.
    from kcrash.dumps.split import SplitDump

    ranges = [(0, 200), (200, 400), (400, N)]
    for i, rng in enumerate(ranges):
        write_kdump(tmp_path / f"p{i}", KdumpSpec(PAGES, N, split=rng))
    middle = tmp_path / "p1"
    middle.write_bytes(middle.read_bytes()[: middle.stat().st_size // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DumpWarning)
        dump = open_dump([tmp_path / "p0", middle, tmp_path / "p2"])
    assert isinstance(dump, SplitDump)
    assert [str(w.message) for w in caught if "cut short" in str(w.message)]
    mem = SegmentMap(dump.segments())
    assert mem.read(0, 200 * PAGE, physical=True) == b"".join(PAGES[p] for p in range(200))
    assert mem.read(400 * PAGE, (N - 400) * PAGE, physical=True) == b"".join(PAGES[p] for p in range(400, N))
    survived = missing = 0
    for pfn in range(200, 400):
        try:
            assert mem.read(pfn * PAGE, PAGE, physical=True) == PAGES[pfn]
            survived += 1
        except FaultError:
            missing += 1
    assert survived > 0 and missing > 0
    assert dump.describe().pages.lost == missing
