"""Bulk reads of kdump-compressed dumps: long reads (spans of pages decoded together, zlib on two
threads) return what page-by-page reads return and raise the same error for a bad page; the
flattened format's reads across records (preadv of record runs) match the rebuilt file."""

from __future__ import annotations

import os
import random
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from kcrash.dumps import codecs
from kcrash.dumps.flattened import FlatFile
from kcrash.dumps.kdump_compressed import KdumpCompressed
from kcrash.dumps.write.kdump_compressed import KdumpSpec, write_kdump
from kcrash.errors import CorruptDumpError, FaultError

PAGE = 4096
N = 300  # more than one 256-page batch, more than PARALLEL_MIN_PAGES zlib pages per batch


def _pages(n: int = N) -> dict[int, bytes]:
    rng = random.Random(7)
    out = {}
    for pfn in range(n):
        if pfn % 37 == 0:
            out[pfn] = bytes(PAGE)  # zero page
        elif pfn % 41 == 0:
            out[pfn] = rng.randbytes(PAGE)  # stored raw
        else:  # compressible, different on every page
            out[pfn] = (b"page %d " % pfn + rng.randbytes(40)) * 64 + bytes(PAGE)
    return {p: d[:PAGE] for p, d in out.items()}


@pytest.fixture(params=[True, False], ids=["two-threads", "one-thread"])
def threads(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[bool, list[int]]:
    """Force the two-thread zlib path on or off (as if the process had two CPUs or one); count its runs."""
    used: list[int] = []
    real = codecs._decompress_on_two_threads

    def spy(pages: Sequence[tuple[int, bytes | memoryview, int]], page_size: int) -> list[bytes]:
        used.append(len(pages))
        return real(pages, page_size)

    monkeypatch.setattr(codecs, "_decompress_on_two_threads", spy)
    monkeypatch.setattr(codecs, "_cpus", lambda: 2 if request.param else 1)
    return request.param, used


@pytest.mark.parametrize("codec", ["zlib", "lzo", "snappy", "zstd"])
@pytest.mark.parametrize("flattened", [False, True])
def test_bulk_reads_match_pages(tmp_path: Path, codec: str, flattened: bool,
                                threads: tuple[bool, list[int]]) -> None:
    pages = _pages()
    write_kdump(tmp_path / "d", KdumpSpec(pages, N, codec=codec, flattened=flattened))
    whole = b"".join(pages[p] for p in range(N))
    bulk = KdumpCompressed.open(tmp_path / "d", cache_pages=0)
    assert bulk.read(0, N * PAGE) == whole
    assert bulk.read(PAGE - 5, 200 * PAGE + 11) == whole[PAGE - 5:201 * PAGE + 6]
    assert bulk.read(3 * PAGE, 0) == b""
    single = KdumpCompressed.open(tmp_path / "d")
    assert b"".join(single.read_page(p) for p in range(N)) == whole
    # Only zlib runs go to the second thread (the other bindings were slower on two).
    idle, used = threads
    assert bool(used) == (idle and codec == "zlib")
    assert all(n >= codecs.PARALLEL_MIN_PAGES for n in used)


def _corrupt(path: Path, dump: KdumpCompressed, pfn: int, junk: Callable[[bytes], bytes]) -> int:
    desc = dump._desc(dump._bm2.rank(pfn))
    assert desc is not None and desc[2] == codecs.DUMP_DH_COMPRESSED_ZLIB
    offset, size, _ = desc
    with path.open("r+b") as f:
        f.seek(offset)
        old = f.read(size)
        f.seek(offset)
        f.write(junk(old)[:size].ljust(size, b"\0"))
    return offset


def _error(read: Callable[[], object]) -> tuple[str, int]:
    # a damaged page is one missing page: a fault at its address naming the damage
    with pytest.raises(FaultError) as exc:
        read()
    return str(exc.value), exc.value.address


@pytest.mark.parametrize("junk", [
    lambda old: old[:2] + bytes(x ^ 0x5A for x in old[2:]),  # broken deflate data
    lambda old: zlib.compress(b"short", 1),                    # a valid stream of the wrong size
], ids=["bad-data", "wrong-size"])
def test_bad_page_faults_the_same_way_on_every_path(tmp_path: Path, junk: Callable[[bytes], bytes],
                                                      threads: tuple[bool, list[int]]) -> None:
    path = tmp_path / "d"
    write_kdump(path, KdumpSpec(_pages(), N))
    dump = KdumpCompressed.open(path)
    first = _corrupt(path, dump, 200, junk)  # late in its batch: maybe the other thread's
    _corrupt(path, dump, 290, junk)
    lone = _error(lambda: KdumpCompressed.open(path).read_page(200))
    assert lone[1] == 200 * PAGE and "zlib page" in lone[0] and f"{first:#x}" in lone[0]
    assert _error(lambda: KdumpCompressed.open(path).read(0, N * PAGE)) == lone
    assert _error(lambda: KdumpCompressed.open(path).read(150 * PAGE + 9, 100 * PAGE)) == lone
    assert _error(lambda: KdumpCompressed.open(path).read(260 * PAGE, 40 * PAGE))[1] == 290 * PAGE
    # the pages around them read as before
    pages = _pages()
    assert KdumpCompressed.open(path).read(201 * PAGE, 89 * PAGE) == b"".join(pages[p] for p in range(201, 290))
    assert bool(threads[1]) == threads[0]


def test_two_threads_raise_the_first_bad_page(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every page from the 11th on is bad: both threads fail, on different pages; the error is the
    # 11th page's, as one thread would raise it.
    monkeypatch.setattr(codecs, "_cpus", lambda: 2)
    good = zlib.compress(bytes(range(256)) * 16, 1)
    pages = [(codecs.DUMP_DH_COMPRESSED_ZLIB, good if i < 10 else good[:-9], 1000 + i) for i in range(200)]
    for _ in range(20):
        with pytest.raises(CorruptDumpError) as exc:
            codecs.decompress_pages(pages, PAGE)
        assert exc.value.offset == 1010
    assert codecs.decompress_pages(pages[:10] * 10, PAGE) == [bytes(range(256)) * 16] * 100


def test_no_thread_to_be_had_is_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(codecs, "_cpus", lambda: 2)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    page = bytes(range(256)) * 16
    pages = [(codecs.DUMP_DH_COMPRESSED_ZLIB, zlib.compress(page[i:] + page[:i], 1), i) for i in range(100)]
    assert codecs.decompress_pages(pages, PAGE) == [page[i:] + page[:i] for i in range(100)]


def _flatten(plain: bytes, rng: random.Random, tmp: Path) -> Path:
    # Records of random sizes (many tiny ones), written in a shuffled order, with a gap.
    records, pos = [], 0
    while pos < len(plain):
        size = rng.choice([1, 7, 64, 300, 1000, 4096])
        if rng.random() < 0.02:
            pos += size  # a hole: reads as zeros
            continue
        records.append((pos, plain[pos:pos + size]))
        pos += size
    head, tail = records[:len(records) // 2], records[len(records) // 2:]
    rng.shuffle(tail)
    path = tmp / "flat"
    with path.open("wb") as f:
        f.write(b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1) + bytes(4096 - 32))
        for offset, data in head + tail:
            f.write(struct.pack(">qq", offset, len(data)) + data)
        f.write(struct.pack(">qq", -1, 0))
    return path


@pytest.mark.parametrize("preadv", [True, False], ids=["preadv", "pread-per-buffer"])
def test_flattened_reads_across_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preadv: bool) -> None:
    if not preadv:
        monkeypatch.delattr(os, "preadv")
    rng = random.Random(3)
    plain = rng.randbytes(2 << 20)
    flat = FlatFile(_flatten(plain, rng, tmp_path))
    rebuilt = bytearray(flat.size)
    for start, end, at in zip(flat._starts, flat._ends, flat._file_offsets, strict=True):
        rebuilt[start:end] = plain[start:end]
        assert at > 0
    assert flat.num_records > 2000
    assert flat.pread(0, flat.size) == bytes(rebuilt)  # runs of > 1000 records in one read
    for _ in range(300):
        offset = rng.randrange(flat.size)
        n = rng.choice([1, 100, 5000, 70000, 1 << 20])
        assert flat.pread(offset, n) == bytes(rebuilt[offset:offset + n]), (offset, n)
    flat.close()


def test_flattened_short_record_data_is_an_error(tmp_path: Path) -> None:
    rng = random.Random(4)
    plain = rng.randbytes(1 << 18)
    path = _flatten(plain, rng, tmp_path)
    flat = FlatFile(path)
    with path.open("r+b") as f:  # the file shrinks after it was indexed
        f.truncate(path.stat().st_size // 2)
    with pytest.raises(CorruptDumpError) as exc:
        flat.pread(0, flat.size)
    assert exc.value.offset is not None
    flat.close()


def test_zstd_pages_decode_on_several_threads_at_once() -> None:
    # zstandard's decompressors must not be shared between threads: each thread gets its own, and
    # pages decoded on four threads at once all come out right.
    import threading

    pages = [bytes([i % 251]) * 2048 + os.urandom(64) + bytes(2048 - 64) for i in range(64)]
    packed = [codecs.compress(codecs.DUMP_DH_COMPRESSED_ZSTD, p) for p in pages]
    results: list[list[bytes]] = [[] for _ in range(4)]
    owners: list[object] = [None] * 4

    def work(k: int) -> None:
        owners[k] = codecs._zstd_d()
        for _ in range(20):
            results[k] = [codecs.decompress(codecs.DUMP_DH_COMPRESSED_ZSTD, c, 4096, 0) for c in packed]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == pages for r in results)
    assert len({id(o) for o in owners}) == 4 and codecs._zstd_d() is codecs._zstd_d()
